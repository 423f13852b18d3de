"""data_processing: validate and clean the raw exports, report what was dropped, repaired and
normalised, write typed tables."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    clean_artists,
    clean_sessions,
    clean_tracks,
    clean_users,
    merge_listening_events,
    report_data_quality,
    with_incoming,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([*_cleaning_nodes(), *_reporting_nodes()], tags=["data_processing"])


def _cleaning_nodes() -> list[Node]:
    """The service's recorded files after the exports, each file cleaned, events merged."""
    return [
        Node(
            with_incoming,
            ["raw_users", "incoming_users"],
            "users_export",
            name="append_incoming_users",
        ),
        Node(
            with_incoming,
            ["raw_sessions", "incoming_sessions"],
            "sessions_export",
            name="append_incoming_sessions",
        ),
        Node(
            clean_users,
            "users_export",
            ["users", "users_quality", "users_rejected"],
            name="clean_users",
        ),
        Node(
            clean_artists,
            "raw_artists",
            ["artists", "artists_quality", "artists_rejected"],
            name="clean_artists",
        ),
        Node(
            clean_tracks,
            ["raw_tracks", "artists"],
            ["tracks", "tracks_quality", "tracks_rejected"],
            name="clean_tracks",
        ),
        Node(
            clean_sessions,
            ["sessions_export", "users", "tracks"],
            ["events", "sessions_quality", "sessions_rejected"],
            name="clean_sessions",
        ),
        Node(
            merge_listening_events,
            ["events", "tracks", "artists", "users"],
            "listening_events",
            name="merge_listening_events",
        ),
    ]


def _reporting_nodes() -> list[Node]:
    """The data-quality report of all four files, and every rejected record in one table."""
    return [
        Node(
            report_data_quality,
            [
                "users_quality",
                "artists_quality",
                "tracks_quality",
                "sessions_quality",
                "users_rejected",
                "artists_rejected",
                "tracks_rejected",
                "sessions_rejected",
            ],
            [
                "data_quality_report",
                "data_quality_markdown",
                "data_quality_metrics",
                "rejected_records",
            ],
            name="report_data_quality",
        ),
    ]
