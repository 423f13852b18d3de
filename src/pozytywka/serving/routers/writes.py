"""Writes behind the API key: listening events and new users, appended for the next
``kedro run``."""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool

from ..dependencies import State, limit, require_key
from ..schemas import EventsRequest, EventsResponse, UserRequest, UserResponse

router = APIRouter(tags=["writes"], dependencies=[Depends(require_key)])


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
    users, tracks = state.catalogue.users, state.catalogue.track_index
    return EventsResponse(
        accepted=len(records),
        file=state.events.shown(path),
        unknown_users=sum(e.user_id not in users for e in body.events),
        unknown_tracks=sum(
            e.track_id is not None and e.track_id not in tracks for e in body.events
        ),
    )


@router.post("/users", status_code=201)
async def users(body: UserRequest, state: State) -> UserResponse:
    """Register a new user by favourite genres: cold-start answers from now on, and the
    next `kedro run` reads them with the export (data/01_raw/incoming/users)."""
    if body.user_id in state.catalogue.users:
        raise HTTPException(409, f"user {body.user_id} already exists")
    record = body.model_dump()
    path = await run_in_threadpool(state.users_writer.append, [record])
    state.catalogue.register(record)
    genres = state.catalogue.genre_index
    return UserResponse(
        user_id=body.user_id,
        file=state.users_writer.shown(path),
        favourite_genres_known=[g for g in body.favourite_genres if g in genres],
        favourite_genres_unknown=[g for g in body.favourite_genres if g not in genres],
    )
