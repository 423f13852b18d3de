"""Feature engineering: the dedup rule, skip rates, splits without leakage, LightFM inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pozytywka.pipelines.feature_engineering.nodes import (
    NUMERIC_TRACK_FEATURES,
    _pair_codes,
    assign_split,
    build_interactions,
    build_lightfm_inputs,
    build_session_tracks,
    build_track_features,
    build_user_features,
    fit_skip_rates,
    fit_track_scaler,
    genre_vocabulary,
)


def events_frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(
        rows, columns=["session_id", "timestamp", "user_id", "track_id", "event_type"]
    )
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df["event_type"] = pd.Categorical(
        df["event_type"], categories=["play", "skip", "like", "advertisement", "buy_premium"]
    )
    return df


def rows_frame(rows) -> pd.DataFrame:
    """(user, track, skipped, split) rows as session_tracks would hold them."""
    df = pd.DataFrame(rows, columns=["user_id", "track_id", "skipped", "split"])
    df["split"] = pd.Categorical(df["split"], categories=["train", "test"])
    df["liked"] = False
    df["plays"] = 1
    df["session_id"] = np.arange(len(df))
    df["timestamp"] = pd.Timestamp("2024-01-01", tz="UTC")
    return df


def test_play_and_skip_make_one_skipped_row():
    ev = events_frame(
        [
            (1, "2024-01-01 10:00", 7, "a", "play"),
            (1, "2024-01-01 10:01", 7, "a", "skip"),
            (1, "2024-01-01 10:02", 7, "b", "play"),
            (1, "2024-01-01 10:03", 7, "b", "like"),
            (1, "2024-01-01 10:04", 7, None, "advertisement"),
            (2, "2024-01-02 10:00", 7, "a", "skip"),  # the play was lost upstream
            (2, "2024-01-02 10:01", 7, "c", "play"),
            (2, "2024-01-02 10:05", 7, "c", "play"),
        ]
    )
    rows, stats = build_session_tracks(ev)
    got = rows.set_index(["session_id", "track_id"])[["plays", "skipped", "liked"]]
    assert got.to_dict("index") == {
        (1, "a"): {"plays": 1, "skipped": True, "liked": False},
        (1, "b"): {"plays": 1, "skipped": False, "liked": True},
        (2, "a"): {"plays": 1, "skipped": True, "liked": False},
        (2, "c"): {"plays": 2, "skipped": False, "liked": False},
    }
    assert rows.loc[0, "timestamp"] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert stats["skip_without_play"] == 1 and stats["repeated_plays_in_session"] == 1
    assert stats["session_track_rows"] == 4


def test_skip_rates_hand_case():
    rows = rows_frame(
        [
            (1, "a", True, "train"),
            (1, "b", False, "train"),
            (1, "c", True, "train"),
            (2, "a", False, "train"),
            (2, "a", True, "test"),
            (3, "c", True, "test"),
        ]
    )
    users, tracks, global_rate = fit_skip_rates(rows, smoothing=0.0)
    assert global_rate == pytest.approx(2 / 4)
    assert users.set_index("user_id")["skip_rate"].to_dict() == {1: pytest.approx(2 / 3), 2: 0.0}
    assert tracks.set_index("track_id")["skip_rate"].to_dict() == {"a": 0.5, "b": 0.0, "c": 1.0}
    users_m, _, _ = fit_skip_rates(rows, smoothing=2.0)
    # (skips + m * global) / (rows + m) = (2 + 2 * 0.5) / (3 + 2)
    assert users_m.set_index("user_id").loc[1, "skip_rate"] == pytest.approx(3 / 5)
    # Users and tracks seen only in test get the global rate, not their test outcome.
    feats = build_user_features(
        pd.DataFrame(
            {
                "user_id": [1, 3],
                "premium_user": [True, False],
                "favourite_genres": [["rock"], ["jazz", "x"]],
            }
        ),
        users,
        global_rate,
        ["jazz", "rock"],
    )
    assert feats.set_index("user_id").loc[3, "skip_rate"] == 0.5
    assert feats[["fav_jazz", "fav_rock"]].values.tolist() == [[0, 1], [1, 0]]


def test_rates_do_not_see_test_rows(tiny_session_tracks):
    rows = tiny_session_tracks
    flipped = rows.copy()
    test = flipped["split"] == "test"
    flipped.loc[test, "skipped"] = ~flipped.loc[test, "skipped"]
    a_users, a_tracks, a_global = fit_skip_rates(rows, 5.0)
    b_users, b_tracks, b_global = fit_skip_rates(flipped, 5.0)
    pd.testing.assert_frame_equal(a_users, b_users)
    pd.testing.assert_frame_equal(a_tracks, b_tracks)
    assert a_global == b_global


def test_scaler_is_fit_on_training_tracks_only(tiny_tables, tiny_session_tracks):
    _, artists, tracks = tiny_tables
    rows = tiny_session_tracks
    scaler = fit_track_scaler(tracks, rows)
    train_ids = rows.loc[rows["split"] == "train", "track_id"].unique()
    test_only = tracks[~tracks["track_id"].isin(train_ids)]
    assert len(test_only) > 0
    changed = tracks.copy()
    changed.loc[test_only.index, "tempo"] = 299.0
    again = fit_track_scaler(changed, rows)
    assert np.allclose(
        scaler[-1].transformers_[0][1][-1].mean_, again[-1].transformers_[0][1][-1].mean_
    )
    feats = build_track_features(
        tracks,
        artists,
        scaler,
        pd.DataFrame({"track_id": [], "skip_rate": [], "train_rows": []}),
        0.3,
        ["rock"],
    )
    z_train = feats[feats["track_id"].isin(train_ids)][[f"z_{c}" for c in NUMERIC_TRACK_FEATURES]]
    assert np.allclose(z_train.mean(), 0, atol=1e-6)
    assert not feats[[f"z_{c}" for c in NUMERIC_TRACK_FEATURES]].isna().any().any()


def test_random_split_keeps_pairs_whole_and_is_seeded(tiny_session_tracks_all, fe_params):
    params = fe_params["split"]
    rows, summary = assign_split(tiny_session_tracks_all, params)
    pair_splits = rows.groupby(["user_id", "track_id"], observed=True)["split"].nunique()
    assert pair_splits.max() == 1
    n_pairs = len(pair_splits)
    test_pairs = rows[rows["split"] == "test"].groupby(["user_id", "track_id"]).ngroups
    assert test_pairs / n_pairs == pytest.approx(params["test_size"], abs=0.03)
    again, _ = assign_split(tiny_session_tracks_all, params)
    assert again["split"].equals(rows["split"])
    other, _ = assign_split(tiny_session_tracks_all, {**params, "seed": 1})
    assert not other["split"].equals(rows["split"])
    assert summary["train_rows"] + summary["test_rows"] == len(rows)


def test_pair_codes_number_pairs_in_order_of_first_appearance():
    users = pd.Series([7, 3, 7, 3, 7, 9])
    tracks = pd.Series(["a", "a", "a", "b", None, "a"], dtype="string")
    codes, n_pairs = _pair_codes(users, tracks)
    # (7,a) (3,a) (7,a) (3,b) (7,<NA>) (9,a): a missing track is a pair of its own
    assert codes.tolist() == [0, 1, 0, 2, 3, 4] and n_pairs == 5


def test_temporal_split_and_interactions_have_no_overlap(tiny_session_tracks_all, fe_params):
    rows, summary = assign_split(
        tiny_session_tracks_all, {**fe_params["split"], "strategy": "temporal"}
    )
    assert (
        rows.loc[rows["split"] == "train", "timestamp"].max()
        < rows.loc[rows["split"] == "test", "timestamp"].min()
    )
    inter = build_interactions(rows, {**fe_params["interactions"], "non_like": "drop"})
    train = set(map(tuple, inter.loc[inter["split"] == "train", ["user_id", "track_id"]].values))
    test = set(map(tuple, inter.loc[inter["split"] == "test", ["user_id", "track_id"]].values))
    assert train and test and not train & test
    with pytest.raises(ValueError, match="strategy"):
        assign_split(tiny_session_tracks_all, {**fe_params["split"], "strategy": "magic"})


@pytest.mark.parametrize(
    ("mode", "labels", "weights"),
    [
        ("drop", [1, 0, 0], [1.0, 0.0, 0.0]),
        ("weight", [1, 1, 1], [1.0, 0.05, 0.2]),
        ("negative", [1, -1, -1], [1.0, 0.05, 0.2]),
    ],
)
def test_interaction_modes(mode, labels, weights):
    rows = rows_frame(
        [(1, "liked", False, "train"), (1, "skipped", True, "train"), (1, "played", False, "train")]
    )
    rows.loc[0, "liked"] = True
    inter = build_interactions(
        rows, {"non_like": mode, "like_weight": 1.0, "play_weight": 0.2, "skip_weight": 0.05}
    ).set_index("track_id")
    order = ["liked", "skipped", "played"]
    assert inter.loc[order, "label"].tolist() == labels
    assert inter.loc[order, "weight"].tolist() == pytest.approx(weights)
    assert inter.loc[order, "liked"].tolist() == [True, False, False]


def test_lightfm_inputs_follow_dataset_mapping(tiny_tables, tiny_session_tracks, fe_params):
    users, artists, tracks = tiny_tables
    rows = tiny_session_tracks
    inter = build_interactions(rows, fe_params["interactions"])
    u_rates, t_rates, g = fit_skip_rates(rows, 5.0)
    genres = genre_vocabulary(artists, users)
    uf = build_user_features(users, u_rates, g, genres)
    tf = build_track_features(tracks, artists, fit_track_scaler(tracks, rows), t_rates, g, genres)
    out = build_lightfm_inputs(inter, uf, tf, fe_params["lightfm"])
    user_map, user_feat_map, item_map, item_feat_map = out["dataset"].mapping()
    assert out["train_interactions"].shape == (len(users), len(tracks))
    assert out["user_features"].shape == (len(users), len(user_feat_map))
    assert out["item_features"].shape == (len(tracks), len(item_feat_map))
    # Rows are normalised to sum 1, identity feature included.
    assert np.allclose(abs(out["item_features"]).sum(axis=1), 1.0)
    liked = inter[(inter["split"] == "test") & inter["liked"]]
    test = out["test_interactions"].tocsr()
    some = liked.iloc[0]
    assert test[user_map[some["user_id"]], item_map[some["track_id"]]] == 1
    assert test.nnz == len(liked)
    train = out["train_interactions"].tocsr()
    assert train.multiply(test).nnz == 0
    # Every track's genre features are its artist's genres, at the Dataset's indices.
    item_feats = out["item_features"].tocsr()
    artist_genres = artists.set_index("artist_id")["genres"]
    for _, t in tracks.sample(20, random_state=0).iterrows():
        row = item_feats[item_map[t["track_id"]]]
        on = {
            name.removeprefix("genre_")
            for name, j in item_feat_map.items()
            if name.startswith("genre_") and row[0, j] != 0
        }
        expected = set(artist_genres.get(t["artist_id"], [])) if pd.notna(t["artist_id"]) else set()
        assert on == expected, t["track_id"]
        assert row[0, item_feat_map[t["track_id"]]] > 0  # its identity feature
        artist = t["artist_id"] if pd.notna(t["artist_id"]) else "unknown"
        artist_on = [n for n, j in item_feat_map.items() if n.startswith("artist_") and row[0, j]]
        assert artist_on == [f"artist_{artist}"]  # its own artist, one feature
    n_artist_features = sum(str(n).startswith("artist_") for n in item_feat_map)
    assert n_artist_features == tracks["artist_id"].fillna("unknown").nunique()
    user_feats = out["user_features"].tocsr()
    for _, u in users.sample(10, random_state=0).iterrows():
        row = user_feats[user_map[u["user_id"]]]
        on = {
            name.removeprefix("fav_")
            for name, j in user_feat_map.items()
            if isinstance(name, str) and name.startswith("fav_") and row[0, j] != 0
        }
        assert on == set(u["favourite_genres"])
