"""Reports on hand-built evaluations: figures, intervals, differences and the oracle's absence."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from pozytywka.pipelines.reporting.nodes import (
    GROUP_METRICS,
    plot_recommendation,
    plot_skip,
    recommendation_markdown,
    recommendation_mlflow,
    recommendation_report,
    search_summary,
    skip_markdown,
    skip_mlflow,
    skip_model_text,
    skip_report,
)
from pozytywka.plotting import readable_log_ticks
from pozytywka.recsys.metrics import HIT_RATE_KS, USER_METRICS
from tests.project import PROJECT_ROOT, load_params

BOOTSTRAP = {"n_resamples": 300, "confidence": 0.95, "seed": 0}
NO_ORACLE = {"available": False, "reason": "no synthetic truth belongs to the data"}


def _per_user(scorer: str, precision: np.ndarray, hits_at_10: np.ndarray) -> pd.DataFrame:
    n = len(precision)
    frame = pd.DataFrame({"user": np.arange(n), "positives": np.full(n, 2)})
    for m in USER_METRICS:
        frame[m] = 0.5
    frame["precision_at_10"] = precision
    for k in HIT_RATE_KS:
        frame[f"hits_at_{k}"] = hits_at_10
    return frame.assign(scorer=scorer)


def _recommendation_inputs(model_precision, popularity_precision):
    n = len(model_precision)
    per_user = pd.concat(
        [
            _per_user("baseline", np.zeros(n), np.zeros(n)),
            _per_user("popularity", popularity_precision, np.ones(n)),
            _per_user("model", model_precision, np.r_[np.full(n // 2, 2), np.zeros(n - n // 2)]),
        ],
        ignore_index=True,
    )
    evaluation = {
        s: {"coverage": 0.1, "evaluated_users": n, "test_interactions": 2 * n}
        for s in ("baseline", "popularity", "model")
    }
    comparison = {
        "objective": "precision_at_10",
        "chosen": "likes",
        "variants": {"likes": {"precision_at_10": 0.1}},
    }
    best = {
        "variant": "likes",
        "objective": "precision_at_10",
        "validation_value": 0.1,
        "best_trial": 0,
        "improved_on_defaults": False,
    }
    trials = pd.DataFrame({"number": [0], "state": ["COMPLETE"]})
    return per_user, evaluation, comparison, best, trials


def test_recommendation_report_without_oracle_says_what_is_significant():
    rng = np.random.default_rng(0)
    model = rng.uniform(0.2, 0.4, 200)
    per_user, evaluation, comparison, best, trials = _recommendation_inputs(model, model - 0.1)
    groups = load_params("recommendation")["groups"]
    report = recommendation_report(
        per_user, evaluation, pd.DataFrame(), pd.DataFrame(), NO_ORACLE, pd.DataFrame(), BOOTSTRAP
    )
    markdown = recommendation_markdown(report, search_summary(comparison, best, trials, {}), groups)
    mlflow = recommendation_mlflow(report)
    plots = plot_recommendation(trials, best, pd.DataFrame(), pd.DataFrame(), NO_ORACLE, groups)
    assert "oracle" not in report and report["oracle_absent_reason"] == NO_ORACLE["reason"]
    assert report["model"]["precision_at_10"] == pytest.approx(model.mean())
    # hit rate is a micro average: 100 users find both positives, 100 none -> 200 / 400
    assert report["model"]["hit_rate_at_10"] == pytest.approx(0.5)
    low, high = report["intervals"]["model"]["precision_at_10"]
    assert low < model.mean() < high
    diff = report["difference"]["model_vs_popularity"]
    assert diff["precision_at_10"]["estimate"] == pytest.approx(0.1)
    assert diff["precision_at_10"]["significant"]
    assert diff["precision_at_10"]["interval"] == pytest.approx([0.1, 0.1])  # paired
    assert not diff["auc"]["significant"]  # both 0.5 for everyone
    assert "**not significant**" in markdown and "auc" in markdown.split("not significant")[1]
    assert "| oracle" not in markdown and "No oracle" in markdown
    assert "nothing better than the default configuration" in markdown
    assert report["sizes"] == {
        "test_users": 200,
        "test_interactions": 400,
        "groups": 0,
        "bootstrap_resamples": 300,
    }
    assert mlflow["rec/test/precision_at_10"]["value"] == pytest.approx(model.mean())
    for fig in plots:
        plt.close(fig)


def test_recommendation_report_says_when_users_were_sampled():
    model = np.full(50, 0.3)
    per_user, evaluation, comparison, best, trials = _recommendation_inputs(model, model - 0.1)
    evaluation["sampled_test_users"] = {"users": 50, "of": 20000}
    best["selection_sampled"] = {"users": 40, "of": 19000}
    groups = load_params("recommendation")["groups"]
    report = recommendation_report(
        per_user, evaluation, pd.DataFrame(), pd.DataFrame(), NO_ORACLE, pd.DataFrame(), BOOTSTRAP
    )
    markdown = recommendation_markdown(report, search_summary(comparison, best, trials, {}), groups)
    assert report["sizes"]["test_users"] == 50
    assert report["sizes"]["test_users_sampled_from"] == 20000
    assert "a random sample of the 20000 users with held-out likes" in markdown
    assert "grids saw a random 40 of the 19000 users" in markdown
    assert "not significant**, so the smaller" not in markdown

    comparison["variants"]["weighted"] = {"precision_at_10": 0.12}
    comparison["gain_over_smallest"] = {
        "variant": "weighted",
        "over": "likes",
        "estimate": 0.02,
        "interval": [-0.01, 0.05],
    }
    markdown = recommendation_markdown(report, search_summary(comparison, best, trials, {}), groups)
    assert "weighted − likes: +0.0200 [-0.0100, +0.0500], **not significant**, so the smaller" in (
        markdown
    )


def test_recommendation_report_with_oracle_shows_the_fraction():
    rng = np.random.default_rng(1)
    model = rng.uniform(0.2, 0.4, 50)
    per_user, evaluation, comparison, best, trials = _recommendation_inputs(model, model)
    oracle_rows = _per_user("oracle", model * 2, np.full(50, 2))
    oracle = {
        "available": True,
        "oracle": {"coverage": 0.2, "evaluated_users": 50, "test_interactions": 100},
    }
    report = recommendation_report(
        per_user, evaluation, pd.DataFrame(), oracle_rows, oracle, pd.DataFrame(), BOOTSTRAP
    )
    markdown = recommendation_markdown(
        report,
        search_summary(comparison, best, trials, {}),
        load_params("recommendation")["groups"],
    )
    assert report["oracle"]["precision_at_10"] == pytest.approx(2 * model.mean())
    assert "| precision_at_10 |" in markdown and "| 50.0% |" in markdown
    assert not report["difference"]["model_vs_popularity"]["precision_at_10"]["significant"]


def _skip_predictions(n_users: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 10)
    y = rng.random(len(users)) < 0.3
    good = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.2, len(y)), 0, 1)
    over = np.clip(good + 0.3, 0, 1)  # the same ranking, probabilities far too high
    return pd.DataFrame(
        {
            "user_id": users,
            "track_id": "t",
            "skipped": y,
            "baseline_predicted": rng.random(len(y)) < 0.5,
            "linear_svc_score": good,
            "linear_svc_predicted": good > 0.5,
            "final_score": good,
            "final_predicted": good > 0.5,
            "final_uncalibrated_score": over,
            "final_uncalibrated_predicted": over > 0.5,
        }
    )


def test_skip_report_figures_and_differences():
    predictions = _skip_predictions()
    selection = {
        "best_params": {"model": "x"},
        "selection_metric": "roc_auc",
        "validation_value": 0.7,
        "linear_svc_validation_value": 0.7,
    }
    importance = pd.DataFrame({"feature": ["a"], "importance_mean": [0.1], "importance_std": [0.0]})
    report = skip_report(predictions, pd.DataFrame(), NO_ORACLE, BOOTSTRAP)
    markdown = skip_markdown(report, selection, importance)
    mlflow = skip_mlflow(report)
    plots = plot_skip(report, predictions, pd.DataFrame(), NO_ORACLE, importance)
    assert {"baseline", "linear_svc", "final"} <= set(report) and "oracle" not in report
    assert "roc_auc" not in report["baseline"] and report["final"]["roc_auc"] > 0.8
    y, p = predictions["skipped"], predictions["final_predicted"]
    assert report["final"]["accuracy"] == pytest.approx((y == p).mean())
    assert report["final"]["tp"] == (y & p).sum()
    rule = report["difference"]["model_vs_rule"]
    assert set(rule) == {
        "accuracy",
        "balanced_accuracy",
        "precision_skip",
        "recall_skip",
        "f1_skip",
        "precision_listen",
        "recall_listen",
        "f1_listen",
    }
    assert rule["balanced_accuracy"]["significant"]  # a random rule against a good model
    same = report["difference"]["final_vs_linear_svc"]["roc_auc"]
    assert same["estimate"] == 0 and not same["significant"]
    assert report["sizes"]["test_users"] == 80 and report["sizes"]["test_plays"] == 800
    # Calibration: the Brier score by hand; the over-confident copy is significantly worse.
    brier = ((predictions["final_score"] - y) ** 2).mean()
    assert report["final"]["brier_score"] == pytest.approx(brier)
    assert "brier_score" not in report["linear_svc"]  # a margin, not a probability
    calibration = report["difference"]["calibrated_vs_uncalibrated"]
    for m in ["brier_score", "expected_calibration_error"]:
        assert calibration[m]["estimate"] < 0 and calibration[m]["significant"], m
    assert "Do its probabilities mean what they say?" in markdown
    low, high = report["intervals"]["final"]["roc_auc"]
    assert low < report["final"]["roc_auc"] < high
    assert "No oracle" in markdown and "final / oracle" not in markdown
    assert "skip/test/roc_auc" in mlflow
    for fig in plots:
        plt.close(fig)


BUDGETS = {
    "cut": {
        "trials_planned": 20,
        "trials_run": 7,
        "time_cap_seconds": 300.0,
        "cut_by_time_cap": True,
    },
    "whole": {
        "trials_planned": 12,
        "trials_run": 12,
        "time_cap_seconds": 45.0,
        "cut_by_time_cap": False,
    },
}
TIME_CAP = "stopped the search early, so a run on a less busy machine may choose another model"


@pytest.mark.parametrize("budget", [*BUDGETS, None])
def test_recommendation_report_says_how_many_trials_ran(budget):
    model = np.full(20, 0.3)
    per_user, evaluation, comparison, best, trials = _recommendation_inputs(model, model - 0.1)
    if budget:
        best["budget"] = BUDGETS[budget]
    report = recommendation_report(
        per_user, evaluation, pd.DataFrame(), pd.DataFrame(), NO_ORACLE, pd.DataFrame(), BOOTSTRAP
    )
    markdown = recommendation_markdown(
        report,
        search_summary(comparison, best, trials, {}),
        load_params("recommendation")["groups"],
    )
    assert ("7 of 20 planned trials ran." in markdown) == (budget == "cut")
    assert ("12 of 12 planned trials ran." in markdown) == (budget == "whole")
    assert (f"The time cap (300 s) {TIME_CAP}." in markdown) == (budget == "cut")
    assert "planned trials" in markdown or budget is None


def _group_table(n_groups: int = 12) -> pd.DataFrame:
    """Group playlists of the history baseline, popularity and the model: the model's are
    more coherent (lower clustering score)."""
    rng = np.random.default_rng(0)
    rows = []
    for scorer, strategy, clustering in [
        ("baseline", "history", 2.0),
        ("popularity", "average", 1.5),
        ("model", "average", 1.0),
    ]:
        for g in range(n_groups):
            values = {m: rng.uniform(0.1, 0.5) for m in GROUP_METRICS}
            rows.append(
                {**values, "clustering": clustering, "group": g, "size": 2 + g % 3}
                | {"scorer": scorer, "strategy": strategy}
            )
    return pd.DataFrame(rows)


def test_group_table_says_the_clustering_score_is_lower_is_better():
    model = np.full(20, 0.3)
    per_user, evaluation, comparison, best, trials = _recommendation_inputs(model, model - 0.1)
    groups = load_params("recommendation")["groups"]
    report = recommendation_report(
        per_user, evaluation, _group_table(), pd.DataFrame(), NO_ORACLE, pd.DataFrame(), BOOTSTRAP
    )
    markdown = recommendation_markdown(report, search_summary(comparison, best, trials, {}), groups)
    assert "| clustering (lower is better) |" in markdown
    assert "| zero_recall_share (lower is better) |" in markdown
    assert "| recall_mean |" in markdown


def _skip_selection(**extra) -> dict:
    return {
        "best_params": {
            "model": "hist_gradient_boosting",
            "hgb_learning_rate": 0.1,
            "hgb_max_leaf_nodes": 31,
            "hgb_min_samples_leaf": 20,
            "hgb_l2": 1e-4,
        },
        "selection_metric": "roc_auc",
        "validation_value": 0.7,
        "linear_svc_validation_value": 0.7,
        "calibration": "sigmoid",
        **extra,
    }


def _oracle_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """An oracle that knows the truth up to a little noise."""
    y = predictions["skipped"].to_numpy(dtype=float)
    score = np.clip(y * 0.8 + 0.1 + np.random.default_rng(2).normal(0, 0.05, len(y)), 0, 1)
    return pd.DataFrame({"oracle_score": score, "oracle_predicted": score > 0.5})


def test_skip_report_shows_the_oracle_share_only_where_higher_is_better():
    predictions = _skip_predictions()
    oracle = _oracle_predictions(predictions)
    report = skip_report(predictions, oracle, {"available": True}, BOOTSTRAP)
    importance = pd.DataFrame({"feature": ["a"], "importance_mean": [0.1], "importance_std": [0.0]})
    markdown = skip_markdown(report, _skip_selection(), importance)
    table = markdown.split("| metric | baseline |")[1].split("\n\n")[0].splitlines()
    assert table[0].endswith("| oracle | final / oracle |")
    last_cell = {row.split(" | ")[0]: row.split(" | ")[-1] for row in table[2:]}
    for m in ["brier_score", "expected_calibration_error"]:
        assert last_cell[f"| {m} (lower is better)"] == "– |", m
    share = report["final"]["roc_auc"] / report["oracle"]["roc_auc"]
    assert last_cell["| roc_auc"] == f"{share:.1%} |"
    assert "| brier_score |" not in markdown


@pytest.mark.parametrize("budget", [*BUDGETS, None])
def test_skip_report_names_the_model_in_words_and_the_trials_run(budget):
    predictions = _skip_predictions()
    importance = pd.DataFrame({"feature": ["a"], "importance_mean": [0.1], "importance_std": [0.0]})
    selection = _skip_selection(**({"budget": BUDGETS[budget]} if budget else {}))
    markdown = skip_markdown(
        skip_report(predictions, pd.DataFrame(), NO_ORACLE, BOOTSTRAP), selection, importance
    )
    assert (
        "Final model: histogram gradient boosting (learning rate 0.1, max leaf nodes 31, min "
        "samples leaf 20, L2 regularisation 0.0001) (validation roc_auc 0.7000" in markdown
    )
    assert "{" not in markdown and "hgb_" not in markdown
    assert ("7 of 20 planned trials ran." in markdown) == (budget == "cut")
    assert ("12 of 12 planned trials ran." in markdown) == (budget == "whole")
    assert (f"The time cap (300 s) {TIME_CAP}." in markdown) == (budget == "cut")
    assert TIME_CAP not in markdown or budget == "cut"


def test_skip_model_in_words_for_logistic_regression():
    assert skip_model_text({"model": "logistic_regression", "lr_C": 0.012345}) == (
        "logistic regression (inverse regularisation C 0.0123)"
    )


def _trials(objective_values: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Optuna's trials table for LightFM: log-scaled hyperparameters over narrow and wide
    ranges (narrow ones used to label minor ticks on top of each other)."""
    n = len(objective_values)
    return pd.DataFrame(
        {
            "number": np.arange(n),
            "value": objective_values,
            "params_epochs": rng.integers(2, 7, n),
            "params_item_alpha": 10 ** rng.uniform(-6, 1, n),
            "params_learning_rate": 10 ** rng.uniform(-3.5, -0.7, n),
            "params_loss": rng.choice(["warp", "bpr"], n),
            "params_no_components": rng.integers(8, 17, n),
            "params_user_alpha": 10 ** rng.uniform(-6, -5.5, n),
            "user_attrs_auc": rng.uniform(0.5, 0.9, n),
            "user_attrs_group_ndcg": rng.uniform(0, 0.1, n),
            "state": "COMPLETE",
        }
    )


