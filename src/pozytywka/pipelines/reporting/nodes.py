"""Nodes of reporting: metrics with 95% bootstrap intervals over test users, paired differences
from the baselines, Markdown a person reads, MLflow metrics and plots (docs/design.md §4).

Files are ``{scorer: {metric: value}}`` plus ``intervals`` ``{scorer: {metric: [low, high]}}``,
``difference`` ``{"<a>_vs_<b>": {metric: {"estimate", "interval", "significant"}}}`` and
``sizes``. The oracle appears only where oracle_evaluation produced it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from pozytywka.experiments.outcomes import LOWER_IS_BETTER as OUTCOMES_LOWER_IS_BETTER
from pozytywka.intervals import (
    CALIBRATION_METRICS,
    CONFUSION_METRICS,
    RANK_METRICS,
    BinaryRows,
    calibration_metrics,
    confusion_metrics,
    memoised,
    rank_metrics,
    user_bootstrap,
    weighted_means,
    weighted_ratio,
)
from pozytywka.plotting import readable_log_ticks
from pozytywka.recsys.metrics import HIT_RATE_KS, USER_METRICS, summarise_ranking
from pozytywka.tracking import mlflow_metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

logger = logging.getLogger(__name__)


# Larger is better except for these: the A/B outcomes' and calibration's (experiments.outcomes)
# and the group playlists' clustering score and share of members without a hit. They get no
# share of the oracle, and for them lower is better in words.
LOWER_IS_BETTER = frozenset({*OUTCOMES_LOWER_IS_BETTER, "clustering", "zero_recall_share"})


def _label(metric: str) -> str:
    """A table's row label: the metric, and its direction where lower is better."""
    return f"{metric} (lower is better)" if metric in LOWER_IS_BETTER else metric


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined figure is null."""
    return float(value) if value is not None and np.isfinite(value) else None


def _interval_dict(names, bounds: np.ndarray) -> dict[str, list]:
    return {m: [_finite(lo), _finite(hi)] for m, (lo, hi) in zip(names, bounds, strict=True)}


def _difference(names, estimates: dict, bounds: np.ndarray) -> dict[str, dict]:
    out = {}
    for m, (lo, hi) in zip(names, bounds, strict=True):
        significant = bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))
        out[m] = {
            "estimate": _finite(estimates[m]),
            "interval": [_finite(lo), _finite(hi)],
            "significant": significant,
        }
    return out


def _stacked(*statistics):
    return lambda counts: np.vstack([s(counts) for s in statistics])


def _fmt(value, interval=None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    if interval is None or interval[0] is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def _difference_lines(title: str, a: str, b: str, diff: dict) -> list[str]:
    """A table of paired differences and one sentence per metric saying whether it is real."""
    lines = [
        f"### {title}",
        "",
        "| metric | difference | 95% interval | significant |",
        "|---|---:|---|---|",
    ]
    for m, d in diff.items():
        lo, hi = d["interval"]
        interval = f"[{lo:+.4f}, {hi:+.4f}]" if lo is not None else "–"
        lines.append(
            f"| {_label(m)} | {_fmt_signed(d['estimate'])} | {interval} | "
            f"{'yes' if d['significant'] else '**no**'} |"
        )
    same = [m for m, d in diff.items() if not d["significant"]]
    real = [m for m in diff if m not in same]
    better = [m for m in real if (diff[m]["estimate"] > 0) != (m in LOWER_IS_BETTER)]
    worse = [m for m in real if m not in better]
    subject = a[0].upper() + a[1:]
    lines.append("")
    if better:
        lines.append(f"{subject} is significantly better than {b} on {', '.join(better)}.")
    if worse:
        lines.append(f"{subject} is significantly **worse** than {b} on {', '.join(worse)}.")
    if same:
        lines.append(
            f"The difference between {a} and {b} is **not significant** (the 95% "
            f"interval holds 0) on {', '.join(same)}: on this data {a} does not "
            f"demonstrably beat {b} there."
        )
    return [*lines, ""]


def _fmt_signed(value) -> str:
    return "–" if value is None else f"{value:+.4f}"


# ---- recommendation ----------------------------------------------------------------------------

REC_SCORERS = ("baseline", "popularity", "als", "ease", "defaults", "model", "ranker", "oracle")
# Baselines the model is compared with, user by user (those the run produced).
REC_COMPARED = ("popularity", "baseline", "als", "ease", "defaults")
REC_HEADLINE = (
    "auc",
    "precision_at_10",
    "recall_at_10",
    "ndcg_at_10",
    "mrr",
    "coverage",
    "hit_rate_at_10",
    "hit_rate_at_100",
)
HIT_RATES = tuple(f"hit_rate_at_{k}" for k in HIT_RATE_KS)
REC_INTERVAL_METRICS = (*USER_METRICS, *HIT_RATES)
GROUP_METRICS = (
    "clustering",
    "precision_mean",
    "precision_min",
    "recall_mean",
    "recall_min",
    "ndcg_mean",
    "ndcg_min",
    "min_max_precision_ratio",
    "zero_recall_share",
)
GROUP_HEADLINE = tuple(m for m in GROUP_METRICS if m != "precision_min")


def _ranking_statistic(per_user: pd.DataFrame, other: pd.DataFrame | None = None):
    """Resampled means of the per-user metrics and hit-rate ratios (of ``per_user`` minus
    ``other``, user by user, when given)."""
    values = per_user[list(USER_METRICS)].to_numpy(dtype=float)
    hits = per_user[[f"hits_at_{k}" for k in HIT_RATE_KS]].to_numpy(dtype=float)
    if other is not None:
        values = values - other[list(USER_METRICS)].to_numpy(dtype=float)
        hits = hits - other[[f"hits_at_{k}" for k in HIT_RATE_KS]].to_numpy(dtype=float)
    positives = np.repeat(per_user[["positives"]].to_numpy(dtype=float), len(HIT_RATE_KS), 1)
    return _stacked(weighted_means(values), weighted_ratio(hits, positives))


def _by_user(per_user: pd.DataFrame, scorer: str) -> pd.DataFrame:
    return per_user[per_user["scorer"] == scorer].sort_values("user").reset_index(drop=True)


def _group_summary(
    table: pd.DataFrame, bootstrap: dict, compared: Sequence[str] = ("model",)
) -> tuple[dict, dict, dict]:
    """Per strategy and scorer: mean over groups, its interval over groups, and the paired
    difference of each ``compared`` scorer from popularity (same groups), keyed
    ``<scorer>_vs_popularity_<strategy>``."""
    summary: dict = {}
    intervals: dict = {}
    differences: dict = {}
    if table.empty:
        return summary, intervals, differences
    baseline = table[table["scorer"] == "baseline"].sort_values("group")
    for strategy in [s for s in table["strategy"].unique() if s != "history"]:
        part = pd.concat([table[table["strategy"] == strategy], baseline])
        for scorer, unsorted in part.groupby("scorer"):
            rows = unsorted.sort_values("group")
            values = rows[list(GROUP_METRICS)].to_numpy(dtype=float)
            summary.setdefault(strategy, {})[scorer] = {
                m: _finite(np.nanmean(values[:, i])) if np.isfinite(values[:, i]).any() else None
                for i, m in enumerate(GROUP_METRICS)
            }
            # The ratio is undefined (0 / 0) where no member's playlist precision is above 0.
            ratio = values[:, GROUP_METRICS.index("min_max_precision_ratio")]
            summary[strategy][scorer]["groups_with_a_ratio"] = int(np.isfinite(ratio).sum())
            intervals.setdefault(strategy, {})[scorer] = _interval_dict(
                GROUP_METRICS, user_bootstrap(weighted_means(values), len(rows), **bootstrap)
            )
        base = summary[strategy].get("baseline", {}).get("clustering")
        popularity = part[part["scorer"] == "popularity"].sort_values("group")
        for name in dict.fromkeys(c for c in compared if c != "popularity"):
            if not (by := summary[strategy].get(name)):
                continue
            if base:
                by["clustering_improvement_vs_baseline"] = (base - by["clustering"]) / base
            rows = part[part["scorer"] == name].sort_values("group")
            if not len(popularity) or not np.array_equal(rows["group"], popularity["group"]):
                continue
            delta = rows[list(GROUP_METRICS)].to_numpy(dtype=float) - popularity[
                list(GROUP_METRICS)
            ].to_numpy(dtype=float)
            estimates = {
                m: np.nanmean(delta[:, i]) if np.isfinite(delta[:, i]).any() else np.nan
                for i, m in enumerate(GROUP_METRICS)
            }
            differences[f"{name}_vs_popularity_{strategy}"] = _difference(
                GROUP_METRICS,
                estimates,
                user_bootstrap(weighted_means(delta), len(delta), **bootstrap),
            )
    return summary, intervals, differences


def _with_oracle(frame: pd.DataFrame, oracle_frame: pd.DataFrame, oracle: dict) -> pd.DataFrame:
    """A model-side table with the oracle's rows added, where there is an oracle."""
    if not oracle.get("available"):
        return frame
    return pd.concat([frame, oracle_frame], ignore_index=True)


