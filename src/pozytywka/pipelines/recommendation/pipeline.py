"""recommendation: LightFM with an Optuna search, per-user recommendations and group playlists,
evaluated beside the history baseline and a popularity ranker (reports: reporting)."""

from kedro.pipeline import Node, Pipeline

from pozytywka.recsys.baselines import tune_baselines

from .nodes import (
    compare_training_variants,
    evaluate_recommenders,
    package_model,
    plot_search,
    prepare_training_data,
    recommend_for_users,
    search_hyperparameters,
    train_final_models,
)
from .ranking_nodes import (
    ranker_side_tables,
    served_rankings,
    train_ranker,
    train_validation_lightfm,
)

FEATURES = ["user_feature_matrix", "item_feature_matrix"]


def _identity(model):
    return model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [*_search_nodes(), *_training_nodes(), *_ranking_nodes(), *_evaluation_nodes()],
        tags=["recommendation"],
    )


def _search_nodes() -> list[Node]:
    """Training data with its validation split, the variant comparison and the Optuna search."""
    return [
        Node(
            prepare_training_data,
            [
                "interactions",
                "lightfm_dataset",
                "params:recommendation.validation",
                "params:recommendation.evaluation",
            ],
            "recommendation_data",
            name="prepare_training_data",
        ),
        Node(
            compare_training_variants,
            [
                "recommendation_data",
                *FEATURES,
                "params:recommendation.training",
                "params:recommendation.search.objective",
            ],
            "training_variant_comparison",
            name="compare_training_variants",
        ),
        Node(
            search_hyperparameters,
            [
                "recommendation_data",
                "training_variant_comparison",
                *FEATURES,
                "params:recommendation.search",
                "params:recommendation.training",
                "params:recommendation.groups",
            ],
            ["best_hyperparameters", "optuna_trials", "optuna_study"],
            name="search_hyperparameters",
        ),
        Node(
            plot_search,
            "optuna_study",
            ["optuna_history_plot", "optuna_importance_plot", "optuna_slice_plot"],
            name="plot_search",
        ),
    ]


def _training_nodes() -> list[Node]:
    """The winner (and the defaults, when the winner is another) trained on all training
    pairs, per-user top-k and the packaged model."""
    return [
        Node(
            train_final_models,
            [
                "recommendation_data",
                "best_hyperparameters",
                *FEATURES,
                "params:recommendation.training",
            ],
            ["lightfm_model", "default_lightfm_model"],
            name="train_final_models",
        ),
        Node(
            package_model,
            [
                "lightfm_model",
                "recommendation_data",
                "lightfm_dataset",
                *FEATURES,
                "params:recommendation.recommendations",
                "params:feature_engineering.lightfm",
                "served_rankings",
                "recommender_choice",
            ],
            "recommender",
            name="package_model",
        ),
        Node(_identity, "recommender", "recommender_mlflow_model", name="log_recommender"),
        Node(
            recommend_for_users,
            ["recommender", "recommendation_data", "params:recommendation.recommendations"],
            "user_recommendations",
            name="recommend_for_users",
        ),
    ]


def _ranking_nodes() -> list[Node]:
    """The two-stage recommender: every scorer's candidates re-ranked by LightGBM trained on
    validation likes; the served recommender chosen on held-out validation users."""
    return [
        Node(
            ranker_side_tables,
            ["track_features", "user_features", "lightfm_dataset"],
            "ranker_side_tables",
            name="ranker_side_tables",
        ),
        Node(
            train_validation_lightfm,
            [
                "recommendation_data",
                "best_hyperparameters",
                *FEATURES,
                "params:recommendation.training",
            ],
            "validation_lightfm_model",
            name="train_validation_lightfm",
        ),
        Node(
            train_ranker,
            [
                "recommendation_data",
                "validation_lightfm_model",
                "baseline_tuning",
                "ranker_side_tables",
                *FEATURES,
                "params:recommendation.ranker",
                "params:recommendation.baselines",
            ],
            [
                "ranker_model",
                "recommender_choice",
                "ranker_trials",
                "ranker_importance",
                "ranker_study",
            ],
            name="train_ranker",
        ),
        Node(
            served_rankings,
            [
                "ranker_model",
                "recommender_choice",
                "recommendation_data",
                "lightfm_model",
                "baseline_tuning",
                "ranker_side_tables",
                *FEATURES,
                "params:recommendation.ranker",
                "params:recommendation.baselines",
            ],
            "served_rankings",
            name="served_rankings",
        ),
    ]


def _evaluation_nodes() -> list[Node]:
    """The strong baselines tuned on validation; every scorer on the test split, for single
    users and group playlists."""
    return [
        Node(
            tune_baselines,
            ["recommendation_data", "params:recommendation.baselines"],
            "baseline_tuning",
            name="tune_baselines",
        ),
        Node(
            evaluate_recommenders,
            [
                "lightfm_model",
                "default_lightfm_model",
                "recommendation_data",
                *FEATURES,
                "baseline_tuning",
                "params:recommendation.groups",
                "params:recommendation.evaluation.seed",
                "params:recommendation.baselines",
                "served_rankings",
                "recommender_choice",
            ],
            [
                "recommendation_user_metrics",
                "recommendation_evaluation",
                "group_playlist_evaluation",
            ],
            name="evaluate_recommenders",
        ),
    ]
