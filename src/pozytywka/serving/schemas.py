"""Request and response bodies (validated by pydantic; a violation is a 422 naming the field)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pozytywka.contract import BASE62_ID, EVENT_TYPES, TRACK_EVENTS
from pozytywka.recsys.groups import STRATEGIES

TRACK_ID = BASE62_ID
UserId = Field(ge=0, le=2**63 - 1, description="a user id (non-negative integer)")
TrackIdField = Field(pattern=TRACK_ID, description="a track id (22 base62 characters)")
# Literals built from their one source (recsys.groups, the contract); plain text to mypy.
if TYPE_CHECKING:
    Strategy: TypeAlias = str
    EventType: TypeAlias = str
else:
    Strategy = Literal[STRATEGIES]
    EventType = Literal[tuple(EVENT_TYPES)]
Variant = Literal["base", "advanced"]
Search = Literal["exact", "hnsw"]
Prediction = Literal["PLAY", "SKIP"]

MAX_GENRES = 50
MAX_OTHER_USERS = 999  # the schema's hard bound; playlists.max_group_size is the served one
EVENT_YEARS = (1970, 2100)  # the years of event timestamps accepted, as written
# The same in the schema, so that generated clients and fuzzers know it; in range, the UTC
# time the raw file gets can never overflow (as 0001-01-01T00:00:00+14:00 would).
EVENT_TIMESTAMP = r"^(19[7-9][0-9]|20[0-9][0-9]|2100)-"


def _repeated(values: list) -> list:
    """Values that occur more than once, sorted."""
    counts = Counter(values)
    return sorted(v for v, n in counts.items() if n > 1)


class Strict(BaseModel):
    """Request bodies: no unknown fields, and no coercion: ``"101"``, ``true`` or ``1.0`` for
    an integer, ``0`` or ``"yes"`` for a boolean are 422s, as the schema documents."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Filters(Strict):
    """Track filters: keep tracks with at least one of ``include_genres`` (if given), drop
    tracks with any of ``exclude_genres``, drop explicit tracks if ``exclude_explicit``."""

    include_genres: list[str] = Field(default_factory=list, max_length=MAX_GENRES)
    exclude_genres: list[str] = Field(default_factory=list, max_length=MAX_GENRES)
    exclude_explicit: bool = False