# The served recommender's names in ``recommender_choice`` (the service's) and in the
# evaluation tables, which call LightFM "model" (its name in every report).
SERVICE_NAMES = {"lightfm": "model"}
# The recommenders compared with popularity to say whether anything beats it.
BEATS_POPULARITY = ("ranker", "model", "ease", "als", "defaults")


def _evaluation_name(name: str) -> str:
    return SERVICE_NAMES.get(name, name)


def recommendation_report(
    per_user: pd.DataFrame,
    evaluation: dict,
    group_table: pd.DataFrame,
    oracle_per_user: pd.DataFrame,
    oracle_evaluation: dict,
    oracle_group_table: pd.DataFrame,
    bootstrap: dict,
    choice: dict | None = None,
    ranker_importance: pd.DataFrame | None = None,
    ranker_trials: pd.DataFrame | None = None,
) -> dict:
    """``recommendation_metrics.json``: every scorer's figures, their intervals over test users,
    paired differences of LightFM (``difference``) and of the served recommender
    (``served_difference``) from the others, every recommender's from popularity, group
    playlists (intervals over groups), sizes, and how the served recommender was chosen.

    Args:
        evaluation: ``served`` names the served recommender (LightFM, ``model``, when absent:
            outputs written before there was a choice).
        choice: ``recommender_choice`` (validation figures, candidate recall, the ranker's
            settings or why it was not trained); copied as ``choice``.
        ranker_importance: each ranker feature's gain, splits and gain share.
        ranker_trials: one row per trial of the ranker's search (their number and time).
    """
    has_oracle = bool(oracle_evaluation.get("available"))
    per_user = _with_oracle(per_user, oracle_per_user, oracle_evaluation)
    group_table = _with_oracle(group_table, oracle_group_table, oracle_evaluation)
    if has_oracle:
        evaluation = {**evaluation, "oracle": oracle_evaluation["oracle"]}
    scorers = [s for s in REC_SCORERS if s in evaluation]
    served = evaluation.get("served", "model")
    if served not in scorers or served == "oracle":
        raise ValueError(f"the served recommender {served!r} was not evaluated ({scorers})")
    report, intervals = _scorer_figures(per_user, evaluation, scorers, bootstrap)
    groups, group_intervals, group_difference = _group_summary(
        group_table, bootstrap, ("model", served)
    )
    report.update(
        {
            "served": served,
            "groups": groups,
            "intervals": intervals,
            **_paired_differences(per_user, report, served, bootstrap),
            "group_intervals": group_intervals,
            "group_difference": group_difference,
            "sizes": _rec_sizes(evaluation, group_table, bootstrap),
            **_ranker_parts(choice, ranker_importance, ranker_trials),
        }
    )
    if not has_oracle:
        report["oracle_absent_reason"] = oracle_evaluation.get("reason")
    return report


def _scorer_figures(
    per_user: pd.DataFrame, evaluation: dict, scorers: list[str], bootstrap: dict
) -> tuple[dict, dict]:
    """Each scorer's figures and their intervals over test users."""
    report: dict = {}
    intervals: dict = {}
    for s in scorers:
        rows = _by_user(per_user, s)
        report[s] = summarise_ranking(rows, evaluation[s]["coverage"])
        intervals[s] = _interval_dict(
            REC_INTERVAL_METRICS, user_bootstrap(_ranking_statistic(rows), len(rows), **bootstrap)
        )
    return report, intervals


def _paired_differences(per_user: pd.DataFrame, report: dict, served: str, bootstrap: dict):
    """LightFM minus each baseline (``difference``), the served recommender minus every other
    scorer but the oracle (``served_difference``) and each recommender minus popularity
    (``popularity_difference``), each pair resampled once."""
    pairs: dict[tuple[str, str], dict] = {}

    def paired(a: str, b: str) -> dict:
        if (a, b) not in pairs:
            pairs[a, b] = _paired_difference(per_user, report, a, b, bootstrap)
        return pairs[a, b]

    others = [s for s in REC_SCORERS if s in report and s not in (served, "oracle")]
    return {
        "difference": {
            f"model_vs_{other}": paired("model", other) for other in REC_COMPARED if other in report
        },
        "served_difference": {f"{served}_vs_{o}": paired(served, o) for o in others},
        "popularity_difference": {
            f"{s}_vs_popularity": paired(s, "popularity")
            for s in BEATS_POPULARITY
            if s in report and "popularity" in report
        },
    }


def _rec_sizes(evaluation: dict, group_table: pd.DataFrame, bootstrap: dict) -> dict:
    return {
        "test_users": evaluation["model"]["evaluated_users"],
        **(
            {"test_users_sampled_from": evaluation["sampled_test_users"]["of"]}
            if "sampled_test_users" in evaluation
            else {}
        ),
        "test_interactions": evaluation["model"]["test_interactions"],
        "groups": int(group_table["group"].nunique()) if len(group_table) else 0,
        "bootstrap_resamples": bootstrap["n_resamples"],
    }


def _ranker_parts(
    choice: dict | None, importance: pd.DataFrame | None, trials: pd.DataFrame | None
) -> dict:
    """The choice as it was recorded, the ranker's search (trials, seconds) and its
    features' importances, where there are any."""
    parts: dict = {"choice": choice} if choice else {}
    if trials is not None and len(trials):
        seconds = _finite(trials["seconds"].sum()) if "seconds" in trials else None
        parts["ranker_search"] = {"trials": int(len(trials)), "seconds": seconds}
    if importance is not None and len(importance):
        parts["ranker_importance"] = [
            {k: _json_value(v) for k, v in row.items()} for row in importance.to_dict("records")
        ]
    return parts