def _overlapping_tick_labels(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of x tick labels (of any axes in ``fig``) whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [
        (label.get_text(), label.get_window_extent(renderer))
        for ax in fig.axes
        for label in [*ax.xaxis.get_majorticklabels(), *ax.xaxis.get_minorticklabels()]
        if label.get_visible() and label.get_text()
    ]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def test_hyperparameter_effects_plot_the_search_objective_with_readable_log_ticks():
    rng = np.random.default_rng(0)
    trials = _trials(rng.uniform(0.05, 0.2, 12), rng)
    groups = load_params("recommendation")["groups"]
    best = {"objective": "ndcg_at_10"}
    effects, sizes = plot_recommendation(
        trials, best, pd.DataFrame(), pd.DataFrame(), NO_ORACLE, groups
    )
    first = effects.axes[0]
    assert first.get_ylabel() == "validation ndcg_at_10"
    assert "ndcg_at_10" in effects._suptitle.get_text()
    x, y = first.collections[0].get_offsets().T
    assert list(y) == pytest.approx(list(trials["value"]))  # the objective, not the AUC
    assert not _overlapping_tick_labels(effects)
    log_axes = [ax for ax in effects.axes if ax.get_xscale() == "log"]
    assert len(log_axes) == 8 and all(len(ax.get_xticks()) <= 3 for ax in log_axes)
    for fig in (effects, sizes):
        plt.close(fig)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_slice_plot_with_readable_log_ticks():
    optuna = pytest.importorskip("optuna")
    from optuna.visualization import matplotlib as ovm  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: (
            t.suggest_float("item_alpha", 1e-6, 10, log=True)
            + t.suggest_int("no_components", 8, 16, log=True)
            + t.suggest_float("learning_rate", 3e-4, 0.2, log=True)
        ),
        n_trials=8,
    )
    axes = ovm.plot_slice(study)
    fig = np.ravel(np.asarray(axes, dtype=object))[0].figure
    fig.set_size_inches(11, 5)
    assert _overlapping_tick_labels(fig)  # matplotlib's own ticks: 8x10^0, 9x10^0, 10^1
    assert not _overlapping_tick_labels(readable_log_ticks(fig))
    plt.close(fig)


