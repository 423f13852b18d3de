"""Group playlists: the A/B-tested route and one route per forced variant. What answers each
variant is configured (``ab_test.playlists_arms``: the history baseline or a recommender)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from ..dependencies import (
    BASELINE_VERSIONS,
    BODY_ERRORS,
    UNKNOWN_IDS,
    State,
    assign_variant,
    limit,
    mark,
    removed_tracks,
)
from ..loading import HISTORY, ServiceState
from ..recommender import Member
from ..schemas import PlaylistRequest, PlaylistResponse, Variant

router = APIRouter(tags=["group playlists"], responses={**UNKNOWN_IDS, **BODY_ERRORS})


def baseline_rng(seed: int | None, members: list[Member], length: int) -> np.random.Generator:
    """Fresh draws without a seed; with one, the same group and length get the same draws
    whatever the order requests arrive in."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, length, *sorted(m.user_id for m in members)])


def playlist(
    request: Request, state: ServiceState, body: PlaylistRequest, variant: Variant, forced: bool
) -> PlaylistResponse:
    """The group's playlist from ``variant``'s arm, marked for the prediction log with the
    version of what answered (the history baseline's, or the recommender's)."""
    cfg = state.config["playlists"]
    limit("playlist_length", body.playlist_length, cfg["max_length"])
    limit("other_users", len(body.other_users), cfg["max_group_size"] - 1)
    engine = state.recommender
    members = engine.members([body.user_id, *body.other_users])
    removed = removed_tracks(state, body.filters)
    arm = state.playlist_arm(variant)
    if arm != HISTORY:
        strategy = body.strategy or cfg["default_strategy"]
        positions, _ = engine.playlist(members, body.playlist_length, strategy, removed, arm)
        version = engine.model_version(engine.answered_by(arm, members))
    else:
        strategy, version = None, BASELINE_VERSIONS["playlists"]
        rng = baseline_rng(cfg.get("baseline_seed"), members, body.playlist_length)
        positions = engine.baseline_playlist(members, body.playlist_length, removed, rng)
    mark(
        request,
        experiment="playlists",
        variant=variant,
        forced=forced,
        model_version=version,
        user_id=body.user_id,
    )
    return PlaylistResponse(
        variant=variant,
        model_version=version,
        strategy=strategy,
        user_id=body.user_id,
        members=[m.user_id for m in members],
        cold_start_members=[m.user_id for m in members if m.cold_start],
        tracks=state.catalogue.describe_tracks(positions),
    )


@router.post("/playlists")
async def playlists(request: Request, body: PlaylistRequest, state: State) -> PlaylistResponse:
    """A playlist for a group; the variant is fixed per asking user by a stable hash of
    ``user_id``. Each variant's arm (the history baseline, the served recommender or another
    one: ``model_version`` says which) is set in conf serving.yml
    (``ab_test.playlists_arms``; by default base = history, advanced = the served one)."""
    variant = assign_variant(body.user_id, state.config["ab_test"]["playlists_salt"])
    return playlist(request, state, body, variant, False)


@router.post("/playlists/base")
async def playlists_base(request: Request, body: PlaylistRequest, state: State) -> PlaylistResponse:
    """Forced base variant (by default the history baseline: tracks drawn at random from
    the members' histories)."""
    return playlist(request, state, body, "base", True)


@router.post("/playlists/advanced")
async def playlists_advanced(
    request: Request, body: PlaylistRequest, state: State
) -> PlaylistResponse:
    """Forced advanced variant (by default the served recommender): the members' rows
    from its recommender aggregated by ``strategy``."""
    return playlist(request, state, body, "advanced", True)
