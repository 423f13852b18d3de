"""The learning-to-rank stage: heads, the served order, training and search."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pozytywka.recsys import ranker
from pozytywka.recsys.candidates import Candidates


def test_ranking_keeps_each_users_best_candidates_best_first_and_pads():
    cands = Candidates(
        users=np.array([0, 0, 0, 2]),
        items=np.array([5, 6, 7, 1]),
        features=np.zeros((4, 1), np.float32),
        names=["f"],
    )
    head = ranker.ranking(cands, np.array([0.1, 0.9, 0.5, 2.0]), n_users=3, depth=2)
    assert head.positions.tolist() == [[6, 7], [-1, -1], [1, -1]]
    assert head.scores[0].tolist() == pytest.approx([0.9, 0.5])
    assert np.isneginf(head.scores[1]).all()


def test_ranked_scorer_puts_the_head_first_then_the_fallbacks_order():
    cands = Candidates(np.array([0, 0]), np.array([3, 1]), np.zeros((2, 1)), ["f"])
    head = ranker.ranking(cands, np.array([-5.0, -4.0]), n_users=1, depth=2)
    fallback = np.array([[10.0, 0.0, 30.0, 20.0, 40.0]])
    scores = ranker.ranked_scorer(head, lambda u: fallback[u])(np.array([0]))[0]
    assert list(np.argsort(-scores)) == [1, 3, 4, 2, 0]
    assert scores[[1, 3]].tolist() == [-4.0, -5.0]  # the ranker's own scores are kept


def _learnable(n_users: int, seed: int) -> tuple[Candidates, sp.csr_matrix]:
    """20 candidates a user; the liked ones have a high ``signal`` feature (plus noise), the
    ``noise`` feature says nothing."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 20)
    items = np.tile(np.arange(20), n_users)
    liked = rng.random(len(users)) < 0.15
    signal = liked + rng.normal(0, 0.5, len(users))
    features = np.column_stack([signal, rng.normal(size=len(users))]).astype(np.float32)
    positives = sp.csr_matrix(
        (np.ones(liked.sum()), (users[liked], items[liked])), shape=(n_users, 20)
    )
    return Candidates(users, items, features, ["signal", "noise"]), positives


def test_the_ranker_learns_the_informative_feature_and_says_so():
    cands, positives = _learnable(300, seed=1)
    booster = ranker.fit(cands, positives, {"learning_rate": 0.1, "num_leaves": 7}, 30, 0, 1)
    table = ranker.importances(booster)
    assert table["feature"].iloc[0] == "signal"
    assert table["gain_share"].sum() == pytest.approx(1.0)
    scores = booster.predict(cands.features)
    labels = cands.labels(positives)
    assert scores[labels].mean() > scores[~labels].mean() + 1.0


def test_the_search_scores_each_trial_on_the_held_out_users_full_ranking():
    cands, positives = _learnable(400, seed=2)
    train = cands.subset(cands.users < 300)
    valid = cands.subset(cands.users >= 300)
    known = sp.csr_matrix(positives.shape)
    params = {
        "space": {
            "learning_rate": [0.05, 0.2],
            "num_leaves": [3, 15],
            "min_data_in_leaf": [5, 50],
            "feature_fraction": [0.5, 1.0],
            "lambda_l2": [0.01, 1.0],
        },
        "first_trial": {
            "learning_rate": 0.1,
            "num_leaves": 7,
            "min_data_in_leaf": 20,
            "feature_fraction": 1.0,
            "lambda_l2": 0.1,
        },
        "n_trials": 3,
        "max_rounds": 50,
        "stopping_rounds": 10,
        "seed": 0,
    }
    no_signal = lambda users: np.zeros((len(users), 20))  # noqa: E731
    best, trials, study = ranker.search(train, valid, positives, known, no_signal, params, 1)
    assert len(trials) == 3 == len(study.trials)
    assert best["validation_ndcg_at_10"] == pytest.approx(trials["validation_ndcg_at_10"].max())
    assert 1 <= best["rounds"] <= 50
    # A ranking by the signal beats a random one by far on the held-out users.
    assert best["validation_ndcg_at_10"] > 0.6
