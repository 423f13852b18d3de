"""The second stage: a LightGBM lambdarank model over the candidates of every scorer, its
hyperparameters searched with Optuna on users it was not trained on, and the served ranking
it produces (each user's best tracks, best first)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp

from .candidates import Candidates
from .metrics import Scorer, per_user_ranking_metrics
from .mlflow_model import Ranking, ranked_scores

logger = logging.getLogger(__name__)

FIXED_PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
}


def lightgbm_params(point: dict, seed: int, num_threads: int) -> dict:
    return {**FIXED_PARAMS, **point, "seed": seed, "num_threads": num_threads}


def _dataset(cands: Candidates, positives: sp.csr_matrix) -> lgb.Dataset:
    return lgb.Dataset(
        cands.features,
        label=cands.labels(positives),
        group=cands.group_sizes(),
        feature_name=cands.names,
        free_raw_data=False,
    )


def fit(
    cands: Candidates,
    positives: sp.csr_matrix,
    point: dict,
    rounds: int,
    seed: int,
    num_threads: int,
    valid: Candidates | None = None,
    stopping_rounds: int = 0,
) -> lgb.Booster:
    """A lambdarank booster on ``cands`` labelled by ``positives``; with ``valid``, stopped
    when LightGBM's NDCG@10 on it has not improved for ``stopping_rounds`` rounds."""
    train_set = _dataset(cands, positives)
    callbacks: list[Callable] = []
    valid_sets: list[lgb.Dataset] = []
    if valid is not None and stopping_rounds:
        valid_sets = [_dataset(valid, positives)]
        callbacks = [lgb.early_stopping(stopping_rounds, verbose=False)]
    return lgb.train(
        lightgbm_params(point, seed, num_threads),
        train_set,
        num_boost_round=rounds,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )


def ranking(cands: Candidates, scores: np.ndarray, n_users: int, depth: int) -> Ranking:
    """Each user's ``depth`` best candidates by ``scores``, best first (rows without as many
    candidates are padded with position -1 and score -inf)."""
    order = np.lexsort((-scores, cands.users))
    users, items, values = cands.users[order], cands.items[order], scores[order]
    starts = np.searchsorted(users, np.arange(n_users))
    place = np.arange(len(users)) - starts[users]
    keep = place < depth
    positions = np.full((n_users, depth), -1, dtype=np.int32)
    head = np.full((n_users, depth), -np.inf, dtype=np.float32)
    positions[users[keep], place[keep]] = items[keep]
    head[users[keep], place[keep]] = values[keep]
    return Ranking(positions=positions, scores=head)


def ranked_scorer(served: Ranking, fallback: Scorer) -> Scorer:
    """Scores that order each user's ranking head first, then the rest in ``fallback``'s
    order (shifted below the head): the service's rule, ``mlflow_model.ranked_scores``."""
    return lambda users: ranked_scores(served, np.asarray(users), fallback(users))


def _ndcg_per_user(
    served: Ranking, fallback: Scorer, positives: sp.csr_matrix, known: sp.csr_matrix, users
) -> pd.Series:
    per_user, _ = per_user_ranking_metrics(
        ranked_scorer(served, fallback), positives, known, full_ranks=False, users=users
    )
    return per_user.set_index("user")["ndcg_at_10"]


def _suggest(trial: optuna.Trial, space: dict) -> dict:
    log_scaled = ("learning_rate", "num_leaves", "min_data_in_leaf", "lambda_l2")
    point = {}
    for name, (low, high) in space.items():
        integer = isinstance(low, int) and isinstance(high, int)
        suggest = trial.suggest_int if integer else trial.suggest_float
        point[name] = suggest(name, low, high, log=name in log_scaled)
    return point


def search(
    train: Candidates,
    valid: Candidates,
    positives: sp.csr_matrix,
    known: sp.csr_matrix,
    fallback: Scorer,
    params: dict,
    num_threads: int,
) -> tuple[dict, pd.DataFrame, optuna.Study]:
    """Optuna's TPE over the ranker's hyperparameters (``params``: ``space``, ``n_trials``,
    ``first_trial``, ``max_rounds``, ``stopping_rounds``, ``seed``), each trial scored by
    NDCG@10 (every held-out like counted) on the ``valid`` users' full rankings. Returns
    the best ``{"params", "rounds", "validation_ndcg_at_10"}``, one row per trial and the
    study (its trials are logged to MLflow as nested runs)."""
    valid_users = np.unique(valid.users)
    rows: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        point, t0 = _suggest(trial, params["space"]), time.perf_counter()
        booster = fit(
            train,
            positives,
            point,
            params["max_rounds"],
            params["seed"],
            num_threads,
            valid,
            params["stopping_rounds"],
        )
        rounds = max(int(booster.best_iteration or booster.current_iteration()), 1)
        scores = np.asarray(booster.predict(valid.features, num_iteration=rounds))
        served = ranking(valid, scores, positives.shape[0], 10)
        value = float(_ndcg_per_user(served, fallback, positives, known, valid_users).mean())
        trial.set_user_attr("rounds", rounds)
        seconds = time.perf_counter() - t0
        rows.append({"trial": trial.number, **point, "rounds": rounds, "seconds": seconds})
        rows[-1]["validation_ndcg_at_10"] = value
        return value

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=params["seed"])
    )
    study.enqueue_trial(params["first_trial"])  # a sound start: LightGBM's usual settings
    study.optimize(objective, n_trials=params["n_trials"])
    best = study.best_trial
    logger.info(
        "Ranker: best validation NDCG@10 %.4f with %s, %d rounds (%d trials)",
        best.value,
        best.params,
        best.user_attrs["rounds"],
        len(study.trials),
    )
    chosen = {
        "params": dict(best.params),
        "rounds": int(best.user_attrs["rounds"]),
        "validation_ndcg_at_10": float(best.value or 0.0),
    }
    columns = ["trial", *params["space"], "rounds", "seconds", "validation_ndcg_at_10"]
    return chosen, pd.DataFrame(rows, columns=columns), study


TRIAL_COLUMNS = [
    "trial",
    "learning_rate",
    "num_leaves",
    "min_data_in_leaf",
    "feature_fraction",
    "lambda_l2",
    "rounds",
    "seconds",
    "validation_ndcg_at_10",
]
IMPORTANCE_COLUMNS = ["feature", "gain", "splits", "gain_share"]


def no_trials() -> pd.DataFrame:
    """The trials table when no ranker was searched: no rows, the usual columns."""
    return pd.DataFrame(columns=TRIAL_COLUMNS)


def no_importances() -> pd.DataFrame:
    return pd.DataFrame(columns=IMPORTANCE_COLUMNS)


def importances(booster: lgb.Booster) -> pd.DataFrame:
    """Each feature's total gain and split count, largest gain first, with its share."""
    gain = booster.feature_importance("gain")
    table = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": gain,
            "splits": booster.feature_importance("split"),
            "gain_share": gain / max(float(gain.sum()), 1e-12),
        }
    )
    return table.sort_values("gain", ascending=False, ignore_index=True)
