"""The raw data contract (design.md §1) and pandera schemas of the typed primary tables."""

from __future__ import annotations

import pandera.pandas as pa

EVENT_TYPES = ["play", "skip", "like", "advertisement", "buy_premium"]
TRACK_EVENTS = ["play", "skip", "like"]
AUDIO_FEATURES = ["danceability", "energy", "speechiness", "acousticness", "instrumentalness",
                  "liveness", "valence"]

# Valid ranges of numeric track fields: a value outside becomes null and is counted.
TRACK_RANGES: dict[str, tuple[float, float]] = {
    "popularity": (0, 100),
    "duration_ms": (1, 24 * 3600 * 1000),
    "explicit": (0, 1),
    **{f: (0.0, 1.0) for f in AUDIO_FEATURES},
    "key": (0, 11),
    "loudness": (-60.0, 0.0),
    "tempo": (1.0, 300.0),
}
INTEGER_FIELDS = ["popularity", "duration_ms", "explicit", "key"]

# Fields each raw file must have (a file without one of them is not that export at all).
REQUIRED_FIELDS = {
    "users": ["user_id", "favourite_genres", "premium_user"],
    "artists": ["id", "genres"],
    "tracks": ["id", "id_artist", *TRACK_RANGES],
    "sessions": ["session_id", "timestamp", "user_id", "track_id", "event_type"],
}
BASE62_ID = r"^[0-9A-Za-z]{22}$"


def _in_range(col: str) -> pa.Column:
    lo, hi = TRACK_RANGES[col]
    dtype = "Int64" if col in INTEGER_FIELDS else "float64"
    return pa.Column(dtype, pa.Check.in_range(lo, hi), nullable=True)


USERS = pa.DataFrameSchema(
    {
        "user_id": pa.Column("int64", unique=True),
        "name": pa.Column("string", nullable=True),
        "city": pa.Column("string", nullable=True),
        "street": pa.Column("string", nullable=True),
        "favourite_genres": pa.Column(object),
        "premium_user": pa.Column(bool),
    },
    strict=True,
)

ARTISTS = pa.DataFrameSchema(
    {
        "artist_id": pa.Column("string", pa.Check.str_matches(BASE62_ID), unique=True),
        "name": pa.Column("string", nullable=True),
        "genres": pa.Column(object),
    },
    strict=True,
)

TRACKS = pa.DataFrameSchema(
    {
        "track_id": pa.Column("string", pa.Check.str_matches(BASE62_ID), unique=True),
        "name": pa.Column("string", nullable=True),
        "artist_id": pa.Column("string", nullable=True),
        "release_date": pa.Column("string", nullable=True),
        "release_year": pa.Column("Int64", pa.Check.in_range(1000, 2100), nullable=True),
        **{c: _in_range(c) for c in TRACK_RANGES if c != "explicit"},
        "explicit": pa.Column("boolean", nullable=True),
    },
    strict=True,
)

EVENTS = pa.DataFrameSchema(
    {
        "session_id": pa.Column("int64"),
        "timestamp": pa.Column("datetime64[ns, UTC]"),
        "user_id": pa.Column("int64"),
        "track_id": pa.Column("string", nullable=True),
        "event_type": pa.Column("category", pa.Check.isin(EVENT_TYPES)),
    },
    checks=pa.Check(lambda df: df["track_id"].notna() == df["event_type"].isin(TRACK_EVENTS),
                    element_wise=False, error="track events carry a track, others none"),
    strict=True,
)

# Every defect kind each cleaning node can report, so reports and MLflow list zeros too.
_ENTITY_DEFECTS = ["malformed_line", "duplicate_line", "null_id", "invalid_id",
                   "conflicting_duplicate_id", "type_coerced"]
DEFECT_KINDS = {
    "users": [*_ENTITY_DEFECTS, "missing_favourite_genres", "invalid_premium_flag"],
    "artists": [*_ENTITY_DEFECTS, "missing_genres"],
    "tracks": [*_ENTITY_DEFECTS, "out_of_range", "invalid_value", "missing_value",
               "invalid_release_date", "unknown_artist_id", "null_artist_id"],
    "sessions": ["malformed_line", "duplicate_line", "null_session_id", "invalid_session_id",
                 "null_user_id", "invalid_user_id", "unknown_event_type", "null_track_id",
                 "invalid_timestamp", "unknown_user_id", "unknown_track_id",
                 "event_type_repaired", "timestamp_repaired", "track_on_non_track_event",
                 "type_coerced", "session_user_conflict"],
}
# Kinds whose records are dropped (kept in rejected_records); every other kind is repaired in place
# or, for session_user_conflict, flagged and kept.
DROPPED_KINDS = {"malformed_line", "duplicate_line", "null_id", "invalid_id",
                 "conflicting_duplicate_id", "null_session_id", "invalid_session_id",
                 "null_user_id", "invalid_user_id", "unknown_event_type", "null_track_id",
                 "invalid_timestamp", "unknown_user_id", "unknown_track_id"}
