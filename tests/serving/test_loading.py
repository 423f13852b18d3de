"""Start-up (what is loaded, or why not) and the round trip of recorded events and users into
the next pipeline run."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pozytywka.serving.app import create_app
from pozytywka.serving.loading import StartupError, load_service
from tests.project import API_KEY, copy_project, make_project, run_project

pytestmark = pytest.mark.slow


def test_start_up_without_artifacts_says_what_to_do(tmp_path):
    project = make_project(tmp_path / "empty")
    with pytest.raises(StartupError, match="Run `kedro run` first"):
        load_service(project, "tiny")


def test_start_up_summary_names_models_and_sources(state):
    summary = "\n".join(state.summary())
    assert state.versions["recommender"] in summary and "catalog: recommender" in summary
    assert "exact search" in summary and "API key configured" in summary


def test_recorded_events_and_users_reach_the_next_run(trained_project, tmp_path, monkeypatch):
    project = copy_project(trained_project, tmp_path / "project")
    monkeypatch.setenv("POZYTYWKA_API_KEY", API_KEY)
    state = load_service(project, "tiny")
    users = pd.read_parquet(project / "data" / "03_primary" / "users.parquet")
    known_user = int(users["user_id"].iloc[0])
    track = str(state.catalogue.track_ids[3])
    with TestClient(create_app(state)) as client:
        created = client.post(
            "/users",
            headers={"X-API-Key": API_KEY},
            json={
                "user_id": 880001,
                "name": "Nowa Osoba",
                "favourite_genres": [state.catalogue.genres[0]],
                "premium_user": True,
            },
        )
        assert created.status_code == 201
        events = [
            {
                "session_id": 9_000_001,
                "timestamp": "2026-11-22T10:00:00Z",
                "user_id": uid,
                "track_id": track,
                "event_type": kind,
            }
            for uid, kind in [
                (known_user, "play"),
                (known_user, "like"),
                (880001, "play"),
                (880001, "skip"),
            ]
        ]
        assert (
            client.post(
                "/events", json={"events": events}, headers={"X-API-Key": API_KEY}
            ).status_code
            == 202
        )
    run_project(project, pipeline_names=["data_processing"])
    processed = pd.read_parquet(project / "data" / "03_primary" / "events.parquet")
    new = processed[processed["session_id"] == 9_000_001]
    assert sorted(new["event_type"].astype(str)) == ["like", "play", "play", "skip"]
    assert 880001 in set(
        pd.read_parquet(project / "data" / "03_primary" / "users.parquet")["user_id"]
    )
    # A restarted service still knows the registered user (cold start), before retraining.
    again = load_service(project, "tiny")
    assert 880001 in again.catalogue.users and again.recommender.member(880001).cold_start
