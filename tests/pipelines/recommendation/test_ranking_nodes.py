"""The two-stage recommender's nodes on the tiny catalogue, and the choice on hand cases."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from pozytywka.pipelines.recommendation.nodes import prepare_training_data
from pozytywka.pipelines.recommendation.ranking_nodes import (
    _choose,
    ranker_side_tables,
    served_rankings,
    train_ranker,
    train_validation_lightfm,
)
from pozytywka.recsys.baselines import tune_baselines
from tests.project import load_params


@pytest.fixture(scope="module")
def params():
    p = load_params("recommendation")
    p["training"]["defaults"]["epochs"] = 3
    p["ranker"].update(n_trials=2, max_rounds=30, stopping_rounds=5, min_users=5)
    return p


@pytest.fixture(scope="module")
def stage(tiny_features, tiny_feature_tables, params):
    interactions, inputs = tiny_features
    data = prepare_training_data(
        interactions, inputs["dataset"], params["validation"], params["evaluation"]
    )
    uf, itf = inputs["user_features"], inputs["item_features"]
    best = {"variant": "likes", **params["training"]["defaults"]}
    model = train_validation_lightfm(data, best, uf, itf, params["training"])
    user_table, track_table = tiny_feature_tables
    side = ranker_side_tables(track_table, user_table, inputs["dataset"])
    tuning = tune_baselines(data, params["baselines"])
    return data, model, side, tuning, uf, itf


def test_the_ranker_is_trained_chosen_or_not_and_the_choice_is_the_validation_best(stage, params):
    data, model, side, tuning, uf, itf = stage
    booster, choice, trials, importance, study = train_ranker(
        data, model, tuning, side, uf, itf, params["ranker"], params["baselines"]
    )
    assert isinstance(booster["model"], lgb.Booster) and len(trials) == 2 == len(study.trials)
    assert set(importance["feature"]) == set(choice["ranker"]["features"])
    validation = choice["validation"]
    assert set(validation) == {"ranker", "lightfm", "ease", "als", "popularity"}
    best = choice["served"]
    personal = {"lightfm", "ease", "als"}
    best_personal = max(personal, key=lambda n: validation[n]["ndcg_at_10"])
    assert best in {"popularity", best_personal, "ranker"}
    if best != "popularity":  # served only for a gain shown on validation
        assert choice["served_minus"]["popularity"]["interval"][0] > 0 or best == "ranker"
    for other, diff in choice["served_minus"].items():
        expected = validation[best]["ndcg_at_10"] - validation[other]["ndcg_at_10"]
        assert diff["estimate"] == pytest.approx(expected)
    assert 0 < choice["candidate_recall"] <= 1

    rankings = served_rankings(
        booster, choice, data, model, tuning, side, uf, itf, params["ranker"], params["baselines"]
    )
    assert set(rankings) == {"ranker", "ease", "als", "popularity"}
    known = data["train_known"].toarray() > 0
    for name, ranking in rankings.items():
        users, slots = np.nonzero(ranking.positions >= 0)
        assert not known[users, ranking.positions[users, slots]].any(), name
        assert (ranking.scores[:, 1:] <= ranking.scores[:, :-1]).all(), name  # best first


def test_too_few_users_means_no_ranker_and_a_reason(stage, params):
    data, model, side, tuning, uf, itf = stage
    few = {**params["ranker"], "min_users": 10_000}
    booster, choice, trials, importance, study = train_ranker(
        data, model, tuning, side, uf, itf, few, params["baselines"]
    )
    assert booster == {} and not study.trials and trials.empty and importance.empty
    assert "min_users is 10000" in choice["ranker"]["skipped"]
    assert "ranker" not in choice["validation"]
    rankings = served_rankings(
        booster, choice, data, model, tuning, side, uf, itf, few, params["baselines"]
    )
    assert "ranker" not in rankings


def test_the_ranker_is_chosen_only_for_a_gain_shown_on_validation():
    users = pd.Index([1, 2, 3, 4])
    values = {
        "ranker": pd.Series([0.5, 0.5, 0.0, 1.0], index=users),  # mean 0.5
        "ease": pd.Series([0.5, 0.0, 0.0, 1.0], index=users),  # mean 0.375
        "popularity": pd.Series([0.0, 0.0, 0.0, 0.0], index=users),
    }
    params = {"choose_from": ["ranker", "lightfm", "ease", "popularity"], "seed": 0}
    choice = _choose(values, params)
    # On four users neither EASE's gain over popularity nor the ranker's over EASE is shown
    # (each interval holds zero): the simplest, popularity, is served.
    assert choice["served"] == "popularity"
    assert set(choice["validation"]) == {"ranker", "ease", "popularity"}
    assert choice["served_minus"]["ranker"]["estimate"] == pytest.approx(-0.5)
    assert choice["served_minus"]["ease"]["estimate"] == pytest.approx(-0.375)
    low, high = choice["served_minus"]["ease"]["interval"]
    assert -1 <= low <= -0.375 <= high <= 0

    many = pd.RangeIndex(200)
    rng = np.random.default_rng(0)
    ease = pd.Series(rng.uniform(0, 0.5, 200), index=many)
    values = {"ranker": ease + 0.05, "ease": ease, "popularity": ease * 0}
    assert _choose(values, params)["served"] == "ranker"  # every user gains: shown
    values = {"ranker": ease + rng.normal(0, 0.3, 200), "ease": ease, "popularity": ease * 0}
    assert _choose(values, params)["served"] == "ease"  # shown over popularity only
    noise = pd.Series(rng.normal(0, 0.01, 200), index=many)
    values = {"ranker": ease + noise, "ease": ease - noise, "popularity": ease}
    assert _choose(values, params)["served"] == "popularity"  # nothing shown above it
