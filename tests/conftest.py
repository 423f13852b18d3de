"""Shared fixtures: the project's own parameters, at the tiny size, and a generated catalogue."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

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

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def load_params(name: str) -> dict:
    """The project's base parameters of one pipeline, resolved as Kedro resolves them
    (``${globals:...}`` included)."""
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    return copy.deepcopy(loader["parameters"][name])


def tiny_params() -> dict:
    """Project parameters at the tiny size, with every defect kind on in every file."""
    params = load_params("synthetic_data")
    params["size"] = "tiny"
    params["dirt"]["file_overrides"] = {}
    return params


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
def tiny_features(tiny_tables, tiny_session_tracks):
    """(interactions, LightFM inputs) of the tiny catalogue with the project's parameters."""
    users, artists, tracks = tiny_tables
    params = load_params("feature_engineering")
    interactions = build_interactions(tiny_session_tracks, params["interactions"])
    u_rates, t_rates, g = fit_skip_rates(tiny_session_tracks, params["skip_rate_smoothing"])
    genres = genre_vocabulary(artists, users)
    uf = build_user_features(users, u_rates, g, genres)
    scaler = fit_track_scaler(tracks, tiny_session_tracks)
    tf = build_track_features(tracks, artists, scaler, t_rates, g, genres)
    return interactions, build_lightfm_inputs(interactions, uf, tf, params["lightfm"])


def make_project(root: Path) -> Path:
    """A throwaway copy of the project's configuration, with empty data folders."""
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    for name in ["pyproject.toml", ".telemetry"]:
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "src").mkdir()  # the package itself is imported from the installed project
    for layer in ["01_raw", "08_reporting"]:
        (root / "data" / layer).mkdir(parents=True)
    return root


def run_project(root: Path, **kwargs):
    """``kedro run --env tiny`` (or a part of it) in ``root``, from that directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        # This project's own store, absolute: MLflow caches stores by URI, so the relative
        # default would send every project of this test session (copies included) to the
        # first one's database.
        (root / "conf" / "tiny" / "mlflow.yml").write_text(
            (root / "conf" / "base" / "mlflow.yml")
            .read_text()
            .replace("sqlite:///mlflow.db", f"sqlite:///{root / 'mlflow.db'}")
        )
        bootstrap_project(root)
        try:
            with KedroSession.create(project_path=root, env="tiny") as session:
                return session.run(**kwargs)
        finally:
            # kedro-mlflow re-enters its run (nested) at every node and ends it once: close
            # what is left, or the next session in this process would log into this run.
            while mlflow.active_run():
                mlflow.end_run()


@contextmanager
def mlflow_store(root: Path) -> Iterator[None]:
    """MLflow's client pointed at a project's store for reading, then reset: set_tracking_uri
    also exports MLFLOW_TRACKING_URI, which a later Kedro session would otherwise log to."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Path:
    """A project copy after the whole default pipeline on the tiny catalogue (run once)."""
    root = make_project(tmp_path_factory.mktemp("trained_project"))
    run_project(root)
    return root
