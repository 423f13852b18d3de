"""The strong baselines: EASE against its definition, ALS on an obvious structure, tuning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pozytywka.recsys.baselines import (
    als_scorer,
    ease_scorer,
    ease_weights,
    grid_points,
    tune,
    tune_baselines,
)


def _likes() -> sp.csr_matrix:
    return sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0, 0],
                [1, 1, 1, 0, 0],
                [0, 1, 1, 0, 0],
                [0, 0, 0, 1, 1],
                [1, 0, 0, 1, 0],
            ],
            dtype=float,
        )
    )


def test_ease_weights_are_the_ridge_regression_of_each_item_on_the_others():
    x, lam = _likes().toarray(), 0.7
    weights, items = ease_weights(_likes(), lam)
    assert items.tolist() == [0, 1, 2, 3, 4]
    for j in range(x.shape[1]):
        others = [i for i in range(x.shape[1]) if i != j]
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ x[:, j])
        assert weights[j, j] == 0
        np.testing.assert_allclose(weights[others, j], expected, rtol=1e-5, atol=1e-6)


def test_ease_scores_items_nobody_liked_below_all_others():
    likes = sp.hstack([_likes(), sp.csr_matrix((5, 1))]).tocsr()  # item 5: no like
    scores = ease_scorer(likes, 1.0)(np.arange(5))
    assert scores.shape == (5, 6)
    assert (scores[:, 5] < scores[:, :5].min(axis=1)).all()


def test_als_learns_two_blocks_of_taste():
    rng = np.random.default_rng(0)
    block = np.zeros((40, 20))
    block[:20, :10] = rng.random((20, 10)) < 0.6
    block[20:, 10:] = rng.random((20, 10)) < 0.6
    scores = als_scorer(sp.csr_matrix(block), factors=4, regularization=0.1, alpha=5.0, seed=0)(
        np.arange(40)
    )
    assert (scores[:20, :10].mean(axis=1) > scores[:20, 10:].mean(axis=1)).all()
    assert (scores[20:, 10:].mean(axis=1) > scores[20:, :10].mean(axis=1)).all()


def test_tune_picks_the_best_validation_point_and_reports_every_one():
    validation = sp.csr_matrix(np.eye(3))
    known = sp.csr_matrix((3, 3))

    def build(liked, good):
        # `good` ranks each user's own validation item first; otherwise the reverse.
        return lambda users: np.eye(3)[users] * (1 if good else -1)

    chosen, results = tune(
        "toy",
        build,
        grid_points({"good": [False, True]}),
        None,
        validation,
        known,
        "auc",
    )
    assert chosen == {"good": True}
    assert [r["good"] for r in results] == [False, True]
    assert results[0]["auc"] == pytest.approx(0.0) and results[1]["auc"] == pytest.approx(1.0)


def test_grid_points_is_every_combination():
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_ease_is_left_out_with_its_reason_above_max_items():
    likes = _likes()
    data = {
        "fit_known": likes,
        "fit_liked": likes,
        "train_liked": likes,
        "validation": likes,
        "train_known": likes,
        "validation_users": np.arange(likes.shape[0]),
    }
    params = {
        "seed": 0,
        "metric": "precision_at_5",
        "als": {"grid": {"factors": [2], "regularization": [0.1], "alpha": [1.0]}},
        "ease": {"grid": {"regularization": [1.0]}, "max_items": 3},
    }
    tuning = tune_baselines(data, params)
    assert "params" in tuning["als"]
    assert "max_items" in tuning["ease"]["skipped"]
    # Counted on every training like, which the final refit inverts, not the tuning sample's.
    sample = sp.csr_matrix(likes.toarray() * [1, 1, 1, 0, 0])  # 3 liked items
    tuning = tune_baselines({**data, "fit_liked": sample, "fit_known": sample}, params)
    assert tuning["ease"]["skipped"].startswith("5 liked tracks")
    tuning = tune_baselines({**data, "train_liked": sample}, params)
    assert "params" in tuning["ease"]


def test_spd_inverse_inverts_and_refuses_an_indefinite_matrix():
    from pozytywka.recsys.baselines import _spd_inverse  # noqa: PLC0415

    gram = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(_spd_inverse(gram) @ gram, np.eye(3), atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        _spd_inverse(np.array([[1.0, 2.0], [2.0, 1.0]]))
