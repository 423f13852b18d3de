"""The ranker's candidates and features, on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pozytywka.recsys.candidates import SideTables, candidates, side_tables

# 2 users x 6 items. User 0 played item 0 (and liked it) and liked item 1 too; user 1 played
# item 5 only.
KNOWN = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], dtype=float))
LIKED = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=float))
A_SCORES = np.array([[9, 8, 7, 6, 5, 4], [1, 2, 3, 4, 5, 6]], dtype=float)
B_SCORES = np.array([[0, 0, 1, 2, 3, 4], [6, 5, 4, 3, 2, 1]], dtype=float)


def _side() -> SideTables:
    # genres: items 0, 2 are "x"; items 1, 3 "y"; 4, 5 none. Artists: 0, 2, 4 by artist 0.
    genres = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [0, 0], [0, 0]], dtype=np.float32)
    artists = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    return SideTables(
        genres=sp.csr_matrix(genres),
        favourites=sp.csr_matrix(np.array([[0, 1], [1, 0]], dtype=np.float32)),
        artists=sp.csr_matrix(artists),
        item_metadata=np.arange(6, dtype=np.float32)[:, None],
        item_metadata_names=["z_year"],
        premium=np.array([1.0, 0.0], dtype=np.float32),
    )


@pytest.fixture
def cands():
    scorers = {"a": lambda u: A_SCORES[u], "b": lambda u: B_SCORES[u]}
    return candidates(scorers, np.array([0, 1]), KNOWN, LIKED, _side(), depth=2)


def _row(c, user, item) -> dict:
    i = np.flatnonzero((c.users == user) & (c.items == item))
    assert len(i) == 1, (user, item)
    return dict(zip(c.names, c.features[i[0]], strict=True))


def test_candidates_are_the_union_of_each_scorers_best_unplayed_tracks(cands):
    pairs = sorted(zip(cands.users.tolist(), cands.items.tolist(), strict=True))
    # user 0: a's best unplayed 2, 3; b's 5, 4. user 1: a's 4, 3 (5 played); b's 0, 1.
    assert pairs == [(0, 2), (0, 3), (0, 4), (0, 5), (1, 0), (1, 1), (1, 3), (1, 4)]
    assert list(cands.group_sizes()) == [4, 4]


def test_each_scorers_score_rank_and_gap_are_exact(cands):
    row = _row(cands, 0, 4)
    assert row["a_score"] == 5 and row["b_score"] == 3
    # ranks among unplayed tracks, 0-based, as log1p: a orders 2, 3, 4 ..., b orders 5, 4
    assert row["a_rank"] == pytest.approx(np.log1p(2))
    assert row["b_rank"] == pytest.approx(np.log1p(1))
    assert row["a_gap"] == pytest.approx(5 - 7)  # the user's best unplayed a score is 7
    assert row["b_gap"] == pytest.approx(3 - 4)


def test_history_features_match_a_hand_count(cands):
    # user 0 liked items 0 (genre x, artist 0) and 1 (genre y, artist 1)
    row = _row(cands, 0, 2)  # genre x, artist 0
    assert row["genre_share"] == pytest.approx(0.5)
    assert row["artist_share"] == pytest.approx(0.5)
    assert row["favourite_genre"] == 0  # user 0's favourite is y
    assert _row(cands, 0, 3)["favourite_genre"] == 1
    assert _row(cands, 0, 5)["genre_share"] == 0  # no genre
    assert row["track_likes"] == pytest.approx(np.log1p(0))
    assert row["user_likes"] == pytest.approx(np.log1p(2))
    assert row["user_plays"] == pytest.approx(np.log1p(2))
    assert row["user_premium"] == 1 and row["z_year"] == 2
    # user 1 liked nothing: no share of anything
    assert _row(cands, 1, 0)["genre_share"] == 0 and _row(cands, 1, 0)["artist_share"] == 0


def test_labels_mark_held_out_positives(cands):
    held_out = sp.csr_matrix(([1.0, 1.0], ([0, 1], [4, 2])), shape=(2, 6))
    labels = cands.labels(held_out)
    assert {(u, i) for u, i, y in zip(cands.users, cands.items, labels, strict=True) if y} == {
        (0, 4)
    }  # (1, 2) is not a candidate


def test_side_tables_align_to_the_models_order_and_fill_what_is_missing():
    tracks = pd.DataFrame(
        {
            "track_id": ["t2", "t1"],
            "artist_id": ["a", "a"],
            "genre_rock": [1, 0],
            "genre_jazz": [0, 1],
            "z_tempo": [0.5, -0.5],
            "explicit": [1, 0],
            "skip_rate": [0.9, 0.1],  # an event aggregate: never a feature
        }
    )
    users = pd.DataFrame({"user_id": [7], "premium_user": [True], "fav_jazz": [1]})
    side = side_tables(tracks, users, np.array([7, 8]), np.array(["t1", "t2", "t3"]))
    assert side.genres.toarray().tolist() == [[0, 1], [1, 0], [0, 0]]
    assert side.favourites.toarray().tolist() == [[0, 1], [0, 0]]  # no fav_rock column
    assert side.item_metadata_names == ["z_tempo", "explicit"]
    assert side.item_metadata.tolist() == [[-0.5, 0], [0.5, 1], [0, 0]]
    assert side.artists.toarray().tolist() == [[1], [1], [0]]
    assert side.premium.tolist() == [1.0, 0.0]
