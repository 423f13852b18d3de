"""Nodes of the synthetic_data pipeline: generate a catalogue, then write it as dirty exports."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pozytywka.datasets.synthetic_truth import sha256_text
from pozytywka.synthetic.dirt import dirty_artists, dirty_sessions, dirty_tracks, dirty_users
from pozytywka.synthetic.generator import generate_catalogue

logger = logging.getLogger(__name__)


def generate_clean_catalogue(params: dict) -> tuple[pd.DataFrame, ...]:
    """Clean users, artists, tracks and events, plus the hidden truth (kept apart from training)."""
    cat = generate_catalogue(params)
    return (
        cat.users,
        cat.artists,
        cat.tracks,
        cat.events,
        cat.user_truth,
        cat.track_truth,
        cat.truth_params,
    )


def write_dirty_exports(
    users: pd.DataFrame,
    artists: pd.DataFrame,
    tracks: pd.DataFrame,
    events: pd.DataFrame,
    params: dict,
) -> tuple[str, str, str, str, dict]:
    """Serialise the four raw JSON Lines files with the configured share of each defect kind.

    Returns the four file texts and the manifest of what was injected,
    ``{file: {category: {kind: count}}}`` (dropped / repaired / normalised), named as the
    data-quality report names them.
    """
    dirt = params["dirt"]
    overrides = dirt.get("file_overrides") or {}

    def rates(file: str) -> dict[str, float]:
        merged = {**dirt["rates"], **(overrides.get(file) or {})}
        return {k: float(v) * float(dirt["scale"]) for k, v in merged.items()}

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([params["seed"], 1]).spawn(4)]
    users_txt, users_n = dirty_users(users, rates("users"), rngs[0])
    artists_txt, artists_n = dirty_artists(artists, rates("artists"), rngs[1])
    tracks_txt, tracks_n = dirty_tracks(tracks, rates("tracks"), rngs[2])
    sessions_txt, sessions_n = dirty_sessions(
        events, users["user_id"].to_numpy(), rates("sessions"), rngs[3]
    )
    manifest = {"users": users_n, "artists": artists_n, "tracks": tracks_n, "sessions": sessions_n}
    logger.info("Injected defects: %s", manifest)
    return users_txt, artists_txt, tracks_txt, sessions_txt, manifest


def package_truth(
    user_truth: pd.DataFrame,
    track_truth: pd.DataFrame,
    truth_params: dict,
    users: str,
    artists: str,
    tracks: str,
    sessions: str,
) -> dict:
    """The hidden truth with the hash of each raw file it describes, so the oracle can tell
    later whether the files in data/01_raw are still these."""
    raw = {"users": users, "artists": artists, "tracks": tracks, "sessions": sessions}
    return {
        "users": user_truth,
        "tracks": track_truth,
        "params": truth_params,
        "raw_sha256": {name: sha256_text(text) for name, text in raw.items()},
    }
