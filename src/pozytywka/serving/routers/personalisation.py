"""Personalisation: recommendations, similar tracks, rerank, and the genre vocabulary their
filters use (``/genres`` keeps its ``operations`` tag)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from ..dependencies import BODY_ERRORS, UNKNOWN_IDS, State, limit, mark, removed_tracks
from ..schemas import (
    RecommendationRequest,
    RecommendationResponse,
    RerankRequest,
    RerankResponse,
    SimilarRequest,
    SimilarResponse,
)

router = APIRouter()


# The catalogue's genres, for filters (a comment, not a docstring: see operations.py).
@router.get("/genres", tags=["operations"])
async def genres(state: State) -> list[str]:
    return state.catalogue.genres


@router.post("/recommendations", tags=["personalisation"], responses={**UNKNOWN_IDS, **BODY_ERRORS})
async def recommendations(
    request: Request, body: RecommendationRequest, state: State
) -> RecommendationResponse:
    """The user's top ``k`` tracks from the served recommender (``model_version`` names it);
    LightFM's cold start from favourite genres for users the model has not seen."""
    cfg = state.config["recommendations"]
    limit("k", body.k, cfg["max_k"])
    exclude = cfg["exclude_known"] if body.exclude_known is None else body.exclude_known
    engine = state.recommender
    member, top, scores = engine.recommend(
        body.user_id, body.k, removed_tracks(state, body.filters), exclude
    )
    version = engine.model_version(engine.answered_by(None, [member]))
    mark(request, model_version=version, user_id=body.user_id)
    return RecommendationResponse(
        model_version=version,
        user_id=body.user_id,
        cold_start=member.cold_start,
        tracks=state.catalogue.describe_tracks(top, scores),
    )


@router.post("/similar-tracks", tags=["personalisation"], responses={**UNKNOWN_IDS, **BODY_ERRORS})
async def similar_tracks(request: Request, body: SimilarRequest, state: State) -> SimilarResponse:
    """Tracks closest to ``track_id`` by cosine similarity of the served recommender's
    track vectors, LightFM's item embeddings when it has none (``model_version`` names whose);
    exact search, or HNSW past the configured catalogue size."""
    limit("k", body.k, state.config["recommendations"]["max_k"])
    position = int(state.catalogue.track_positions([body.track_id])[0])
    engine = state.recommender
    top, sims, search = engine.similar(position, body.k, removed_tracks(state, body.filters))
    version = engine.model_version(engine.similar_by(None))
    mark(request, model_version=version)
    return SimilarResponse(
        model_version=version,
        track_id=body.track_id,
        search=search,
        tracks=state.catalogue.describe_tracks(top, sims),
    )


@router.post("/rerank", tags=["personalisation"], responses={**UNKNOWN_IDS, **BODY_ERRORS})
async def rerank(request: Request, body: RerankRequest, state: State) -> RerankResponse:
    """The given tracks ordered for the user by the served recommender, best first. Tracks
    the catalogue does not know, or the filters remove, are listed in ``not_ranked`` with the
    reason."""
    limit("track_ids", len(body.track_ids), state.config["rerank"]["max_tracks"])
    index = state.catalogue.track_index
    known = [t for t in body.track_ids if t in index]
    positions = np.array([index[t] for t in known], dtype=np.int64)
    engine = state.recommender
    member, kept, scores, dropped = engine.rerank(
        body.user_id, positions, removed_tracks(state, body.filters)
    )
    version = engine.model_version(engine.answered_by(None, [member]))
    not_ranked = [
        {"track_id": t, "reason": "unknown_track"} for t in body.track_ids if t not in index
    ] + [{"track_id": state.catalogue.track_ids[i], "reason": "filtered"} for i in dropped]
    mark(request, model_version=version, user_id=body.user_id)
    return RerankResponse(
        model_version=version,
        user_id=body.user_id,
        cold_start=member.cold_start,
        tracks=state.catalogue.describe_tracks(kept, scores),
        not_ranked=not_ranked,
    )
