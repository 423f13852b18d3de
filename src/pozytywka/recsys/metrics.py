"""Ranking metrics of docs/design.md §4, vectorised over users (no loop over items or events).

A scorer is a function ``scores(user_indices) -> array (len(users), n_items)``; higher is better.
Items a user already interacted with in training (``exclude``) are never ranked, as in LightFM's
``auc_score`` / ``precision_at_k`` with ``train_interactions``. AUC and MRR use mid-ranks, so a
scorer that cannot tell items apart gets AUC 0.5, not a lucky ordering; top-k lists (precision,
recall, NDCG, hit rate, coverage) break ties by catalogue order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], np.ndarray]

PRECISION_KS = (5, 10, 25)
HIT_RATE_KS = (1, 5, 10, 50, 100)
COVERAGE_K = 10


def _dense_mask(matrix: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    return matrix[users].toarray() > 0


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best items per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def evaluate_ranking(
    scorer: Scorer,
    test: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    cells_per_chunk: int = 4_000_000,
    full_ranks: bool = True,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """AUC, precision/recall/NDCG@k, MRR, hit rate@k and coverage of one scorer.

    Per-user metrics are averaged over users with at least one held-out positive; hit rate@k
    is the share of all held-out positives found in their user's top k; coverage is the share
    of items in anyone's top ``COVERAGE_K`` (over every user). ``full_ranks=False`` leaves out
    AUC and MRR, which rank every held-out positive among all items (the costly part), for a
    caller that needs only top-k figures. ``users``: only these rows (a sample), coverage too.
    """
    per_user, coverage = per_user_ranking_metrics(
        scorer, test, exclude, cells_per_chunk, full_ranks, users
    )
    return summarise_ranking(per_user, coverage)


def summarise_ranking(per_user: pd.DataFrame, coverage: float) -> dict[str, float]:
    """The metrics of ``evaluate_ranking`` from ``per_user_ranking_metrics``' table."""
    n_eval = len(per_user)
    result = {
        m: float(per_user[m].mean()) if n_eval else 0.0
        for m in USER_METRICS
        if m in per_user.columns
    }
    n_pos_total = max(int(per_user["positives"].sum()), 1)
    result.update(
        {
            f"hit_rate_at_{k}": float(per_user[f"hits_at_{k}"].sum()) / n_pos_total
            for k in HIT_RATE_KS
        }
    )
    result["coverage"] = float(coverage)
    result["evaluated_users"] = float(n_eval)
    return dict(sorted(result.items()))


RANK_METRICS = ("auc", "mrr")  # from every held-out positive's rank among all items
USER_METRICS = (
    *RANK_METRICS,
    *(f"{m}_at_{k}" for k in PRECISION_KS for m in ("precision", "recall", "ndcg")),
)