def _json_value(value):
    """A table cell as JSON: text as is, integers as ints, other numbers finite or null."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    return _finite(value)


def _paired_difference(
    per_user: pd.DataFrame, report: dict, scorer: str, other: str, bootstrap: dict
) -> dict:
    """``scorer`` minus ``other``, user by user, with its paired interval."""
    a, b = _by_user(per_user, scorer), _by_user(per_user, other)
    if not a["user"].equals(b["user"]):
        raise ValueError(f"{scorer} and {other} were evaluated on different test users")
    estimates = {m: report[scorer][m] - report[other][m] for m in REC_INTERVAL_METRICS}
    return _difference(
        REC_INTERVAL_METRICS,
        estimates,
        user_bootstrap(_ranking_statistic(a, b), len(a), **bootstrap),
    )


def search_summary(
    comparison: dict, best: dict, trials: pd.DataFrame, baseline_tuning: dict
) -> dict:
    """``recommendation_search.json``: the chosen variant, the winner, the trial counts and
    the strong baselines' tuning."""
    return {
        "best": best,
        "baselines": baseline_tuning,
        "training_variants": comparison,
        "trials": int(len(trials)),
        "pruned": int((trials["state"] == "PRUNED").sum()) if len(trials) else 0,
        "failed": int((trials["state"] == "FAIL").sum()) if len(trials) else 0,
    }


def plot_recommendation(
    trials: pd.DataFrame,
    best: dict,
    group_table: pd.DataFrame,
    oracle_group_table: pd.DataFrame,
    oracle_evaluation: dict,
    groups: dict,
) -> tuple[plt.Figure, plt.Figure]:
    """Hyperparameter effects on the search's objective (``best["objective"]``), and group
    playlists by group size."""
    table = _with_oracle(group_table, oracle_group_table, oracle_evaluation)
    return (
        _plot_hyperparameters(trials, best["objective"]),
        _plot_group_sizes(table, groups["reference_strategy"]),
    )


def _search_sentence(search: dict) -> str:
    best = search["best"]
    failed = search.get("failed", 0)
    found = (
        f"Search: {search['trials']} trials ({search['pruned']} pruned"
        + (f", {failed} failed" if failed else "")
        + f"); trained: trial #{best.get('best_trial', '?')}, validation {best['objective']} "
        f"{best['validation_value']:.4f}"
    )
    if sampled := best.get("selection_sampled"):
        found += (
            f"; the variants, the search and the baselines' grids saw a random "
            f"{sampled['users']} of the {sampled['of']} users "
            "(`recommendation.validation.max_users`), the final models all of them"
        )
    return found + _defaults_verdict(best) + _budget_sentences(best.get("budget"))


def _defaults_verdict(best: dict) -> str:
    """The end of the search sentence: whether the search beat the default configuration."""
    if best.get("improved_on_defaults", True):
        return "."
    top = best.get("search_best") or {}
    gain = top.get("gain_over_defaults")
    if gain:
        low, high = gain["interval"]
        interval = f"[{low:+.4f}, {high:+.4f}]" if low is not None else "no interval"
        return (
            f". The search's best other trial, #{top['trial']} "
            f"({top['validation_value']:.4f}), is **not significantly better than the default "
            f"configuration** on validation (paired difference {gain['estimate']:+.4f}, 95% "
            f"interval {interval}), so the defaults are trained."
        )
    return (
        ": **nothing better than the default configuration** (the first trial) "
        "was found, so the defaults are trained."
    )


def _budget_sentences(budget: dict | None) -> str:
    """How many of the planned trials a search ran and whether its time cap cut it short
    (nothing for outputs written before searches recorded their budget)."""
    if not budget:
        return ""
    said = f" {budget['trials_run']} of {budget['trials_planned']} planned trials ran."
    if budget["cut_by_time_cap"]:
        said += (
            f" The time cap ({budget['time_cap_seconds']:g} s) stopped the search early, so a "
            "run on a less busy machine may choose another model."
        )
    return said


def recommendation_markdown(report: dict, search: dict, groups: dict) -> str:
    """``recommendation_metrics.md``: which recommender is served and why, the figures with
    intervals, and in words which differences between the served recommender (and LightFM)
    and the others are significant."""
    scorers = [s for s in REC_SCORERS if s in report]
    served = report.get("served", "model")
    lines = _rec_header_lines(report, search)
    lines += _served_lines(report)
    if "choice" in report:
        lines += ["## Every recommender on the test split", ""]
    if "oracle" not in scorers:
        lines += [f"No oracle: {report['oracle_absent_reason']}.", ""]
    lines += _metric_table(report, scorers, REC_HEADLINE, served)
    lines += _served_difference_lines(report)
    lines += _ranker_lines(report)
    lines += ["", "## Is LightFM (the model) better than its baselines?", ""]
    lines += _difference_lines(
        "model − popularity (paired over test users)",
        "the model",
        "popularity",
        _pick(report["difference"]["model_vs_popularity"]),
    )
    lines += _difference_lines(
        "model − random-from-history baseline",
        "the model",
        "the history baseline",
        _pick(report["difference"]["model_vs_baseline"]),
    )
    for other, title, name in STRONG_BASELINES:
        if f"model_vs_{other}" in report["difference"]:
            lines += _difference_lines(
                f"model − {title}",
                "the model",
                name,
                _pick(report["difference"][f"model_vs_{other}"]),
            )
    lines += _strong_baseline_lines(report, search)
    lines += _group_lines(report, scorers, groups)
    return "\n".join(lines) + "\n"


# How the Markdown names each recommender in sentences and in tables.
REC_NAMES = {
    "ranker": "the ranker",
    "model": "LightFM",
    "ease": "EASE",
    "als": "ALS",
    "popularity": "popularity",
    "defaults": "LightFM with the default hyperparameters",
    "baseline": "the random-from-history baseline",
    "oracle": "the oracle",
}
REC_LABELS = {
    "ranker": "ranker",
    "model": "LightFM (`model`)",
    "ease": "EASE",
    "als": "ALS",
    "popularity": "popularity",
    "defaults": "LightFM defaults (`defaults`)",
    "baseline": "history baseline (`baseline`)",
}
# The order in which the served recommender is compared with the others.
SERVED_ORDER = ("ranker", "model", "ease", "als", "defaults", "popularity", "baseline")
RANKER_TOP_FEATURES = 12


def _name(scorer: str, capital: bool = False) -> str:
    name = REC_NAMES.get(scorer, scorer)
    return name[0].upper() + name[1:] if capital else name


