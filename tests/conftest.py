"""Shared fixtures: the project's own parameters, at the tiny size, and a generated catalogue."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pozytywka.pipelines.synthetic_data.nodes import generate_clean_catalogue, write_dirty_exports

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def load_params(name: str) -> dict:
    path = PROJECT_ROOT / "conf" / "base" / f"parameters_{name}.yml"
    return yaml.safe_load(path.read_text())[name]


@pytest.fixture
def synthetic_params() -> dict:
    params = load_params("synthetic_data")
    params["size"] = "tiny"
    return params


@pytest.fixture(scope="session")
def tiny_catalogue():
    """(clean outputs of generate_clean_catalogue, dirty exports + manifest) on the tiny size."""
    params = load_params("synthetic_data")
    params["size"] = "tiny"
    clean = generate_clean_catalogue(params)
    dirty = write_dirty_exports(*clean[:4], params)
    return clean, dirty, copy.deepcopy(params)


@pytest.fixture
def fe_params() -> dict:
    return load_params("feature_engineering")
