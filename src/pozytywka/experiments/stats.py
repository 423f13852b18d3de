"""Statistics of a two-arm experiment with users as the unit.

Per-user outcomes (a user's like rate, accuracy...) are compared between arms with Welch's t-test
and interval (statsmodels), the relative lift's interval by a bootstrap over users (scipy), the
assignment split by a chi-square test (sample-ratio mismatch), and the minimum detectable effect
and the users needed by statsmodels' power solver. Figures that do not decompose per user
(balanced accuracy, calibration error) get cluster-bootstrap intervals and a permutation test
that moves whole users between arms.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import tt_ind_solve_power
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from ..intervals import BinaryRows, calibration_metrics, confusion_metrics


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(low, high) -> list[float | None]:
    return [_number(low), _number(high)]


def arm_estimate(values: np.ndarray, alpha: float = 0.05) -> dict:
    """Mean of the per-user values with its t interval."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    out: dict = {"users": int(len(values)), "mean": _number(values.mean()) if len(values) else None}
    if len(values) >= 2:
        out["interval"] = _interval(*DescrStatsW(values).tconfint_mean(alpha=alpha))
        out["sd"] = _number(values.std(ddof=1))
    else:
        out["interval"], out["sd"] = [None, None], None
    return out


def compare_arms(
    base: np.ndarray,
    advanced: np.ndarray,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    target_relative_lift: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Advanced minus base: Welch difference with interval and p-value, relative lift with a
    bootstrap interval, the minimum detectable effect at ``power`` with these users and their
    pooled spread, and the users per arm needed to detect the observed difference or
    ``target_relative_lift``."""
    a = np.asarray(base, dtype=np.float64)
    b = np.asarray(advanced, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    out: dict = {"arms": {"base": arm_estimate(a, alpha), "advanced": arm_estimate(b, alpha)}}
    if len(a) < 2 or len(b) < 2:
        out["comparable"] = False
        out["reason"] = "fewer than two users with an outcome in an arm"
        return out
    out["comparable"] = True
    diff = b.mean() - a.mean()
    if a.var() == 0 and b.var() == 0:  # every user alike in each arm: nothing to test
        out["difference"] = {
            "estimate": _number(diff),
            "interval": [None, None],
            "p_value": None,
            "significant": False,
            "reason": "no spread between users in either arm",
        }
        return out
    means = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    _, p_value, _ = means.ttest_ind(usevar="unequal")
    out["difference"] = {
        "estimate": _number(diff),
        "interval": _interval(*means.tconfint_diff(alpha=alpha, usevar="unequal")),
        "p_value": _number(p_value),
        "significant": bool(p_value < alpha) if math.isfinite(p_value) else False,
        "test": "Welch t-test on per-user values (statsmodels)",
    }
    out["relative_lift"] = _relative_lift(a, b, alpha, n_resamples, seed)
    out["power"] = _power(a, b, diff, alpha, power, target_relative_lift)
    return out


def _relative_lift(a, b, alpha, n_resamples, seed) -> dict:
    """(mean advanced / mean base) - 1, with a percentile bootstrap interval resampling the
    users of each arm independently."""
    if a.mean() == 0:
        return {"estimate": None, "interval": [None, None], "reason": "base mean is 0"}

    def lift(x, y, axis=-1):
        with np.errstate(divide="ignore", invalid="ignore"):
            return y.mean(axis=axis) / x.mean(axis=axis) - 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        result = sps.bootstrap(
            (a, b),
            lift,
            n_resamples=n_resamples,
            vectorized=True,
            paired=False,
            method="percentile",
            confidence_level=1 - alpha,
            rng=np.random.default_rng(seed),
        )
    ci = result.confidence_interval
    return {"estimate": _number(lift(a, b)), "interval": _interval(ci.low, ci.high)}


def _power(a, b, diff, alpha, power, target_relative_lift) -> dict:
    """Minimum detectable effect (absolute and relative to base) with these arms' sizes, and
    the users per arm an equal split needs for the observed and the target effect."""
    n_a, n_b = len(a), len(b)
    pooled = math.sqrt(((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2))
    out: dict = {"alpha": alpha, "power": power, "pooled_sd": _number(pooled)}
    if pooled == 0:
        return {**out, "reason": "no spread between users: power is undefined"}
    d = tt_ind_solve_power(nobs1=n_a, ratio=n_b / n_a, alpha=alpha, power=power)
    mde = float(d) * pooled
    base_mean = a.mean()
    out["minimum_detectable_effect"] = _number(mde)
    out["minimum_detectable_relative_lift"] = _number(mde / base_mean) if base_mean else None
    out["users_per_arm_for_observed"] = _users_needed(abs(diff) / pooled, alpha, power)
    target = abs(target_relative_lift * base_mean) / pooled
    out["target_relative_lift"] = target_relative_lift
    out["users_per_arm_for_target"] = _users_needed(target, alpha, power)
    return out


def _users_needed(effect_size: float, alpha: float, power: float) -> int | None:
    if not effect_size or not math.isfinite(effect_size):
        return None
    n = float(tt_ind_solve_power(effect_size=effect_size, alpha=alpha, power=power, ratio=1.0))
    return int(math.ceil(n)) if math.isfinite(n) else None  # the solver gives up on tiny effects


def sample_ratio(users: dict[str, int], expected: dict[str, float], alpha: float = 0.001) -> dict:
    """Chi-square test of the users per arm against the configured split: a sample-ratio
    mismatch (p below ``alpha``) means the assignment or the logging is broken, and no
    comparison of the arms can be trusted."""
    arms = list(expected)
    observed = np.array([users.get(arm, 0) for arm in arms], dtype=np.float64)
    shares = np.array([expected[arm] for arm in arms], dtype=np.float64)
    out = {
        "users": {arm: int(n) for arm, n in zip(arms, observed, strict=True)},
        "expected_share": dict(zip(arms, map(float, shares / shares.sum()), strict=True)),
        "alpha": alpha,
    }
    if observed.sum() == 0:
        return {**out, "chi2": None, "p_value": None, "passed": None}
    chi2, p_value = sps.chisquare(observed, f_exp=observed.sum() * shares / shares.sum())
    return {
        **out,
        "chi2": _number(chi2),
        "p_value": _number(p_value),
        "passed": bool(p_value >= alpha),
    }


# ---- pooled classification figures, users as clusters -------------------------------------

POOLED_SKIP_METRICS = ("balanced_accuracy", "expected_calibration_error")
CALIBRATION_BINS = 10


def _pooled_statistic(y: np.ndarray, users: np.ndarray, predicted, probability):
    """counts (R, users) -> (2, R): balanced accuracy and ECE with each user weighted by its
    count in the resample."""
    rows = BinaryRows(y, users)
    confusion = rows.confusion(predicted)
    bins = rows.calibration_table(probability, CALIBRATION_BINS)

    def statistic(counts: np.ndarray) -> np.ndarray:
        tn, fp, fn, tp = confusion.T @ counts.T
        balanced = confusion_metrics(tn, fp, fn, tp)["balanced_accuracy"]
        ece = calibration_metrics(bins.T @ counts.T, CALIBRATION_BINS)
        return np.vstack([balanced, ece["expected_calibration_error"]])

    return statistic, rows.n_users


def _counts(drawn: np.ndarray, n_users: int) -> np.ndarray:
    drawn = np.atleast_2d(drawn).astype(np.int64)
    counts = np.zeros((len(drawn), n_users))
    np.add.at(counts, (np.arange(len(drawn))[:, None], drawn), 1.0)
    return counts


def compare_pooled(
    arms: dict[str, dict[str, np.ndarray]],
    *,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """Balanced accuracy and expected calibration error per arm from labelled skip answers
    (``arms[arm]`` holds ``y``, ``user``, ``predicted``, ``probability``), with cluster
    bootstrap intervals, and advanced minus base with an interval (users of each arm resampled
    independently) and a permutation p-value (whole users shuffled between arms)."""
    out: dict[str, dict] = {m: {"arms": {}} for m in POOLED_SKIP_METRICS}
    rng = np.random.default_rng(seed)
    stats, draws = {}, {}
    for arm in ("base", "advanced"):
        data = arms.get(arm)
        if data is None or not len(data["y"]):
            continue
        statistic, n_users = _pooled_statistic(
            data["y"], data["user"], data["predicted"], data["probability"]
        )
        point = statistic(np.ones((1, n_users)))[:, 0]
        resampled = statistic(_counts(rng.integers(0, n_users, (n_resamples, n_users)), n_users))
        stats[arm], draws[arm] = point, resampled
        for i, metric in enumerate(POOLED_SKIP_METRICS):
            low, high = np.nanpercentile(resampled[i], [100 * alpha / 2, 100 * (1 - alpha / 2)])
            out[metric]["arms"][arm] = {
                "users": int(n_users),
                "answers": int(len(data["y"])),
                "mean": _number(point[i]),
                "interval": _interval(low, high) if n_users >= 2 else [None, None],
            }
    if len(stats) < 2:
        return out
    p_values = _permutation_p_values(arms, n_resamples, seed)
    for i, metric in enumerate(POOLED_SKIP_METRICS):
        diff = draws["advanced"][i] - draws["base"][i]
        low, high = np.nanpercentile(diff, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        estimate = stats["advanced"][i] - stats["base"][i]
        out[metric]["difference"] = {
            "estimate": _number(estimate),
            "interval": _interval(low, high),
            "p_value": _number(p_values[i]),
            "significant": bool(p_values[i] < alpha),
            "test": "permutation of users between arms (scipy)",
        }
    return out


def _permutation_p_values(arms: dict, n_resamples: int, seed: int) -> np.ndarray:
    """Two-sided permutation p-values of the difference in each pooled figure, exchanging
    whole users between the arms."""
    y = np.concatenate([arms[a]["y"] for a in ("base", "advanced")])
    predicted = np.concatenate([arms[a]["predicted"] for a in ("base", "advanced")])
    probability = np.concatenate([arms[a]["probability"] for a in ("base", "advanced")])
    users = np.concatenate(
        [
            np.char.add(f"{a}:", np.asarray(arms[a]["user"]).astype(str))
            for a in ("base", "advanced")
        ]
    )
    statistic, n_users = _pooled_statistic(y, users, predicted, probability)
    codes = BinaryRows(y, users).user_ids
    in_base = np.char.startswith(codes.astype(str), "base:")
    base_idx, adv_idx = np.flatnonzero(in_base), np.flatnonzero(~in_base)

    def difference(metric: int):
        def statistic_of(x, z, axis=-1):
            return statistic(_counts(z, n_users))[metric] - statistic(_counts(x, n_users))[metric]

        return statistic_of

    return np.array(
        [
            sps.permutation_test(
                (base_idx, adv_idx),
                difference(i),
                permutation_type="independent",
                vectorized=True,
                n_resamples=n_resamples,
                alternative="two-sided",
                rng=np.random.default_rng(seed + 1),
            ).pvalue
            for i in range(len(POOLED_SKIP_METRICS))
        ]
    )
