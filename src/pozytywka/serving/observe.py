"""Prometheus metrics and the ASGI middleware that caps request bodies, times every request and
writes the prediction log."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import numpy as np
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Match

from .dependencies import assign_variant, write_refusal
from .loading import ServiceState
from .prediction_log import Record, answer_summary, capped

WRITES = ("/events", "/users")
LOGGED = ("/playlists", "/skip-predictions", "/recommendations", "/similar-tracks", "/rerank")
MAX_JSON_DEPTH = 32  # far beyond any request body here; Python's parser fails near 1,000
SQLITE_INT = (-(2**63), 2**63 - 1)
EXPERIMENTS = {"/playlists": "playlists", "/skip-predictions": "skip_predictions"}  # A/B routes
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """One app's Prometheus registry: answers and latency by endpoint and variant."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pozytywka_requests",
            "Answers by endpoint, variant and status",
            ["endpoint", "variant", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pozytywka_request_latency_seconds",
            "Time to answer, by endpoint and variant",
            ["endpoint", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


class ObserveMiddleware:
    """Pure ASGI: caps the request body, times every request for Prometheus, and commits a
    prediction-log record before the last byte of a prediction endpoint's answer is sent."""

    def __init__(self, app, max_body_bytes: int, body_timeout: float, concurrent_writes: int = 0):
        self.app, self.max_body, self.body_timeout = app, max_body_bytes, body_timeout
        # Writes processed at once (0: no bound); the others wait, body read but not parsed,
        # so a flood of writes leaves the event loop to the predictions in between. (Bodies
        # are read first: a slow client cannot hold the gate.)
        self.write_gate = asyncio.Semaphore(concurrent_writes) if concurrent_writes else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        metrics = scope["app"].state.metrics
        if scope["path"] in WRITES and scope["method"] == "POST":  # the key before the body
            given = dict(scope["headers"]).get(b"x-api-key", b"").decode("latin-1")
            refusal = write_refusal(scope["app"].state.service.api_key, given)
            if refusal is not None:
                metrics.requests.labels(scope["path"], "none", str(refusal[0])).inc()
                await JSONResponse({"detail": refusal[1]}, refusal[0])(scope, receive, send)
                return None
        body = await self._read_body(scope, receive, send, metrics)
        if body is None:
            return None
        if self.write_gate is not None and scope["path"] in WRITES:
            async with self.write_gate:
                return await self._handle(scope, receive, send, start, body)
        return await self._handle(scope, receive, send, start, body)

    async def _handle(self, scope, receive, send, start: float, body: bytes):
        service = scope["app"].state.service
        metrics = scope["app"].state.metrics
        if too_deep(body):  # Python's own parser would fail with a RecursionError (a 500)
            message = f"request JSON nested deeper than {MAX_JSON_DEPTH} levels"
            response = JSONResponse(
                {"detail": [{"loc": ["body"], "msg": message, "type": "json_too_deep"}]},
                status_code=422,
            )
            self._observe(scope, service, metrics, start, 422, body, [bytes(response.body)])
            await response(scope, receive, send)
            return None
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status, chunks = 500, []

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._observe(scope, service, metrics, start, status, body, chunks)
            await send(message)

        try:
            await self.app(scope, replay, capture)
        except Exception:
            self._observe(scope, service, metrics, start, 500, body, [b"internal error"])
            raise
        return None

    async def _read_body(self, scope, receive, send, metrics: Metrics) -> bytes | None:
        """The whole request body; None after a disconnect or once 408 (the body did not
        arrive within ``limits.body_timeout_s``) or 413 has been answered."""
        body, more = b"", True
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        while more:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                response = JSONResponse(
                    {"detail": f"request body not received within {self.body_timeout:g} s"},
                    status_code=408,
                    headers={"connection": "close"},
                )
                metrics.requests.labels(_known_path(scope), "none", "408").inc()
                await response(scope, receive, send)
                return None
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                response = JSONResponse(
                    {"detail": f"request body over {self.max_body} bytes"}, status_code=413
                )
                metrics.requests.labels(_known_path(scope), "none", "413").inc()
                await response(scope, receive, send)
                return None
        return body

    @staticmethod
    def _observe(
        scope,
        service: ServiceState,
        metrics: Metrics,
        start: float,
        status: int,
        body: bytes,
        chunks: list[bytes],
    ) -> None:
        """Count and time the answer; append a log record for prediction endpoints."""
        latency = time.perf_counter() - start
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or _known_path(scope)
        ab = scope.get("state", {}).get("ab", {})
        variant = ab.get("variant") or "none"
        metrics.requests.labels(endpoint, variant, str(status)).inc()
        metrics.latency.labels(endpoint, variant).observe(latency)
        if not endpoint.startswith(LOGGED):
            return
        user_id = ab.get("user_id")
        if user_id is None:
            user_id = _requested_user(body)
        if not ab.get("experiment"):  # an answer refused before its route marked it
            ab = {**ab, **_arm_of(endpoint, user_id, service.config["ab_test"])}
        service.log.append(
            Record(
                logged_at=datetime.now(UTC).isoformat(timespec="microseconds"),
                endpoint=endpoint,
                experiment=ab.get("experiment"),
                variant=ab.get("variant"),
                forced=bool(ab.get("forced")),
                model_version=ab.get("model_version"),
                user_id=user_id,
                status=status,
                latency_ms=latency * 1e3,
                request=capped(
                    body.decode("utf-8", "replace"),
                    service.config["prediction_log"]["max_request_bytes"],
                ),
                response=answer_summary(
                    status, b"".join(chunks), service.config["prediction_log"]["max_answer_bytes"]
                ),
                salt=_salt_of(ab.get("experiment"), service.config["ab_test"]),
            )
        )


def too_deep(body: bytes) -> bool:
    """Whether JSON ``body`` nests arrays or objects deeper than MAX_JSON_DEPTH (brackets in
    strings do not count). Only a body with that many brackets at all is scanned, in numpy."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    data = np.frombuffer(body, dtype=np.uint8)
    position = np.arange(len(data))
    backslash = data == 0x5C
    # A quote is escaped by an odd run of backslashes right before it.
    last_other = np.maximum.accumulate(np.where(backslash, -1, position))
    run_before = np.concatenate(([0], (position - last_other)[:-1]))
    quote = (data == 0x22) & (run_before % 2 == 0)
    outside = np.cumsum(quote) % 2 == 0  # an even number of real quotes so far
    step = np.where(outside & ((data == 0x5B) | (data == 0x7B)), 1, 0)
    step -= np.where(outside & ((data == 0x5D) | (data == 0x7D)), 1, 0)
    return bool(np.cumsum(step).max() > MAX_JSON_DEPTH)


def _requested_user(body: bytes) -> int | None:
    """The request's ``user_id`` for the log, when it is an integer SQLite can store."""
    try:
        user_id = json.loads(body).get("user_id")
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        return None
    return user_id if SQLITE_INT[0] <= user_id <= SQLITE_INT[1] else None


def _known_path(scope) -> str:
    """The request's path when a route of the app matches it in full (a body refused before
    routing; these routes have no path parameters, so the path is the route's), else
    ``unmatched``: an arbitrary path never becomes a metrics label."""
    for route in scope["app"].router.routes:
        if route.matches(scope)[0] == Match.FULL:
            return scope["path"]
    return "unmatched"


def _arm_of(endpoint: str, user_id: int | None, ab_test: dict) -> dict:
    """The experiment and arm an A/B route would have answered from, so that an error (a 4xx
    before the route marked its answer) counts against the arm the user is in."""
    base, forced_variant = _split_route(endpoint)
    experiment = EXPERIMENTS.get(base)
    if experiment is None:
        return {}
    if forced_variant:
        return {"experiment": experiment, "variant": forced_variant, "forced": True}
    if user_id is None:
        return {"experiment": experiment}
    salt = ab_test[f"{experiment}_salt"]
    return {"experiment": experiment, "variant": assign_variant(user_id, salt), "forced": False}


def _salt_of(experiment: str | None, ab_test: dict) -> str | None:
    """The salt that assigns users of ``experiment`` (logged, so an analysis can tell one
    experiment's answers from the next one's after a salt change)."""
    return ab_test.get(f"{experiment}_salt") if experiment else None


def _split_route(endpoint: str) -> tuple[str, str]:
    """``/playlists/base`` -> (``/playlists``, ``base``); ``/playlists`` -> (``/playlists``, "")."""
    head, _, tail = endpoint.rpartition("/")
    return (head, tail) if head and tail in ("base", "advanced") else (endpoint, "")
