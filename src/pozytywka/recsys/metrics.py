"""Ranking metrics of design.md §4, vectorised over users (no loop over items or events).

A scorer is a function ``scores(user_indices) -> array (len(users), n_items)``; higher is better.
Items a user already interacted with in training (``exclude``) are never ranked, as in LightFM's
``auc_score`` / ``precision_at_k`` with ``train_interactions``. AUC and MRR use mid-ranks, so a
scorer that cannot tell items apart gets AUC 0.5, not a lucky ordering; top-k lists (precision,
recall, NDCG, hit rate, coverage) break ties by catalogue order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

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


def evaluate_ranking(scorer: Scorer, test: sp.spmatrix, exclude: sp.spmatrix | None = None,
                     cells_per_chunk: int = 4_000_000) -> dict[str, float]:
    """AUC, precision/recall/NDCG@k, MRR, hit rate@k and coverage of one scorer.

    Per-user metrics are averaged over users with at least one held-out positive; hit rate@k
    is the share of all held-out positives found in their user's top k; coverage is the share
    of items in anyone's top ``COVERAGE_K`` (over every user).
    """
    test = sp.csr_matrix(test)
    n_users, n_items = test.shape
    exclude = sp.csr_matrix(exclude if exclude is not None else (n_users, n_items))
    max_k = max(*PRECISION_KS, *HIT_RATE_KS)
    sums: dict[str, float] = {}
    hits_at = dict.fromkeys(HIT_RATE_KS, 0)
    covered = np.zeros(n_items, dtype=bool)
    n_eval = n_pos_total = 0
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))

    def add(name: str, values: np.ndarray) -> None:
        sums[name] = sums.get(name, 0.0) + float(values.sum())

    chunk = max(1, cells_per_chunk // max(n_items, 1))
    for lo in range(0, n_users, chunk):
        users = np.arange(lo, min(lo + chunk, n_users))
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
            top[has], positive[has], scores[has], excluded[has], n_pos[has])
        n_eval += int(has.sum())
        n_pos_total += int(n_pos.sum())
        relevant = np.zeros((len(top), max_k), dtype=bool)  # hit or not, by rank position
        relevant[:, :top.shape[1]] = np.take_along_axis(positive, top, axis=1)
        for k in PRECISION_KS:
            hits = relevant[:, :k].sum(axis=1)
            add(f"precision_at_{k}", hits / k)
            add(f"recall_at_{k}", hits / n_pos)
            dcg = (relevant[:, :k] * discounts[:k]).sum(axis=1)
            ideal = np.cumsum(discounts[:k])[np.minimum(n_pos, k) - 1]
            add(f"ndcg_at_{k}", dcg / ideal)
        for k in HIT_RATE_KS:
            hits_at[k] += int(relevant[:, :k].sum())
        # Mid-ranks (1 = best, ties averaged); excluded items (-inf) rank after every candidate.
        ranks = rankdata(-scores, method="average", axis=1)
        n_negative = n_items - excluded.sum(axis=1) - n_pos
        pos_rows, pos_items = np.nonzero(positive)
        pos_rank = ranks[pos_rows, pos_items]
        # AUC as Mann-Whitney U over the user's candidates: P(positive scored above negative).
        n_candidates = n_negative + n_pos
        ascending = np.bincount(pos_rows, weights=n_candidates[pos_rows] + 1 - pos_rank,
                                minlength=len(n_pos))
        u_stat = ascending - n_pos * (n_pos + 1) / 2
        add("auc", np.where(n_negative > 0, u_stat / (n_pos * np.maximum(n_negative, 1)), 0.5))
        first = np.full(len(n_pos), np.inf)
        np.minimum.at(first, pos_rows, pos_rank)
        add("mrr", 1.0 / first)
    result = {name: value / max(n_eval, 1) for name, value in sums.items()}
    result.update({f"hit_rate_at_{k}": hits_at[k] / max(n_pos_total, 1) for k in HIT_RATE_KS})
    result["coverage"] = float(covered.mean())
    result["evaluated_users"] = float(n_eval)
    return dict(sorted(result.items()))
