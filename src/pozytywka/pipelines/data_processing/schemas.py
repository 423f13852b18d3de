"""Pandera schemas of the typed primary tables, and the defect kinds of the quality report.

The raw contract itself is pozytywka.contract."""

from __future__ import annotations

import pandera.pandas as pa

from pozytywka.contract import BASE62_ID, EVENT_TYPES, INTEGER_FIELDS, TRACK_EVENTS, TRACK_RANGES


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
    checks=pa.Check(
        lambda df: df["track_id"].notna() == df["event_type"].isin(TRACK_EVENTS),
        element_wise=False,
        error="track events carry a track, others none",
    ),
    strict=True,
)

# What the data-quality report calls each thing a cleaning node does to a record:
# - dropped: the record is unusable and removed (it is in rejected_records with its reason);
# - repaired: a defect fixed (or flagged) in place, the record is kept;
# - normalised: a valid variant of the contract written in canonical form, not a defect.
# Every kind is listed here, so reports and MLflow list zeros too; a kind names one category.
CATEGORIES = ("dropped", "repaired", "normalised")
_ENTITY_DROPS = [
    "malformed_line",
    "duplicate_line",
    "null_id",
    "invalid_id",
    "conflicting_duplicate_id",
]
QUALITY_KINDS: dict[str, dict[str, list[str]]] = {
    "users": {
        "dropped": _ENTITY_DROPS,
        "repaired": [
            "type_coerced",
            "missing_favourite_genres",
            "invalid_premium_flag",
            "invalid_utf8",
        ],
        "normalised": ["extra_field"],
    },
    "artists": {
        "dropped": _ENTITY_DROPS,
        "repaired": ["type_coerced", "missing_genres", "invalid_utf8"],
        "normalised": ["extra_field"],
    },
    "tracks": {
        "dropped": _ENTITY_DROPS,
        "repaired": [
            "type_coerced",
            "out_of_range",
            "invalid_value",
            "missing_value",
            "invalid_release_date",
            "unknown_artist_id",
            "null_artist_id",
            "invalid_utf8",
        ],
        "normalised": ["extra_field"],
    },
    "sessions": {
        "dropped": [
            "malformed_line",
            "duplicate_line",
            "null_session_id",
            "invalid_session_id",
            "null_user_id",
            "null_user_id_ambiguous",
            "invalid_user_id",
            "null_event_type",
            "unknown_event_type",
            "null_track_id",
            "invalid_timestamp",
            "unknown_user_id",
            "unknown_track_id",
        ],
        "repaired": [
            "user_id_from_session",
            "type_coerced",
            "track_on_non_track_event",
            "session_user_conflict",
            "invalid_utf8",
        ],
        "normalised": ["event_type_spelling", "timestamp_form", "extra_field"],
    },
}
# Defects (dropped or repaired) per file, and the kinds whose records are dropped.
DEFECT_KINDS = {f: [*k["dropped"], *k["repaired"]] for f, k in QUALITY_KINDS.items()}
DROPPED_KINDS = {kind for k in QUALITY_KINDS.values() for kind in k["dropped"]}
