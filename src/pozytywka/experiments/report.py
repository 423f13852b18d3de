"""The A/B report: per experiment and arm, the outcomes that followed the answers, compared with
users as the unit, beside the simulator's true expected figures when a simulation made them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from .outcomes import (
    ARMS,
    LIST_METRICS,
    NO_ARM,
    SKIP_METRICS,
    answers,
    join,
    list_outcomes_per_user,
    skip_outcomes_per_user,
)
from .stats import arm_estimate, compare_arms, compare_pooled, sample_ratio

A_B_EXPERIMENTS = ("playlists", "skip_predictions")


def answer_counts(answered: pd.DataFrame) -> dict:
    """Per experiment and arm: answers assigned by hash and forced by the route, those that
    succeeded, were refused (4xx) or failed (5xx); users assigned."""
    out: dict = {}
    for (experiment, variant), rows in answered.groupby(["experiment", "variant"]):
        assigned = rows[~rows["forced"]]
        out.setdefault(experiment, {})[variant] = {
            "assigned": int(len(assigned)),
            "forced": int(rows["forced"].sum()),
            "ok": int((assigned["status"] == 200).sum()),
            "refused": int(assigned["status"].between(400, 499).sum()),
            "failed": int((assigned["status"] >= 500).sum()),
            "users": int(assigned["user_id"].nunique()),
        }
    return out


def build_report(
    answered: pd.DataFrame,
    served: pd.DataFrame,
    skips: pd.DataFrame,
    truth: pd.DataFrame | None,
    params: dict,
) -> dict:
    """The whole report (``params``: conf/base/parameters_ab_analysis.yml). Only answers whose
    arm came from the user's hash enter a comparison; forced ones are counted apart."""
    stat = params["statistics"]
    assigned_served = served[~served["forced"]]
    assigned_skips = skips[~skips["forced"]]
    list_users = list_outcomes_per_user(assigned_served)
    skip_users = skip_outcomes_per_user(assigned_skips)
    counts = answer_counts(answered)
    report: dict = {
        "period": _period(answered, params),
        "attribution_window": params["attribution"]["window"],
        "answers": counts,
        "experiments": {},
    }
    for experiment in ("playlists", "recommendations"):
        users = list_users[list_users["experiment"] == experiment]
        if len(users) or experiment in counts:
            report["experiments"][experiment] = _list_experiment(
                experiment, users, assigned_served, params
            )
    if len(skip_users) or "skip_predictions" in counts:
        report["experiments"]["skip_predictions"] = _skip_experiment(
            skip_users, assigned_skips, params
        )
    report["simulation"] = _with_truth(report, list_users, skip_users, truth, stat["alpha"])
    return report


def _period(answered: pd.DataFrame, params: dict) -> dict:
    times = answered["answered_at"]
    return {
        "since": params.get("since"),
        "until": params.get("until"),
        "first_answer": times.min().isoformat() if len(times) else None,
        "last_answer": times.max().isoformat() if len(times) else None,
    }


