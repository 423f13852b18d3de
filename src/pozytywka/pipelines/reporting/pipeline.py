"""reporting: the metrics files of design.md §4 with intervals and paired differences, their
Markdown, plots and MLflow metrics, from the evaluations of the model pipelines (and the
oracle's, where there is one)."""

from kedro.pipeline import Node, Pipeline

from .nodes import report_recommendation, report_skip_prediction


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(report_recommendation,
                 ["recommendation_user_metrics", "recommendation_evaluation",
                  "group_playlist_evaluation", "oracle_recommendation_user_metrics",
                  "oracle_recommendation_evaluation", "oracle_group_playlist_evaluation",
                  "training_variant_comparison", "best_hyperparameters", "optuna_trials",
                  "params:recommendation", "params:reporting"],
                 ["recommendation_metrics", "recommendation_markdown", "recommendation_search",
                  "recommendation_mlflow_metrics", "hyperparameter_effects_plot",
                  "group_score_by_size_plot"],
                 name="report_recommendation", tags=["recommendation"]),
            Node(report_skip_prediction,
                 ["skip_test_predictions", "oracle_skip_predictions", "oracle_skip_evaluation",
                  "skip_model_selection", "skip_importance", "params:reporting"],
                 ["skip_prediction_metrics", "skip_prediction_markdown",
                  "skip_mlflow_metrics", "skip_confusion_matrices_plot",
                  "skip_roc_pr_calibration_plot", "skip_importance_plot"],
                 name="report_skip_prediction", tags=["skip_prediction"]),
        ],
        tags=["reporting"],
    )
