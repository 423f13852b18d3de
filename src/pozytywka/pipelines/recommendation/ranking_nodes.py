"""Nodes of the two-stage recommender: candidates from every scorer, a LightGBM ranker trained
on validation likes the scorers did not see, the choice of the served recommender on
validation, and every served recommender's per-user ranking for the service."""

from __future__ import annotations

import logging
import time

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM
from lightfm.data import Dataset

from pozytywka.intervals import user_bootstrap, weighted_means
from pozytywka.recsys import ranker
from pozytywka.recsys.baselines import als_scorer, ease_scorer
from pozytywka.recsys.candidates import Candidates, SideTables, candidates, side_tables
from pozytywka.recsys.metrics import Scorer, per_user_ranking_metrics
from pozytywka.recsys.mlflow_model import Ranking
from pozytywka.recsys.model import EmbeddingScorer, ordered_ids, threads

from .nodes import popularity_scorer, train_chosen

logger = logging.getLogger(__name__)


def ranker_side_tables(
    track_features: pd.DataFrame, user_features: pd.DataFrame, dataset: Dataset
) -> SideTables:
    """Genres, favourite genres, artists and catalogue metadata in the model's row and column
    order, for the ranker's features."""
    user_ids, track_ids = ordered_ids(dataset)
    return side_tables(track_features, user_features, user_ids, track_ids)


def train_validation_lightfm(
    data: dict,
    best: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
) -> LightFM:
    """The searched LightFM on the fit pairs only (the validation likes unseen), as the
    ranker's candidate scorer and as LightFM's entry in the choice of the served recommender."""
    return train_chosen(data, "fit", best, user_features, item_features, training, "validation")


def stage_scorers(
    lightfm: Scorer, liked: sp.csr_matrix, known: sp.csr_matrix, tuning: dict, seed: int
) -> dict[str, Scorer]:
    """The candidate scorers of one stage (fit pairs for validation, every training pair for
    test and serving): LightFM, the tuned EASE and ALS (those not skipped), popularity."""
    scorers: dict[str, Scorer] = {"lightfm": lightfm}
    if "params" in tuning.get("ease", {}):
        scorers["ease"] = ease_scorer(liked, **tuning["ease"]["params"])
    if "params" in tuning.get("als", {}):
        scorers["als"] = als_scorer(liked, seed=seed, **tuning["als"]["params"])
    scorers["popularity"] = popularity_scorer(known, liked)
    return scorers


def _split_users(users: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    held = rng.random(len(users)) < share
    return np.sort(users[~held]), np.sort(users[held])


def _ndcg(scorer: Scorer, positives, known, users) -> pd.Series:
    per_user, _ = per_user_ranking_metrics(scorer, positives, known, full_ranks=False, users=users)
    return per_user.set_index("user")["ndcg_at_10"].reindex(users)


def train_ranker(
    data: dict,
    validation_lightfm: LightFM,
    baseline_tuning: dict,
    side: SideTables,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    params: dict,
    baselines: dict,
) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame, optuna.Study]:
    """The ranker trained on validation likes of some validation users, searched and compared
    with every single scorer on the others; the served recommender is the best of them on
    those users' NDCG@10.

    ``params``: ``recommendation.ranker``; ``baselines``: ``recommendation.baselines``.
    Returns ``{"model": the ranker refit on every validation user with the chosen
    settings}`` (empty with too few users), the choice (``served``, each one's validation
    NDCG@10 with an interval, the served one's paired differences, candidate recall, the
    ranker's settings or why there is none), the search's trials, the features'
    importances and the study.
    """
    t0 = time.perf_counter()
    fit_known, fit_liked, positives = data["fit_known"], data["fit_liked"], data["validation"]
    lightfm = EmbeddingScorer(validation_lightfm, user_features, item_features)
    scorers = stage_scorers(lightfm, fit_liked, fit_known, baseline_tuning, baselines["seed"])
    users = np.asarray(data["validation_users"])
    cands = candidates(scorers, users, fit_known, fit_liked, side, params["depth"])
    labels = cands.labels(positives)
    with_positive = np.unique(cands.users[labels])
    train_users, valid_users = _split_users(users, params["valid_share"], params["seed"])
    fit_users = np.intersect1d(train_users, with_positive)
    choice: dict = {
        "candidate_recall": float(labels.sum() / max(positives[users].sum(), 1)),
        "candidates_per_user": float(len(cands) / max(len(users), 1)),
        "users": {"ranker_training": int(len(fit_users)), "choice": int(len(users))},
    }
    values = {name: _ndcg(s, positives, fit_known, users) for name, s in scorers.items()}
    booster, trials, importance = None, ranker.no_trials(), ranker.no_importances()
    study = optuna.create_study(direction="maximize")  # no trials when there is no ranker
    if min(len(fit_users), len(valid_users)) < params["min_users"]:
        choice["ranker"] = {"skipped": _too_few(fit_users, valid_users, params["min_users"])}
    else:
        best, trials, study = ranker.search(
            cands.subset(np.isin(cands.users, fit_users)),
            cands.subset(np.isin(cands.users, valid_users)),
            positives,
            fit_known,
            lightfm,
            params,
            threads(params["num_threads"]),
        )
        values["ranker"] = _out_of_fold_ndcg(
            cands, users, with_positive, best, data, lightfm, params
        )
        booster = _fit(cands.subset(np.isin(cands.users, with_positive)), positives, best, params)
        importance = ranker.importances(booster)
        choice["ranker"] = {**best, "features": list(cands.names)}
    choice.update(_choose(values, params), seconds=time.perf_counter() - t0)
    return ({} if booster is None else {"model": booster}), choice, trials, importance, study