def _arm_values(users: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    return {
        arm: users.loc[users["variant"] == arm, metric].to_numpy(dtype=np.float64)
        for arm in (*ARMS, NO_ARM)
    }


def _metrics(users: pd.DataFrame, metrics, params: dict, tested: bool) -> dict:
    stat = params["statistics"]
    out = {}
    for metric in metrics:
        values = _arm_values(users, metric)
        if tested:
            out[metric] = compare_arms(
                values["base"],
                values["advanced"],
                alpha=stat["alpha"],
                power=stat["power"],
                target_relative_lift=stat["target_relative_lift"],
                n_resamples=stat["n_resamples"],
                seed=stat["seed"],
            )
        else:
            out[metric] = {"arms": {NO_ARM: arm_estimate(values[NO_ARM], stat["alpha"])}}
    return out


def _assignment(users: pd.DataFrame, params: dict) -> dict:
    per_arm = users.groupby("variant")["user_id"].nunique().to_dict()
    return sample_ratio(
        {arm: int(per_arm.get(arm, 0)) for arm in ARMS},
        params["assignment"]["expected_split"],
        params["assignment"]["srm_alpha"],
    )


def _list_experiment(
    experiment: str, users: pd.DataFrame, served: pd.DataFrame, params: dict
) -> dict:
    tested = experiment in A_B_EXPERIMENTS
    out: dict = {
        "answers_without_later_event": {
            arm: int(rows["answers_without_event"].sum()) for arm, rows in users.groupby("variant")
        },
        "tracks_served": {arm: int(rows["served"].sum()) for arm, rows in users.groupby("variant")},
        "metrics": _metrics(users, LIST_METRICS, params, tested),
    }
    if tested:
        headline = params["headline"][experiment]
        out = {"assignment": _assignment(users, params), "headline": headline, **out}
        out["cumulative"] = _cumulative(
            served[served["experiment"] == experiment],
            list_outcomes_per_user,
            headline,
            params,
        )
    return out


def _skip_experiment(users: pd.DataFrame, skips: pd.DataFrame, params: dict) -> dict:
    stat = params["statistics"]
    headline = params["headline"]["skip_predictions"]
    labelled = skips[skips["labelled"]] if len(skips) else skips
    out: dict = {
        "assignment": _assignment(users, params),
        "headline": headline,
        "answers_without_later_event": {
            arm: int(len(rows) - rows["labelled"].sum()) for arm, rows in skips.groupby("variant")
        },
        "metrics": _metrics(users, SKIP_METRICS, params, True),
    }
    pooled_input = {
        arm: {
            "y": rows["skipped"].to_numpy(dtype=bool),
            "user": rows["user_id"].to_numpy(dtype=np.int64),
            "predicted": rows["predicted_skip"].to_numpy(dtype=bool),
            "probability": rows["skip_probability"].to_numpy(dtype=np.float64),
        }
        for arm, rows in labelled.groupby("variant")
    }
    out["metrics"].update(
        compare_pooled(
            pooled_input, alpha=stat["alpha"], n_resamples=stat["n_resamples"], seed=stat["seed"]
        )
    )
    out["cumulative"] = _cumulative(skips, skip_outcomes_per_user, headline, params)
    return out


def _cumulative(rows: pd.DataFrame, per_user, metric: str, params: dict) -> list[dict]:
    """The difference in ``metric`` (advanced minus base) with its Welch interval on the
    answers up to each of ``cumulative_points`` moments, evenly spaced by answer count."""
    points = int(params["statistics"]["cumulative_points"])
    if not points or not len(rows):
        return []
    times = np.sort(rows["answered_at"].unique())
    cut_at = times[np.unique(np.linspace(0, len(times) - 1, points + 1)[1:].round().astype(int))]
    out = []
    alpha = params["statistics"]["alpha"]
    for moment in cut_at:
        users = per_user(rows[rows["answered_at"] <= moment])
        values = _arm_values(users, metric)
        a, b = (v[np.isfinite(v)] for v in (values["base"], values["advanced"]))
        entry = {"at": pd.Timestamp(moment).isoformat(), "users": int(len(a) + len(b))}
        if len(a) >= 2 and len(b) >= 2:
            means = CompareMeans(DescrStatsW(b), DescrStatsW(a))
            low, high = means.tconfint_diff(alpha=alpha, usevar="unequal")
            entry.update(estimate=float(b.mean() - a.mean()), interval=[float(low), float(high)])
        out.append(entry)
    return out


# ---- the simulator's truth ------------------------------------------------------------------

# metric -> (numerator column, denominator column or None for a mean over answers)
TRUE_LIST = {
    "like_rate": ("liked", "served"),
    "skip_rate": ("skipped", "served"),
    "play_rate": ("played", "served"),
    "hit_rate": ("hit", None),
    "plays_per_user": ("played", "user"),
}
TRUE_SKIP = {m: (m, None) for m in SKIP_METRICS}


def true_per_user(truth: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    """Per user: each metric's true expected value under either arm, aggregated as the
    observed metric is (ratio of sums, or mean over the user's answers)."""
    sums = truth.groupby("user_id").sum(numeric_only=True)
    sizes = truth.groupby("user_id").size()
    out = pd.DataFrame(index=sums.index)
    for metric, (num, den) in metrics.items():
        for arm in ARMS:
            if den is None:
                out[f"{metric}_{arm}"] = sums[f"{num}_{arm}"] / sizes
            elif den == "user":
                out[f"{metric}_{arm}"] = sums[f"{num}_{arm}"]
            else:
                out[f"{metric}_{arm}"] = sums[f"{num}_{arm}"] / sums[f"{den}_{arm}"]
    return out


def _with_truth(report, list_users, skip_users, truth, alpha) -> dict:
    """Adds ``truth`` to each metric the simulator knows: both arms' true expected values over
    the experiment's users, their difference (the average effect on these users), and whether
    the estimate's interval covers it."""
    if truth is None or not len(truth):
        return {"available": False, "reason": "no simulation truth (real traffic, or none saved)"}
    summary: dict = {"available": True, "experiments": {}}
    for experiment, users, metrics in (
        ("playlists", list_users, TRUE_LIST),
        ("skip_predictions", skip_users, TRUE_SKIP),
    ):
        rows = truth[truth["experiment"] == experiment]
        section = report["experiments"].get(experiment)
        if section is None or not len(rows):
            continue
        observed = set(users.loc[users["experiment"] == experiment, "user_id"].astype(int))
        per_user = true_per_user(rows, metrics)
        both = per_user[per_user.index.isin(observed)]
        summary["experiments"][experiment] = {
            "users_observed": len(observed),
            "users_with_truth": int(len(both)),
            "truth_answers": int(len(rows)),
        }
        for metric in metrics:
            entry = section["metrics"][metric]
            base, adv = both[f"{metric}_base"], both[f"{metric}_advanced"]
            true_diff = float((adv - base).mean())
            interval = entry.get("difference", {}).get("interval", [None, None])
            entry["truth"] = {
                "base": float(base.mean()),
                "advanced": float(adv.mean()),
                "difference": true_diff,
                "relative_lift": float(adv.mean() / base.mean() - 1) if base.mean() else None,
                "interval_covers_truth": (
                    bool(interval[0] <= true_diff <= interval[1]) if None not in interval else None
                ),
            }
    return summary


def outcome_summary(log: pd.DataFrame, events: pd.DataFrame, params: dict) -> dict:
    """What ``/ab-summary`` and ``pozytywka ab-summary`` add to the counts: per experiment,
    each arm's outcome figures and the headline comparison (no cumulative series)."""
    params = {**params, "statistics": {**params["statistics"], "cumulative_points": 0}}
    answered = answers(log, params.get("since"), params.get("until"))
    if not len(answered):
        return {}
    served, skips = join(answered, events, params["attribution"])
    report = build_report(answered, served, skips, None, params)
    out: dict = {"attribution_window": report["attribution_window"]}
    for experiment, section in report["experiments"].items():
        entry: dict = {
            "arms": {},
            "answers_without_later_event": section["answers_without_later_event"],
        }
        for metric, m in section["metrics"].items():
            for arm, a in m["arms"].items():
                entry["arms"].setdefault(arm, {"users": a["users"]})[metric] = a["mean"]
        if "headline" in section:
            head = section["metrics"][section["headline"]]
            entry["headline"] = section["headline"]
            entry["difference"] = head.get("difference")
            entry["relative_lift"] = head.get("relative_lift")
            entry["sample_ratio_p_value"] = section["assignment"]["p_value"]
        out[experiment] = entry
    return out
