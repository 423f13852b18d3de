"""Shared fixtures: the project's own parameters, at the tiny size, and a generated catalogue."""

from __future__ import annotations

import copy
import signal
from pathlib import Path

import pytest

from pozytywka.pipelines.data_processing.nodes import (
    clean_artists,
    clean_sessions,
    clean_tracks,
    clean_users,
)
from pozytywka.pipelines.feature_engineering.nodes import (
    assign_split,
    build_interactions,
    build_lightfm_inputs,
    build_session_tracks,
    build_track_features,
    build_user_features,
    fit_skip_rates,
    fit_track_scaler,
    genre_vocabulary,
)
from pozytywka.pipelines.synthetic_data.nodes import generate_clean_catalogue, write_dirty_exports
from tests.project import load_params, make_project, run_project, tiny_params


def pytest_configure(config) -> None:
    # A SIGTERM (a CI time limit, a closed terminal) ends the suite as Ctrl-C does: every
    # fixture's clean-up runs, so no server the tests started outlives them.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture
def synthetic_params() -> dict:
    return tiny_params()


@pytest.fixture(scope="session")
def tiny_catalogue():
    """(clean outputs of generate_clean_catalogue, dirty exports + manifest) on the tiny size."""
    params = tiny_params()
    clean = generate_clean_catalogue(params)
    dirty = write_dirty_exports(*clean[:4], params)
    return clean, dirty, copy.deepcopy(params)


@pytest.fixture
def fe_params() -> dict:
    return load_params("feature_engineering")


@pytest.fixture(scope="session")
def tiny_tables(tiny_catalogue):
    """Clean users, artists, tracks of the tiny catalogue, as data_processing writes them."""
    _, dirty, _ = tiny_catalogue
    users = clean_users(dirty[0])[0]
    artists = clean_artists(dirty[1])[0]
    return users, artists, clean_tracks(dirty[2], artists)[0]


@pytest.fixture(scope="session")
def tiny_events(tiny_catalogue, tiny_tables):
    users, _, tracks = tiny_tables
    return clean_sessions(tiny_catalogue[1][3], users, tracks)[0]


@pytest.fixture(scope="session")
def tiny_session_tracks_all(tiny_events):
    return build_session_tracks(tiny_events)[0]


@pytest.fixture(scope="session")
def tiny_session_tracks(tiny_session_tracks_all):
    return assign_split(tiny_session_tracks_all, load_params("feature_engineering")["split"])[0]


@pytest.fixture(scope="session")
def tiny_feature_tables(tiny_tables, tiny_session_tracks):
    """(user_features, track_features) tables of the tiny catalogue."""
    users, artists, tracks = tiny_tables
    params = load_params("feature_engineering")
    u_rates, t_rates, g = fit_skip_rates(tiny_session_tracks, params["skip_rate_smoothing"])
    genres = genre_vocabulary(artists, users)
    uf = build_user_features(users, u_rates, g, genres)
    scaler = fit_track_scaler(tracks, tiny_session_tracks)
    return uf, build_track_features(tracks, artists, scaler, t_rates, g, genres)


@pytest.fixture(scope="session")
def tiny_features(tiny_session_tracks, tiny_feature_tables):
    """(interactions, LightFM inputs) of the tiny catalogue with the project's parameters."""
    params = load_params("feature_engineering")
    interactions = build_interactions(tiny_session_tracks, params["interactions"])
    uf, tf = tiny_feature_tables
    return interactions, build_lightfm_inputs(interactions, uf, tf, params["lightfm"])


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Path:
    """A project copy after the whole default pipeline on the tiny catalogue (run once)."""
    root = make_project(tmp_path_factory.mktemp("trained_project"))
    run_project(root)
    return root
