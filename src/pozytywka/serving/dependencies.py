"""What the routers share, reached through ``Depends`` or the request rather than closures: the
loaded state, the API-key check, A/B assignment, marking an answer for the prediction log, and
the request checks every area makes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader

from .loading import API_KEY_ENV, READ_KEY_ENV, ServiceState
from .schemas import ErrorBody, Filters, UnknownIdsBody, Variant

VARIANTS: tuple[Variant, Variant] = ("base", "advanced")
BASELINE_VERSIONS = {"playlists": "history-baseline", "skip_predictions": "genre-rule"}


async def get_state(request: Request) -> ServiceState:
    """The ``ServiceState`` that ``create_app`` attached to the application."""
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]

# The OpenAPI security scheme of the guarded routes; the guards below check the header.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="the write key (POZYTYWKA_API_KEY); /ab-summary also takes the read key",
)
ApiKey = Annotated[str | None, Security(API_KEY_HEADER)]

# Documented answers besides 200 and 422, by what raises them.
BODY_ERRORS: dict[int | str, dict] = {
    400: {"model": ErrorBody, "description": "a body that is not UTF-8 JSON"},
    408: {"model": ErrorBody, "description": "the body did not arrive in limits.body_timeout_s"},
    413: {"model": ErrorBody, "description": "request body over limits.max_body_bytes"},
}
UNKNOWN_IDS: dict[int | str, dict] = {
    404: {"model": UnknownIdsBody, "description": "ids neither the model nor the user table knows"}
}
KEYED: dict[int | str, dict] = {
    401: {"model": ErrorBody, "description": "missing or wrong X-API-Key"},
    503: {"model": ErrorBody, "description": "no key configured: the route is disabled"},
}


def write_refusal(api_key: str | None, given: str) -> tuple[int, str] | None:
    """Why a write is refused: (503, why) without a configured key, (401, why) for a missing
    or wrong one; None when ``given`` is the key. The service's middleware asks it before
    reading a write's body, the routes' guard again."""
    if not api_key:
        return 503, (
            f"writes are disabled: no API key is configured (set {API_KEY_ENV} or "
            "serving_api_key in conf/local/credentials.yml)"
        )
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        return 401, "missing or wrong X-API-Key header"
    return None


async def require_key(request: Request, state: State, _: ApiKey) -> None:
    """Guard for write endpoints: 503 without a configured key, 401 for a wrong one."""
    refusal = write_refusal(state.api_key, request.headers.get("x-api-key", ""))
    if refusal is not None:
        raise HTTPException(*refusal)


async def require_read_key(request: Request, state: State, _: ApiKey) -> None:
    """Guard for reads that are not public (experiment outcomes): the read key or the write
    key; 503 when neither is configured, 401 for a missing or wrong one."""
    keys = [k for k in (state.read_key, state.api_key) if k]
    if not keys:
        raise HTTPException(
            503,
            f"the A/B summary is disabled: no key is configured (set {READ_KEY_ENV} or "
            f"{API_KEY_ENV}, or serving_read_key in conf/local/credentials.yml)",
        )
    given = request.headers.get("x-api-key", "").encode()
    if not any(hmac.compare_digest(given, k.encode()) for k in keys):
        raise HTTPException(401, "missing or wrong X-API-Key header")


def assign_variant(user_id: int, salt: str) -> Variant:
    """``base`` or ``advanced``: a stable hash of the experiment's salt and the user id, mod 2
    (not Python's ``hash``, which changes between processes)."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return VARIANTS[int.from_bytes(digest, "big") % 2]


def mark(request: Request, **ab) -> None:
    """Tell the prediction log (serving/observe.py) what answered: experiment, variant, forced,
    model_version, user_id."""
    request.state.ab = ab


def limit(name: str, value: int, maximum: int) -> None:
    """422 in the validation errors' shape when a request asks for more than the configured
    ``maximum`` (the OpenAPI document states it: see ``served_limits``)."""
    if value > maximum:
        raise RequestValidationError(
            [
                {
                    "type": "served_limit",
                    "loc": ["body", name],
                    "msg": f"{name}: {value} asked, this service allows at most {maximum} "
                    "(conf serving.yml)",
                    "input": value,
                }
            ]
        )


def removed_tracks(state: ServiceState, filters: Filters) -> np.ndarray | None:
    """Track positions the request's filters take out (None: nothing removed)."""
    return state.catalogue.filter_out(
        filters.include_genres, filters.exclude_genres, filters.exclude_explicit
    )
