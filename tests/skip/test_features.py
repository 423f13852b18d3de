"""The shared skip library on hand-checked examples: counts, smoothing, out-of-fold rates, the
feature table and its column order, the skip score and its calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from pozytywka.skip import (
    RATE_FEATURES,
    TRACK_FEATURES,
    TRACK_NUMERIC,
    attach_features,
    calibrate,
    feature_columns,
    out_of_fold_rates,
    skip_score,
    smoothed_rate,
    training_counts,
    uncalibrated,
    unobserved_features,
)

# User 1: three training rows, two skipped; user 2: one listened row; user 3: none.
TRAIN = pd.DataFrame({"user_id": [1, 1, 1, 2], "skipped": [True, False, True, False]})


def test_training_counts_give_zero_for_unseen_keys():
    skips, count = training_counts(TRAIN, "user_id", pd.Series([1, 2, 3]))
    assert skips.tolist() == [2.0, 0.0, 0.0]
    assert count.tolist() == [3.0, 1.0, 0.0]


def test_smoothed_rates_pull_towards_the_global_rate():
    skips, count = training_counts(TRAIN, "user_id", pd.Series([1, 2, 3]))
    # smoothing 2, global 0.5: (2 + 1) / (3 + 2), (0 + 1) / (1 + 2), unseen: the global rate
    rate = smoothed_rate(skips, count, 2.0, 0.5)
    np.testing.assert_allclose(rate, [0.6, 1 / 3, 0.5])
    assert smoothed_rate(2.0, 3.0, 2.0, 0.5) == pytest.approx(0.6)  # scalars, as the service


def test_out_of_fold_rates_leave_out_the_rows_own_fold():
    rows = pd.DataFrame({"user_id": [1, 1, 1, 1, 2], "skipped": [True, False, True, False, False]})
    train = pd.Series([True, True, True, False, True])
    fold = np.array([0, 1, 1, 0, 0])
    rate, count = out_of_fold_rates(rows, "user_id", train, fold, 1.0, 0.5)
    # row 0 (fold 0) sees rows 1, 2: (1 + .5) / 3; rows 1, 2 (fold 1) see row 0: (1 + .5) / 2;
    # row 3 (not training) sees all three: (2 + .5) / 4; row 4 has no other fold: the prior.
    np.testing.assert_allclose(rate, [0.5, 0.75, 0.75, 0.625, 0.5])
    assert count.tolist() == [2.0, 1.0, 1.0, 3.0, 0.0]


def test_attach_features_and_column_order():
    tracks = pd.DataFrame(
        {
            "track_id": ["a", "b"],
            "artist_id": [10, 11],
            **{c: [1, 2] for c in TRACK_NUMERIC},
            "explicit": [True, False],
        }
    )
    artists = pd.DataFrame({"artist_id": [10, 11], "genres": [["rock", "pop"], ["jazz"]]})
    users = pd.DataFrame(
        {"user_id": [1], "premium_user": [True], "favourite_genres": [["pop", "folk"]]}
    )
    rows = pd.DataFrame(
        {"user_id": [1, 1], "track_id": ["a", "b"], **{c: [0.0, 0.0] for c in RATE_FEATURES}}
    )
    out = attach_features(rows, tracks, artists, users, ["folk", "jazz", "pop"])
    assert out["genre_match"].tolist() == [True, False]
    assert out[["fav_folk", "fav_jazz", "fav_pop"]].to_numpy().tolist() == [[1, 0, 1]] * 2
    assert (out[[*TRACK_FEATURES, "premium_user"]].dtypes == "float64").all()
    assert out["explicit"].tolist() == [1.0, 0.0]
    assert feature_columns(out) == [
        *TRACK_NUMERIC,
        "explicit",
        "premium_user",
        "genre_match",
        "user_skip_rate",
        "track_skip_rate",
        "user_train_rows",
        "track_train_rows",
        "fav_folk",
        "fav_jazz",
        "fav_pop",
    ]


class _Probabilistic:
    def predict_proba(self, x):
        return np.column_stack([1 - x["v"], x["v"]])


class _Margin:
    def decision_function(self, x):
        return x["v"].to_numpy() * 10


def test_skip_score_is_the_probability_else_the_decision_value():
    x = pd.DataFrame({"v": [0.2, 0.9]})
    np.testing.assert_allclose(skip_score(_Probabilistic(), x), [0.2, 0.9])
    np.testing.assert_allclose(skip_score(_Margin(), x), [2.0, 9.0])


def test_features_without_any_training_value_are_not_model_inputs():
    rows = pd.DataFrame(
        {
            **{c: [0.5, 0.1, 0.3] for c in [*TRACK_FEATURES, "premium_user", "genre_match"]},
            **{c: [0.2, 0.4, 0.1] for c in RATE_FEATURES},
            "fav_jazz": [1, 0, 0],
            "split": ["train", "train", "test"],
        }
    )
    rows["tempo"] = np.nan
    rows.loc[2, "energy"] = np.nan  # observed in training: kept
    rows.loc[[0, 1], "valence"] = np.nan  # only a test row has it: no model can learn it
    cols = feature_columns(rows)
    assert "tempo" not in cols and "valence" not in cols and "energy" in cols
    assert unobserved_features(rows) == ["valence", "tempo"]
    assert cols[-1] == "fav_jazz"


def test_calibration_maps_over_predicted_skips_onto_observed_shares():
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=4000)})
    y = pd.Series(rng.random(4000) < expit(x["a"] - 1.0))  # skip share about 0.3
    model = LogisticRegression(class_weight="balanced").fit(x[:2000], y[:2000])
    calibrated = calibrate(model, x[2000:], y[2000:], "sigmoid")
    assert uncalibrated(calibrated) is model and uncalibrated(model) is model
    raw, fixed = skip_score(model, x[2000:]), skip_score(calibrated, x[2000:])
    assert raw.mean() > y[2000:].mean() + 0.1  # balanced weights over-predict skips
    assert abs(fixed.mean() - y[2000:].mean()) < 0.02
    np.testing.assert_array_equal(np.argsort(raw), np.argsort(fixed))  # sigmoid keeps the order


def test_calibration_needs_both_classes():
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0]})
    model = LogisticRegression().fit(x, [0, 1, 1])
    with pytest.raises(ValueError, match="one class only"):
        calibrate(model, x, pd.Series([True, True, True]), "sigmoid")
