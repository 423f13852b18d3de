"""Operations: health, Prometheus metrics and the A/B summary.

FastAPI turns a handler's docstring into its OpenAPI description; handlers that had none keep
a comment instead, so the document stays as it was."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..dependencies import KEYED, State, require_read_key
from ..loading import ServiceState
from ..prediction_log import ab_summary_with_outcomes

router = APIRouter(tags=["operations"])


# Model versions and sources, the served recommender and those the model holds (by
# name, with their versions), the playlist arms, catalogue sizes, search kind, log records.
@router.get("/health")
async def health(state: State) -> dict:
    engine = state.recommender
    return {
        "status": "ok",
        "models": state.versions,
        "sources": state.sources,
        "served_recommender": engine.served,
        "recommenders": {name: engine.model_version(name) for name in engine.recommenders},
        "playlist_arms": {v: state.playlist_arm(v) for v in ("base", "advanced")},
        "tracks": state.recommender.n_tracks,
        "users": state.catalogue.user_count(),
        "similar_tracks_search": "hnsw" if state.recommender.index is not None else "exact",
        "prediction_log_records": state.log.count(),
    }


# The app's Prometheus registry in the text exposition format.
@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/ab-summary", dependencies=[Depends(require_read_key)], responses=KEYED)
async def summary(state: State) -> dict:
    """Behind the read key or the API key (``X-API-Key``). Per experiment and variant:
    answers, users, errors, latency and what was answered,
    read from the prediction log; under ``outcomes``, each arm's like, skip and hit rates or
    skip-prediction accuracy from the events posted after the newest answers (conf
    serving.yml ``ab_summary.outcome_answers``), and the headline difference with its
    interval and p-value. Computed off the event loop, by aggregate queries on a snapshot of
    the log: answers are logged meanwhile."""
    return await run_in_threadpool(_summary, state)


def _summary(state: ServiceState) -> dict:
    return ab_summary_with_outcomes(
        state.log,
        state.events.read_all(),
        state.ab_analysis,
        state.config["ab_summary"]["outcome_answers"],
    )
