"""oracle_evaluation: oracle figures beside the models, where the generator's truth belongs to
the data (the default synthetic run); nothing, with the reason logged, on a user's export."""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_recommendation_oracle, evaluate_skip_oracle


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_recommendation_oracle,
                [
                    "synthetic_truth",
                    "lightfm_model",
                    "recommendation_data",
                    "lightfm_dataset",
                    "user_feature_matrix",
                    "item_feature_matrix",
                    "params:recommendation.groups",
                ],
                [
                    "oracle_recommendation_user_metrics",
                    "oracle_recommendation_evaluation",
                    "oracle_group_playlist_evaluation",
                ],
                name="evaluate_recommendation_oracle",
                tags=["recommendation"],
            ),
            Node(
                evaluate_skip_oracle,
                ["synthetic_truth", "skip_dataset"],
                ["oracle_skip_predictions", "oracle_skip_evaluation"],
                name="evaluate_skip_oracle",
                tags=["skip_prediction"],
            ),
        ],
        tags=["oracle_evaluation"],
    )