# ---- the served recommender --------------------------------------------------------------------

CATALOG = PROJECT_ROOT / "conf" / "base" / "catalog.yml"
N_USERS = 200


def _scored(scorer: str, ndcg: np.ndarray, precision: np.ndarray) -> pd.DataFrame:
    """One scorer's per-user rows: NDCG@10 and precision@10 as given, every user with two
    held-out likes and one hit at 10."""
    return _per_user(scorer, precision, np.ones(len(ndcg))).assign(ndcg_at_10=ndcg)


def _served_inputs(served: str, ndcg: dict[str, np.ndarray]) -> tuple:
    """Per-user rows of the history baseline (zeros) and of each scorer in ``ndcg`` (its
    NDCG@10; precision@10 the same), and an evaluation serving ``served``."""
    per_user = pd.concat(
        [
            _scored("baseline", np.zeros(N_USERS), np.zeros(N_USERS)),
            *(_scored(s, v, v) for s, v in ndcg.items()),
        ],
        ignore_index=True,
    )
    evaluation: dict = {
        s: {"coverage": 0.1, "evaluated_users": N_USERS, "test_interactions": 2 * N_USERS}
        for s in ("baseline", *ndcg)
    }
    evaluation["served"] = served
    return per_user, evaluation


def _choice(served: str, validation: dict[str, float], ranker: dict | None = None) -> dict:
    """A ``recommender_choice``: each recommender's validation NDCG@10 (service names) with an
    interval of ±0.02, and the served one's paired difference from each, ±0.01."""
    best = validation[served]
    return {
        "served": served,
        "metric": "ndcg_at_10",
        "validation": {
            n: {"ndcg_at_10": v, "interval": [v - 0.02, v + 0.02]} for n, v in validation.items()
        },
        "served_minus": {
            n: {"estimate": best - v, "interval": [best - v - 0.01, best - v + 0.01]}
            for n, v in validation.items()
            if n != served
        },
        "candidate_recall": 0.625,
        "candidates_per_user": 310.4,
        "users": {"ranker_training": 700, "choice": 300},
        "ranker": ranker
        if ranker is not None
        else {
            "params": {
                "learning_rate": 0.05,
                "num_leaves": 31,
                "min_data_in_leaf": 20,
                "feature_fraction": 0.9,
                "lambda_l2": 1.0,
            },
            "rounds": 143,
            "validation_ndcg_at_10": validation.get("ranker", 0.0),
            "features": [f"feature_{i}" for i in range(15)],
        },
        "seconds": 12.0,
    }


