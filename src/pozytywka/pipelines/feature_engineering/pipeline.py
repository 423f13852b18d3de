"""feature_engineering: listening rows, split, skip rates, user/track features, LightFM inputs."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    assign_split,
    build_interactions,
    build_lightfm_inputs,
    build_session_tracks,
    build_track_features,
    build_user_features,
    fit_skip_rates,
    fit_track_scaler,
    genre_vocabulary,
    summarise_features,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [*_listening_nodes(), *_feature_nodes(), *_model_input_nodes()],
        tags=["feature_engineering"],
    )


def _listening_nodes() -> list[Node]:
    """One row per (session, track), the split, implicit interactions, training skip rates."""
    return [
        Node(
            build_session_tracks,
            "events",
            ["session_tracks_all", "dedup_stats"],
            name="build_session_tracks",
        ),
        Node(
            assign_split,
            ["session_tracks_all", "params:feature_engineering.split"],
            ["session_tracks", "split_summary"],
            name="assign_split",
        ),
        Node(
            build_interactions,
            ["session_tracks", "params:feature_engineering.interactions"],
            "interactions",
            name="build_interactions",
        ),
        Node(
            fit_skip_rates,
            ["session_tracks", "params:feature_engineering.skip_rate_smoothing"],
            ["user_skip_rates", "track_skip_rates", "global_skip_rate"],
            name="fit_skip_rates",
        ),
    ]


def _feature_nodes() -> list[Node]:
    """Genre vocabulary, user features, the training-fit scaler and track features."""
    return [
        Node(genre_vocabulary, ["artists", "users"], "genre_vocabulary", name="genre_vocabulary"),
        Node(
            build_user_features,
            ["users", "user_skip_rates", "global_skip_rate", "genre_vocabulary"],
            "user_features",
            name="build_user_features",
        ),
        Node(
            fit_track_scaler,
            ["tracks", "session_tracks"],
            "track_feature_scaler",
            name="fit_track_scaler",
        ),
        Node(
            build_track_features,
            [
                "tracks",
                "artists",
                "track_feature_scaler",
                "track_skip_rates",
                "global_skip_rate",
                "genre_vocabulary",
            ],
            "track_features",
            name="build_track_features",
        ),
    ]


def _model_input_nodes() -> list[Node]:
    """LightFM matrices and the feature summary."""
    return [
        Node(
            build_lightfm_inputs,
            [
                "interactions",
                "user_features",
                "track_features",
                "params:feature_engineering.lightfm",
            ],
            {
                "dataset": "lightfm_dataset",
                "train_interactions": "train_interactions",
                "train_weights": "train_weights",
                "test_interactions": "test_interactions",
                "user_features": "user_feature_matrix",
                "item_features": "item_feature_matrix",
            },
            name="build_lightfm_inputs",
        ),
        Node(
            summarise_features,
            ["dedup_stats", "split_summary", "interactions"],
            ["feature_summary", "feature_metrics"],
            name="summarise_features",
        ),
    ]
