"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pozytywka.recsys.metrics import evaluate_ranking, per_user_ranking_metrics, top_k


def fixed(scores):
    scores = np.asarray(scores, dtype=float)
    return lambda users: scores[users]


def test_single_user_hand_computed():
    # Items ranked 0 > 1 > 2 > 3 > 4; item 0 was seen in training, items 1 and 3 are held out.
    scores = [[5.0, 4.0, 3.0, 2.0, 1.0]]
    test = sp.csr_matrix([[0, 1, 0, 1, 0]])
    known = sp.csr_matrix([[1, 0, 0, 0, 0]])
    m = evaluate_ranking(fixed(scores), test, known)
    # Candidates 1,2,3,4; pairs (pos, neg): (1,2) (1,4) (3,4) right, (3,2) wrong.
    assert m["auc"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx(1.0)
    assert m["precision_at_5"] == pytest.approx(2 / 5)
    assert m["recall_at_5"] == pytest.approx(1.0)
    # Hits at ranks 1 and 3: DCG = 1 + 1/log2(4); ideal = 1 + 1/log2(3).
    assert m["ndcg_at_5"] == pytest.approx(1.5 / (1 + 1 / np.log2(3)))
    assert m["hit_rate_at_1"] == pytest.approx(1 / 2)
    assert m["hit_rate_at_5"] == pytest.approx(1.0)


def test_coverage_counts_items_in_anyones_top_10():
    # 30 items; user 0 prefers items 0-9, user 1 items 10-19: 20 of 30 items covered.
    scores = np.zeros((2, 30))
    scores[0, :10] = 1
    scores[1, 10:20] = 1
    test = sp.csr_matrix(([1, 1], ([0, 1], [0, 10])), shape=(2, 30))
    assert evaluate_ranking(fixed(scores), test)["coverage"] == pytest.approx(20 / 30)


def test_a_subset_of_users_is_evaluated_as_in_the_full_evaluation():
    # Users 0 and 2 of three: their rows are the full evaluation's; coverage from their lists.
    scores = np.zeros((3, 30))
    scores[0, :10] = 1
    scores[1, 10:20] = 1
    scores[2, 20:30] = 1
    test = sp.csr_matrix(([1, 1, 1], ([0, 1, 2], [0, 10, 25])), shape=(3, 30))
    everyone, full_coverage = per_user_ranking_metrics(fixed(scores), test)
    some, coverage = per_user_ranking_metrics(fixed(scores), test, users=np.array([0, 2]))
    expected = everyone[everyone["user"].isin([0, 2])].reset_index(drop=True)
    pd.testing.assert_frame_equal(some, expected)
    assert (full_coverage, coverage) == (pytest.approx(1.0), pytest.approx(20 / 30))


def test_two_users_average_and_coverage():
    scores = [[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]]
    test = sp.csr_matrix([[0, 1, 0, 0], [0, 0, 0, 0]])  # the second user has nothing held out
    m = evaluate_ranking(fixed(scores), test)
    # User 0: positive item 1 is ranked last of 4 -> AUC 0, MRR 1/4, recall@1..@3 = 0.
    assert m["auc"] == 0.0 and m["mrr"] == pytest.approx(0.25)
    assert m["evaluated_users"] == 1
    assert m["precision_at_5"] == pytest.approx(1 / 5)  # all 4 items fit in the top 5
    # Top-10 of each user covers all 4 items.
    assert m["coverage"] == 1.0


def test_ties_count_half_so_a_constant_scorer_gets_half_auc():
    test = sp.csr_matrix(np.eye(3, 6))
    m = evaluate_ranking(lambda users: np.zeros((len(users), 6)), test)
    assert m["auc"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(1 / 3.5)  # mid-rank of 6 tied items


def test_perfect_and_reversed_scorers():
    rng = np.random.default_rng(0)
    truth = rng.random((30, 50))
    test = sp.csr_matrix(truth > 0.9)
    assert evaluate_ranking(fixed(truth), test)["auc"] == pytest.approx(1.0)
    assert evaluate_ranking(fixed(-truth), test)["auc"] == pytest.approx(0.0)
    # Chunking (tiny chunks) gives the same figures as one pass.
    a = evaluate_ranking(fixed(truth), test)
    b = evaluate_ranking(fixed(truth), test, cells_per_chunk=60)
    assert a == pytest.approx(b)


def test_top_k_figures_alone_equal_the_full_evaluation_without_auc_and_mrr():
    rng = np.random.default_rng(1)
    truth = rng.random((40, 60))
    test, known = sp.csr_matrix(truth > 0.85), sp.csr_matrix(truth < 0.1)
    scores = truth + rng.normal(0, 0.3, truth.shape)
    full = evaluate_ranking(fixed(scores), test, known)
    top_only = evaluate_ranking(fixed(scores), test, known, full_ranks=False)
    assert set(full) - set(top_only) == {"auc", "mrr"}
    assert top_only == {k: v for k, v in full.items() if k not in ("auc", "mrr")}


def test_top_k_orders_best_first():
    s = np.array([[0.1, 0.7, 0.3, 0.9]])
    assert top_k(s, 3).tolist() == [[3, 1, 2]]


def test_mid_ranks_equal_scipys_average_ranks_with_ties_and_excluded_items():
    from scipy.stats import rankdata  # noqa: PLC0415

    from pozytywka.recsys.metrics import _mid_ranks  # noqa: PLC0415

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(40, 30)).astype(float)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # excluded items
    rows, items = np.nonzero(rng.random(scores.shape) < 0.3)
    expected = rankdata(-scores, method="average", axis=1)[rows, items]
    got = _mid_ranks(scores, rows, scores[rows, items], cells_per_chunk=70)  # several chunks
    np.testing.assert_array_equal(got, expected)
