"""reporting: the metrics files of docs/design.md §4 with intervals and paired differences, their
Markdown, plots and MLflow metrics, from the evaluations of the model pipelines (and the
oracle's, where there is one)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    plot_recommendation,
    plot_skip,
    recommendation_markdown,
    recommendation_mlflow,
    recommendation_report,
    search_summary,
    skip_markdown,
    skip_mlflow,
    skip_report,
)

ORACLE_RECOMMENDATION = [
    "oracle_recommendation_user_metrics",
    "oracle_recommendation_evaluation",
    "oracle_group_playlist_evaluation",
]
ORACLE_SKIP = ["oracle_skip_predictions", "oracle_skip_evaluation"]


def _recommendation_nodes() -> list[Node]:
    return [
        Node(
            recommendation_report,
            [
                "recommendation_user_metrics",
                "recommendation_evaluation",
                "group_playlist_evaluation",
                *ORACLE_RECOMMENDATION,
                "params:reporting.bootstrap",
                "recommender_choice",
                "ranker_importance",
                "ranker_trials",
            ],
            "recommendation_metrics",
            name="report_recommendation",
        ),
        Node(
            search_summary,
            [
                "training_variant_comparison",
                "best_hyperparameters",
                "optuna_trials",
                "baseline_tuning",
            ],
            "recommendation_search",
            name="summarise_search",
        ),
        Node(
            recommendation_markdown,
            ["recommendation_metrics", "recommendation_search", "params:recommendation.groups"],
            "recommendation_markdown",
            name="write_recommendation_markdown",
        ),
        Node(
            recommendation_mlflow,
            "recommendation_metrics",
            "recommendation_mlflow_metrics",
            name="log_recommendation_metrics",
        ),
        Node(
            plot_recommendation,
            [
                "optuna_trials",
                "best_hyperparameters",
                "group_playlist_evaluation",
                "oracle_group_playlist_evaluation",
                "oracle_recommendation_evaluation",
                "params:recommendation.groups",
            ],
            ["hyperparameter_effects_plot", "group_score_by_size_plot"],
            name="plot_recommendation",
        ),
    ]


def _skip_nodes() -> list[Node]:
    return [
        Node(
            skip_report,
            [
                "skip_test_predictions",
                *ORACLE_SKIP,
                "params:reporting.bootstrap",
                "params:reporting.max_score_levels",
            ],
            "skip_prediction_metrics",
            name="report_skip_prediction",
        ),
        Node(
            skip_markdown,
            ["skip_prediction_metrics", "skip_model_selection", "skip_importance"],
            "skip_prediction_markdown",
            name="write_skip_markdown",
        ),
        Node(
            skip_mlflow, "skip_prediction_metrics", "skip_mlflow_metrics", name="log_skip_metrics"
        ),
        Node(
            plot_skip,
            ["skip_prediction_metrics", "skip_test_predictions", *ORACLE_SKIP, "skip_importance"],
            [
                "skip_confusion_matrices_plot",
                "skip_roc_pr_calibration_plot",
                "skip_importance_plot",
            ],
            name="plot_skip",
        ),
    ]


def create_pipeline(**kwargs) -> Pipeline:
    # Each node also carries its model pipeline's tag, so `--pipelines recommendation` (or
    # skip_prediction) includes its reports.
    return Pipeline(
        [
            *Pipeline(_recommendation_nodes(), tags=["recommendation"]).nodes,
            *Pipeline(_skip_nodes(), tags=["skip_prediction"]).nodes,
        ],
        tags=["reporting"],
    )
