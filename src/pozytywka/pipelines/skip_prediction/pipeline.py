"""skip_prediction: will this user skip this track? Genre-rule baseline, reference LinearSVC,
an Optuna-searched final model, the oracle, and a batch scorer."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_skip_dataset,
    evaluate_skip_models,
    report_skip_prediction,
    sample_pairs_to_score,
    score_pairs,
    train_models,
)

TABLES = ["tracks", "artists", "users", "genre_vocabulary"]


def _identity(model):
    return model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(build_skip_dataset, ["session_tracks", *TABLES, "params:skip_prediction"],
                 "skip_dataset", name="build_skip_dataset"),
            Node(train_models, ["skip_dataset", "params:skip_prediction"],
                 ["skip_linear_svc", "skip_model", "skip_model_selection", "skip_trials"],
                 name="train_skip_models"),
            Node(_identity, "skip_model", "skip_mlflow_model", name="log_skip_model"),
            Node(evaluate_skip_models,
                 ["skip_dataset", "skip_linear_svc", "skip_model", "ground_truth_users",
                  "ground_truth_tracks", "ground_truth_params", "params:skip_prediction"],
                 ["skip_evaluation", "skip_importance", "skip_curves"],
                 name="evaluate_skip_models"),
            Node(report_skip_prediction,
                 ["skip_evaluation", "skip_model_selection", "skip_importance", "skip_curves",
                  "skip_dataset"],
                 ["skip_prediction_metrics", "skip_prediction_markdown",
                  "skip_mlflow_metrics", "skip_confusion_matrices_plot",
                  "skip_roc_pr_calibration_plot", "skip_importance_plot"],
                 name="report_skip_prediction"),
            Node(sample_pairs_to_score, ["skip_dataset", "params:skip_prediction"],
                 "skip_pairs_to_score", name="sample_pairs_to_score"),
            Node(score_pairs,
                 ["skip_pairs_to_score", "skip_model", "skip_dataset", *TABLES,
                  "params:skip_prediction"],
                 ["skip_batch_scores", "skip_batch_counts"], name="score_pairs"),
        ],
        tags=["skip_prediction"],
    )
