"""ab_analysis: the prediction log's answers joined with the events that followed, compared
between arms (pozytywka.experiments), reported as JSON, Markdown, plots and MLflow metrics."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pozytywka.experiments import outcomes  # noqa: E402
from pozytywka.experiments.report import build_report  # noqa: E402
from pozytywka.tracking import mlflow_metrics  # noqa: E402

logger = logging.getLogger(__name__)

TITLES = {
    "playlists": "Group playlists",
    "skip_predictions": "Skip predictions",
    "recommendations": "Recommendations (not A/B tested)",
}


def read_answers(prediction_log: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The log's answers of the analysed period (``since``/``until``)."""
    answered = outcomes.answers(prediction_log, params.get("since"), params.get("until"))
    if not len(answered):
        raise ValueError(
            "the prediction log holds no answers in the analysed period "
            f"(since={params.get('since')}, until={params.get('until')})"
        )
    logger.info("A/B analysis: %d answers from the prediction log", len(answered))
    return answered


def attribute_outcomes(
    answered: pd.DataFrame, events: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each served track and each skip prediction with the play, skip and like that followed
    within the attribution window."""
    return outcomes.join(answered, events, params["attribution"])


def report_experiment(
    answered: pd.DataFrame,
    served: pd.DataFrame,
    skips: pd.DataFrame,
    simulation_truth: pd.DataFrame,
    params: dict,
) -> dict:
    """The A/B report; the simulator's truth where its answers fall in the analysed period."""
    truth = simulation_truth
    if len(truth):
        at = pd.to_datetime(truth["answered_at"], utc=True)
        truth = truth[outcomes.in_period(at, params.get("since"), params.get("until"))]
    return build_report(answered, served, skips, truth, params)


# ---- Markdown -------------------------------------------------------------------------------


def _f(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(interval) -> str:
    if not interval or None in interval:
        return ""
    return f" [{interval[0]:.4f}, {interval[1]:.4f}]"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def _pct_ci(interval) -> str:
    if not interval or None in interval:
        return ""
    return f" [{100 * interval[0]:+.1f}%, {100 * interval[1]:+.1f}%]"


def _p(value) -> str:
    if value is None:
        return "–"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def ab_markdown(report: dict) -> str:
    period = report["period"]
    lines = [
        "# A/B experiments: outcomes by arm",
        "",
        f"Answers from {period['first_answer']} to {period['last_answer']} (since "
        f"{period['since'] or 'the start of the log'}, until {period['until'] or 'now'}); an "
        f"event counts for the latest answer that served the user that track, within "
        f"**{report['attribution_window']}**. Users are the unit: each user's outcomes are "
        "aggregated first, arms are compared with Welch's t-test on per-user values "
        "(statsmodels), relative lifts with a bootstrap over users; only answers whose arm "
        "came from the user's hash are compared (forced /base, /advanced calls are counted "
        "apart).",
        "",
        "| experiment | arm | assigned | forced | ok | refused (4xx) | failed (5xx) | users |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for experiment, arms in report["answers"].items():
        for arm, c in arms.items():
            lines.append(
                f"| {experiment} | {arm} | {c['assigned']} | {c['forced']} | {c['ok']} | "
                f"{c['refused']} | {c['failed']} | {c['users']} |"
            )
    for experiment, section in report["experiments"].items():
        lines += ["", f"## {TITLES.get(experiment, experiment)}", ""]
        if "assignment" in section:
            lines += _tested_lines(section)
        else:
            lines += _untested_lines(section)
        missing = section.get("answers_without_later_event", {})
        lines += [
            "",
            "Answers no play, skip or like followed within the window (kept, counted as "
            "nothing played): "
            + (", ".join(f"{arm} {n}" for arm, n in missing.items()) or "none")
            + ".",
        ]
    lines += ["", *_simulation_lines(report)]
    return "\n".join(lines) + "\n"


def _tested_lines(section: dict) -> list[str]:
    a = section["assignment"]
    srm = (
        f"users per arm {a['users']['base']} base / {a['users']['advanced']} advanced; "
        f"sample-ratio check (chi-square against {a['expected_share']['base']:.0%} / "
        f"{a['expected_share']['advanced']:.0%}): p = {_p(a['p_value'])}, "
    )
    if a["passed"] is False:
        srm += (
            f"**MISMATCH** (p < {a['alpha']}): the split is not the configured one, so the "
            "assignment or the logging is broken; do not trust the comparison below."
        )
    else:
        srm += "passed."
    lines = [srm, ""]
    truth = any("truth" in m for m in section["metrics"].values())
    header = "| metric | base | advanced | advanced − base | relative lift | p-value | MDE |"
    rule = "|---|---|---|---|---|---|---|"
    if truth:
        header += " true difference | covered |"
        rule += "---|---|"
    lines += [header, rule]
    for metric, m in section["metrics"].items():
        arms, d = m["arms"], m.get("difference", {})
        lift = m.get("relative_lift", {})
        mde = m.get("power", {}).get("minimum_detectable_effect")
        row = (
            f"| {metric} | {_f(arms.get('base', {}).get('mean'))}"
            f"{_ci(arms.get('base', {}).get('interval'))} | "
            f"{_f(arms.get('advanced', {}).get('mean'))}"
            f"{_ci(arms.get('advanced', {}).get('interval'))} | "
            f"{_f(d.get('estimate'))}{_ci(d.get('interval'))} | "
            f"{_pct(lift.get('estimate'))}{_pct_ci(lift.get('interval'))} | "
            f"{_p(d.get('p_value'))} | {_f(mde)} |"
        )
        if truth:
            t = m.get("truth")
            covers = (
                {True: "yes", False: "**no**"}.get(t["interval_covers_truth"], "–") if t else ""
            )
            row += f" {_f(t['difference'])} | {covers} |" if t else " – | – |"
        lines.append(row)
    if "expected_calibration_error" in section["metrics"]:
        lines += [
            "",
            "Balanced accuracy and expected calibration error do not decompose per user: their "
            "intervals resample users (a cluster bootstrap), their p-values shuffle whole users "
            "between arms. A resampled calibration error is biased upwards (fewer distinct "
            "users make the bins noisier), so its interval sits high; the permutation p-value "
            "is the test.",
        ]
    lines += ["", _verdict(section)]
    return lines


def _verdict(section: dict) -> str:
    """One plain sentence on the headline metric."""
    metric = section["headline"]
    m = section["metrics"][metric]
    if not m.get("comparable", True) or "difference" not in m:
        return f"**{metric}**: not enough users in both arms to compare."
    d, power = m["difference"], m.get("power", {})
    lower_better = metric in outcomes.LOWER_IS_BETTER
    better = (d["estimate"] < 0) if lower_better else (d["estimate"] > 0)
    head = (
        f"**{metric}**: advanced − base = {_f(d['estimate'])}{_ci(d['interval'])}, "
        f"p = {_p(d['p_value'])}"
    )
    if section.get("assignment", {}).get("passed") is False:
        return head + ": not interpretable, the sample-ratio check failed."
    if d["significant"]:
        return head + (
            f": the advanced arm is {'better' if better else 'worse'}, significant at "
            f"{power.get('alpha', 0.05):.0%}."
        )
    needed = power.get("users_per_arm_for_observed")
    return head + (
        ": **not significant**; the arms cannot be told apart with these users. The minimum "
        f"detectable effect at {power.get('power', 0.8):.0%} power is "
        f"{_f(power.get('minimum_detectable_effect'))}"
        + (
            f"; about {needed:,} users per arm would detect the observed difference"
            if needed
            else ""
        )
        + "."
    )


def _untested_lines(section: dict) -> list[str]:
    lines = ["| metric | estimate [95% interval] | users |", "|---|---|---|"]
    for metric, m in section["metrics"].items():
        arm = m["arms"].get(outcomes.NO_ARM, {})
        lines.append(
            f"| {metric} | {_f(arm.get('mean'))}{_ci(arm.get('interval'))} | {arm.get('users')} |"
        )
    return lines


def _simulation_lines(report: dict) -> list[str]:
    sim = report["simulation"]
    if not sim["available"]:
        return [f"No simulator truth: {sim['reason']}."]
    lines = [
        "## Simulator truth",
        "",
        "The simulator knows each served track's true like and skip probabilities, and asked "
        "the other arm the same request (forced route, not listened to): the *true "
        "difference* is the average effect on these users, which the estimate's interval "
        "should cover in about 95% of experiments.",
        "",
    ]
    for experiment, s in sim["experiments"].items():
        lines.append(
            f"- {experiment}: truth for {s['users_with_truth']} of {s['users_observed']} users "
            f"({s['truth_answers']} answers)."
        )
    return lines


# ---- plots and MLflow -----------------------------------------------------------------------

PLOTTED = {
    "playlists": ("like_rate", "hit_rate", "skip_rate"),
    "skip_predictions": ("accuracy", "balanced_accuracy", "brier_score"),
}


def plot_ab(report: dict) -> tuple[plt.Figure, plt.Figure]:
    """Per-arm outcomes with 95% interval bars; the headline difference over time, with its
    interval, as answers accumulated."""
    tested = [e for e in PLOTTED if e in report["experiments"]]
    n = max(len(tested), 1)
    outcomes_fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
    for ax, experiment in zip(axes[0], tested, strict=False):
        metrics = report["experiments"][experiment]["metrics"]
        names = [m for m in PLOTTED[experiment] if m in metrics]
        for offset, arm in ((-0.2, "base"), (0.2, "advanced")):
            means: list[float] = []
            errors: list[list[float]] = [[], []]
            for name in names:
                a = metrics[name]["arms"].get(arm, {})
                mean = a.get("mean") if a.get("mean") is not None else np.nan
                low, high = a.get("interval") or [None, None]
                means.append(mean)
                errors[0].append(mean - low if low is not None else 0)
                errors[1].append(high - mean if high is not None else 0)
            ax.bar(np.arange(len(names)) + offset, means, 0.4, yerr=errors, capsize=4, label=arm)
        ax.set_xticks(np.arange(len(names)), names)
        ax.set_title(TITLES[experiment])
        ax.legend()
    outcomes_fig.tight_layout()

    lift_fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
    for ax, experiment in zip(axes[0], tested, strict=False):
        section = report["experiments"][experiment]
        points = [p for p in section["cumulative"] if "estimate" in p]
        if points:
            x = pd.to_datetime([p["at"] for p in points])
            ax.plot(x, [p["estimate"] for p in points], label="estimate")
            ax.fill_between(
                x,
                [p["interval"][0] for p in points],
                [p["interval"][1] for p in points],
                alpha=0.3,
                label="95% interval",
            )
        truth = section["metrics"][section["headline"]].get("truth")
        if truth:
            ax.axhline(truth["difference"], color="green", linestyle="--", label="true")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"{TITLES[experiment]}: {section['headline']}, advanced − base")
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
    lift_fig.tight_layout()
    return outcomes_fig, lift_fig


def ab_mlflow(report: dict) -> dict:
    """Per experiment and metric: each arm's value, the difference, its p-value, the relative
    lift, the minimum detectable effect and (simulated) the true difference; the SRM p-value."""
    values: dict[str, float | None] = {}
    for experiment, section in report["experiments"].items():
        prefix = f"ab/{experiment}"
        if "assignment" in section:
            values[f"{prefix}/srm_p_value"] = section["assignment"]["p_value"]
        for metric, m in section["metrics"].items():
            for arm, a in m["arms"].items():
                values[f"{prefix}/{metric}/{arm}"] = a.get("mean")
            d = m.get("difference", {})
            values[f"{prefix}/{metric}/difference"] = d.get("estimate")
            values[f"{prefix}/{metric}/p_value"] = d.get("p_value")
            values[f"{prefix}/{metric}/relative_lift"] = m.get("relative_lift", {}).get("estimate")
            values[f"{prefix}/{metric}/mde"] = m.get("power", {}).get("minimum_detectable_effect")
            if m.get("truth"):
                values[f"{prefix}/{metric}/true_difference"] = m["truth"]["difference"]
    return mlflow_metrics(values)
