"""95% bootstrap intervals with users as the unit (docs/design.md §4).

A test set holds many rows per user, and rows of one user are not independent, so every interval
resamples *users* with replacement (a cluster bootstrap) through ``scipy.stats.bootstrap``. A
statistic sees one resample as a vector of counts, how often each user was drawn, so any metric
that accepts weights (a weighted mean, weighted confusion counts, a weighted ROC AUC) is computed
for a whole batch of resamples at once. Paired differences use the same resamples for both sides.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.stats import DegenerateDataWarning, bootstrap

# counts (n_resamples, n_users) -> values (n_metrics, n_resamples)
WeightedStatistic = Callable[[np.ndarray], np.ndarray]


def user_bootstrap(
    statistic: WeightedStatistic,
    n_users: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    batch: int = 100,
) -> np.ndarray:
    """Percentile intervals ``(n_metrics, 2)`` of ``statistic`` over resamples of users.

    Percentile rather than BCa: BCa's jackknife costs one evaluation per user, and on the
    skewed metrics here (precision of a weak model) the two agree to the third decimal.
    With fewer than two users there is nothing to resample, and a metric undefined on some
    resamples has no interval: NaN (null in the reports).
    """
    n_metrics = len(np.atleast_2d(statistic(np.ones((1, max(n_users, 1))))))
    if n_users < 2:
        return np.full((n_metrics, 2), np.nan)

    def counts_statistic(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        drawn = np.atleast_2d(drawn)
        counts = np.zeros((len(drawn), n_users))
        np.add.at(counts, (np.arange(len(drawn))[:, None], drawn.astype(np.int64)), 1.0)
        return np.atleast_2d(statistic(counts))

    with warnings.catch_warnings():
        # A metric undefined on some resamples (no positive drawn) has a NaN interval, which
        # scipy reports with a BCa-specific message although the method is percentile.
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap(
            (np.arange(n_users),),
            counts_statistic,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            method="percentile",
            confidence_level=confidence,
            rng=np.random.default_rng(seed),
        )
    low, high = (
        np.atleast_1d(result.confidence_interval.low),
        np.atleast_1d(result.confidence_interval.high),
    )
    return np.column_stack([low, high])


def memoised(statistic: WeightedStatistic) -> WeightedStatistic:
    """``statistic`` computing each batch of resamples once: intervals drawn with the same
    seed see the same batches, so a paired difference reuses what each side's interval
    computed (the figures are the same, the work is not repeated)."""
    cache: dict[tuple, np.ndarray] = {}

    def cached(counts: np.ndarray) -> np.ndarray:
        counts = np.ascontiguousarray(counts)
        key = (counts.shape, hashlib.blake2b(counts.tobytes(), digest_size=16).digest())
        if key not in cache:
            cache[key] = statistic(counts)
        return cache[key]

    return cached


def weighted_means(values: np.ndarray) -> WeightedStatistic:
    """Per-user values ``(n_users, n_metrics)`` -> their means under each resample; NaN cells
    (a metric undefined for that user) are left out of that metric's mean."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    defined = np.isfinite(values)
    filled = np.where(defined, values, 0.0)

    def statistic(counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return ((counts @ filled) / (counts @ defined)).T

    return statistic


def weighted_ratio(numerators: np.ndarray, denominators: np.ndarray) -> WeightedStatistic:
    """sum(numerator) / sum(denominator) over drawn users, per column (a micro average such
    as the hit rate: held-out positives found / held-out positives)."""
    num = np.asarray(numerators, dtype=np.float64).reshape(len(numerators), -1)
    den = np.asarray(denominators, dtype=np.float64).reshape(len(denominators), -1)

    def statistic(counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return ((counts @ num) / (counts @ den)).T

    return statistic


# ---- binary classification, rows grouped by user --------------------------------------------


def _per_user(
    user_codes: np.ndarray,
    n_users: int,
    column_codes: np.ndarray,
    n_columns: int,
    weights: np.ndarray,
) -> sp.csr_matrix:
    return sp.csr_matrix((weights, (user_codes, column_codes)), shape=(n_users, n_columns))


class BinaryRows:
    """Test rows (label, user) of a binary task, ready for resampled confusion counts and
    rank metrics: one sparse (users x score-level) table of positives and negatives per
    scorer, so a resample is a matrix product instead of a pass over rows."""

    def __init__(self, y: np.ndarray, users: np.ndarray):
        self.y = np.asarray(y, dtype=bool)
        self.user_ids, self.codes = np.unique(np.asarray(users), return_inverse=True)
        self.n_users = len(self.user_ids)

    def confusion(self, predicted: np.ndarray) -> sp.csr_matrix:
        """(users x 4) counts of tn, fp, fn, tp."""
        cell = 2 * self.y.astype(int) + np.asarray(predicted, dtype=bool).astype(int)
        return _per_user(self.codes, self.n_users, cell, 4, np.ones(len(cell)))

    def score_levels(
        self, score: np.ndarray, max_levels: int | None = None
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(users x distinct scores, best first) counts of positives and of negatives; past
        ``max_levels`` distinct scores, adjacent ones share a level (``max_levels`` in all)."""
        _, level = np.unique(-np.asarray(score, dtype=np.float64), return_inverse=True)
        n_levels = int(level.max()) + 1 if len(level) else 0
        if max_levels is not None and n_levels > max_levels:
            level, n_levels = level * max_levels // n_levels, max_levels
        pos = _per_user(self.codes, self.n_users, level, n_levels, self.y.astype(float))
        neg = _per_user(self.codes, self.n_users, level, n_levels, (~self.y).astype(float))
        return pos, neg

    def calibration_table(self, probability: np.ndarray, n_bins: int) -> sp.csr_matrix:
        """(users x 3 n_bins + 1) sums per equal-width probability bin: rows, predicted
        probability, positives; then the squared error (for calibration_metrics)."""
        p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
        b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
        y = self.y.astype(float)
        columns = np.concatenate([b, n_bins + b, 2 * n_bins + b, np.full(len(p), 3 * n_bins)])
        weights = np.concatenate([np.ones(len(p)), p, y, (p - y) ** 2])
        codes = np.tile(self.codes, 4)
        return _per_user(codes, self.n_users, columns, 3 * n_bins + 1, weights)


CALIBRATION_METRICS = ("brier_score", "expected_calibration_error")


def calibration_metrics(sums: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Brier score and expected calibration error (row-weighted mean |mean predicted -
    observed share| over equal-width bins) from ``calibration_table`` sums (columns first)."""
    rows, predicted, observed = sums[:n_bins], sums[n_bins : 2 * n_bins], sums[2 * n_bins : -1]
    total = rows.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "brier_score": sums[-1] / total,
            "expected_calibration_error": np.abs(predicted - observed).sum(axis=0) / total,
        }


CONFUSION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision_skip",
    "recall_skip",
    "f1_skip",
    "precision_listen",
    "recall_listen",
    "f1_listen",
)
RANK_METRICS = ("roc_auc", "pr_auc")


def confusion_metrics(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """The metrics of CONFUSION_METRICS from (weighted) confusion counts; zero division -> 0,
    as scikit-learn's ``zero_division=0``."""

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)

    recall_pos, recall_neg = ratio(tp, tp + fn), ratio(tn, tn + fp)
    precision_pos, precision_neg = ratio(tp, tp + fp), ratio(tn, tn + fn)
    return {
        "accuracy": ratio(tp + tn, tn + fp + fn + tp),
        "balanced_accuracy": (recall_pos + recall_neg) / 2,
        "precision_skip": precision_pos,
        "recall_skip": recall_pos,
        "f1_skip": ratio(2 * precision_pos * recall_pos, precision_pos + recall_pos),
        "precision_listen": precision_neg,
        "recall_listen": recall_neg,
        "f1_listen": ratio(2 * precision_neg * recall_neg, precision_neg + recall_neg),
    }


def rank_metrics(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    """ROC AUC (ties count half) and average precision (scikit-learn's step definition) from
    (weighted) positives and negatives per distinct score, best first: arrays (..., levels)."""
    total_pos, total_neg = pos.sum(axis=-1), neg.sum(axis=-1)
    cum_pos, cum_neg = np.cumsum(pos, axis=-1), np.cumsum(neg, axis=-1)
    neg_below = total_neg[..., None] - cum_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + neg / 2)).sum(axis=-1) / (total_pos * total_neg)
        precision = np.where(cum_pos + cum_neg > 0, cum_pos / (cum_pos + cum_neg), 0.0)
        ap = (pos * precision).sum(axis=-1) / total_pos
    return {"roc_auc": auc, "pr_auc": ap}
