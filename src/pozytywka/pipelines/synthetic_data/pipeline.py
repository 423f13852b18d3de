"""synthetic_data: a realistic catalogue with known hidden truth, written as raw exports."""

from kedro.pipeline import Node, Pipeline

from .nodes import generate_clean_catalogue, package_truth, write_dirty_exports


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_clean_catalogue,
                inputs="params:synthetic_data",
                outputs=[
                    "synthetic_users",
                    "synthetic_artists",
                    "synthetic_tracks",
                    "synthetic_events",
                    "ground_truth_users",
                    "ground_truth_tracks",
                    "ground_truth_params",
                ],
                name="generate_clean_catalogue",
            ),
            Node(
                write_dirty_exports,
                inputs=[
                    "synthetic_users",
                    "synthetic_artists",
                    "synthetic_tracks",
                    "synthetic_events",
                    "params:synthetic_data",
                ],
                outputs=[
                    "raw_users",
                    "raw_artists",
                    "raw_tracks",
                    "raw_sessions",
                    "injected_defects",
                ],
                name="write_dirty_exports",
            ),
            Node(
                package_truth,
                inputs=[
                    "ground_truth_users",
                    "ground_truth_tracks",
                    "ground_truth_params",
                    "raw_users",
                    "raw_artists",
                    "raw_tracks",
                    "raw_sessions",
                ],
                outputs="synthetic_truth",
                name="package_truth",
            ),
        ],
        tags=["synthetic_data"],
    )