def _importance(n: int = 15) -> pd.DataFrame:
    gain = np.arange(n, 0, -1, dtype=float)
    return pd.DataFrame(
        {
            "feature": [f"feature_{i}" for i in range(n)],
            "gain": gain,
            "splits": np.arange(n) + 10,
            "gain_share": gain / gain.sum(),
        }
    )


def _ranker_trials(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial": np.arange(n),
            "learning_rate": 0.05,
            "rounds": 100,
            "validation_ndcg_at_10": np.linspace(0.2, 0.3, n),
            "seconds": 2.0,
        }
    )


def _report_and_markdown(per_user, evaluation, choice, groups=None, oracle=None, **ranker):
    oracle_rows, oracle_evaluation = oracle if oracle else (pd.DataFrame(), NO_ORACLE)
    report = recommendation_report(
        per_user,
        evaluation,
        pd.DataFrame() if groups is None else groups,
        oracle_rows,
        oracle_evaluation,
        pd.DataFrame(),
        BOOTSTRAP,
        choice,
        ranker.get("importance", pd.DataFrame()),
        ranker.get("trials", pd.DataFrame()),
    )
    _, _, comparison, best, trials = _recommendation_inputs(np.full(4, 0.3), np.full(4, 0.2))
    markdown = recommendation_markdown(
        report,
        search_summary(comparison, best, trials, {}),
        load_params("recommendation")["groups"],
    )
    return report, markdown