def _too_few(fit_users: np.ndarray, valid_users: np.ndarray, min_users: int) -> str:
    reason = (
        f"{len(fit_users)} validation users with a like among their candidates to train on "
        f"and {len(valid_users)} to choose on; recommendation.ranker.min_users is {min_users}"
    )
    logger.warning("Ranker not trained: %s", reason)
    return reason


def _fit(cands: Candidates, positives: sp.csr_matrix, best: dict, params: dict) -> lgb.Booster:
    return ranker.fit(
        cands,
        positives,
        best["params"],
        best["rounds"],
        params["seed"],
        threads(params["num_threads"]),
    )


def _out_of_fold_ndcg(
    cands: Candidates,
    users: np.ndarray,
    with_positive: np.ndarray,
    best: dict,
    data: dict,
    lightfm: Scorer,
    params: dict,
) -> pd.Series:
    """The ranker's NDCG@10 for every validation user, each from a ranker with the chosen
    settings trained on the other ``params.choice_folds`` folds' users, ranking as the
    service would (its head, then LightFM's order): every validation user counts in the
    choice, none scored by a ranker that learnt from their likes."""
    positives, folds = data["validation"], params["choice_folds"]
    fold = np.random.default_rng(params["seed"]).permutation(len(users)) % folds
    parts = []
    for f in range(folds):
        held = users[fold == f]
        learners = np.setdiff1d(with_positive, held)
        model = _fit(cands.subset(np.isin(cands.users, learners)), positives, best, params)
        part = cands.subset(np.isin(cands.users, held))
        served = ranker.ranking(
            part,
            np.asarray(model.predict(part.features)),
            positives.shape[0],
            params["serve_depth"],
        )
        scorer = ranker.ranked_scorer(served, lightfm)
        parts.append(_ndcg(scorer, positives, data["fit_known"], held))
    return pd.concat(parts).reindex(users)


def _shown(table: np.ndarray, names: list[str], a: str, b: str, seed: int) -> bool:
    """Whether ``a``'s mean validation NDCG@10 is above ``b``'s with the paired 95%
    interval of the difference above zero."""
    diff = table[:, [names.index(a)]] - table[:, [names.index(b)]]
    low = user_bootstrap(weighted_means(diff), len(diff), seed=seed)[0][0]
    return bool(diff.mean() > 0 and low > 0)


