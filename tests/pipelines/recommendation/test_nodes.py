"""Recommendation nodes on the tiny catalogue: data split, search, model reload, evaluation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pozytywka.pipelines.recommendation.model import EmbeddingScorer
from pozytywka.pipelines.recommendation.nodes import (
    compare_training_variants,
    oracle_scorer,
    prepare_training_data,
    recommend_for_users,
    search_hyperparameters,
    train_final_model,
)
from tests.conftest import load_params


@pytest.fixture(scope="module")
def rec_params(tmp_path_factory):
    params = load_params("recommendation")
    params["defaults"]["epochs"] = 3
    params["search"].update(
        n_trials=3, timeout_seconds=60, group_objective_groups=10,
        storage=f"sqlite:///{tmp_path_factory.mktemp('optuna')}/study.db",
        space={**params["search"]["space"], "epochs": [2, 4], "no_components": [8, 16]})
    return params


@pytest.fixture(scope="module")
def rec_data(tiny_features, rec_params):
    interactions, inputs = tiny_features
    return prepare_training_data(interactions, inputs["dataset"], rec_params)


def test_validation_is_carved_from_training_only(rec_data):
    fit, validation = rec_data["fit_known"], rec_data["validation"]
    test, train = rec_data["test"], rec_data["train_known"]
    assert fit.multiply(validation).nnz == 0  # validation pairs are not trained on
    assert train.multiply(test).nnz == 0  # nor are test pairs, in any variant
    for inter, _ in rec_data["full"].values():
        assert inter.tocsr().multiply(test).nnz == 0
    assert validation.nnz > 0 and (validation - validation.multiply(train)).nnz == 0
    likes, weighted = rec_data["fit"]["likes"][0], rec_data["fit"]["weighted"][0]
    assert weighted.nnz > likes.nnz  # plays and skips join the likes


def test_short_search_and_final_model_reload(rec_data, tiny_features, rec_params):
    _, inputs = tiny_features
    uf, itf = inputs["user_features"], inputs["item_features"]
    comparison = compare_training_variants(rec_data, uf, itf, rec_params)
    assert comparison["chosen"] in {"likes", "weighted"}
    best, trials, study = search_hyperparameters(rec_data, comparison, uf, itf, rec_params)
    assert len(trials) == 3 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert {"learning_rate", "item_alpha", "no_components", "epochs"} <= set(best)
    lo, hi = rec_params["search"]["space"]["learning_rate"]
    assert lo <= best["learning_rate"] <= hi
    model = train_final_model(rec_data, best, uf, itf, rec_params)
    reloaded = pickle.loads(pickle.dumps(model))
    users = np.arange(5)
    np.testing.assert_allclose(EmbeddingScorer(model, uf, itf)(users),
                               EmbeddingScorer(reloaded, uf, itf)(users))
    recs = recommend_for_users(model, rec_data, inputs["dataset"], uf, itf, rec_params)
    user_map, _, item_map, _ = inputs["dataset"].mapping()
    known = rec_data["train_known"]
    rows = recs["user_id"].map(user_map).to_numpy(), recs["track_id"].map(item_map).to_numpy()
    assert not np.asarray(known[rows]).ravel().any()  # nothing the user already played
    assert recs.groupby("user_id").size().eq(rec_params["recommendations"]["k"]).all()


def test_oracle_refuses_truth_of_another_catalogue(tiny_catalogue, tiny_features):
    (_, _, _, _, user_truth, track_truth, truth_params), _, _ = tiny_catalogue
    _, inputs = tiny_features
    scorer = oracle_scorer(user_truth, track_truth, truth_params, inputs["dataset"])
    assert np.isfinite(scorer(np.arange(3))).all()
    with pytest.raises(ValueError, match="ground truth does not describe"):
        oracle_scorer(user_truth.iloc[1:], track_truth, truth_params, inputs["dataset"])
