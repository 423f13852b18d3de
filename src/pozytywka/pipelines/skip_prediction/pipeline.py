"""skip_prediction: will this user skip this track? Genre-rule baseline, reference LinearSVC,
an Optuna-searched final model, and a batch scorer (reports: reporting)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_skip_dataset,
    evaluate_skip_models,
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
            Node(
                build_skip_dataset,
                [
                    "session_tracks",
                    *TABLES,
                    "params:skip_prediction.dataset",
                    "params:skip_prediction.scoring",
                ],
                "skip_dataset",
                name="build_skip_dataset",
            ),
            Node(
                train_models,
                ["skip_dataset", "params:skip_prediction.training"],
                ["skip_linear_svc", "skip_model", "skip_model_selection", "skip_trials"],
                name="train_skip_models",
            ),
            Node(_identity, "skip_model", "skip_mlflow_model", name="log_skip_model"),
            Node(
                evaluate_skip_models,
                [
                    "skip_dataset",
                    "skip_linear_svc",
                    "skip_model",
                    "params:skip_prediction.importance",
                ],
                ["skip_test_predictions", "skip_importance"],
                name="evaluate_skip_models",
            ),
            Node(
                sample_pairs_to_score,
                ["skip_dataset", "params:skip_prediction.batch"],
                "skip_pairs_to_score",
                name="sample_pairs_to_score",
            ),
            Node(
                score_pairs,
                [
                    "skip_pairs_to_score",
                    "skip_model",
                    "skip_dataset",
                    *TABLES,
                    "params:skip_prediction.scoring",
                ],
                ["skip_batch_scores", "skip_batch_counts"],
                name="score_pairs",
            ),
        ],
        tags=["skip_prediction"],
    )
