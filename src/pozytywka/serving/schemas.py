"""Request and response bodies (validated by pydantic; a violation is a 422 naming the field)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pozytywka.contract import BASE62_ID, EVENT_TYPES, TRACK_EVENTS
from pozytywka.recsys.groups import STRATEGIES

TRACK_ID = BASE62_ID
# Ids up to 2^53 - 1, the integers every JSON reader holds exactly (I-JSON, RFC 7493): above
# it, readers that parse numbers as doubles (JavaScript, many validators) see other ids.
MAX_ID = 2**53 - 1


def _integral(value):
    """JSON Schema's integer: 18 or 18.0, never 18.5, "18" or true (strict models)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_integral)]
UserId = Field(ge=0, le=MAX_ID, description="a user id (non-negative integer)")
TrackIdField = Field(pattern=TRACK_ID, description="a track id (22 base62 characters)")
MemberId = Annotated[
    int, Field(ge=0, le=MAX_ID), BeforeValidator(_integral)
]  # this order: min/max in the schema
TrackId = Annotated[str, Field(pattern=TRACK_ID)]
# Literals built from their one source (recsys.groups, the contract); plain text to mypy.
if TYPE_CHECKING:
    Strategy: TypeAlias = str
    TrackEventType: TypeAlias = str
    OtherEventType: TypeAlias = str
else:
    Strategy = Literal[STRATEGIES]
    TrackEventType = Literal[tuple(TRACK_EVENTS)]
    OtherEventType = Literal[tuple(t for t in EVENT_TYPES if t not in TRACK_EVENTS)]
Variant = Literal["base", "advanced"]
Search = Literal["exact", "hnsw"]
Prediction = Literal["PLAY", "SKIP"]

