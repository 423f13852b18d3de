"""Reports on hand-built evaluations: figures, intervals, differences and the oracle's absence."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

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
from tests.project import load_params

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
