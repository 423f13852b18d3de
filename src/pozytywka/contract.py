"""The raw data contract (docs/design.md §1): the fields of each export, valid ranges, id
formats, event types and the spellings of them the service's exports are known to write.

Pipelines (validation), the generator (dirt) and the service (request schemas) all read it here.
"""

from __future__ import annotations

EVENT_TYPES = ["play", "skip", "like", "advertisement", "buy_premium"]
TRACK_EVENTS = ["play", "skip", "like"]
AUDIO_FEATURES = [
    "danceability",
    "energy",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
]
# Numeric descriptions of a track the models use, in model-input order (release_year is derived
# from release_date by cleaning).
NUMERIC_TRACK_FEATURES = [
    "popularity",
    "duration_ms",
    "release_year",
    *AUDIO_FEATURES,
    "loudness",
    "tempo",
]

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

# Every field of the contract per file; any other key in a record is ignored (and counted).
CONTRACT_FIELDS = {
    "users": ["user_id", "name", "city", "street", "favourite_genres", "premium_user"],
    "artists": ["id", "name", "genres"],
    "tracks": [
        "id",
        "name",
        "popularity",
        "duration_ms",
        "explicit",
        "id_artist",
        "release_date",
        *AUDIO_FEATURES,
        "key",
        "loudness",
        "tempo",
    ],
    "sessions": ["session_id", "timestamp", "user_id", "track_id", "event_type"],
}
# Text fields, read as text whatever they look like (an ISO string is not parsed as a date).
TEXT_FIELDS = {
    "users": ["name", "city", "street"],
    "artists": ["id", "name"],
    "tracks": ["id", "name", "id_artist", "release_date"],
    "sessions": ["timestamp", "track_id", "event_type"],
}

# Event-type spellings the service's exports are known to use, after trimming and lower-casing
# (so `PLAY`, ` like` and `ADVERTISEMENT` match too): each maps to its canonical type.
EVENT_TYPE_SPELLINGS = {**{t: t for t in EVENT_TYPES}, "advertisment": "advertisement"}
