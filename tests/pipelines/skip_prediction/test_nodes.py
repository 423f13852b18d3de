"""Skip prediction: leakage-free rates, the baseline rule, training and the batch scorer."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV

from pozytywka.pipelines.feature_engineering.nodes import genre_vocabulary
from pozytywka.pipelines.reporting.nodes import _skip_caveats
from pozytywka.pipelines.skip_prediction import nodes as skip_nodes
from pozytywka.pipelines.skip_prediction.nodes import (
    build_skip_dataset,
    evaluate_skip_models,
    score_pairs,
    split_by_time,
    train_models,
)
from pozytywka.skip import baseline_rule, genre_match
from tests.project import load_params


@pytest.fixture(scope="module")
def skip_params():
    params = load_params("skip_prediction")
    params["training"]["search"].update(n_trials=2, timeout_seconds=30, hgb_max_iter=30)
    params["importance"].update(repeats=1, max_rows=500)
    return params


def dataset_params(params: dict) -> tuple[dict, dict]:
    """What build_skip_dataset takes: the dataset block and the scoring block."""
    return params["dataset"], params["scoring"]


@pytest.fixture(scope="module")
def skip_data(tiny_session_tracks, tiny_tables, skip_params):
    users, artists, tracks = tiny_tables
    genres = genre_vocabulary(artists, users)
    return build_skip_dataset(
        tiny_session_tracks, tracks, artists, users, genres, *dataset_params(skip_params)
    ), genres


def test_training_rates_are_out_of_fold_and_test_rates_use_all_training(skip_data, skip_params):
    data, _ = skip_data
    m = skip_params["scoring"]["rate_smoothing"]
    fold = np.random.default_rng(skip_params["dataset"]["seed"]).integers(
        0, skip_params["dataset"]["rate_folds"], len(data)
    )
    train_mask = (data["split"] == "train").to_numpy()
    train = data[train_mask]
    g = train["skipped"].mean()
    i = int(np.flatnonzero(train_mask)[0])
    row = data.iloc[i]
    others = data[train_mask & (data["user_id"] == row["user_id"]).to_numpy() & (fold != fold[i])]
    expected = (others["skipped"].sum() + m * g) / (len(others) + m)
    assert row["user_skip_rate"] == pytest.approx(expected)
    # Within a fold a user's rows share one rate, whatever their labels (leave-one-out would
    # give skipped rows a lower rate than listened ones: a leak trees exploit).
    same_fold = data[train_mask & (fold == fold[i])]
    assert (same_fold.groupby("user_id")["user_skip_rate"].nunique() == 1).all()
    test = data[data["split"] == "test"]
    trow = test.iloc[0]
    same = train[train["track_id"] == trow["track_id"]]
    assert trow["track_skip_rate"] == pytest.approx(
        (same["skipped"].sum() + m * g) / (len(same) + m)
    )


def test_a_training_rows_own_label_never_moves_its_rates(
    tiny_session_tracks, tiny_tables, skip_params
):
    users, artists, tracks = tiny_tables
    genres = genre_vocabulary(artists, users)
    a = build_skip_dataset(
        tiny_session_tracks, tracks, artists, users, genres, *dataset_params(skip_params)
    )
    flipped = tiny_session_tracks.copy()
    train = flipped[(split_by_time(flipped, skip_params["dataset"]["split"]) == "train").to_numpy()]
    first = train.index[0]
    a_row = train.loc[first]
    # Flip it, and one opposite row of another user and track so the global rate stays put.
    partner = train[
        (train["skipped"] != a_row["skipped"])
        & (train["user_id"] != a_row["user_id"])
        & (train["track_id"] != a_row["track_id"])
    ].index[0]
    flipped.loc[[first, partner], "skipped"] = ~flipped.loc[[first, partner], "skipped"]
    b = build_skip_dataset(flipped, tracks, artists, users, genres, *dataset_params(skip_params))
    assert a.loc[first, "user_skip_rate"] == b.loc[first, "user_skip_rate"]
    assert a.loc[first, "track_skip_rate"] == b.loc[first, "track_skip_rate"]


def test_flipping_test_labels_changes_no_feature(tiny_session_tracks, tiny_tables, skip_params):
    users, artists, tracks = tiny_tables
    genres = genre_vocabulary(artists, users)
    a = build_skip_dataset(
        tiny_session_tracks, tracks, artists, users, genres, *dataset_params(skip_params)
    )
    flipped = tiny_session_tracks.copy()
    test = (split_by_time(flipped, skip_params["dataset"]["split"]) == "test").to_numpy()
    flipped.loc[test, "skipped"] = ~flipped.loc[test, "skipped"]
    b = build_skip_dataset(flipped, tracks, artists, users, genres, *dataset_params(skip_params))
    cols = ["user_skip_rate", "track_skip_rate", "user_train_rows", "track_train_rows"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_genre_match_equals_a_row_by_row_reading_with_missing_and_empty_lists():
    rng = np.random.default_rng(3)
    genres = [f"g{i}" for i in range(12)]

    def some_genres():
        return np.nan if rng.random() < 0.1 else list(rng.choice(genres, rng.integers(0, 4)))

    users, tracks = rng.integers(0, 40, 3000), rng.integers(0, 300, 3000).astype(str)
    of_track = {t: some_genres() for t in set(tracks)}
    of_user = {u: some_genres() for u in set(users)}
    track_genres = pd.Series([of_track[t] for t in tracks], dtype=object)
    favourites = pd.Series([of_user[u] for u in users], dtype=object)
    expected = [
        isinstance(g, list) and isinstance(f, list) and bool(set(g) & set(f))
        for g, f in zip(track_genres, favourites, strict=True)
    ]
    got = genre_match(pd.Series(users), pd.Series(tracks), track_genres, favourites)
    assert got.dtype == bool and got.tolist() == expected and 0 < got.mean() < 1
    none = pd.Series([[], np.nan], dtype=object)
    assert genre_match(pd.Series([1, 2]), pd.Series(["a", "b"]), none, none).tolist() == [0, 0]


def test_temporal_split_orders_train_validation_test(skip_data):
    data, _ = skip_data
    t = data.groupby("split", observed=True)["timestamp"].agg(["min", "max"])
    assert t.loc["train", "max"] <= t.loc["validation", "min"]
    assert t.loc["validation", "max"] <= t.loc["test", "min"]


def test_genre_match_and_baseline_rule():
    match = genre_match(
        pd.Series([1, 1, 2]),
        pd.Series(["a", "b", "a"]),
        pd.Series([["rock", "pop"], ["jazz"], ["rock", "pop"]]),
        pd.Series([["pop"], ["pop"], []]),
    )
    assert match.tolist() == [True, False, False]
    rows = pd.DataFrame({"genre_match": match})
    assert baseline_rule(rows).tolist() == [False, True, True]  # skip when no genre meets


def test_training_evaluation_and_batch_scorer(skip_data, skip_params, tiny_tables):
    data, genres = skip_data
    users, artists, tracks = tiny_tables
    svc, final, summary, trials = train_models(data, skip_params["training"])
    predictions, importance = evaluate_skip_models(data, svc, final, skip_params["importance"])
    test = data[data["split"] == "test"]
    assert len(predictions) == len(test)
    assert predictions["skipped"].tolist() == test["skipped"].tolist()
    assert predictions["baseline_predicted"].tolist() == (~test["genre_match"]).tolist()
    assert "baseline_score" not in predictions  # a rule has no score to rank by
    assert len(importance) == len(data.filter(like="fav_").columns) + 20
    pairs = pd.concat(
        [
            test[["user_id", "track_id"]].head(5),
            pd.DataFrame(
                {
                    "user_id": [-7, int(test["user_id"].iloc[0])],
                    "track_id": [test["track_id"].iloc[0], "Z" * 22],
                }
            ),
        ],
        ignore_index=True,
    )
    scored, counts = score_pairs(
        pairs, final, data, tracks, artists, users, genres, skip_params["scoring"]
    )
    assert counts == {"pairs": 7, "scored": 5, "unknown_user": 1, "unknown_track": 1}
    prior = data.loc[data["split"] == "train", "skipped"].mean()
    assert scored["skip_probability"].iloc[5:].tolist() == pytest.approx([prior, prior])
    assert scored["fallback"].tolist()[5:] == ["unknown_user", "unknown_track"]
    # Known pairs get the model's own probability for the same features.
    cols = list(final.feature_names_in_)
    direct = final.predict_proba(test[cols].head(5))[:, 1]
    np.testing.assert_allclose(scored["skip_probability"].iloc[:5], direct, rtol=1e-6)
    assert set(scored["prediction"]) <= {"SKIP", "PLAY"}


def test_a_feature_no_training_row_has_is_left_out_and_the_rule_flagged(skip_data, skip_params):
    """An export whose tracks carry no audio feature (rating data converted to the raw format)
    trains every model on the rest; the report is told, and told when the rule is constant."""
    data, _ = skip_data
    empty = data.assign(danceability=np.nan, genre_match=False)
    training = {
        **skip_params["training"],
        "search": {**skip_params["training"]["search"], "models": ["hist_gradient_boosting"]},
    }
    svc, final, summary, _ = train_models(empty, training)
    assert "danceability" not in final.feature_names_in_
    assert "danceability" not in svc.feature_names_in_
    assert summary["unobserved_features"] == ["danceability"]
    assert summary["genre_rule_constant"] is True
    assert summary["beats_linear_svc_on_validation"] == (
        summary["validation_value"] > summary["linear_svc_validation_value"]
    )


def test_the_skip_search_stops_before_a_trial_would_pass_its_timeout(monkeypatch):
    clock = iter([0.0, 30.0, 70.0])  # creation, after trial 1, after trial 2
    monkeypatch.setattr(skip_nodes.time, "monotonic", lambda: next(clock))
    callback = skip_nodes.stop_before_overrun(90)
    study = optuna.create_study(direction="maximize")
    stopped = []
    monkeypatch.setattr(study, "stop", lambda: stopped.append(len(study.trials)))
    for seconds in (30, 40):
        trial = optuna.trial.create_trial(
            value=0.5, params={}, distributions={}, state=optuna.trial.TrialState.COMPLETE
        )
        trial.datetime_start = datetime(2026, 1, 1)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=seconds)
        study.add_trial(trial)
        callback(study, study.trials[-1])
    # After 30 s, a 30 s trial still fits in 90 s; after 70 s, a 40 s one does not.
    assert stopped == [2]
    assert study.user_attrs["stopped_by_time_cap"] is True  # for the report


def test_the_skip_search_runs_its_trial_budget_and_says_so(skip_data, skip_params):
    data, _ = skip_data
    _, _, summary, trials = train_models(data, skip_params["training"])
    assert len(trials) == skip_params["training"]["search"]["n_trials"] == 2
    assert summary["budget"] == {
        "trials_planned": 2,
        "trials_run": 2,
        "time_cap_seconds": 30.0,
        "cut_by_time_cap": False,
    }


def test_a_one_class_validation_period_leaves_the_model_uncalibrated_and_says_so(
    skip_data, skip_params
):
    data, _ = skip_data
    one_class = data.assign(skipped=np.where(data["split"] == "validation", False, data["skipped"]))
    training = {
        **skip_params["training"],
        "selection_metric": "balanced_accuracy",  # defined on one class, unlike ROC AUC
        "search": {**skip_params["training"]["search"], "models": ["logistic_regression"]},
    }
    _, final, summary, _ = train_models(one_class, training)
    assert summary["calibration"].startswith("none")
    assert not isinstance(final, CalibratedClassifierCV)
    assert "not calibrated" in "\n".join(_skip_caveats(summary))


def test_models_fit_on_at_most_max_train_rows_and_the_report_says_so(skip_data, skip_params):
    data, _ = skip_data
    available = int((data["split"] == "train").sum())
    training = {
        **skip_params["training"],
        "max_train_rows": 300,
        "search": {**skip_params["training"]["search"], "models": ["logistic_regression"]},
    }
    svc, final, summary, _ = train_models(data, training)
    assert svc.named_steps["standardscaler"].n_samples_seen_ == 300
    assert skip_nodes.uncalibrated(final).named_steps["standardscaler"].n_samples_seen_ == 300
    assert (summary["training_rows"], summary["training_rows_available"]) == (300, available)
    assert f"300 of the {available:,} training plays" in "\n".join(_skip_caveats(summary))

    everything = {**training, "max_train_rows": None}
    svc, _, summary, _ = train_models(data, everything)
    assert svc.named_steps["standardscaler"].n_samples_seen_ == available
    assert summary["training_rows"] == available
    assert "training plays" not in "\n".join(_skip_caveats(summary))


def test_at_most_samples_only_past_the_limit():
    rows = pd.DataFrame({"x": range(10)})
    assert skip_nodes.at_most(rows, None, 0) is rows
    assert skip_nodes.at_most(rows, 10, 0) is rows
    sample = skip_nodes.at_most(rows, 4, 0)
    assert len(sample) == 4 and sample["x"].is_unique and sample.equals(rows.loc[sample.index])
    assert sample.equals(skip_nodes.at_most(rows, 4, 0))  # seeded
