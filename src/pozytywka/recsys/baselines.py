"""Strong non-LightFM recommenders beside the model: ALS (``implicit``) and EASE (the item-item
closed form of Steck, 2019), each tuned on the validation split from a small grid.

Both learn from the users' likes only (no side features): they say how far collaborative
filtering alone goes on the same split, so the report shows where LightFM stands.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from .metrics import RANK_METRICS, Scorer, evaluate_ranking

logger = logging.getLogger(__name__)


def als_scorer(
    liked: sp.csr_matrix, factors: int, regularization: float, alpha: float, seed: int
) -> Scorer:
    """``implicit``'s ALS fitted on the likes (confidence ``1 + alpha``): dot-product scores."""
    from implicit.als import AlternatingLeastSquares  # noqa: PLC0415  (slow import)

    # implicit parallelises itself; a BLAS thread pool on top of it only slows it down (and
    # implicit warns at creation when it sees one).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=15,
            random_state=seed,
        )
        model.fit(sp.csr_matrix(liked, dtype=np.float32), show_progress=False)
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda rows: users[rows] @ items.T


def ease_weights(liked: sp.csr_matrix, regularization: float) -> tuple[np.ndarray, np.ndarray]:
    """EASE's item-item weights over the items anyone liked, and those items' indices:
    ``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1``, zero diagonal."""
    items = liked_items(liked)
    x = (liked[:, items] > 0).astype(np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += regularization
    p = _spd_inverse(gram)
    weights = -p / np.diag(p)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32), items


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix from its Cholesky factor (half the
    work of a general inverse); a clear error if it is not positive definite."""
    factor, info = lapack.dpotrf(matrix, lower=False)
    if info == 0:
        inverse, info = lapack.dpotri(factor, lower=False)  # the upper triangle
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE's Gram matrix is not positive definite ({info=})")
    return np.triu(inverse) + np.triu(inverse, 1).T


def liked_items(liked: sp.spmatrix) -> np.ndarray:
    """Indices of the items at least one user liked."""
    return np.flatnonzero(np.diff(sp.csc_matrix(liked).indptr) > 0)


def ease_scorer(liked: sp.csr_matrix, regularization: float) -> Scorer:
    """Scores ``X B`` for the items anyone liked; every other item scores below all of them."""
    weights, items = ease_weights(liked, regularization)
    x = (liked[:, items] > 0).astype(np.float32).tocsr()
    n_items = liked.shape[1]

    def scores(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), n_items), -1e9, dtype=np.float32)
        out[:, items] = x[rows] @ weights
        return out

    return scores


def tune(
    name: str,
    build,
    grid: list[dict],
    fit_liked: sp.csr_matrix,
    validation: sp.csr_matrix,
    fit_known: sp.csr_matrix,
    metric: str,
    users: np.ndarray | None = None,
) -> tuple[dict, list[dict]]:
    """The grid point with the best validation ``metric`` (built on ``fit_liked``; evaluated
    on the rows ``users``, default every one), and every point's value:
    ``build(liked, **point) -> Scorer``."""
    results = []
    for point in grid:
        t0 = time.perf_counter()
        full_ranks = metric in RANK_METRICS
        scores = evaluate_ranking(
            build(fit_liked, **point), validation, fit_known, full_ranks=full_ranks, users=users
        )
        value = scores[metric]
        results.append({**point, metric: value, "seconds": time.perf_counter() - t0})
    best = max(results, key=lambda r: r[metric])
    logger.info(
        "%s: best validation %s %.4f with %s (%d grid points)",
        name,
        metric,
        best[metric],
        {k: best[k] for k in grid[0]},
        len(grid),
    )
    return {k: best[k] for k in grid[0]}, results


def grid_points(grid: dict) -> list[dict]:
    """Every combination of a ``{name: [values]}`` grid."""
    points: list[dict] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def tune_baselines(data: dict, params: dict) -> dict:
    """ALS and EASE tuned on the validation split (``params``: ``recommendation.baselines``):
    ``{name: {"params": ..., "grid": [...]} | {"skipped": reason}}``."""
    fit_liked = data["fit_liked"]
    args = (
        fit_liked,
        data["validation"],
        data["fit_known"],
        params["metric"],
        data["validation_users"],
    )
    seed = params["seed"]
    out: dict = {}
    chosen, grid = tune(
        "ALS",
        lambda liked, **p: als_scorer(liked, seed=seed, **p),
        grid_points(params["als"]["grid"]),
        *args,
    )
    out["als"] = {"params": chosen, "grid": grid}
    n_items = len(liked_items(data["train_liked"]))  # what the final refit inverts
    if n_items > params["ease"]["max_items"]:
        reason = (
            f"{n_items} liked tracks is more than recommendation.baselines.ease.max_items "
            f"({params['ease']['max_items']}): EASE inverts an items x items matrix"
        )
        logger.warning("EASE baseline not run: %s", reason)
        out["ease"] = {"skipped": reason}
    else:
        chosen, grid = tune("EASE", ease_scorer, grid_points(params["ease"]["grid"]), *args)
        out["ease"] = {"params": chosen, "grid": grid}
    return out


def baseline_scorers(data: dict, tuning: dict, seed: int) -> dict[str, Scorer]:
    """The tuned baselines refit on every training like (those not skipped)."""
    liked = data["train_liked"]
    scorers: dict[str, Scorer] = {}
    if "params" in tuning.get("als", {}):
        scorers["als"] = als_scorer(liked, seed=seed, **tuning["als"]["params"])
    if "params" in tuning.get("ease", {}):
        scorers["ease"] = ease_scorer(liked, **tuning["ease"]["params"])
    return scorers
