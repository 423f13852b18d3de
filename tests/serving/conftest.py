"""A served copy of the trained tiny project, its loaded state and a FastAPI test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pozytywka.serving.app import create_app
from pozytywka.serving.loading import load_service
from tests.project import API_KEY, copy_project


@pytest.fixture(scope="module")
def served_project(trained_project, tmp_path_factory) -> Path:
    return copy_project(trained_project, tmp_path_factory.mktemp("served") / "project")


@pytest.fixture(scope="module")
def state(served_project):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POZYTYWKA_API_KEY", API_KEY)
        return load_service(served_project, "tiny")


@pytest.fixture(scope="module")
def client(state):
    with TestClient(create_app(state)) as c:
        yield c


@pytest.fixture(scope="module")
def ids(state):
    """Handy ids: users the model knows (with histories), a track and a genre."""
    engine = state.recommender
    users = [int(u) for u, r in engine.recommender.user_index.items() if engine.known[r].nnz > 0][
        :12
    ]
    return {
        "users": users,
        "track": str(state.catalogue.track_ids[0]),
        "genre": state.catalogue.genres[0],
    }
