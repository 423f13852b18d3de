"""The service as clients meet it: its own process on a real socket (one or two workers).
Property-based fuzzing of the OpenAPI document, one user registry for every worker and across
restarts, and the deadlines of slow clients."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pozytywka.serving.prediction_log import PredictionLog
from tests.project import API_KEY, copy_project, live_service

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": API_KEY}
LOG = Path("data") / "07_model_output" / "prediction_log.sqlite"


@pytest.fixture
def project(trained_project, tmp_path) -> Path:
    return copy_project(trained_project, tmp_path / "project")


def schemathesis_command() -> list[str]:
    found = Path(sys.executable).with_name("schemathesis")
    return [str(found) if found.exists() else str(shutil.which("schemathesis"))]


def test_schemathesis_finds_no_failure_and_no_answer_is_a_500(project, tmp_path):
    """Every check schemathesis has, on every operation, with a fixed seed: the answers match
    the document (statuses, bodies, content types), what it calls valid is accepted and what
    it calls invalid is refused."""
    with live_service(project) as service:
        run = subprocess.run(
            [
                *schemathesis_command(),
                "run",
                f"{service.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "15",
                "--seed",
                "20261202",
                "--no-shrink",
                "--header",
                f"X-API-Key: {API_KEY}",
            ],
            capture_output=True,
            check=False,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Tested: 15" in run.stdout and " passed" in run.stdout, run.stdout[-2000:]
    log = PredictionLog(project / LOG).frame()
    assert len(log) > 500 and not (log["status"] >= 500).any()


def _new_connection_get(url: str, body: dict) -> int:
    """POST on a connection of its own, so that requests spread over the workers."""
    with httpx.Client(timeout=30) as client:
        return client.post(url, json=body).status_code


def test_two_workers_share_one_registry_and_a_restart_keeps_every_user(project):
    new_users = list(range(770_001, 770_101))
    with live_service(project, workers=2) as service:
        genre = httpx.get(f"{service.url}/genres").json()[0]
        reads = []
        with ThreadPoolExecutor(8) as pool:
            for user in new_users:
                record = {"user_id": user, "favourite_genres": [genre]}
                created = httpx.post(f"{service.url}/users", json=record, headers=KEY)
                assert created.status_code == 201, created.text
                reads += pool.map(
                    lambda _, u=user: _new_connection_get(
                        f"{service.url}/recommendations", {"user_id": u, "k": 3}
                    ),
                    range(10),
                )
            assert len(reads) == 1000 and reads.count(404) == 0, reads.count(404)
            # The same registration from many clients at once: one record, the same answer.
            same = {"user_id": 770_500, "favourite_genres": [genre]}
            answers = list(
                pool.map(
                    lambda _: httpx.post(f"{service.url}/users", json=same, headers=KEY),
                    range(60),
                )
            )
        assert {a.status_code for a in answers} == {201}
        assert len({a.text for a in answers}) == 1
        other = {"user_id": 770_500, "favourite_genres": [genre, "x"]}
        assert httpx.post(f"{service.url}/users", json=other, headers=KEY).status_code == 409
    lines = [
        json.loads(line)
        for path in (project / "data" / "01_raw" / "incoming" / "users").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(r["user_id"] for r in lines) == [*new_users, 770_500]
    with live_service(project, workers=2) as service:
        for user in [*new_users, 770_500]:
            answer = _new_connection_get(f"{service.url}/recommendations", {"user_id": user})
            assert answer == 200, user


def _slow_limits(project: Path) -> None:
    (project / "conf" / "tiny" / "serving.yml").write_text(
        "limits:\n  max_body_bytes: 262144\n  body_timeout_s: 1\n"
        "  header_timeout_s: 1\n  keep_alive_s: 5\n"
    )


def test_slow_headers_are_disconnected_and_a_stalled_body_is_a_408(project):
    _slow_limits(project)
    with live_service(project) as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as slow:
            slow.sendall(b"POST /skip-predictions HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            for _ in range(20):  # a byte now and then: uvicorn's keep-alive timer alone resets
                try:
                    slow.sendall(b"X")
                except OSError:
                    break
                time.sleep(0.2)
            slow.settimeout(5)
            try:
                closed = slow.recv(100) == b""
            except ConnectionResetError:
                closed = True
            assert closed and time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as stalled:
            stalled.sendall(
                b"POST /skip-predictions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json"
                b'\r\ncontent-length: 100\r\n\r\n{"user_id":'
            )
            started = time.monotonic()
            answer = stalled.recv(1000)
            assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
        # The answer of a client in time is unaffected.
        assert httpx.get(f"{service.url}/health").status_code == 200
    log = PredictionLog(project / LOG).frame()
    assert log["status"].tolist() == []  # refused before a prediction began: not logged