def _choose(values: dict[str, pd.Series], params: dict) -> dict:
    """The served recommender among ``params.choose_from`` by validation NDCG@10, the
    simpler one unless a gain is shown (a paired 95% interval above zero, as for the
    training variants): popularity, unless the best single personal recommender beats it;
    that one, unless the ranker beats it. Each one's mean with its interval over users,
    and the chosen one's paired difference from every other."""
    names = [n for n in params["choose_from"] if n in values]
    table = np.column_stack([values[n].to_numpy(float) for n in names])
    table = np.nan_to_num(table)  # a user without a like among the choice users: none here
    means = table.mean(axis=0)
    low_high = user_bootstrap(weighted_means(table), len(table), seed=params["seed"])
    # From the simplest up, each only for a gain shown: popularity; the best single personal
    # recommender over popularity; the ranker over the best single one of them all.
    singles = [n for n in names if n != "ranker"]
    best = max(singles, key=lambda n: means[names.index(n)])
    served = "popularity" if "popularity" in names and best != "popularity" else best
    if served != best and _shown(table, names, best, served, params["seed"]):
        served = best
    if "ranker" in names and _shown(table, names, "ranker", best, params["seed"]):
        served = "ranker"
    column = names.index(served)
    diffs = table[:, [column]] - table
    diff_intervals = user_bootstrap(weighted_means(diffs), len(diffs), seed=params["seed"])
    logger.info(
        "Served recommender: %s (validation NDCG@10 %s)",
        served,
        ", ".join(f"{n} {m:.4f}" for n, m in zip(names, means, strict=True)),
    )
    return {
        "served": served,
        "metric": "ndcg_at_10",
        "validation": {
            n: {"ndcg_at_10": float(means[i]), "interval": [float(x) for x in low_high[i]]}
            for i, n in enumerate(names)
        },
        "served_minus": {
            n: {
                "estimate": float(diffs[:, i].mean()),
                "interval": [float(x) for x in diff_intervals[i]],
            }
            for i, n in enumerate(names)
            if n != served
        },
    }


def served_rankings(
    ranker_model: dict,
    choice: dict,
    data: dict,
    lightfm_model: LightFM,
    baseline_tuning: dict,
    side: SideTables,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    params: dict,
    baselines: dict,
) -> dict[str, Ranking]:
    """Every user's best ``params.serve_depth`` unplayed tracks from each recommender other
    than LightFM (the ranker over candidates of the scorers refit on every training pair;
    EASE, ALS and popularity from their own scores): what the service and the test
    evaluation read, computed once at training time."""
    known, liked = data["train_known"], data["train_liked"]
    booster = ranker_model.get("model")
    scorers = stage_scorers(
        EmbeddingScorer(lightfm_model, user_features, item_features),
        liked,
        known,
        baseline_tuning,
        baselines["seed"],
    )
    n_users, depth = known.shape[0], params["serve_depth"]
    users = np.arange(n_users)
    out: dict[str, Ranking] = {}
    if booster is not None:
        cands = candidates(scorers, users, known, liked, side, params["depth"])
        scores = np.asarray(booster.predict(cands.features))
        out["ranker"] = ranker.ranking(cands, scores, n_users, depth)
    for name in ("ease", "als", "popularity"):
        if name in scorers:
            out[name] = _head(scorers[name], known, depth)
    logger.info("Served rankings of %d users: %s", n_users, ", ".join(out))
    return out


def _head(scorer: Scorer, known: sp.csr_matrix, depth: int, batch: int = 1024) -> Ranking:
    n_users, n_items = known.shape
    depth = min(depth, n_items)
    positions = np.empty((n_users, depth), dtype=np.int32)
    scores = np.empty((n_users, depth), dtype=np.float32)
    for lo in range(0, n_users, batch):
        users = np.arange(lo, min(lo + batch, n_users))
        rows = np.array(scorer(users), dtype=np.float32)
        rows[known[users].toarray() > 0] = -np.inf
        order = np.argsort(-rows, axis=1, kind="stable")[:, :depth]
        positions[users] = order
        scores[users] = np.take_along_axis(rows, order, axis=1)
    positions[~np.isfinite(scores)] = -1
    return Ranking(positions=positions, scores=scores)
