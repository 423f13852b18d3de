"""ab_analysis: what users did after the service's answers, compared between A/B arms.

Run after serving (real traffic or ``pozytywka simulate``): ``kedro run --pipelines ab_analysis``
cleans the exports and the service's incoming events with data_processing, then reads the
prediction log. Its own MLflow run."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    ab_markdown,
    ab_mlflow,
    attribute_outcomes,
    plot_ab,
    read_answers,
    report_experiment,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                read_answers,
                ["prediction_log", "params:ab_analysis"],
                "ab_answers",
                name="read_answers",
            ),
            Node(
                attribute_outcomes,
                ["ab_answers", "events", "params:ab_analysis"],
                ["ab_served_outcomes", "ab_skip_outcomes"],
                name="attribute_outcomes",
            ),
            Node(
                report_experiment,
                [
                    "ab_answers",
                    "ab_served_outcomes",
                    "ab_skip_outcomes",
                    "ab_simulation_truth",
                    "params:ab_analysis",
                ],
                "ab_report",
                name="report_experiment",
            ),
            Node(ab_markdown, "ab_report", "ab_markdown", name="ab_markdown"),
            Node(
                plot_ab,
                "ab_report",
                ["ab_outcomes_plot", "ab_cumulative_lift_plot"],
                name="plot_ab",
            ),
            Node(ab_mlflow, "ab_report", "ab_metrics", name="ab_mlflow"),
        ],
        tags=["ab_analysis"],
    )
