"""Recommendation nodes on the tiny catalogue: data split, search, model reload, evaluation."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pozytywka.pipelines.recommendation.model import EmbeddingScorer
from pozytywka.pipelines.recommendation.nodes import (
    _group_summary,
    compare_training_variants,
    known_to_group,
    oracle_scorer,
    prepare_training_data,
    recommend_for_users,
    search_hyperparameters,
    train_final_model,
)
from pozytywka.pipelines.synthetic_data import truth
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
    blind = {**rec_data, "test": None}  # the search must never look at the test likes
    comparison = compare_training_variants(blind, uf, itf, rec_params)
    assert comparison["chosen"] in {"likes", "weighted"}
    best, trials, study = search_hyperparameters(blind, comparison, uf, itf, rec_params)
    assert len(trials) == 3 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert {"learning_rate", "item_alpha", "no_components", "epochs"} <= set(best)
    # Trial 0 is the default configuration.
    first = trials.sort_values("number").iloc[0]
    assert first["params_learning_rate"] == rec_params["defaults"]["learning_rate"]
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


def test_oracle_scores_are_the_generators_formula(tiny_catalogue, tiny_features):
    (_, _, _, _, user_truth, track_truth, truth_params), _, _ = tiny_catalogue
    _, inputs = tiny_features
    scorer = oracle_scorer(user_truth, track_truth, truth_params, inputs["dataset"])
    user_map, _, item_map, _ = inputs["dataset"].mapping()
    user = next(iter(user_map))
    tracks = list(item_map)[:5]
    a = truth.affinity(user_truth, track_truth, truth_params, [user] * 5, tracks)
    p_like = truth.like_probability(user_truth, track_truth, truth_params, [user] * 5, tracks)
    exposure = track_truth.set_index("track_id").loc[tracks, "exposure_logit"].to_numpy()
    expected = exposure + truth_params["choice_signal"] * a + np.log(p_like)
    got = scorer(np.array([user_map[user]]))[0, [item_map[t] for t in tracks]]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    with pytest.raises(ValueError, match="ground truth does not describe"):
        oracle_scorer(user_truth.iloc[1:], track_truth, truth_params, inputs["dataset"])


def test_group_exclusion_policies():
    known = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]))
    members = np.array([0, 1])
    assert known_to_group(known, members, "all_members").tolist() == [True, False, False, False]
    assert known_to_group(known, members, "any_member").tolist() == [True, True, True, False]
    assert known_to_group(known, members, "none") is None
    with pytest.raises(ValueError, match="exclude_known"):
        known_to_group(known, members, "some")


def test_group_summary_means_and_improvement():
    rows = []
    for group, (base, model) in enumerate([(1.0, 0.6), (0.8, 0.6)]):
        for scorer, strategy, clustering in [("baseline", "history", base),
                                             ("model", "mean_rank", model),
                                             ("popularity", "mean_rank", 0.9),
                                             ("oracle", "mean_rank", 0.5)]:
            rows.append({"group": group, "size": 2, "scorer": scorer, "strategy": strategy,
                         "clustering": clustering, "precision_mean": 0.1,
                         "precision_min": 0.0, "recall_mean": 0.2, "recall_min": 0.0,
                         "ndcg_mean": 0.1, "ndcg_min": 0.0, "min_max_precision_ratio": 0.0,
                         "zero_recall_share": 0.5})
    summary = _group_summary(pd.DataFrame(rows))
    assert set(summary) == {"mean_rank"}
    assert summary["mean_rank"]["baseline"]["clustering"] == pytest.approx(0.9)
    assert summary["mean_rank"]["model"]["clustering_improvement_vs_baseline"] == \
        pytest.approx((0.9 - 0.6) / 0.9)
