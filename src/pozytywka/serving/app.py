"""The FastAPI application: routes, A/B assignment, the prediction log and Prometheus metrics.

``create_app(state)`` serves a loaded ``ServiceState``; ``app_from_environment()`` is the
factory ``pozytywka serve`` (and ``uvicorn --factory``) runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from .catalogue import UnknownGenres, UnknownIds
from .loading import API_KEY_ENV, ServiceState, load_service
from .prediction_log import Record, ab_summary
from .schemas import (
    EventsRequest,
    EventsResponse,
    Filters,
    PlaylistRequest,
    PlaylistResponse,
    RecommendationRequest,
    RecommendationResponse,
    RerankRequest,
    RerankResponse,
    SimilarRequest,
    SimilarResponse,
    SkipRequest,
    SkipResponse,
    UserRequest,
    UserResponse,
)

VARIANTS = ("base", "advanced")
BASELINE_VERSIONS = {"playlists": "history-baseline", "skip_predictions": "genre-rule"}
LOGGED = ("/playlists", "/skip-predictions", "/recommendations", "/similar-tracks", "/rerank")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def assign_variant(user_id: int, salt: str) -> str:
    """``base`` or ``advanced``: a stable hash of the experiment's salt and the user id, mod 2
    (not Python's ``hash``, which changes between processes)."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return VARIANTS[int.from_bytes(digest, "big") % 2]


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("pozytywka_requests", "Answers by endpoint, variant and status",
                                ["endpoint", "variant", "status"], registry=self.registry)
        self.latency = Histogram("pozytywka_request_latency_seconds",
                                 "Time to answer, by endpoint and variant",
                                 ["endpoint", "variant"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)


class ObserveMiddleware:
    """Pure ASGI: caps the request body, times every request for Prometheus, and commits a
    prediction-log record before the last byte of a prediction endpoint's answer is sent."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        service = scope["app"].state.service
        metrics = scope["app"].state.metrics
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                response = JSONResponse({"detail": f"request body over {self.max_body} bytes"},
                                        status_code=413)
                metrics.requests.labels(scope["path"][:64], "none", "413").inc()
                return await response(scope, receive, send)
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

    @staticmethod
    def _observe(scope, service: ServiceState, metrics: Metrics, start: float, status: int,
                 body: bytes, chunks: list[bytes]) -> None:
        latency = time.perf_counter() - start
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        ab = scope.get("state", {}).get("ab", {})
        variant = ab.get("variant") or "none"
        metrics.requests.labels(endpoint, variant, str(status)).inc()
        metrics.latency.labels(endpoint, variant).observe(latency)
        if not endpoint.startswith(LOGGED):
            return
        user_id = ab.get("user_id")
        if user_id is None:
            try:
                user_id = int(json.loads(body).get("user_id"))
            except (ValueError, TypeError, AttributeError):
                user_id = None
        service.log.append(Record(
            logged_at=datetime.now(UTC).isoformat(timespec="microseconds"), endpoint=endpoint,
            experiment=ab.get("experiment"), variant=ab.get("variant"),
            forced=bool(ab.get("forced")), model_version=ab.get("model_version"),
            user_id=user_id, status=status, latency_ms=latency * 1e3,
            request=body.decode("utf-8", "replace"),
            response=b"".join(chunks).decode("utf-8", "replace")))


def _mark(request: Request, **ab) -> None:
    request.state.ab = ab


def _removed(state: ServiceState, filters: Filters) -> np.ndarray | None:
    return state.catalogue.filter_out(filters.include_genres, filters.exclude_genres,
                                      filters.exclude_explicit)


def _limit(name: str, value: int, limit: int) -> None:
    if value > limit:
        raise HTTPException(422, f"{name} is {value}; this service allows at most {limit} "
                                 "(conf serving.yml)")


def create_app(state: ServiceState, close_on_shutdown: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if close_on_shutdown:
            state.log.close()

    app = FastAPI(
        title="Pozytywka ML",
        version=f"{state.versions['recommender']} / {state.versions['skip']}",
        description="Group playlists, skip predictions and personalised recommendations with "
                    "A/B testing. Every prediction is appended to a durable log. Errors: 404 "
                    "for ids neither the model nor the user table knows (a user registered "
                    "with POST /users gets cold-start answers), 422 for invalid requests, 413 "
                    "for oversized bodies, 401/503 for write endpoints without a valid key.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.metrics = Metrics()
    app.add_middleware(ObserveMiddleware, max_body_bytes=state.config["limits"]["max_body_bytes"])
    cfg = state.config

    @app.exception_handler(UnknownIds)
    async def _unknown(request: Request, exc: UnknownIds):
        return JSONResponse({"detail": str(exc), "unknown": {exc.kind: exc.ids}},
                            status_code=404)

    @app.exception_handler(UnknownGenres)
    async def _genres(request: Request, exc: UnknownGenres):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def require_key(request: Request) -> None:
        if not state.api_key:
            raise HTTPException(503, f"writes are disabled: no API key is configured (set "
                                     f"{API_KEY_ENV} or serving_api_key in "
                                     "conf/local/credentials.yml)")
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), state.api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    # ---- operations ------------------------------------------------------------------------

    @app.get("/health", tags=["operations"])
    async def health() -> dict:
        return {"status": "ok", "models": state.versions, "sources": state.sources,
                "tracks": state.recommender.n_tracks, "users": len(state.catalogue.users),
                "similar_tracks_search": "hnsw" if state.recommender.index is not None
                else "exact", "prediction_log_records": state.log.count()}

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    @app.get("/ab-summary", tags=["operations"])
    async def summary() -> dict:
        """Per experiment and variant: answers, users, errors, latency and what was answered,
        read from the prediction log."""
        return ab_summary(state.log.frame())

    @app.get("/genres", tags=["operations"])
    async def genres() -> list[str]:
        return state.catalogue.genres

    # ---- group playlists -------------------------------------------------------------------

    def playlist(request: Request, body: PlaylistRequest, variant: str, forced: bool):
        _limit("playlist_length", body.playlist_length, cfg["playlists"]["max_length"])
        _limit("group size", 1 + len(body.other_users), cfg["playlists"]["max_group_size"])
        engine = state.recommender
        members = engine.members([body.user_id, *body.other_users])
        removed = _removed(state, body.filters)
        if variant == "advanced":
            strategy = body.strategy or cfg["playlists"]["default_strategy"]
            positions, _ = engine.playlist(members, body.playlist_length, strategy, removed)
            version = state.versions["recommender"]
        else:
            strategy, version = None, BASELINE_VERSIONS["playlists"]
            positions = engine.baseline_playlist(members, body.playlist_length, removed,
                                                 np.random.default_rng())
        _mark(request, experiment="playlists", variant=variant, forced=forced,
              model_version=version, user_id=body.user_id)
        return PlaylistResponse(
            variant=variant, model_version=version, strategy=strategy, user_id=body.user_id,
            members=[m.user_id for m in members],
            cold_start_members=[m.user_id for m in members if m.cold_start],
            tracks=state.catalogue.describe_tracks(positions))

    @app.post("/playlists", tags=["group playlists"])
    async def playlists(request: Request, body: PlaylistRequest) -> PlaylistResponse:
        """A playlist for a group; the variant (history baseline or model) is fixed per asking
        user by a stable hash of ``user_id``."""
        variant = assign_variant(body.user_id, cfg["ab_test"]["playlists_salt"])
        return playlist(request, body, variant, False)

    @app.post("/playlists/base", tags=["group playlists"])
    async def playlists_base(request: Request, body: PlaylistRequest) -> PlaylistResponse:
        """Forced baseline: tracks drawn at random from the members' histories."""
        return playlist(request, body, "base", True)

    @app.post("/playlists/advanced", tags=["group playlists"])
    async def playlists_advanced(request: Request, body: PlaylistRequest) -> PlaylistResponse:
        """Forced model variant: LightFM scores aggregated across members by ``strategy``."""
        return playlist(request, body, "advanced", True)

    # ---- skip prediction -------------------------------------------------------------------

    def skip(request: Request, body: SkipRequest, variant: str, forced: bool):
        answer = state.skip.predict(body.user_id, body.track_id, variant)
        version = (state.versions["skip"] if variant == "advanced"
                   else BASELINE_VERSIONS["skip_predictions"])
        _mark(request, experiment="skip_predictions", variant=variant, forced=forced,
              model_version=version, user_id=body.user_id)
        return SkipResponse(variant=variant, model_version=version, user_id=body.user_id,
                            track_id=body.track_id, prediction=answer.prediction,
                            skip_probability=round(answer.skip_probability, 6),
                            genre_match=answer.genre_match, cold_start=answer.cold_start)

    @app.post("/skip-predictions", tags=["skip prediction"])
    async def skip_predictions(request: Request, body: SkipRequest) -> SkipResponse:
        """PLAY or SKIP with the skip probability; the variant (genre rule or model) is fixed
        per user by a stable hash of ``user_id`` (its own split, independent of playlists)."""
        variant = assign_variant(body.user_id, cfg["ab_test"]["skip_predictions_salt"])
        return skip(request, body, variant, False)

    @app.post("/skip-predictions/base", tags=["skip prediction"])
    async def skip_base(request: Request, body: SkipRequest) -> SkipResponse:
        """Forced baseline rule: SKIP when the track's genres miss the user's favourites; the
        probability is the training skip share of pairs with the same genre match."""
        return skip(request, body, "base", True)

    @app.post("/skip-predictions/advanced", tags=["skip prediction"])
    async def skip_advanced(request: Request, body: SkipRequest) -> SkipResponse:
        """Forced model variant: the trained classifier's skip probability."""
        return skip(request, body, "advanced", True)

    # ---- personalisation -------------------------------------------------------------------

    @app.post("/recommendations", tags=["personalisation"])
    async def recommendations(request: Request, body: RecommendationRequest
                              ) -> RecommendationResponse:
        """The user's top ``k`` tracks (cold start from favourite genres for users the model
        has not seen)."""
        _limit("k", body.k, cfg["recommendations"]["max_k"])
        exclude = (cfg["recommendations"]["exclude_known"] if body.exclude_known is None
                   else body.exclude_known)
        member, top, scores = state.recommender.recommend(
            body.user_id, body.k, _removed(state, body.filters), exclude)
        _mark(request, model_version=state.versions["recommender"], user_id=body.user_id)
        return RecommendationResponse(model_version=state.versions["recommender"],
                                      user_id=body.user_id, cold_start=member.cold_start,
                                      tracks=state.catalogue.describe_tracks(top, scores))

    @app.post("/similar-tracks", tags=["personalisation"])
    async def similar_tracks(request: Request, body: SimilarRequest) -> SimilarResponse:
        """Tracks closest to ``track_id`` by cosine similarity of LightFM item embeddings
        (exact search, or HNSW past the configured catalogue size)."""
        _limit("k", body.k, cfg["recommendations"]["max_k"])
        position = int(state.catalogue.track_positions([body.track_id])[0])
        top, sims, search = state.recommender.similar(position, body.k,
                                                      _removed(state, body.filters))
        _mark(request, model_version=state.versions["recommender"])
        return SimilarResponse(model_version=state.versions["recommender"],
                               track_id=body.track_id, search=search,
                               tracks=state.catalogue.describe_tracks(top, sims))

    @app.post("/rerank", tags=["personalisation"])
    async def rerank(request: Request, body: RerankRequest) -> RerankResponse:
        """The given tracks ordered for the user, best first. Tracks the catalogue does not
        know, or the filters remove, are listed in ``not_ranked`` with the reason."""
        _limit("track_ids length", len(body.track_ids), cfg["rerank"]["max_tracks"])
        index = state.catalogue.track_index
        known = [t for t in body.track_ids if t in index]
        positions = np.array([index[t] for t in known], dtype=np.int64)
        member, kept, scores, dropped = state.recommender.rerank(
            body.user_id, positions, _removed(state, body.filters))
        not_ranked = ([{"track_id": t, "reason": "unknown_track"}
                       for t in body.track_ids if t not in index]
                      + [{"track_id": state.catalogue.track_ids[i], "reason": "filtered"}
                         for i in dropped])
        _mark(request, model_version=state.versions["recommender"], user_id=body.user_id)
        return RerankResponse(model_version=state.versions["recommender"],
                              user_id=body.user_id, cold_start=member.cold_start,
                              tracks=state.catalogue.describe_tracks(kept, scores),
                              not_ranked=not_ranked)

    # ---- writes ----------------------------------------------------------------------------

    @app.post("/events", status_code=202, tags=["writes"], dependencies=[Depends(require_key)])
    async def events(body: EventsRequest) -> EventsResponse:
        """Record play / skip / like (and ad, premium) events in the raw sessions format; the
        next `kedro run` reads them with the export (data/01_raw/incoming/sessions)."""
        _limit("events", len(body.events), cfg["events"]["max_batch"])
        records = [{"session_id": e.session_id,
                    "timestamp": e.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "user_id": e.user_id, "track_id": e.track_id, "event_type": e.event_type}
                   for e in body.events]
        path = state.events.append(records)
        users, tracks = state.catalogue.users, state.catalogue.track_index
        return EventsResponse(
            accepted=len(records), file=str(path),
            unknown_users=sum(e.user_id not in users for e in body.events),
            unknown_tracks=sum(e.track_id is not None and e.track_id not in tracks
                               for e in body.events))

    @app.post("/users", status_code=201, tags=["writes"], dependencies=[Depends(require_key)])
    async def users(body: UserRequest) -> UserResponse:
        """Register a new user by favourite genres: cold-start answers from now on, and the
        next `kedro run` reads them with the export (data/01_raw/incoming/users)."""
        if body.user_id in state.catalogue.users:
            raise HTTPException(409, f"user {body.user_id} already exists")
        record = body.model_dump()
        path = state.users_writer.append([record])
        state.catalogue.register(record)
        genres = state.catalogue.genre_index
        return UserResponse(
            user_id=body.user_id, file=str(path),
            favourite_genres_known=[g for g in body.favourite_genres if g in genres],
            favourite_genres_unknown=[g for g in body.favourite_genres if g not in genres])

    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory``: the project in ``POZYTYWKA_PROJECT_PATH`` (default:
    the working directory) with the Kedro environment in ``POZYTYWKA_ENV``."""
    return create_app(load_service(os.environ.get("POZYTYWKA_PROJECT_PATH", "."),
                                   os.environ.get("POZYTYWKA_ENV") or None))