class PlaylistRequest(Strict):
    user_id: int = UserId
    other_users: list[int] = Field(
        max_length=MAX_OTHER_USERS,
        description="the other members of the group (at least one; conf serving.yml caps the "
        "group size lower)",
    )
    playlist_length: int = Field(20, ge=1, description="tracks in the playlist")
    strategy: Strategy | None = Field(
        None, description="how members' rankings are combined; default from conf serving.yml"
    )
    filters: Filters = Field(default_factory=Filters)

    @field_validator("other_users")
    @classmethod
    def _members(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("a group playlist needs at least one other member")
        if any(u < 0 for u in v):
            raise ValueError("user ids are non-negative integers")
        return v

    @model_validator(mode="after")
    def _distinct(self):
        dup = _repeated([self.user_id, *self.other_users])
        if dup:
            raise ValueError(f"each member once: {dup} appear more than once")
        return self


class TrackOut(BaseModel):
    track_id: str
    name: str
    artist_id: str
    artist: str
    explicit: bool
    score: float | None = None


class PlaylistResponse(BaseModel):
    variant: Variant
    model_version: str
    strategy: str | None
    user_id: int
    members: list[int]
    cold_start_members: list[int]
    tracks: list[TrackOut]


class SkipRequest(Strict):
    user_id: int = UserId
    track_id: str = TrackIdField


class SkipResponse(BaseModel):
    variant: Variant
    model_version: str
    user_id: int
    track_id: str
    prediction: Prediction
    skip_probability: float
    genre_match: bool
    cold_start: bool


class RecommendationRequest(Strict):
    user_id: int = UserId
    k: int = Field(10, ge=1)
    exclude_known: bool | None = Field(
        None, description="leave out tracks the user played (default from conf serving.yml)"
    )
    filters: Filters = Field(default_factory=Filters)


class RecommendationResponse(BaseModel):
    model_version: str
    user_id: int
    cold_start: bool
    tracks: list[TrackOut]


class SimilarRequest(Strict):
    track_id: str = TrackIdField
    k: int = Field(10, ge=1)
    filters: Filters = Field(default_factory=Filters)


class SimilarResponse(BaseModel):
    model_version: str
    track_id: str
    search: Search
    tracks: list[TrackOut]


class RerankRequest(Strict):
    user_id: int = UserId
    track_ids: list[str] = Field(min_length=1)
    filters: Filters = Field(default_factory=Filters)

    @field_validator("track_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if not re.fullmatch(TRACK_ID, t)]
        if bad:
            raise ValueError(f"malformed track ids (22 base62 characters expected): {bad[:5]}")
        dup = _repeated(v)
        if dup:
            raise ValueError(f"each track once: {dup[:5]} appear more than once")
        return v


class NotRanked(BaseModel):
    track_id: str
    reason: Literal["unknown_track", "filtered"]


class RerankResponse(BaseModel):
    model_version: str
    user_id: int
    cold_start: bool
    tracks: list[TrackOut]
    not_ranked: list[NotRanked]


class Event(Strict):
    """One raw session event (design.md §1); ``track_id`` for play, skip and like only."""

    session_id: int = Field(ge=0, le=2**63 - 1)
    timestamp: datetime = Field(  # ISO-8601 text (JSON has no datetime), with a time zone
        strict=False,
        json_schema_extra={"pattern": EVENT_TIMESTAMP},
        description=f"ISO-8601 with a time zone, years {EVENT_YEARS[0]}-{EVENT_YEARS[1]}",
    )
    user_id: int = UserId
    track_id: str | None = Field(None, pattern=TRACK_ID)
    event_type: EventType

    @field_validator("timestamp", mode="before")
    @classmethod
    def _text(cls, v):
        if not isinstance(v, str):  # lax datetimes would take Unix seconds too
            raise ValueError("timestamp is ISO-8601 text, e.g. 2026-11-22T18:00:00Z")
        return v

    @model_validator(mode="after")
    def _track(self):
        needs = self.event_type in TRACK_EVENTS
        if needs and self.track_id is None:
            raise ValueError(f"a {self.event_type} event needs a track_id")
        if not needs and self.track_id is not None:
            raise ValueError(f"an {self.event_type} event carries no track_id")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp needs a time zone (e.g. 2026-11-22T18:00:00Z)")
        if not EVENT_YEARS[0] <= self.timestamp.year <= EVENT_YEARS[1]:
            raise ValueError(f"timestamp must fall in the years {EVENT_YEARS[0]}-{EVENT_YEARS[1]}")
        return self


class EventsRequest(Strict):
    events: list[Event] = Field(min_length=1)


class EventsResponse(BaseModel):
    accepted: int
    file: str
    unknown_users: int
    unknown_tracks: int


class UserRequest(Strict):
    """A new user, in the raw users export's format (design.md §1)."""

    user_id: int = UserId
    name: str = Field("", max_length=200)
    city: str = Field("", max_length=200)
    street: str = Field("", max_length=200)
    favourite_genres: list[str] = Field(min_length=1, max_length=MAX_GENRES)
    premium_user: bool = False


class ErrorBody(BaseModel):
    """A 401, 409, 413 or 503 answer."""

    detail: str


class UnknownIdsBody(BaseModel):
    """A 404 answer: the ids neither the model nor the user table knows, by kind."""

    detail: str
    unknown: dict[str, list[int | str]]


class UserResponse(BaseModel):
    user_id: int
    file: str
    favourite_genres_known: list[str]
    favourite_genres_unknown: list[str]
