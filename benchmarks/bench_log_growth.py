"""How fast normal and hostile traffic grow the prediction log: bytes per row and in all.

    python benchmarks/bench_log_growth.py              # after `kedro run`
    python benchmarks/bench_log_growth.py --env tiny   # after `kedro run --env tiny`

The service runs in process (FastAPI's test client: the same middleware, routes and log as
`pozytywka serve`) on a sandbox of the project (its artifacts linked, its own empty log), so
nothing reaches the project's A/B log. Normal traffic: playlists, recommendations and skip
predictions for real users. Hostile traffic, without a key: 250 KB bodies, the shapes that
used to be echoed into the log (50 unknown genres of 5,000 characters; a valid request
padded with junk keys; an event batch of oversized strings). The issue's bound: 300 hostile
requests may grow the log by at most 15 MB in all.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
from bench_serving import KEY, ROOT, sandbox
from fastapi.testclient import TestClient

from pozytywka.serving.app import create_app
from pozytywka.serving.loading import load_service

HOSTILE_BOUND = 15 * 2**20


def stored_bytes(path: Path) -> tuple[int, int]:
    """(rows, bytes of request and answer text) in the log at ``path``."""
    with sqlite3.connect(path) as db:
        rows, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(CAST(request AS BLOB)) + "
            "length(CAST(response AS BLOB))), 0) FROM predictions"
        ).fetchone()
    return int(rows), int(size)


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def normal(users: list[int], track: str, n: int) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        group = [int(u) for u in rng.choice(users, int(rng.integers(2, 7)), replace=False)]
        out.append(("/playlists", {"user_id": group[0], "other_users": group[1:]}))
        out.append(("/recommendations", {"user_id": group[0], "k": 10}))
        out.append(("/skip-predictions", {"user_id": group[0], "track_id": track}))
    return out


def hostile(users: list[int], n: int) -> list[tuple[str, dict]]:
    genres = [f"{i:03d}" + "g" * 4997 for i in range(50)]  # 50 x 5,000 characters
    junk = {f"k{i}": "j" * 5000 for i in range(50)}
    event = {"session_id": 1, "timestamp": "2026-01-01T00:00:00Z", "track_id": "t" * 5000}
    shapes = [
        ("/recommendations", {"user_id": users[0], "k": 5, "filters": {"exclude_genres": genres}}),
        ("/playlists", {"user_id": users[0], "other_users": [users[1]], **junk}),
        ("/events", {"events": [{**event, "user_id": users[0]}] * 50}),
    ]
    return [shapes[i % len(shapes)] for i in range(n)]


def measure(client: TestClient, log: Path, requests: list[tuple[str, dict]]) -> dict:
    rows0, bytes0 = stored_bytes(log)
    file0 = file_bytes(log)
    sent, statuses = 0, {}
    for path, body in requests:
        data = json.dumps(body)
        sent += len(data)
        status = client.post(path, content=data, headers={"content-type": "application/json"})
        statuses[status.status_code] = statuses.get(status.status_code, 0) + 1
    rows, size = stored_bytes(log)
    return {
        "requests": len(requests),
        "sent_mb": sent / 2**20,
        "statuses": statuses,
        "rows": rows - rows0,
        "stored_mb": (size - bytes0) / 2**20,
        "bytes_per_row": (size - bytes0) / max(rows - rows0, 1),
        "file_growth_mb": (file_bytes(log) - file0) / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default=None, help="Kedro environment of the served project")
    ap.add_argument("--normal", type=int, default=300, help="normal rounds (3 requests each)")
    ap.add_argument("--hostile", type=int, default=300, help="hostile keyless requests")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = sandbox(ROOT, Path(tmp) / "project")
        os.environ["POZYTYWKA_API_KEY"] = KEY
        state = load_service(project, args.env)
        log = state.log.path
        users = [int(u) for u in state.recommender.recommender.user_index][:500]
        track = str(state.catalogue.track_ids[0])
        with TestClient(create_app(state)) as client:
            results = {
                "normal": measure(client, log, normal(users, track, args.normal)),
                "hostile": measure(client, log, hostile(users, args.hostile)),
            }
    print("| traffic | requests | sent MB | statuses | rows | stored MB | bytes/row | file MB |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['requests']:,} | {r['sent_mb']:.1f} | {r['statuses']} | "
            f"{r['rows']:,} | {r['stored_mb']:.2f} | {r['bytes_per_row']:,.0f} | "
            f"{r['file_growth_mb']:.2f} |"
        )
    grown = results["hostile"]["file_growth_mb"] * 2**20
    verdict = "within" if grown <= HOSTILE_BOUND else "OVER"
    print(
        f"\n{args.hostile} hostile requests grew the log file by "
        f"{results['hostile']['file_growth_mb']:.2f} MB: {verdict} the 15 MB bound."
    )
    if grown > HOSTILE_BOUND:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