def _row(markdown: str, label: str) -> str:
    """``label``'s row of the table of the served recommender's test differences."""
    section = markdown.split("## Is the served recommender better")[1]
    return next(line for line in section.splitlines() if line.startswith(f"| {label} |"))


def _kept(metrics: dict) -> set[str]:
    """The names the catalog's ``recommendation_mlflow_metrics`` logs."""
    keep = yaml.safe_load(CATALOG.read_text())["recommendation_mlflow_metrics"]["keep"]
    return {k for k in metrics if any(fnmatchcase(k, p) for p in keep)}


def _ranker_served_case() -> tuple:
    """The ranker served. On test, user by user: the ranker is LightFM + 0.04 (NDCG@10 and
    precision@10), popularity LightFM − 0.1, ALS LightFM + 0.1, and EASE the ranker ± 0.1 in
    turn (the same mean: no difference)."""
    rng = np.random.default_rng(3)
    lightfm = rng.uniform(0.2, 0.4, N_USERS)
    ranker = lightfm + 0.04
    ndcg = {
        "popularity": lightfm - 0.1,
        "als": lightfm + 0.1,
        "ease": ranker + np.where(np.arange(N_USERS) % 2, 0.1, -0.1),
        "model": lightfm,
        "ranker": ranker,
    }
    per_user, evaluation = _served_inputs("ranker", ndcg)
    choice = _choice(
        "ranker", {"ranker": 0.30, "lightfm": 0.27, "ease": 0.295, "als": 0.2, "popularity": 0.15}
    )
    return per_user, evaluation, choice, ndcg


