"""Writes behind the API key: listening events and new users, appended for the next
``kedro run``."""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool

from ..dependencies import BODY_ERRORS, KEYED, State, limit, require_key
from ..registry import AlreadyRegistered
from ..schemas import ErrorBody, EventsRequest, EventsResponse, UserRequest, UserResponse

router = APIRouter(
    tags=["writes"], dependencies=[Depends(require_key)], responses={**KEYED, **BODY_ERRORS}
)


@router.post("/events", status_code=202)
async def events(body: EventsRequest, state: State) -> EventsResponse:
    """Record play / skip / like (and ad, premium) events in the raw sessions format; the
    next `kedro run` reads them with the export (data/01_raw/incoming/sessions)."""
    limit("events", len(body.events), state.config["events"]["max_batch"])
    records = [
        {
            "session_id": e.session_id,
            "timestamp": e.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "user_id": e.user_id,
            "track_id": e.track_id,
            "event_type": e.event_type,
        }
        for e in body.events
    ]
    path = await run_in_threadpool(state.events.append, records)  # fsync off the event loop
    unknown = state.catalogue.unknown_users([e.user_id for e in body.events])
    tracks = state.catalogue.track_index
    return EventsResponse(
        accepted=len(records),
        file=state.events.shown(path),
        unknown_users=sum(e.user_id in unknown for e in body.events),
        unknown_tracks=sum(
            e.track_id is not None and e.track_id not in tracks for e in body.events
        ),
    )


@router.post("/users", status_code=201, responses={409: {"model": ErrorBody}})
async def users(body: UserRequest, state: State) -> UserResponse:
    """Register a new user by favourite genres: cold-start answers from now on, on every
    worker, and the next `kedro run` reads them with the export
    (data/01_raw/incoming/users). Registering the same record again answers the same (a safe
    retry); an id of the user table, or registered with other details, is a 409."""
    catalogue, record = state.catalogue, body.model_dump()
    registry = catalogue.registry
    assert registry is not None  # load_service attaches it
    if body.user_id in catalogue.users and registry.get(body.user_id) is None:
        raise HTTPException(409, f"user {body.user_id} already exists")
    try:
        registered_at = await run_in_threadpool(
            registry.register, record, lambda at: state.users_writer.append([record], at)
        )
    except AlreadyRegistered as exc:
        raise HTTPException(
            409, f"user {body.user_id} is already registered with other details"
        ) from exc
    catalogue.register(record)
    genres = catalogue.genre_index
    return UserResponse(
        user_id=body.user_id,
        file=state.users_writer.shown(state.users_writer.path_for(registered_at)),
        favourite_genres_known=[g for g in body.favourite_genres if g in genres],
        favourite_genres_unknown=[g for g in body.favourite_genres if g not in genres],
    )