def _names(scorers: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = [_name(s) for s in scorers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _signed_interval(d: dict) -> str:
    """A paired difference with its interval: ``+0.0100 [+0.0050, +0.0150]``."""
    low, high = d["interval"]
    if low is None or high is None:
        return f"{_fmt_signed(d['estimate'])} (no interval)"
    return f"{_fmt_signed(d['estimate'])} [{low:+.4f}, {high:+.4f}]"


def _served_lines(report: dict) -> list[str]:
    """Which recommender is served and why: each candidate's validation figure with its
    interval, the served one's paired difference from each, the users and the candidates'
    recall. Nothing for outputs written before there was a choice."""
    choice = report.get("choice")
    if not choice:
        return []
    served, metric = report["served"], choice.get("metric", "ndcg_at_10")
    validation = {_evaluation_name(n): v for n, v in (choice.get("validation") or {}).items()}
    minus = {_evaluation_name(n): v for n, v in (choice.get("served_minus") or {}).items()}
    ranker = choice.get("ranker") or {}
    lines = [
        "## Served recommender",
        "",
        _choice_sentence(served, metric, validation, minus, ranker),
    ]
    if validation:
        lines += [
            "",
            f"| recommender | validation {metric} [95%] | {served} − it, paired [95%] |",
            "|---|---:|---:|",
        ]
        for n in sorted(validation, key=lambda n: -(validation[n][metric] or 0.0)):
            label = f"**{REC_LABELS.get(n, n)}** (served)" if n == served else REC_LABELS.get(n, n)
            cell = _signed_interval(minus[n]) if n in minus else "–"
            lines.append(
                f"| {label} | {_fmt(validation[n][metric], validation[n]['interval'])} | {cell} |"
            )
    lines += ["", *_choice_sizes(choice, ranker), ""]
    return lines


def _choice_sentence(served: str, metric: str, validation: dict, minus: dict, ranker: dict) -> str:
    """In words: what is served, by how much it leads, and where the ranker stands."""
    figure = (
        _fmt(validation[served][metric], validation[served]["interval"])
        if (served in validation)
        else "–"
    )
    best = (
        f"validation {metric} {figure}{_lead(minus).rstrip('.')}. (The rule, from the simplest up: "
        "popularity, unless the best single personal recommender is shown better; that one, "
        "unless the ranker is shown better than it; shown: a paired 95% interval above 0.)"
    )
    if "skipped" in ranker:
        said = (
            f"No ranker was trained: {ranker['skipped']}. {_name(served, True)} is served: {best}"
        )
    elif served == "ranker":
        said = f"The ranker is served: {best}"
    elif "ranker" in minus:
        said = (
            f"The ranker is **not shown** to be better on validation {metric} "
            f"({served} − ranker {_signed_interval(minus['ranker'])}), so {_name(served)} is "
            f"served: {best}"
        )
    else:
        said = f"{_name(served, True)} is served: {best}"
    if served == "popularity":
        said += " **Nothing is shown to beat popularity** on validation."
    return said


def _lead(minus: dict) -> str:
    """The end of the choice's sentence: over which recommenders the served one's validation
    lead is significant (its paired 95% interval above 0) and over which it is not."""
    above = [n for n in SERVED_ORDER if n in minus and (minus[n]["interval"][0] or 0.0) > 0]
    level = [n for n in SERVED_ORDER if n in minus and n not in above]
    said = []
    if above:
        said.append(f"significantly above {_names(above)}")
    if level:
        said.append(
            f"**not significantly** above {_names(level)} (the paired 95% interval holds 0)"
        )
    return (", " + "; ".join(said) if said else "") + "."


def _choice_sizes(choice: dict, ranker: dict) -> list[str]:
    """How many validation users trained the ranker and chose, and the candidates' recall."""
    users, said = choice.get("users") or {}, []
    trained = "skipped" not in ranker
    if "choice" in users:
        said.append(
            f"Chosen on {users['choice']} validation users"
            + (
                f" held out of the ranker's training; the ranker learnt from the validation "
                f"likes of {users['ranker_training']} others."
                if trained and "ranker_training" in users
                else "."
            )
        )
    if choice.get("candidate_recall") is not None:
        said.append(
            "The candidates (each scorer's best unplayed tracks, pooled: "
            f"{choice.get('candidates_per_user', 0):.0f} a user on average) hold "
            f"{choice['candidate_recall']:.1%} of the validation likes"
            + ("; the ranker re-orders only these." if trained else ".")
        )
    return [" ".join(said)] if said else []


def _served_difference_lines(report: dict) -> list[str]:
    """The served recommender minus each other on the test split (paired over test users),
    a verdict per recommender on the choice's metric, and whether anything beats
    popularity."""
    if "choice" not in report:
        return []
    served, metric = report["served"], report["choice"].get("metric", "ndcg_at_10")
    diffs = report["served_difference"]
    others = [o for o in SERVED_ORDER if f"{served}_vs_{o}" in diffs]
    metrics = list(dict.fromkeys(("precision_at_10", "ndcg_at_10", metric)))
    lines = [
        "",
        "## Is the served recommender better than each of the others?",
        "",
        f"{_name(served, True)} minus each other recommender, paired over the "
        f"{report['sizes']['test_users']} test users; the verdict is on {metric}, the metric "
        "the choice was made on.",
        "",
        f"| {served} − … | "
        + " | ".join(f"{m} [95%]" for m in metrics)
        + f" | verdict ({metric}) |",
        "|---|" + "---:|" * len(metrics) + "---|",
    ]
    verdicts: dict[str, list[str]] = {}
    for o in others:
        d = diffs[f"{served}_vs_{o}"]
        verdict = _verdict(d[metric], metric)
        verdicts.setdefault(verdict, []).append(o)
        lines.append(
            f"| {REC_LABELS.get(o, o)} | "
            + " | ".join(_signed_interval(d[m]) for m in metrics)
            + f" | {verdict} |"
        )
    said = [
        f"{verdict} than {_names(names)}"
        if verdict != "not significantly different"
        else f"not significantly different from {_names(names)}"
        for verdict, names in verdicts.items()
    ]
    if said:
        lines += ["", f"On the test split {_name(served)} is " + "; ".join(said) + f" ({metric})."]
    return [*lines, *_popularity_lines(report, metric)]


def _verdict(d: dict, metric: str) -> str:
    if not d["significant"]:
        return "not significantly different"
    better = (d["estimate"] > 0) != (metric in LOWER_IS_BETTER)
    return "significantly better" if better else "significantly **worse**"


def _popularity_lines(report: dict, metric: str) -> list[str]:
    """Nothing beats popularity here, with every recommender's paired test difference from
    it, when popularity is served or no recommender is significantly above it on ``metric``;
    a popularity that is served yet beaten on test is said too."""
    against = report.get("popularity_difference") or {}
    if "popularity" not in report or not against:
        return []
    rows = {k.removesuffix("_vs_popularity"): d[metric] for k, d in against.items()}
    beating = [s for s, d in rows.items() if _verdict(d, metric) == "significantly better"]
    figures = "; ".join(f"{_name(s)} − popularity {_signed_interval(d)}" for s, d in rows.items())
    if not beating:
        why = (
            "Popularity is served: nothing was better on validation, and on test"
            if report["served"] == "popularity"
            else "On test"
        )
        return [
            "",
            f"**Nothing beats popularity here.** {why} no recommender is significantly above "
            f"popularity on {metric} ({figures}).",
        ]
    if report["served"] == "popularity":
        return [
            "",
            f"Popularity is served (the best on validation), but on test {_names(beating)} "
            f"{'is' if len(beating) == 1 else 'are'} significantly above it on {metric} "
            f"({figures}).",
        ]
    return []


def _ranker_lines(report: dict) -> list[str]:
    """The ranker: its search, its settings and its features' importances (or why it was
    not trained)."""
    ranker = (report.get("choice") or {}).get("ranker")
    if not ranker:
        return []
    lines = ["", "## Ranker", ""]
    if "skipped" in ranker:
        return [*lines, f"Not trained: {ranker['skipped']}."]
    pooled = [_evaluation_name(n) for n in report["choice"].get("validation", {}) if n != "ranker"]
    search = report.get("ranker_search") or {}
    took = f" in {search['seconds']:.0f} s" if search.get("seconds") is not None else ""
    trials = f" {search['trials']} trials{took}" if search else ""
    settings = ", ".join(
        f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
        for k, v in ranker["params"].items()
    )
    lines.append(
        "LightGBM lambdarank re-ranking the pooled candidates"
        + (f" of {_names(pooled)}" if pooled else "")
        + f" with {len(ranker.get('features', []))} features. Search:{trials} (Optuna TPE), "
        "each scored by NDCG@10 on the validation users held out of its training; best: "
        f"{settings}; {ranker['rounds']} boosting rounds; validation NDCG@10 "
        f"{ranker['validation_ndcg_at_10']:.4f}. The ranker is refit with these settings on "
        "every validation user with a like among their candidates."
    )
    importance = report.get("ranker_importance") or []
    if importance:
        top = sorted(importance, key=lambda r: -(r.get("gain_share") or 0.0))
        lines += [
            "",
            f"Features by share of the total gain (top {min(len(top), RANKER_TOP_FEATURES)} "
            f"of {len(top)}):",
            "",
            "| feature | gain share | splits |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {r['feature']} | {(r.get('gain_share') or 0.0):.1%} | {r.get('splits', '–')} |"
            for r in top[:RANKER_TOP_FEATURES]
        ]
    return lines


STRONG_BASELINES = (
    ("als", "ALS (implicit, tuned on validation)", "ALS"),
    ("ease", "EASE (tuned on validation)", "EASE"),
    ("defaults", "LightFM with the default hyperparameters", "the defaults"),
)


def _strong_baseline_lines(report: dict, search: dict) -> list[str]:
    """Which strong baseline, if any, beats the model on precision@10, and EASE's absence."""
    lines = []
    strong = [s for s in ("als", "ease") if s in report]
    better = [
        s
        for s in strong
        if report["difference"][f"model_vs_{s}"]["precision_at_10"]["estimate"] < 0
    ]
    significant = [
        s for s in better if report["difference"][f"model_vs_{s}"]["precision_at_10"]["significant"]
    ]
    if significant:
        lines.append(
            "**A strong baseline beats the LightFM model** on precision@10: "
            + ", ".join(f"{s.upper()} ({report[s]['precision_at_10']:.4f})" for s in significant)
            + f" against {report['model']['precision_at_10']:.4f}."
        )
    elif better:
        lines.append(
            "On precision@10 " + ", ".join(s.upper() for s in better) + " scores above the "
            "model, but not significantly."
        )
    elif strong:
        lines.append("The model is above every strong baseline on precision@10.")
    if "model_vs_defaults" in report["difference"]:
        d = report["difference"]["model_vs_defaults"]["precision_at_10"]
        lo, hi = d["interval"]
        verdict = (
            "beats" if d["significant"] and d["estimate"] > 0 else "does **not** demonstrably beat"
        )
        interval = f" [{lo:+.4f}, {hi:+.4f}]" if lo is not None else ""
        lines.append(
            f"The searched model {verdict} the default configuration on the test split "
            f"(precision@10 difference {d['estimate']:+.4f}{interval})."
        )
    skipped = (search.get("baselines") or {}).get("ease", {}).get("skipped")
    if skipped:
        lines.append(f"EASE was not run: {skipped}.")
    return [*lines, ""] if lines else []


def _sampled_from(sizes: dict) -> str:
    """Where the test users are a sample: of how many, and the setting that says so."""
    if "test_users_sampled_from" not in sizes:
        return ""
    return (
        f" (a random sample of the {sizes['test_users_sampled_from']} users with held-out "
        "likes, `recommendation.evaluation.max_users`: coverage is over their lists)"
    )


def _rec_header_lines(report: dict, search: dict) -> list[str]:
    """Title, the test split's sizes, the training data chosen and what the search found."""
    comparison = search["training_variants"]
    sizes, objective = report["sizes"], comparison["objective"]
    return [
        "# Recommendation",
        "",
        f"Test split: **{sizes['test_users']} users** with **{sizes['test_interactions']} "
        f"held-out likes**{_sampled_from(sizes)}; 95% intervals from "
        f"{sizes['bootstrap_resamples']} bootstrap resamples of test users (coverage is "
        "catalogue-wide: no interval). LightFM's training data: "
        f"**{search['best']['variant']}** (validation {objective}: "
        + ", ".join(f"{n} {v[objective]:.4f}" for n, v in comparison["variants"].items())
        + f"{_variant_gain(comparison)}). "
        + _search_sentence(search),
        "",
    ]


def _variant_gain(comparison: dict) -> str:
    """The paired validation gain of the best variant over the smallest, and the verdict."""
    gain = comparison.get("gain_over_smallest")
    if not gain:
        return ""
    low, high = gain["interval"]
    interval = f"[{low:+.4f}, {high:+.4f}]" if low is not None else "no interval"
    said = f"; {gain['variant']} − {gain['over']}: {gain['estimate']:+.4f} {interval}"
    if comparison["chosen"] == gain["over"]:
        said += f", **not significant**, so the smaller training set, {gain['over']}, is used"
    return said


def _metric_table(
    report: dict, scorers: list[str], metrics: Sequence[str], model: str
) -> list[str]:
    """Each metric of every scorer with its interval, and ``model``'s share of the oracle
    where there is one (for higher-is-better metrics only)."""
    has_oracle = "oracle" in scorers
    header = [*scorers, f"{model} / oracle"] if has_oracle else scorers
    lines = ["| metric | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for m in metrics:
        cells = [_fmt(report[s].get(m), report["intervals"][s].get(m)) for s in scorers]
        if has_oracle:
            share = _oracle_share(report[model].get(m), report["oracle"].get(m), m)
            cells.append("–" if share is None else f"{share:.1%}")
        lines.append(f"| {_label(m)} | " + " | ".join(cells) + " |")
    if has_oracle:
        lines += [
            "",
            f"{model} / oracle: {model} as a share of the oracle, where higher is better.",
        ]
    return lines


def _oracle_share(value: float | None, oracle: float | None, metric: str) -> float | None:
    """``value`` as a share of the oracle's; None where lower is better (a share above 100%
    would read as beating the oracle) or undefined."""
    if metric in LOWER_IS_BETTER or not oracle or value is None:
        return None
    return value / oracle


def _group_lines(report: dict, scorers: list[str], g: dict) -> list[str]:
    """Group playlists: one table per strategy, the clustering improvement and the paired
    difference of the model (and of the served recommender) from popularity."""
    lines = [
        f"## Group playlists ({report['sizes']['groups']} groups of {g['min_size']}-"
        f"{g['max_size']}, {g['length']} tracks; reference strategy: "
        f"{g['reference_strategy']}; intervals over groups)",
        "",
    ]
    if not report["groups"]:
        lines += ["Not evaluated: too few users for a group.", ""]
    for strategy, by_scorer in report["groups"].items():
        present = [s for s in scorers if s in by_scorer]
        intervals = report["group_intervals"][strategy]
        lines += [
            f"### {strategy}",
            "",
            "| metric | " + " | ".join(present) + " |",
            "|---|" + "---:|" * len(present),
        ]
        lines += [
            f"| {_label(m)} | "
            + " | ".join(_fmt(by_scorer[s][m], intervals[s].get(m)) for s in present)
            + " |"
            for m in GROUP_HEADLINE
        ]
        with_ratio = {s: by_scorer[s].get("groups_with_a_ratio") for s in present}
        if any(n is not None and n < report["sizes"]["groups"] for n in with_ratio.values()):
            lines += [
                "",
                "min_max_precision_ratio is defined only where some member has a hit; groups "
                "with one: "
                + ", ".join(f"{s} {n}" for s, n in with_ratio.items() if n is not None)
                + f" of {report['sizes']['groups']}.",
            ]
        compared = list(dict.fromkeys(("model", report.get("served", "model"))))
        for name in compared:
            improvement = by_scorer.get(name, {}).get("clustering_improvement_vs_baseline")
            if improvement is not None:
                lines += [
                    "",
                    f"Clustering score of {'the model' if name == 'model' else _name(name)} vs the "
                    f"baseline: {improvement:+.1%} (positive = more coherent).",
                ]
        lines.append("")
        for name in compared:
            diff = report["group_difference"].get(f"{name}_vs_popularity_{strategy}")
            if diff:
                lines += _difference_lines(
                    f"{strategy}: {name} − popularity (paired over groups)",
                    "the model" if name == "model" else _name(name),
                    "popularity",
                    {m: diff[m] for m in ("recall_mean", "ndcg_mean", "recall_min")},
                )
    return lines


def _pick(diff: dict) -> dict:
    return {
        m: diff[m]
        for m in (
            "auc",
            "precision_at_10",
            "recall_at_10",
            "ndcg_at_10",
            "mrr",
            "hit_rate_at_10",
            "hit_rate_at_100",
        )
    }


def recommendation_mlflow(report: dict) -> dict:
    """MLflow metrics, grouped by ``/`` as the UI shows them: the served recommender's figures
    as headline ``rec/test/<metric>`` (LightFM's in outputs without a served one), the other
    scorers' as ``rec/test/<scorer>/<metric>`` (a served recommender other than LightFM under
    its own name too, so its column is filled whichever is served), interval bounds
    (``.../low``, ``.../high``), LightFM's differences (``rec/test/model_vs_<scorer>/...``),
    the served one's (``rec/test/served_vs_<scorer>/...``), its share of the oracle
    (``rec/test/model_fraction_of_oracle/<metric>``: the name the runs table knows), each
    recommender's validation NDCG@10 from the choice (``rec/validation/<scorer>/ndcg_at_10``,
    ``rec/validation/served_vs_<scorer>/ndcg_at_10``, ``rec/validation/candidate_recall``) and
    the group playlists (``rec/groups/<strategy>/<scorer>/<metric>``)."""
    scorers = [s for s in REC_SCORERS if s in report]
    served = report.get("served", "model")
    metrics = {}
    for s in scorers:
        prefixes = [_scorer_prefix("rec/test", s, served)]
        if s == served and s != "model":
            prefixes.append(f"rec/test/{s}")
        for base in prefixes:
            metrics.update({f"{base}/{m}": v for m, v in report[s].items()})
            for m, (lo, hi) in report["intervals"][s].items():
                metrics.update({f"{base}/{m}/low": lo, f"{base}/{m}/high": hi})
    for pair, diff in report["difference"].items():
        metrics.update({f"rec/test/{pair}/{m}": d["estimate"] for m, d in diff.items()})
    for pair, diff in report.get("served_difference", {}).items():
        other = pair.removeprefix(f"{served}_vs_")
        metrics.update({f"rec/test/served_vs_{other}/{m}": d["estimate"] for m, d in diff.items()})
    if "oracle" in report:
        for m, oracle in report["oracle"].items():
            if (share := _oracle_share(report[served][m], oracle, m)) is not None:
                metrics[f"rec/test/model_fraction_of_oracle/{m}"] = share
    metrics.update(_validation_metrics(report.get("choice") or {}))
    metrics.update(
        {
            f"rec/groups/{st}/{s}/{m}": v
            for st, by in report["groups"].items()
            for s, vals in by.items()
            for m, v in vals.items()
        }
    )
    return mlflow_metrics(metrics)


def _validation_metrics(choice: dict) -> dict:
    """The choice's validation figures under the evaluation's names (LightFM: ``model``)."""
    metric = choice.get("metric", "ndcg_at_10")
    metrics = {}
    for name, v in (choice.get("validation") or {}).items():
        base = f"rec/validation/{_evaluation_name(name)}/{metric}"
        low, high = v["interval"]
        metrics.update({base: v[metric], f"{base}/low": low, f"{base}/high": high})
    for name, d in (choice.get("served_minus") or {}).items():
        metrics[f"rec/validation/served_vs_{_evaluation_name(name)}/{metric}"] = d["estimate"]
    if choice.get("candidate_recall") is not None:
        metrics["rec/validation/candidate_recall"] = choice["candidate_recall"]
    return metrics


def _scorer_prefix(prefix: str, scorer: str, headline: str) -> str:
    """``prefix`` for the headline scorer, ``prefix/scorer`` for the others."""
    return prefix if scorer == headline else f"{prefix}/{scorer}"


LOG_SCALED_HYPERPARAMETERS = {"learning_rate", "item_alpha", "user_alpha", "no_components"}


def _plot_hyperparameters(trials: pd.DataFrame, objective: str) -> plt.Figure:
    """Each searched hyperparameter against the search's validation ``objective`` (the
    trial's value) and group NDCG, one dot per completed trial."""
    params = [c for c in trials.columns if c.startswith("params_")]
    targets = [("value", f"validation {objective}")]
    if objective != "group_ndcg":
        targets.append(("user_attrs_group_ndcg", "validation group_ndcg"))
    fig, axes = plt.subplots(
        len(targets),
        max(len(params), 1),
        squeeze=False,
        figsize=(3.2 * max(len(params), 1), 3 * len(targets)),
    )
    done = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    for i, (col, label) in enumerate(targets):
        for j, p in enumerate(params):
            ax = axes[i, j]
            if col in done and len(done):
                x = done[p]
                numeric = pd.api.types.is_numeric_dtype(x)
                ax.scatter(x if numeric else x.astype(str), done[col], s=18, alpha=0.8)
                if numeric and p.removeprefix("params_") in LOG_SCALED_HYPERPARAMETERS:
                    ax.set_xscale("log")
            ax.set_xlabel(p.removeprefix("params_"))
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"Hyperparameter effects on {objective} ({len(done)} completed Optuna trials)")
    fig.tight_layout()
    return readable_log_ticks(fig)


def _plot_group_sizes(table: pd.DataFrame, strategy: str) -> plt.Figure:
    """Clustering score and member NDCG against group size: model (reference strategy),
    popularity, oracle (if any) and the history baseline."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if table.empty:
        axes[0].text(0.5, 0.5, "no groups evaluated", ha="center", va="center")
    else:
        pick = table[(table["strategy"] == strategy) | (table["scorer"] == "baseline")]
        for scorer, part in pick.groupby("scorer"):
            by_size = part.groupby("size")[["clustering", "ndcg_mean"]].mean()
            axes[0].plot(by_size.index, by_size["clustering"], marker="o", label=scorer)
            axes[1].plot(by_size.index, by_size["ndcg_mean"], marker="o", label=scorer)
        axes[0].legend()
    axes[0].set(xlabel="group size", ylabel="clustering score (lower = more coherent)")
    axes[1].set(xlabel="group size", ylabel="mean member NDCG@20")
    fig.suptitle(f"Group playlists by group size ({strategy})")
    fig.tight_layout()
    return fig


# ---- skip prediction ---------------------------------------------------------------------------

SKIP_SCORERS = ("baseline", "linear_svc", "final_uncalibrated", "final", "oracle")
SKIP_METRICS = (*CONFUSION_METRICS, *RANK_METRICS, *CALIBRATION_METRICS)
# Scorers whose score is a probability (LinearSVC's is a margin): calibration is theirs.
PROBABILITY_SCORERS = ("final_uncalibrated", "final", "oracle")
CALIBRATION_BINS = 10


def classification_metrics(
    y: np.ndarray,
    predicted: np.ndarray,
    score: np.ndarray | None,
    probability: np.ndarray | None = None,
) -> dict[str, float]:
    """scikit-learn's figures for one scorer; rank metrics need a score and both classes,
    calibration metrics (Brier score, expected calibration error) a probability."""
    p, r, f, _ = precision_recall_fscore_support(
        y, predicted, labels=[False, True], zero_division=0
    )
    out = {
        "accuracy": accuracy_score(y, predicted),
        "balanced_accuracy": balanced_accuracy_score(y, predicted),
        "precision_skip": p[1],
        "recall_skip": r[1],
        "f1_skip": f[1],
        "precision_listen": p[0],
        "recall_listen": r[0],
        "f1_listen": f[0],
    }
    if score is not None and len(np.unique(y)) == 2:
        out["roc_auc"] = roc_auc_score(y, score)
        out["pr_auc"] = average_precision_score(y, score)
    if probability is not None and len(y):
        out["brier_score"] = brier_score_loss(y, probability)
        sums = BinaryRows(y, np.zeros(len(y))).calibration_table(probability, CALIBRATION_BINS)
        ece = calibration_metrics(np.asarray(sums.sum(axis=0)).ravel(), CALIBRATION_BINS)
        out["expected_calibration_error"] = ece["expected_calibration_error"]
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[False, True]).ravel()
    out.update(tn=tn, fp=fp, fn=fn, tp=tp)
    return {k: float(v) for k, v in out.items()}


def _skip_statistic(
    rows: BinaryRows,
    predicted: np.ndarray,
    score: np.ndarray | None,
    probability: np.ndarray | None = None,
    max_score_levels: int | None = None,
):
    """Resampled CONFUSION_METRICS (RANK_METRICS with a score, on at most
    ``max_score_levels`` score levels; CALIBRATION_METRICS with a probability), shape
    (metrics, R)."""
    confusion = rows.confusion(predicted)
    levels = rows.score_levels(score, max_score_levels) if score is not None else None
    bins = (
        rows.calibration_table(probability, CALIBRATION_BINS) if probability is not None else None
    )

    def statistic(counts: np.ndarray) -> np.ndarray:
        tn, fp, fn, tp = confusion.T @ counts.T
        out = confusion_metrics(tn, fp, fn, tp)
        if levels is not None:
            pos, neg = ((m.T @ counts.T).T for m in levels)
            out.update(rank_metrics(pos, neg))
        if bins is not None:
            out.update(calibration_metrics(bins.T @ counts.T, CALIBRATION_BINS))
        return np.vstack([out[m] for m in SKIP_METRICS if m in out])

    return memoised(statistic)


def _paired(stat_a, stat_b, n_metrics: int):
    """Resampled differences of the first ``n_metrics`` figures both statistics share."""
    return lambda counts: stat_a(counts)[:n_metrics] - stat_b(counts)[:n_metrics]


def _skip_predictions(
    predictions: pd.DataFrame, oracle_predictions: pd.DataFrame, oracle: dict
) -> pd.DataFrame:
    """The test plays' predictions, with the oracle's columns where there is an oracle."""
    if not oracle.get("available"):
        return predictions
    if len(oracle_predictions) != len(predictions):
        raise ValueError("oracle and model predictions cover different test rows")
    return pd.concat([predictions, oracle_predictions.set_index(predictions.index)], axis=1)


def _skip_scorers(frame) -> list[str]:
    return [s for s in SKIP_SCORERS if f"{s}_predicted" in frame or s in frame]


def skip_report(
    predictions: pd.DataFrame,
    oracle_predictions: pd.DataFrame,
    oracle_evaluation: dict,
    bootstrap: dict,
    max_score_levels: int | None = None,
) -> dict:
    """``skip_prediction_metrics.json``: scikit-learn's figures per scorer, their intervals
    over test users (``max_score_levels``: as ``_skip_statistic``), the final model's paired
    differences and the sizes."""
    predictions = _skip_predictions(predictions, oracle_predictions, oracle_evaluation)
    y = predictions["skipped"].to_numpy(dtype=bool)
    rows = BinaryRows(y, predictions["user_id"].to_numpy())
    both_classes = len(np.unique(y)) == 2
    report: dict = {}
    intervals: dict = {}
    statistics = {}
    for s in _skip_scorers(predictions):
        predicted = predictions[f"{s}_predicted"].to_numpy(dtype=bool)
        score = predictions[f"{s}_score"].to_numpy() if f"{s}_score" in predictions else None
        probability = score if s in PROBABILITY_SCORERS else None
        score = score if both_classes else None
        report[s] = classification_metrics(y, predicted, score, probability)
        statistics[s] = _skip_statistic(rows, predicted, score, probability, max_score_levels)
        names = [m for m in SKIP_METRICS if m in report[s]]
        intervals[s] = _interval_dict(
            names, user_bootstrap(statistics[s], rows.n_users, **bootstrap)
        )
    difference = {}
    for a, b, key in (
        ("final", "baseline", "model_vs_rule"),
        ("final", "linear_svc", "final_vs_linear_svc"),
        ("final", "final_uncalibrated", "calibrated_vs_uncalibrated"),
    ):
        if a not in report or b not in report:
            continue
        names = [m for m in SKIP_METRICS if m in report[a] and m in report[b]]
        bounds = user_bootstrap(
            _paired(statistics[a], statistics[b], len(names)), rows.n_users, **bootstrap
        )
        difference[key] = _difference(
            names, {m: report[a][m] - report[b][m] for m in names}, bounds
        )
    report.update(
        {
            "intervals": intervals,
            "difference": difference,
            "sizes": {
                "test_plays": len(y),
                "test_users": rows.n_users,
                "skip_share": _finite(y.mean()) if len(y) else None,
                "bootstrap_resamples": bootstrap["n_resamples"],
            },
        }
    )
    if not oracle_evaluation.get("available"):
        report["oracle_absent_reason"] = oracle_evaluation.get("reason")
    return report


def skip_mlflow(report: dict) -> dict:
    """MLflow metrics: the final model's figures as headline ``skip/test/<metric>``, other
    scorers' as ``skip/test/<scorer>/<metric>``, and the final model's differences."""
    metrics = {
        f"{_scorer_prefix('skip/test', s, 'final')}/{m}": v
        for s in _skip_scorers(report)
        for m, v in report[s].items()
    }
    metrics.update(
        {
            f"skip/test/{pair}/{m}": d["estimate"]
            for pair, diff in report["difference"].items()
            for m, d in diff.items()
        }
    )
    return mlflow_metrics(metrics)


def plot_skip(
    report: dict,
    predictions: pd.DataFrame,
    oracle_predictions: pd.DataFrame,
    oracle_evaluation: dict,
    importance: pd.DataFrame,
) -> tuple[plt.Figure, plt.Figure, plt.Figure]:
    """Confusion matrices, ROC / precision-recall / calibration curves, permutation
    importance."""
    predictions = _skip_predictions(predictions, oracle_predictions, oracle_evaluation)
    scorers = _skip_scorers(report)
    return (
        _plot_confusions(report, scorers),
        _plot_curves(predictions, scorers),
        _plot_importance(importance),
    )


SKIP_MODEL_NAMES = {
    "hist_gradient_boosting": "histogram gradient boosting",
    "logistic_regression": "logistic regression",
}
SKIP_PARAM_NAMES = {"hgb_l2": "L2 regularisation", "lr_C": "inverse regularisation C"}


def skip_model_text(params: dict) -> str:
    """The search's chosen skip model in words: ``{"model": "hist_gradient_boosting",
    "hgb_learning_rate": 0.1, ...}`` -> "histogram gradient boosting (learning rate 0.1, ...)"."""
    settings = ", ".join(
        f"{_setting_name(k)} {f'{v:.3g}' if isinstance(v, float) else v}"
        for k, v in params.items()
        if k != "model"
    )
    model = str(params.get("model", "model"))
    name = SKIP_MODEL_NAMES.get(model, model)
    return f"{name} ({settings})" if settings else name


def _setting_name(key: str) -> str:
    """``hgb_max_leaf_nodes`` -> "max leaf nodes": without the model's prefix."""
    return SKIP_PARAM_NAMES.get(key) or key.partition("_")[2].replace("_", " ") or key


def _skip_caveats(selection: dict) -> list[str]:
    """What the reader should know before the figures: a search that did not beat the
    reference, features the data left empty, a genre rule that cannot discriminate."""
    lines = []
    used, available = selection.get("training_rows"), selection.get("training_rows_available")
    if used is not None and available is not None and used < available:
        lines.append(
            f"- Every model was fitted on a random **{used:,} of the {available:,} training "
            "plays** (`skip_prediction.training.max_train_rows`); validation and test use "
            "every play."
        )
    if not selection.get("beats_linear_svc_on_validation", True):
        lines.append(
            "- **The search found nothing better than the LinearSVC reference** on "
            "validation; its best is reported as `final` all the same."
        )
    if selection.get("unobserved_features"):
        lines.append(
            "- Left out of every model, no value in the training split: "
            + ", ".join(f"`{c}`" for c in selection["unobserved_features"])
            + "."
        )
    if str(selection.get("calibration", "")).startswith("none"):
        lines.append(
            f"- **The final model is not calibrated** ({selection['calibration']}): its "
            "`skip_probability` is the raw, balanced-weight one."
        )
    if selection.get("genre_rule_constant"):
        lines.append(
            "- No training play matches a favourite genre, so **the genre rule predicts SKIP "
            "for every play**: its figures are those of a constant answer."
        )
    return [*lines, ""] if lines else []


def skip_markdown(report: dict, selection: dict, importance: pd.DataFrame) -> str:
    """``skip_prediction_metrics.md``: figures with intervals, significance in words, the
    final model's choice and its permutation importance."""
    scorers = _skip_scorers(report)
    sizes = report["sizes"]
    lines = [
        "# Skip prediction",
        "",
        f"Test split: **{sizes['test_plays']} (session, track) plays** of **"
        f"{sizes['test_users']} users**, skip share {_fmt(sizes['skip_share'])}; 95% "
        f"intervals from {sizes['bootstrap_resamples']} bootstrap resamples of test "
        f"users. Final model: {skip_model_text(selection['best_params'])} (validation "
        f"{selection['selection_metric']} {selection['validation_value']:.4f}; LinearSVC "
        f"{selection['linear_svc_validation_value']:.4f})."
        + _budget_sentences(selection.get("budget")),
        "",
    ]
    lines += _skip_caveats(selection)
    if "oracle" not in scorers:
        lines += [f"No oracle: {report['oracle_absent_reason']}.", ""]
    lines += _metric_table(report, scorers, SKIP_METRICS, "final")
    lines += [
        "",
        "Confusion matrices (tn, fp, fn, tp): "
        + "; ".join(
            f"{s} {int(report[s]['tn'])}, {int(report[s]['fp'])}, {int(report[s]['fn'])}, "
            f"{int(report[s]['tp'])}"
            for s in scorers
        ),
        "",
        "## Is the model better than its baselines?",
        "",
    ]
    lines += _difference_lines(
        "final model − genre rule (paired over test users)",
        "the final model",
        "the genre rule",
        report["difference"]["model_vs_rule"],
    )
    lines += _difference_lines(
        "final model − LinearSVC",
        "the final model",
        "LinearSVC",
        report["difference"]["final_vs_linear_svc"],
    )
    lines += _calibration_lines(report, selection)
    lines += [
        "Permutation importance (ROC AUC drop), top 10:",
        "",
        "| feature | mean | std |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r.feature} | {r.importance_mean:.4f} | {r.importance_std:.4f} |"
        for r in importance.head(10).itertuples()
    ]
    return "\n".join(lines) + "\n"


def _calibration_lines(report: dict, selection: dict) -> list[str]:
    """Brier score and calibration error of the final model before and after calibration."""
    diff = report["difference"].get("calibrated_vs_uncalibrated")
    if diff is None or "brier_score" not in diff:
        return []
    method = str(selection.get("calibration"))
    if method.startswith("none"):
        return [
            "## Do its probabilities mean what they say?",
            "",
            f"Not calibrated ({method}).",
            "",
        ]
    before, after = report["final_uncalibrated"], report["final"]
    intervals = report["intervals"]
    lines = [
        "## Do its probabilities mean what they say?",
        "",
        f"The final model's probabilities are calibrated ({method}) on the validation period; "
        "the service and the batch scorer return the calibrated `skip_probability`. Lower is "
        "better; a difference below 0 is an improvement.",
        "",
        "| metric | before | after | after − before |",
        "|---|---:|---:|---:|",
    ]
    for m in CALIBRATION_METRICS:
        lo, hi = diff[m]["interval"]
        change = _fmt_signed(diff[m]["estimate"])
        change += f" [{lo:+.4f}, {hi:+.4f}]" if lo is not None else ""
        lines.append(
            f"| {_label(m)} | {_fmt(before.get(m), intervals['final_uncalibrated'].get(m))} "
            f"| {_fmt(after.get(m), intervals['final'].get(m))} | {change} |"
        )
    lines += [
        "",
        "Predictions at the 0.5 threshold change with the probabilities: balanced accuracy "
        f"{before['balanced_accuracy']:.4f} before, {after['balanced_accuracy']:.4f} after; "
        f"recall of skips {before['recall_skip']:.4f} → {after['recall_skip']:.4f}, precision "
        f"{before['precision_skip']:.4f} → {after['precision_skip']:.4f} (sigmoid calibration "
        "keeps the ranking, so ROC AUC too). Lower `skip_prediction.scoring.threshold` towards "
        "the skip share to say SKIP more often.",
    ]
    return [*lines, ""]


def _plot_confusions(report: dict, scorers: list[str]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(scorers), figsize=(4 * len(scorers), 3.6), squeeze=False)
    for ax, s in zip(axes[0], scorers, strict=True):
        m = report[s]
        cm = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]], dtype=int)
        ConfusionMatrixDisplay(cm, display_labels=["listen", "skip"]).plot(ax=ax, colorbar=False)
        ax.set_title(s)
    fig.tight_layout()
    return fig


