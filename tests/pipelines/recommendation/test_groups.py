"""Group strategies on hand-made rank tables, the history baseline and the clustering score."""

from __future__ import annotations

import numpy as np
import pytest

from pozytywka.recsys.groups import (
    STRATEGIES,
    borda,
    candidate_group_playlist,
    clustering_score,
    gfar,
    group_playlist,
    history_baseline,
    least_misery,
    mean_rank,
    member_ranks,
    member_satisfaction,
)

# Three members rank five items (1 = best).
RANKS = np.array(
    [
        [1, 2, 3, 4, 5],
        [5, 1, 2, 3, 4],
        [5, 4, 1, 2, 3],
    ],
    dtype=float,
)


def test_mean_rank():
    # Means: 3.67, 2.33, 2.0, 3.0, 4.0
    assert mean_rank(RANKS, 3).tolist() == [2, 1, 3]


def test_least_misery():
    # Worst ranks: 5, 4, 3, 4, 5 -> item 2, then 1 and 3 (worst 4; mean 2.33 < 3.0).
    assert least_misery(RANKS, 3).tolist() == [2, 1, 3]
    assert least_misery(RANKS, 1).tolist() == [2]


def test_borda_on_top_lists():
    # top=2: 2 points for rank 1, 1 for rank 2. Item 0: 2; item 1: 1+2 = 3; item 2: 2+1 = 3;
    # items 3 and 4: 0. Equal points keep catalogue order.
    assert borda(RANKS, 3, top=2).tolist() == [1, 2, 0]


def test_gfar_serves_every_member():
    ranks = np.array(
        [
            [1, 2, 3, 9, 9, 9],
            [1, 2, 3, 9, 9, 9],
            [9, 9, 9, 1, 2, 3],
        ],
        dtype=float,
    )
    # Mean rank picks items 0 and 1, both for the first two members. GFAR (top 2: relevance
    # 2/3 and 1/3) picks item 0 (gain 4/3), then item 3 (gain 2/3 for the unserved third
    # member beats 2 * 1/3 * 1/3 for item 1).
    assert mean_rank(ranks, 2).tolist() == [0, 1]
    assert gfar(ranks, 2, top=2).tolist() == [0, 3]


def test_group_playlist_from_scores_and_exclusion():
    scores = np.array([[0.9, 0.8, 0.1], [0.7, 0.9, 0.2]])
    assert member_ranks(scores).tolist() == [[1, 2, 3], [2, 1, 3]]
    excluded = np.array([True, False, False])
    for strategy in ["mean_rank", "least_misery", "borda", "gfar"]:
        playlist = group_playlist(scores, 2, strategy, excluded)
        assert 0 not in playlist and len(playlist) == 2
    with pytest.raises(ValueError, match="strategy"):
        group_playlist(scores, 2, "dictator")


def test_history_baseline_draws_only_from_histories():
    rng = np.random.default_rng(0)
    histories = [np.array([1, 5, 9]), np.array([5, 12])]
    for _ in range(20):
        playlist = history_baseline(histories, 3, rng)
        assert set(playlist) <= {1, 5, 9, 12} and len(set(playlist)) == 3
    assert sorted(history_baseline(histories, 10, rng)) == [1, 5, 9, 12]


def test_clustering_score_hand_case():
    emb = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [10.0, 10.0]])
    # Items 0 and 1: centroid (1, 0), distances 1 and 1.
    assert clustering_score(emb, np.array([0, 1])) == pytest.approx(1.0)
    assert clustering_score(emb, np.array([0, 3])) == pytest.approx(np.sqrt(200) / 2)


def test_member_satisfaction():
    sat = member_satisfaction(np.array([4, 7, 9]), [np.array([7]), np.array([1, 2]), np.array([])])
    assert sat["precision"].tolist() == pytest.approx([1 / 3, 0, 0])
    assert sat["recall"][:2].tolist() == [1.0, 0.0] and np.isnan(sat["recall"][2])
    assert sat["ndcg"][0] == pytest.approx((1 / np.log2(3)) / 1.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_candidate_playlist_equals_the_full_computation(strategy):
    """Pruned to each member's best items, the playlist is still exactly group_playlist's, on
    correlated and uncorrelated members, with ties and exclusions."""
    rng = np.random.default_rng(3)
    for trial in range(60):
        m, n_items, n = (
            int(rng.integers(2, 11)),
            int(rng.integers(60, 2500)),
            int(rng.integers(1, 40)),
        )
        taste = rng.normal(size=n_items)
        scores = (trial % 2) * taste + rng.normal(size=(m, n_items))
        if trial % 3 == 0:
            scores = np.round(scores, 1)  # many ties
        excluded = rng.random(n_items) < 0.1 if trial % 4 else None
        top = 20 if strategy == "gfar" else 100
        expected = group_playlist(scores, n, strategy, excluded, top)
        got, _ = candidate_group_playlist(
            scores, n, strategy, excluded, top, candidates=int(rng.integers(5, 300))
        )
        assert np.array_equal(got, expected), trial
        # Heads precomputed from slightly different scores (another BLAS blocking) and of
        # any length give the same playlist.
        noisy = scores + rng.normal(scale=1e-6, size=scores.shape)
        size = int(rng.integers(1, n_items + 1))
        heads = [
            np.argsort(-row, kind="stable")[:size] if i % 3 else None for i, row in enumerate(noisy)
        ]
        got, _ = candidate_group_playlist(scores, n, strategy, excluded, top, 50, heads)
        assert np.array_equal(got, expected), ("precomputed", trial)


def test_candidate_playlist_prunes_when_members_agree():
    rng = np.random.default_rng(0)
    scores = 3 * rng.normal(size=10_000) + rng.normal(size=(6, 10_000))
    _, cut = candidate_group_playlist(scores, 20, "mean_rank", None, 100, candidates=200)
    assert cut < 10_000


def test_member_ranks_equal_scipys_average_ranks_with_ties_and_excluded_items():
    from scipy.stats import rankdata  # noqa: PLC0415

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, size=(6, 50)).astype(float)  # many ties
    excluded = rng.random(50) < 0.2
    expected = rankdata(-np.where(excluded, -np.inf, scores), method="average", axis=1)
    np.testing.assert_array_equal(member_ranks(scores, excluded), expected)
