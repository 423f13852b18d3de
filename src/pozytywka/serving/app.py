"""The FastAPI application: ``create_app(state)`` serves a loaded ``ServiceState`` through the
routers in serving/routers; ``app_from_environment()`` is the factory ``pozytywka serve`` (and
``uvicorn --factory``) runs. Shared helpers: serving/dependencies.py; metrics and the prediction
log: serving/observe.py."""

from __future__ import annotations

import json
import math
import os
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ExceptionHandler

from .catalogue import UnknownGenres, UnknownIds
from .dependencies import BASELINE_VERSIONS, VARIANTS, assign_variant
from .docs import add_docs
from .loading import ServiceState, load_service
from .observe import LATENCY_BUCKETS, LOGGED, Metrics, ObserveMiddleware
from .routers import ROUTERS

# Importable from here as before the routers were split out.
__all__ = [
    "BASELINE_VERSIONS",
    "LATENCY_BUCKETS",
    "LOGGED",
    "VARIANTS",
    "Metrics",
    "ObserveMiddleware",
    "app_from_environment",
    "assign_variant",
    "create_app",
]

DESCRIPTION = (
    "Group playlists, skip predictions and personalised recommendations with "
    "A/B testing. Every prediction is appended to a durable log. Errors: 404 "
    "for ids neither the model nor the user table knows (a user registered "
    "with POST /users gets cold-start answers), 422 for invalid requests, 413 "
    "for oversized bodies, 401/503 for write endpoints without a valid key."
)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Close the prediction log on shutdown, unless ``create_app`` was told not to."""
    yield
    if app.state.close_on_shutdown:
        app.state.service.log.close()
        if app.state.service.catalogue.registry is not None:
            app.state.service.catalogue.registry.close()


async def unknown_ids(request: Request, exc: UnknownIds) -> JSONResponse:
    """404 naming the ids neither the model nor the user table knows."""
    return JSONResponse({"detail": str(exc), "unknown": {exc.kind: exc.ids}}, status_code=404)


# An invalid value longer than this (as JSON) is described, not echoed: a 422 answer stays
# small whatever was sent.
MAX_ECHO = 256


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 in FastAPI's own shape, whatever the request held: values JSON cannot carry (NaN,
    Infinity, 1e400, a lone surrogate) are echoed as text instead of failing the answer, and
    an input over MAX_ECHO characters is described by its size, not echoed."""
    errors = _json_safe(jsonable_encoder(exc.errors()))
    for error in errors:
        if "input" in error:
            error["input"] = _echo(error["input"])
    return JSONResponse({"detail": errors}, status_code=422)


def _echo(value):
    """``value`` if short as JSON, else a note of its size."""
    size = len(json.dumps(value, ensure_ascii=False))
    return value if size <= MAX_ECHO else f"[not echoed: {size:,} characters of JSON]"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def unknown_genres(request: Request, exc: UnknownGenres) -> JSONResponse:
    """422 in the validation errors' shape for genres outside the catalogue's vocabulary."""
    error = {"type": "unknown_genre", "loc": ["body", "filters"], "msg": str(exc)}
    return JSONResponse({"detail": [{**error, "input": _echo(exc.genres)}]}, status_code=422)


# OpenAPI paths of the limits conf serving.yml sets: (schema, field, keyword, value of config)
SERVED_LIMITS = (
    ("PlaylistRequest", "playlist_length", "maximum", lambda c: c["playlists"]["max_length"]),
    ("PlaylistRequest", "other_users", "maxItems", lambda c: c["playlists"]["max_group_size"] - 1),
    ("RecommendationRequest", "k", "maximum", lambda c: c["recommendations"]["max_k"]),
    ("SimilarRequest", "k", "maximum", lambda c: c["recommendations"]["max_k"]),
    ("RerankRequest", "track_ids", "maxItems", lambda c: c["rerank"]["max_tracks"]),
    ("EventsRequest", "events", "maxItems", lambda c: c["events"]["max_batch"]),
)


def served_openapi(app: FastAPI, config: dict, genres: list[str]):
    """``app.openapi`` with what this service was configured and trained with written into
    the request schemas (the limits of conf serving.yml, the genres filters take), so that the
    document says what a 422 will refuse."""
    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = default()
            schemas = document["components"]["schemas"]
            for schema, name, keyword, value in SERVED_LIMITS:
                field = schemas[schema]["properties"][name]
                field[keyword] = min(value(config), field.get(keyword, value(config)))
            for name in ("include_genres", "exclude_genres"):
                schemas["Filters"]["properties"][name]["items"]["enum"] = list(genres)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def create_app(state: ServiceState, close_on_shutdown: bool = True) -> FastAPI:
    """The service over ``state``: state on ``app.state``, error handlers, the observing
    middleware and every router."""
    app = FastAPI(
        title="Pozytywka ML",
        version=f"{state.versions['recommender']} / {state.versions['skip']}",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc from the service's own files: serving/docs.py
        redoc_url=None,
    )
    app.state.service = state
    app.state.metrics = Metrics()
    app.state.close_on_shutdown = close_on_shutdown
    limits = state.config["limits"]
    app.add_middleware(
        ObserveMiddleware,
        max_body_bytes=limits["max_body_bytes"],
        body_timeout=limits["body_timeout_s"],
        concurrent_writes=limits["concurrent_writes"],
    )
    app.add_exception_handler(RequestValidationError, cast(ExceptionHandler, invalid_request))
    app.add_exception_handler(UnknownIds, cast(ExceptionHandler, unknown_ids))
    app.add_exception_handler(UnknownGenres, cast(ExceptionHandler, unknown_genres))
    for router in ROUTERS:
        app.include_router(router)
    add_docs(app)
    app.openapi = served_openapi(  # type: ignore[method-assign]
        app, state.config, state.catalogue.genres
    )
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory``: the project in ``POZYTYWKA_PROJECT_PATH`` (default:
    the working directory) with the Kedro environment in ``POZYTYWKA_ENV``."""
    return create_app(
        load_service(
            os.environ.get("POZYTYWKA_PROJECT_PATH", "."), os.environ.get("POZYTYWKA_ENV") or None
        )
    )