def test_the_served_ranker_is_the_reference_of_the_report():
    per_user, evaluation, choice, ndcg = _ranker_served_case()
    groups = _group_table()
    ranker_groups = groups[groups["scorer"] == "model"].assign(scorer="ranker", clustering=0.5)
    report, markdown = _report_and_markdown(
        per_user,
        evaluation,
        choice,
        pd.concat([groups, ranker_groups], ignore_index=True),
        importance=_importance(),
        trials=_ranker_trials(),
    )
    served = report["served_difference"]
    assert report["served"] == "ranker" and report["choice"] == choice
    assert set(served) == {
        f"ranker_vs_{o}" for o in ("baseline", "popularity", "als", "ease", "model")
    }
    # A constant paired difference: its interval is the difference itself.
    assert served["ranker_vs_model"]["ndcg_at_10"]["estimate"] == pytest.approx(0.04)
    assert served["ranker_vs_model"]["ndcg_at_10"]["interval"] == pytest.approx([0.04, 0.04])
    assert served["ranker_vs_popularity"]["precision_at_10"]["estimate"] == pytest.approx(0.14)
    assert served["ranker_vs_als"]["ndcg_at_10"]["estimate"] == pytest.approx(-0.06)
    assert served["ranker_vs_als"]["ndcg_at_10"]["significant"]
    ease = served["ranker_vs_ease"]["ndcg_at_10"]
    assert ease["estimate"] == pytest.approx(0.0, abs=1e-12) and not ease["significant"]
    # LightFM's own comparisons stay, and are LightFM's.
    assert report["difference"]["model_vs_popularity"]["ndcg_at_10"]["estimate"] == pytest.approx(
        0.1
    )
    assert "model_vs_ranker" not in report["difference"]
    assert report["popularity_difference"]["als_vs_popularity"]["ndcg_at_10"][
        "estimate"
    ] == pytest.approx(0.2)
    assert report["ranker_search"] == {"trials": 12, "seconds": 24.0}
    assert json.loads(json.dumps(report, allow_nan=False))["served"] == "ranker"  # as JSON
    assert report["ranker_importance"][0] == {
        "feature": "feature_0",
        "gain": 15.0,
        "splits": 10,
        "gain_share": pytest.approx(15 / 120),
    }
    # Group playlists: the ranker beside the model, with its own difference from popularity.
    assert "ranker" in report["groups"]["average"]
    assert {"model_vs_popularity_average", "ranker_vs_popularity_average"} <= set(
        report["group_difference"]
    )
    assert "| metric | baseline | popularity | model | ranker |" in markdown
    assert "### average: ranker − popularity (paired over groups)" in markdown
    assert "Clustering score of the ranker vs the baseline: +75.0%" in markdown

    # The Markdown: what is served and why, then each verdict on test.
    assert markdown.index("## Served recommender") < markdown.index("| metric | baseline |")
    assert "The ranker is served: validation ndcg_at_10 0.3000 [0.2800, 0.3200]" in markdown
    assert "(The rule, from the simplest up: popularity" in markdown
    assert "significantly above LightFM, ALS and popularity; **not significantly** above EASE" in (
        markdown
    )
    assert "| **ranker** (served) | 0.3000 [0.2800, 0.3200] | – |" in markdown
    assert "| EASE | 0.2950 [0.2750, 0.3150] | +0.0050 [-0.0050, +0.0150] |" in markdown
    assert "Chosen on 300 validation users held out of the ranker's training; the ranker " in (
        markdown
    )
    assert "hold 62.5% of the validation likes" in markdown
    assert "| ranker / oracle |" not in markdown  # no oracle here
    assert _row(markdown, "LightFM (`model`)").endswith(
        "| +0.0400 [+0.0400, +0.0400] | +0.0400 [+0.0400, +0.0400] | significantly better |"
    )
    assert _row(markdown, "EASE").endswith("| not significantly different |")
    assert _row(markdown, "ALS").endswith("| significantly **worse** |")
    assert (
        "On the test split the ranker is significantly better than LightFM, popularity and the "
        "random-from-history baseline; not significantly different from EASE; significantly "
        "**worse** than ALS (ndcg_at_10)." in markdown
    )
    assert "Nothing beats popularity" not in markdown
    assert "| ranker − … | precision_at_10 [95%] | ndcg_at_10 [95%] | verdict (ndcg_at_10) |" in (
        markdown
    )
    assert "## Ranker" in markdown and "Search: 12 trials in 24 s" in markdown
    assert "learning rate 0.05, num leaves 31" in markdown and "143 boosting rounds" in markdown
    assert "top 12 of 15" in markdown and "| feature_11 |" in markdown
    assert "| feature_12 |" not in markdown
    assert "## Is LightFM (the model) better than its baselines?" in markdown


