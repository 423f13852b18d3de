"""Skip prediction: the A/B-tested route and one route per forced variant."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..dependencies import BASELINE_VERSIONS, BODY_ERRORS, UNKNOWN_IDS, State, assign_variant, mark
from ..loading import ServiceState
from ..schemas import SkipRequest, SkipResponse, Variant

router = APIRouter(tags=["skip prediction"], responses={**UNKNOWN_IDS, **BODY_ERRORS})


def skip(
    request: Request, state: ServiceState, body: SkipRequest, variant: Variant, forced: bool
) -> SkipResponse:
    """PLAY or SKIP from ``variant``, marked for the prediction log."""
    answer = state.skip.predict(body.user_id, body.track_id, variant)
    version = (
        state.versions["skip"] if variant == "advanced" else BASELINE_VERSIONS["skip_predictions"]
    )
    mark(
        request,
        experiment="skip_predictions",
        variant=variant,
        forced=forced,
        model_version=version,
        user_id=body.user_id,
    )
    return SkipResponse(
        variant=variant,
        model_version=version,
        user_id=body.user_id,
        track_id=body.track_id,
        prediction=answer.prediction,
        skip_probability=round(answer.skip_probability, 6),
        genre_match=answer.genre_match,
        cold_start=answer.cold_start,
        observed_skip_share=None
        if answer.observed_skip_share is None
        else round(answer.observed_skip_share, 6),
    )


@router.post("/skip-predictions")
async def skip_predictions(request: Request, body: SkipRequest, state: State) -> SkipResponse:
    """PLAY or SKIP with the skip probability; the variant (genre rule or model) is fixed
    per user by a stable hash of ``user_id`` (its own split, independent of playlists)."""
    variant = assign_variant(body.user_id, state.config["ab_test"]["skip_predictions_salt"])
    return skip(request, state, body, variant, False)


@router.post("/skip-predictions/base")
async def skip_base(request: Request, body: SkipRequest, state: State) -> SkipResponse:
    """Forced baseline rule: SKIP when the track's genres miss the user's favourites
    (``skip_probability`` 1, else 0); ``observed_skip_share``: the training skip share of
    pairs with the same genre match."""
    return skip(request, state, body, "base", True)


@router.post("/skip-predictions/advanced")
async def skip_advanced(request: Request, body: SkipRequest, state: State) -> SkipResponse:
    """Forced model variant: the trained classifier's skip probability."""
    return skip(request, state, body, "advanced", True)