def _plot_curves(predictions: pd.DataFrame, scorers: list[str]) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    y = predictions["skipped"].to_numpy(dtype=bool)
    if len(np.unique(y)) < 2:
        axes[0].text(0.5, 0.5, "one class only in the test split: no curves", ha="center")
    else:
        for name in scorers:
            if f"{name}_score" not in predictions:
                continue
            score = predictions[f"{name}_score"].to_numpy()
            RocCurveDisplay.from_predictions(y, score, name=name, ax=axes[0])
            PrecisionRecallDisplay.from_predictions(y, score, name=name, ax=axes[1])
            if name in PROBABILITY_SCORERS and 0 <= score.min() and score.max() <= 1:
                CalibrationDisplay.from_predictions(y, score, n_bins=10, name=name, ax=axes[2])
    axes[0].set_title("ROC")
    axes[1].set_title("Precision-recall (skip)")
    axes[2].set_title("Calibration")
    fig.tight_layout()
    return fig


def _plot_importance(importance: pd.DataFrame) -> plt.Figure:
    top = importance.head(15).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 5))
    if len(top):
        ax.barh(top["feature"], top["importance_mean"], xerr=top["importance_std"])
    else:
        ax.text(0.5, 0.5, "no permutation importance (see the run log)", ha="center")
    ax.set_xlabel("ROC AUC drop when shuffled")
    ax.set_title("Permutation importance (final model, test split)")
    fig.tight_layout()
    return fig