def test_mlflow_headline_figures_are_the_served_recommenders():
    per_user, evaluation, choice, ndcg = _ranker_served_case()
    oracle_rows = _scored("oracle", 2 * ndcg["ranker"], 2 * ndcg["ranker"])
    oracle = (
        oracle_rows,
        {"available": True, "oracle": {"coverage": 0.2, "evaluated_users": N_USERS}},
    )
    report, markdown = _report_and_markdown(per_user, evaluation, choice, oracle=oracle)
    metrics = {k: v["value"] for k, v in recommendation_mlflow(report).items()}
    ranker, lightfm = ndcg["ranker"].mean(), ndcg["model"].mean()
    assert metrics["rec/test/ndcg_at_10"] == pytest.approx(ranker)
    assert metrics["rec/test/precision_at_10"] == pytest.approx(ranker)
    assert metrics["rec/test/ranker/ndcg_at_10"] == pytest.approx(ranker)
    assert metrics["rec/test/model/ndcg_at_10"] == pytest.approx(lightfm)
    assert metrics["rec/test/ease/ndcg_at_10"] == pytest.approx(ndcg["ease"].mean())
    # The oracle's share is the served recommender's (the oracle doubles the ranker).
    assert metrics["rec/test/model_fraction_of_oracle/ndcg_at_10"] == pytest.approx(0.5)
    assert "| ranker / oracle |" in markdown and "| 50.0% |" in markdown
    assert metrics["rec/test/served_vs_model/ndcg_at_10"] == pytest.approx(0.04)
    assert metrics["rec/test/served_vs_als/precision_at_10"] == pytest.approx(-0.06)
    assert metrics["rec/test/model_vs_popularity/ndcg_at_10"] == pytest.approx(0.1)
    assert metrics["rec/validation/model/ndcg_at_10"] == pytest.approx(0.27)
    assert metrics["rec/validation/ranker/ndcg_at_10/low"] == pytest.approx(0.28)
    assert metrics["rec/validation/served_vs_model/ndcg_at_10"] == pytest.approx(0.03)
    assert metrics["rec/validation/candidate_recall"] == pytest.approx(0.625)
    assert not any("lightfm" in k for k in metrics)
    kept = _kept(metrics)
    assert {
        "rec/test/ndcg_at_10",
        "rec/test/ndcg_at_10/low",
        "rec/test/model/ndcg_at_10",
        "rec/test/ranker/precision_at_10",
        "rec/test/served_vs_ease/ndcg_at_10",
        "rec/test/model_fraction_of_oracle/ndcg_at_10",
        "rec/validation/ranker/ndcg_at_10",
        "rec/validation/served_vs_popularity/ndcg_at_10",
        "rec/validation/candidate_recall",
    } <= kept
    assert "rec/validation/ranker/ndcg_at_10/low" not in kept


