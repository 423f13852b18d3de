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


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", r"'recommender' is missing \(.*recommender.pkl\)"),
        ("truncated", r"'recommender' cannot be read \(.*\): the file is damaged"),
        ("wrong_type", r"'recommender' holds a dict, not what the pipelines save"),
        ("garbage_log", r"prediction log .* is not a SQLite database"),
    ],
)
def test_each_broken_artifact_is_named_with_why(trained_project, tmp_path, damage, message):
    import pickle  # noqa: PLC0415

    project = copy_project(trained_project, tmp_path / "project")
    model = project / "data" / "06_models" / "recommender.pkl"
    if damage == "missing":
        model.unlink()
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "wrong_type":
        model.write_bytes(pickle.dumps({"not": "a model"}))
    else:
        log = project / "data" / "07_model_output" / "prediction_log.sqlite"
        log.write_bytes(b"garbage " * 1000)
    with pytest.raises(StartupError, match=message):
        load_service(project, "tiny")


@pytest.mark.parametrize("value", ["12345", "[a, b]", "''"])
def test_a_key_that_is_not_text_stops_the_start(trained_project, tmp_path, monkeypatch, value):
    project = copy_project(trained_project, tmp_path / "project")
    monkeypatch.delenv("POZYTYWKA_API_KEY", raising=False)
    # conf/local/credentials.yml of a default run; the tiny environment reads conf/tiny
    (project / "conf" / "tiny" / "credentials.yml").write_text(f"serving_api_key: {value}\n")
    if value == "''":  # empty: no key, writes disabled, as without the entry
        assert "DISABLED" in "\n".join(load_service(project, "tiny").summary())
        return
    with pytest.raises(StartupError, match="serving_api_key in .* must be text"):
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


def test_serve_on_a_port_in_use_says_so_in_one_line(served_project):
    import socket  # noqa: PLC0415

    from click.testing import CliRunner  # noqa: PLC0415

    from pozytywka.serving.cli import cli  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [
            "serve",
            "--env",
            "tiny",
            "--port",
            str(port),
            "--project-path",
            str(served_project),
        ]
        done = CliRunner().invoke(cli, args)
    assert done.exit_code == 2
    assert f"127.0.0.1:{port} is not free" in done.stderr and "listening on" not in done.output