MAX_GENRES = 50
MAX_GENRE_LENGTH = 100  # characters of one genre name (the catalogue's longest: about 30)
MAX_OTHER_USERS = 999  # the schema's hard bound; playlists.max_group_size is the served one
EVENT_YEARS = (1971, 2099)  # the years of event timestamps accepted, as written
# The same in the schema, so that generated clients and fuzzers know it. With an offset of at
# most 14 hours, the UTC time the raw file gets stays within 1970-2100, the data contract's
# range (1970-01-01T00:00:00+14:00 would be 1969 in UTC).
_YEAR = r"(?:197[1-9]|19[89][0-9]|20[0-9][0-9])"
_LEAP_YEAR = r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26]))"
_MONTH_DAY = (  # days 1-28 of every month, 29-30 of all but February, 31 of the long months
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_TIME = (
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
# Exactly the timestamps accepted (RFC 3339, a real calendar date): a schema that says it
# whole, so that clients and fuzzers generate no timestamp the service refuses.
EVENT_TIMESTAMP = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29){_TIME}$"


def _timestamp_schema(schema: dict) -> None:
    schema.pop("format", None)  # the pattern says all that date-time would, and more
    schema["pattern"] = EVENT_TIMESTAMP


def _repeated(values: list) -> list:
    """Values that occur more than once, sorted."""
    counts = Counter(values)
    return sorted(v for v, n in counts.items() if n > 1)


def _no_lone_surrogates(value: str) -> str:
    """Text that UTF-8 can carry: a lone surrogate (``"\\ud800"`` in JSON) is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text holds a lone surrogate, which is not a character") from exc
    return value


# A request's text fields: bounded, and every code point a character.
Genre = Annotated[
    str, Field(min_length=1, max_length=MAX_GENRE_LENGTH), AfterValidator(_no_lone_surrogates)
]
Name = Annotated[str, Field(max_length=200), AfterValidator(_no_lone_surrogates)]


class Strict(BaseModel):
    """Request bodies: no unknown fields, and no coercion: ``"101"``, ``true`` or ``1.5`` for
    an integer, ``0`` or ``"yes"`` for a boolean are 422s, as the schema documents (``101.0``
    is JSON Schema's integer 101)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Filters(Strict):
    """Track filters: keep tracks with at least one of ``include_genres`` (if given), drop
    tracks with any of ``exclude_genres``, drop explicit tracks if ``exclude_explicit``."""

    include_genres: list[Genre] = Field(default_factory=list, max_length=MAX_GENRES)
    exclude_genres: list[Genre] = Field(default_factory=list, max_length=MAX_GENRES)
    exclude_explicit: bool = False


class PlaylistRequest(Strict):
    user_id: Integer = UserId
    other_users: list[MemberId] = Field(
        min_length=1,
        max_length=MAX_OTHER_USERS,
        description="the other members of the group (conf serving.yml caps the group size "
        "lower); a member listed twice, or the asking user among them, counts once",
    )
    playlist_length: Integer = Field(20, ge=1, description="tracks in the playlist")
    strategy: Strategy | None = Field(
        None, description="how members' rankings are combined; default from conf serving.yml"
    )
    filters: Filters = Field(default_factory=Filters)

    @model_validator(mode="after")
    def _once_each(self):
        """The group is a set: repeats (the asking user among the others too) count once."""
        self.other_users = [u for u in dict.fromkeys(self.other_users) if u != self.user_id]
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
    user_id: Integer = UserId
    track_id: str = TrackIdField


class SkipResponse(BaseModel):
    variant: Variant
    model_version: str
    user_id: int
    track_id: str
    prediction: Prediction
    skip_probability: float = Field(
        description="SKIP exactly when at least the threshold; the genre rule's is 1 or 0"
    )
    genre_match: bool
    cold_start: bool
    observed_skip_share: float | None = Field(
        None,
        description="the genre rule's: the training skip share of pairs with the same genre "
        "match (null for the model)",
    )


class RecommendationRequest(Strict):
    user_id: Integer = UserId
    k: Integer = Field(10, ge=1)
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
    k: Integer = Field(10, ge=1)
    filters: Filters = Field(default_factory=Filters)


class SimilarResponse(BaseModel):
    model_version: str
    track_id: str
    search: Search
    tracks: list[TrackOut]


class RerankRequest(Strict):
    user_id: Integer = UserId
    track_ids: list[TrackId] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    filters: Filters = Field(default_factory=Filters)

    @field_validator("track_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
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


class _Event(Strict):
    session_id: Integer = Field(ge=0, le=MAX_ID)
    timestamp: datetime = Field(  # ISO-8601 text (JSON has no datetime), with a time zone
        strict=False,
        json_schema_extra=_timestamp_schema,
        description=f"ISO-8601 with a time zone, years {EVENT_YEARS[0]}-{EVENT_YEARS[1]}",
    )
    user_id: Integer = UserId

    @field_validator("timestamp", mode="before")
    @classmethod
    def _text(cls, v):
        # Lax datetimes would also take Unix seconds, as numbers or text, and dates alone.
        if not isinstance(v, str) or not re.fullmatch(EVENT_TIMESTAMP, v):
            raise ValueError(
                "timestamp is ISO-8601 text with a time zone, in the years "
                f"{EVENT_YEARS[0]}-{EVENT_YEARS[1]}, e.g. 2026-11-22T18:00:00Z"
            )
        return v


class TrackEvent(_Event):
    """A play, skip or like of a track."""

    event_type: TrackEventType
    track_id: str = TrackIdField


class OtherEvent(_Event):
    """An advertisement or a premium purchase: no track."""

    event_type: OtherEventType
    track_id: None = None


# One raw session event (design.md §1), told apart by event_type.
Event = Annotated[TrackEvent | OtherEvent, Field(discriminator="event_type")]


class EventsRequest(Strict):
    events: list[Event] = Field(min_length=1)


class EventsResponse(BaseModel):
    accepted: int
    file: str
    unknown_users: int
    unknown_tracks: int


class UserRequest(Strict):
    """A new user, in the raw users export's format (design.md §1)."""

    user_id: Integer = UserId
    name: Name = ""
    city: Name = ""
    street: Name = ""
    favourite_genres: list[Genre] = Field(min_length=1, max_length=MAX_GENRES)
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