def test_the_report_says_when_the_ranker_is_not_better():
    per_user, evaluation, choice, ndcg = _ranker_served_case()
    evaluation["served"] = "ease"
    choice = _choice(
        "ease", {"ranker": 0.28, "lightfm": 0.27, "ease": 0.295, "als": 0.2, "popularity": 0.15}
    )
    report, markdown = _report_and_markdown(per_user, evaluation, choice)
    assert report["served"] == "ease" and "ease_vs_ranker" in report["served_difference"]
    assert report["served_difference"]["ease_vs_ranker"]["ndcg_at_10"]["estimate"] == (
        pytest.approx(0.0, abs=1e-12)
    )
    assert (
        "The ranker is **not shown** to be better on validation ndcg_at_10 (ease − ranker "
        "+0.0150 [+0.0050, +0.0250]), so EASE is served: validation ndcg_at_10 "
        "0.2950 [0.2750, 0.3150]" in markdown
    )
    assert "| **EASE** (served) |" in markdown and "| ease − … |" in markdown
    metrics = {k: v["value"] for k, v in recommendation_mlflow(report).items()}
    assert metrics["rec/test/ndcg_at_10"] == pytest.approx(ndcg["ease"].mean())
    assert metrics["rec/test/ranker/ndcg_at_10"] == pytest.approx(ndcg["ranker"].mean())
    assert metrics["rec/test/served_vs_ranker/ndcg_at_10"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("served", ["popularity", "lightfm"])
def test_on_data_without_signal_nothing_beats_popularity(served):
    """Every recommender is popularity ± 0.1 user by user, so none differs from it on test."""
    rng = np.random.default_rng(5)
    popularity = rng.uniform(0.2, 0.4, N_USERS)
    swing = np.where(np.arange(N_USERS) % 2, 0.1, -0.1)
    ndcg = {
        "popularity": popularity,
        "ease": popularity + swing,
        "model": popularity - swing,
        "ranker": popularity + np.roll(swing, 1),
    }
    name = "model" if served == "lightfm" else served
    per_user, evaluation = _served_inputs(name, ndcg)
    choice = _choice(served, {"ranker": 0.1, "lightfm": 0.11, "ease": 0.1, "popularity": 0.105})
    if served == "popularity":
        choice = _choice(served, {"ranker": 0.1, "lightfm": 0.1, "ease": 0.1, "popularity": 0.11})
    report, markdown = _report_and_markdown(per_user, evaluation, choice)
    assert set(report["popularity_difference"]) == {
        f"{s}_vs_popularity" for s in ("ranker", "model", "ease")
    }
    assert "**Nothing beats popularity here.**" in markdown
    said = markdown.split("**Nothing beats popularity here.**")[1].split("\n")[0]
    assert "no recommender is significantly above popularity on ndcg_at_10 (the ranker − " in said
    assert "LightFM − popularity +0.0000 [" in said and "EASE − popularity +0.0000 [" in said
    assert ("Popularity is served" in said) == (served == "popularity")
    shown = "**Nothing is shown to beat popularity** on validation."
    assert (shown in markdown) == (served == "popularity")
    metrics = {k: v["value"] for k, v in recommendation_mlflow(report).items()}
    assert metrics["rec/test/ndcg_at_10"] == pytest.approx(ndcg[name].mean())
    assert ("rec/test/model/ndcg_at_10" in metrics) == (served != "lightfm")


def test_a_skipped_ranker_is_said_and_lightfm_served():
    rng = np.random.default_rng(6)
    lightfm = rng.uniform(0.2, 0.4, N_USERS)
    per_user, evaluation = _served_inputs(
        "model", {"popularity": lightfm - 0.1, "ease": lightfm - 0.05, "model": lightfm}
    )
    reason = "12 validation users with a like among their candidates to train on"
    choice = _choice(
        "lightfm", {"lightfm": 0.27, "ease": 0.25, "popularity": 0.15}, {"skipped": reason}
    )
    report, markdown = _report_and_markdown(per_user, evaluation, choice)
    assert "ranker" not in report and "ranker_importance" not in report
    assert "ranker_search" not in report
    assert f"No ranker was trained: {reason}. LightFM is served: validation" in markdown
    assert f"## Ranker\n\nNot trained: {reason}." in markdown
    assert "Chosen on 300 validation users. The candidates" in markdown
    assert "the ranker learnt" not in markdown and "re-orders" not in markdown
    assert _row(markdown, "EASE").endswith("| significantly better |")
    assert report["served_difference"]["model_vs_ease"] == report["difference"]["model_vs_ease"]


def test_outputs_without_a_served_recommender_report_lightfm_as_before():
    rng = np.random.default_rng(7)
    model = rng.uniform(0.2, 0.4, 50)
    per_user, evaluation, comparison, best, trials = _recommendation_inputs(model, model - 0.1)
    assert "served" not in evaluation
    report = recommendation_report(
        per_user, evaluation, pd.DataFrame(), pd.DataFrame(), NO_ORACLE, pd.DataFrame(), BOOTSTRAP
    )
    markdown = recommendation_markdown(
        report,
        search_summary(comparison, best, trials, {}),
        load_params("recommendation")["groups"],
    )
    metrics = {k: v["value"] for k, v in recommendation_mlflow(report).items()}
    assert report["served"] == "model" and "choice" not in report
    assert set(report["served_difference"]) == {"model_vs_baseline", "model_vs_popularity"}
    assert metrics["rec/test/precision_at_10"] == pytest.approx(model.mean())
    assert not any(k.startswith(("rec/test/model/", "rec/validation/")) for k in metrics)
    assert "## Served recommender" not in markdown and "## Ranker" not in markdown
    assert "Is the served recommender" not in markdown


def test_a_served_recommender_that_was_not_evaluated_is_an_error():
    per_user, evaluation, choice, _ = _ranker_served_case()
    evaluation["served"] = "als_v2"
    with pytest.raises(ValueError, match="als_v2"):
        _report_and_markdown(per_user, evaluation, choice)