def per_user_ranking_metrics(
    scorer: Scorer,
    test: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    cells_per_chunk: int = 4_000_000,
    full_ranks: bool = True,
    users: np.ndarray | None = None,
) -> tuple[pd.DataFrame, float]:
    """One row per user with at least one held-out positive: ``user`` (index), ``positives``,
    the metrics of USER_METRICS and ``hits_at_k`` (held-out positives in the top k), so that
    means and intervals over users can be taken; and the catalogue coverage of the scorer.
    ``full_ranks=False``: without the ``auc`` and ``mrr`` columns. ``users``: the rows to
    evaluate (default every row; coverage is then over these users' lists)."""
    test = sp.csr_matrix(test)
    n_users, n_items = test.shape
    rows = np.arange(n_users) if users is None else np.asarray(users, dtype=np.int64)
    exclude = sp.csr_matrix(exclude if exclude is not None else (n_users, n_items))
    max_k = max(*PRECISION_KS, *HIT_RATE_KS)
    covered = np.zeros(n_items, dtype=bool)
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    parts: list[pd.DataFrame] = []

    chunk = max(1, cells_per_chunk // max(n_items, 1))
    for lo in range(0, len(rows), chunk):
        users = rows[lo : lo + chunk]
        scores = np.asarray(scorer(users), dtype=np.float64)
        excluded = _dense_mask(exclude, users)
        positive = _dense_mask(test, users) & ~excluded
        scores = np.where(excluded, -np.inf, scores)
        top = top_k(scores, max_k)
        shown = top[:, :COVERAGE_K]
        covered[shown[np.isfinite(np.take_along_axis(scores, shown, axis=1))]] = True
        n_pos = positive.sum(axis=1)
        has = n_pos > 0
        if not has.any():
            continue
        top, positive, scores, excluded, n_pos = (
            top[has],
            positive[has],
            scores[has],
            excluded[has],
            n_pos[has],
        )
        relevant = np.zeros((len(top), max_k), dtype=bool)  # hit or not, by rank position
        relevant[:, : top.shape[1]] = np.take_along_axis(positive, top, axis=1)
        parts.append(
            pd.DataFrame(
                {
                    "user": users[has],
                    "positives": n_pos,
                    **_top_k_metrics(relevant, n_pos, discounts),
                    **(_rank_metrics(scores, positive, excluded, n_pos) if full_ranks else {}),
                }
            )
        )
    metrics = [m for m in USER_METRICS if full_ranks or m not in RANK_METRICS]
    columns = ["user", "positives", *metrics, *(f"hits_at_{k}" for k in HIT_RATE_KS)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return table[columns], float(covered.mean())


def _top_k_metrics(relevant: np.ndarray, n_pos: np.ndarray, discounts: np.ndarray) -> dict:
    """Precision, recall and NDCG at each of PRECISION_KS and hits at each of HIT_RATE_KS,
    per user, from ``relevant`` (users x rank position: a held-out positive or not)."""
    row = {}
    for k in PRECISION_KS:
        hits = relevant[:, :k].sum(axis=1)
        row[f"precision_at_{k}"] = hits / k
        row[f"recall_at_{k}"] = hits / n_pos
        dcg = (relevant[:, :k] * discounts[:k]).sum(axis=1)
        ideal = np.cumsum(discounts[:k])[np.minimum(n_pos, k) - 1]
        row[f"ndcg_at_{k}"] = dcg / ideal
    for k in HIT_RATE_KS:
        row[f"hits_at_{k}"] = relevant[:, :k].sum(axis=1)
    return row


def _rank_metrics(
    scores: np.ndarray, positive: np.ndarray, excluded: np.ndarray, n_pos: np.ndarray
) -> dict:
    """AUC (Mann-Whitney U over each user's candidates: P(positive scored above negative))
    and MRR, per user, from mid-ranks (1 = best, ties averaged; excluded items, at -inf,
    rank after every candidate)."""
    n_negative = scores.shape[1] - excluded.sum(axis=1) - n_pos
    pos_rows, pos_items = np.nonzero(positive)
    pos_rank = _mid_ranks(scores, pos_rows, scores[pos_rows, pos_items])
    n_candidates = n_negative + n_pos
    ascending = np.bincount(
        pos_rows, weights=n_candidates[pos_rows] + 1 - pos_rank, minlength=len(n_pos)
    )
    u_stat = ascending - n_pos * (n_pos + 1) / 2
    first = np.full(len(n_pos), np.inf)
    np.minimum.at(first, pos_rows, pos_rank)
    return {
        "auc": np.where(n_negative > 0, u_stat / (n_pos * np.maximum(n_negative, 1)), 0.5),
        "mrr": 1.0 / first,
    }


def _mid_ranks(
    scores: np.ndarray, rows: np.ndarray, values: np.ndarray, cells_per_chunk: int = 4_000_000
) -> np.ndarray:
    """The mid-rank of each ``values[i]`` in its row ``scores[rows[i]]`` (1 = best, ties
    averaged, as scipy's ``rankdata(-row, "average")``): the items scored above it plus half
    its ties, itself included. Only the held-out positives are ranked, not whole rows."""
    ranks = np.empty(len(rows))
    step = max(1, cells_per_chunk // max(scores.shape[1], 1))
    for lo in range(0, len(rows), step):
        part = slice(lo, lo + step)
        row_scores, value = scores[rows[part]], values[part, None]
        above = (row_scores > value).sum(axis=1)
        tied = (row_scores == value).sum(axis=1)
        ranks[part] = above + (tied + 1) / 2
    return ranks


def rank_each(
    scorers: dict[str, Scorer],
    test: sp.spmatrix,
    exclude: sp.spmatrix,
    users: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """``per_user_ranking_metrics`` of several scorers on one split (``users``: only these
    rows): the per-user rows with a ``scorer`` column, and per scorer its coverage and the
    sizes behind every figure."""
    tables, summary = [], {}
    for name, scorer in scorers.items():
        per_user, coverage = per_user_ranking_metrics(scorer, test, exclude, users=users)
        tables.append(per_user.assign(scorer=name))
        summary[name] = {
            "coverage": coverage,
            "evaluated_users": int(len(per_user)),
            "test_interactions": int(per_user["positives"].sum()),
        }
        logger.info(
            "%-10s auc %.4f  precision@10 %.4f  (%d users)",
            name,
            per_user["auc"].mean(),
            per_user["precision_at_10"].mean(),
            len(per_user),
        )
    return pd.concat(tables, ignore_index=True), summary
