"""The prediction log: every answer, concurrent writers, restarts, and the A/B summary."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pozytywka.serving.app import assign_variant, create_app
from pozytywka.serving.loading import load_service
from pozytywka.serving.prediction_log import (
    PredictionLog,
    Record,
    ab_summary,
    answer_summary,
    capped,
)
from tests.project import API_KEY

pytestmark = pytest.mark.slow


def test_every_answer_is_logged_with_variant_version_and_latency(client, state, ids):
    before = state.log.count()
    u, v = ids["users"][:2]
    ok = client.post("/playlists", json={"user_id": u, "other_users": [v]}).json()
    client.post("/playlists", json={"user_id": u, "other_users": []})  # 422
    client.post("/skip-predictions/advanced", json={"user_id": u, "track_id": ids["track"]})
    client.get("/health")  # not logged
    log = state.log.frame().iloc[before:]
    assert list(log["endpoint"]) == ["/playlists", "/playlists", "/skip-predictions/advanced"]
    assert list(log["status"]) == [200, 422, 200]
    first = log.iloc[0]
    assert first["variant"] == ok["variant"] and first["model_version"] == ok["model_version"]
    assert first["experiment"] == "playlists" and first["forced"] == 0 and first["user_id"] == u
    summary = json.loads(first["response"])
    assert summary["tracks"] == [{"track_id": t["track_id"]} for t in ok["tracks"]]
    assert {k: summary[k] for k in ("variant", "model_version", "members")} == {
        k: ok[k] for k in ("variant", "model_version", "members")
    }
    assert "name" not in first["response"] and len(summary["sha256"]) == 64
    assert json.loads(first["request"]) == {"user_id": u, "other_users": [v]}
    assert (log["latency_ms"] > 0).all() and log["logged_at"].str.endswith("+00:00").all()
    assert log.iloc[2]["forced"] == 1 and log.iloc[2]["experiment"] == "skip_predictions"
    salts = state.config["ab_test"]
    assert first["salt"] == salts["playlists_salt"]
    assert log.iloc[2]["salt"] == salts["skip_predictions_salt"]


def test_an_answer_is_logged_summarised_and_never_echoes_the_input():
    body = json.dumps(
        {"variant": "base", "tracks": [{"track_id": "a", "name": "A"}, {"track_id": "b"}]}
    ).encode()
    served = json.loads(answer_summary(200, body, 4096))
    assert served == {
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "variant": "base",
        "tracks": [{"track_id": "a"}, {"track_id": "b"}],
    }
    assert json.loads(answer_summary(200, b"1", 4096))["value"] == 1  # a bare number
    assert json.loads(answer_summary(200, b'{"tracks": []}', 4096))["tracks"] == []
    hostile = "x" * 500_000
    error = {
        "detail": [
            {"type": "missing", "loc": ["body", "k"], "msg": "Field required", "input": hostile}
        ]
    }
    refused = answer_summary(422, json.dumps(error).encode(), 4096)
    assert json.loads(refused)["error"] == ["missing body.k Field required"]
    assert json.loads(refused)["status"] == 422 and len(refused) < 300
    many = json.dumps({"tracks": [{"track_id": str(i)} for i in range(5000)]}).encode()
    cut = json.loads(answer_summary(200, many, 4096))
    assert cut["truncated"] is True and "tracks" not in cut and cut["bytes"] == len(many)


def test_a_hostile_request_grows_the_log_by_its_capped_request_only(client, state, ids):
    genres = ["g" * 5000 for _ in range(50)]
    body = {"user_id": ids["users"][0], "k": 5, "filters": {"include_genres": genres}}
    answer = client.post("/recommendations", json=body)
    assert answer.status_code == 422 and "g" * 300 not in answer.text  # no 250 KB echo
    assert len(answer.content) < 20_000  # an error per genre, each quoting no input
    row = state.log.frame().iloc[-1]
    limit = state.config["prediction_log"]["max_request_bytes"]
    assert row["status"] == 422 and len(row["response"]) < 1000
    assert len(row["request"].encode()) < limit + 100


def test_a_large_request_is_logged_cut_to_the_configured_size(client, state, ids):
    u, v = ids["users"][:2]
    padded = json.dumps({"user_id": u, "other_users": [v]}) + " " * 100_000
    response = client.post(
        "/playlists", content=padded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    logged = state.log.frame().iloc[-1]["request"]
    limit = state.config["prediction_log"]["max_request_bytes"]
    size = len(padded.encode())
    assert len(logged.encode()) < limit + 100 and logged.endswith(f"[truncated: {size:,} bytes]")
    assert logged.startswith(json.dumps({"user_id": u, "other_users": [v]}))


def test_concurrent_requests_lose_and_break_no_record(client, state, ids):
    before = state.log.count()
    users = ids["users"]

    def call(i: int) -> int:
        u, v = users[i % len(users)], users[(i + 1) % len(users)]
        if i % 2:
            return client.post(
                "/playlists", json={"user_id": u, "other_users": [v], "playlist_length": 5 + i % 7}
            ).status_code
        return client.post(
            "/skip-predictions", json={"user_id": u, "track_id": ids["track"]}
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(200)))
    assert statuses == [200] * 200
    log = state.log.frame().iloc[before:]
    assert len(log) == 200 and log["id"].is_unique
    for request, response in zip(log["request"], log["response"], strict=True):
        json.loads(request), json.loads(response)  # whole records, never interleaved
    lengths = sorted(
        len(json.loads(r)["tracks"]) for r in log.loc[log["endpoint"] == "/playlists", "response"]
    )
    assert lengths == sorted(5 + i % 7 for i in range(1, 200, 2))


def _write(path: str, worker: int, n: int) -> None:
    log = PredictionLog(path)
    for i in range(n):
        log.append(
            Record(
                "2026-11-22T00:00:00+00:00",
                "/test",
                "playlists",
                "base",
                False,
                "v",
                worker,
                200,
                1.0,
                json.dumps({"i": i}),
                json.dumps({"worker": worker, "i": i, "pad": "x" * 500}),
            )
        )
    log.close()


def test_worker_processes_share_the_log(tmp_path):
    path = str(tmp_path / "log.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(path, w, 150)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    frame = PredictionLog(path).frame()
    assert len(frame) == 450
    got = sorted((json.loads(r)["worker"], json.loads(r)["i"]) for r in frame["response"])
    assert got == sorted((w, i) for w in range(3) for i in range(150))


def test_restart_keeps_the_log(served_project, ids, monkeypatch):
    monkeypatch.setenv("POZYTYWKA_API_KEY", API_KEY)
    first = load_service(served_project, "tiny")
    with TestClient(create_app(first)) as c:
        c.post("/skip-predictions", json={"user_id": ids["users"][0], "track_id": ids["track"]})
    kept = PredictionLog(first.log.path).frame()
    second = load_service(served_project, "tiny")
    assert second.log.count() == len(kept) > 0
    with TestClient(create_app(second)) as c:
        c.post("/skip-predictions", json={"user_id": ids["users"][1], "track_id": ids["track"]})
        summary = c.get("/ab-summary", headers={"X-API-Key": API_KEY}).json()
    after = PredictionLog(second.log.path).frame()
    assert len(after) == len(kept) + 1
    assert after.iloc[: len(kept)].equals(kept) and after["id"].is_monotonic_increasing
    assert sum(v["answers"] for v in summary["skip_predictions"].values()) >= 2


def test_ab_assignment_is_stable_and_balanced():
    users = np.arange(20_000)
    arms = np.array([assign_variant(int(u), "playlists-x") for u in users])
    assert [assign_variant(int(u), "playlists-x") for u in users[:500]] == list(arms[:500])
    share = (arms == "advanced").mean()
    assert 0.48 < share < 0.52, share
    other = np.array([assign_variant(int(u), "skip-x") for u in users])
    agreement = (arms == other).mean()  # an independent split: about half agree
    assert 0.48 < agreement < 0.52, agreement


def test_ab_summary_counts_per_experiment_and_variant(tmp_path):
    log = PredictionLog(tmp_path / "log.sqlite")
    rows = [
        ("playlists", "base", 200, {"tracks": [1, 2]}),
        ("playlists", "advanced", 200, {"tracks": [1, 2, 3, 4]}),
        ("playlists", "advanced", 404, {"detail": "x"}),
        ("skip_predictions", "advanced", 200, {"prediction": "SKIP", "skip_probability": 0.8}),
        ("skip_predictions", "advanced", 200, {"prediction": "PLAY", "skip_probability": 0.2}),
    ]
    for i, (exp, variant, status, body) in enumerate(rows):
        log.append(
            Record("t", "/x", exp, variant, False, "v", i, status, 2.0, "{}", json.dumps(body))
        )
    log.append(
        Record(
            "t",
            "/x",
            "playlists",
            "advanced",
            True,
            "v",
            9,
            200,
            2.0,
            "{}",
            json.dumps({"tracks": list(range(10))}),
        )
    )
    summary = ab_summary(log)
    assert summary["playlists"]["advanced"]["forced"] == 1  # counted, and in no figure below
    assert summary["playlists"]["advanced"]["answers"] == 2
    assert summary["playlists"]["advanced"]["errors"] == 1
    assert summary["playlists"]["advanced"]["mean_playlist_length"] == 4
    assert summary["playlists"]["base"]["mean_playlist_length"] == 2
    assert summary["skip_predictions"]["advanced"]["skip_share"] == 0.5
    assert summary["skip_predictions"]["advanced"]["mean_skip_probability"] == pytest.approx(0.5)


def test_registered_users_with_line_separators_in_their_names_survive_a_restart(tmp_path):
    """U+2028, U+0085 and a lone surrogate inside a name: one record a line, read back whole."""
    from pozytywka.serving.incoming import IncomingWriter  # noqa: PLC0415

    names = ["Ola\u2028Nowak", "Jan\u0085Kowal", "Zo\u00eb \ud800", "plain"]
    writer = IncomingWriter(tmp_path / "users")
    for i, name in enumerate(names):
        writer.append([{"user_id": 7000 + i, "name": name, "favourite_genres": ["jazz"]}])
    path = next((tmp_path / "users").glob("*.jsonl"))
    assert len(path.read_bytes().split(b"\n")) == len(names) + 1  # one line a record
    restarted = IncomingWriter(tmp_path / "users").read_all()
    assert [r["user_id"] for r in restarted] == [7000, 7001, 7002, 7003]
    assert [r["name"] for r in restarted] == names


def test_a_log_from_before_the_salt_column_gets_it_on_open(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(  # the table as logs written before the salt column have it
        "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, logged_at TEXT NOT "
        "NULL, endpoint TEXT NOT NULL, experiment TEXT, variant TEXT, forced INTEGER NOT NULL "
        "DEFAULT 0, model_version TEXT, user_id INTEGER, status INTEGER NOT NULL, latency_ms "
        "REAL NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL)"
    )
    db.execute(
        "INSERT INTO predictions (logged_at, endpoint, status, latency_ms, request, response) "
        "VALUES ('t', '/playlists', 200, 1.0, '{}', '{}')"
    )
    db.commit()
    db.close()
    log = PredictionLog(path)
    log.append(
        Record(
            "t", "/playlists", "playlists", "base", False, "v", 1, 200, 1.0, "{}", "{}", salt="s-1"
        )
    )
    salts = log.frame()["salt"]
    assert salts.isna().tolist() == [True, False] and salts.iloc[1] == "s-1"


@pytest.mark.parametrize(
    ("text", "limit", "kept"),
    [("abc", 3, "abc"), ("abcdef", 3, "abc"), ("zażółć", 4, "zaż")],
)
def test_capped_keeps_the_head_in_whole_characters(text, limit, kept):
    out = capped(text, limit)
    assert out.startswith(kept)
    assert (out == text) == (len(text.encode()) <= limit)
    if out != text:
        assert out.endswith(f"[truncated: {len(text.encode()):,} bytes]")


def test_the_ab_summary_is_behind_the_read_or_the_write_key(served_project, monkeypatch):
    monkeypatch.setenv("POZYTYWKA_API_KEY", API_KEY)
    monkeypatch.setenv("POZYTYWKA_READ_KEY", "reader")
    with TestClient(create_app(load_service(served_project, "tiny"))) as c:
        assert c.get("/ab-summary").status_code == 401
        assert c.get("/ab-summary", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/ab-summary", headers={"X-API-Key": "reader"}).status_code == 200
        assert c.get("/ab-summary", headers={"X-API-Key": API_KEY}).status_code == 200
        # the read key is no write key
        assert (
            c.post("/events", json={"events": []}, headers={"X-API-Key": "reader"}).status_code
            == 401
        )
    monkeypatch.delenv("POZYTYWKA_API_KEY")
    monkeypatch.delenv("POZYTYWKA_READ_KEY")
    with TestClient(create_app(load_service(served_project, "tiny"))) as c:
        response = c.get("/ab-summary")
        assert response.status_code == 503 and "POZYTYWKA_READ_KEY" in response.json()["detail"]
