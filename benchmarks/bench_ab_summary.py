"""`GET /ab-summary` on a large prediction log: its time, the server's memory, and the latency
of small requests made meanwhile.

    python benchmarks/bench_ab_summary.py                    # after `kedro run`; 1M rows
    python benchmarks/bench_ab_summary.py --env tiny --rows 100000

The service (`pozytywka serve`) runs on a sandbox of the project whose log is filled first
with ``--rows`` answers shaped as the service logs them (playlists of 20 tracks, skip
predictions, a few errors), spread over both arms and 5,000 users. The summary is asked for
once alone, then again by one thread (with the read key) while the main thread sends skip
predictions one at a time; the server's resident memory is sampled every 20 ms. The issue's
bounds for 1M rows: the summary within 10 s, the server at most 500 MB larger, small
requests' p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import Request, urlopen

import numpy as np
import pandas as pd
from bench_serving import KEY, ROOT, Client, sandbox, wait_until_up

from pozytywka.serving.prediction_log import PredictionLog


def fill(path: Path, rows: int, tracks: np.ndarray, users: np.ndarray) -> None:
    """``rows`` log records as the service writes them, in one transaction."""
    PredictionLog(path).close()  # the schema
    rng = np.random.default_rng(0)
    now = datetime.now(UTC).isoformat()

    def record(i: int) -> tuple:
        user = int(users[i % len(users)])
        variant = ("base", "advanced")[i % 2]
        if i % 50 == 0:
            body = {"status": 422, "error": ["missing body.user_id Field required"]}
            return (now, "/playlists", "playlists", variant, 0, None, user, 422, 1.0, "{}", body)
        if i % 3 == 0:
            track = str(tracks[i % len(tracks)])
            body = {"variant": variant, "track_id": track, "prediction": "SKIP",
                    "skip_probability": 0.7}  # fmt: skip
            return (now, "/skip-predictions", "skip_predictions", variant, 0, "v", user, 200,
                    1.0, "{}", body)  # fmt: skip
        served = [{"track_id": str(t)} for t in rng.choice(tracks, 20)]
        body = {"variant": variant, "members": [user], "tracks": served}
        return (now, "/playlists", "playlists", variant, 0, "v", user, 200, 2.0, "{}", body)

    with sqlite3.connect(path) as db:
        batch = []
        for i in range(rows):
            *head, body = record(i)
            text = json.dumps(body)
            text = json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(), **body})
            batch.append((*head, text))
            if len(batch) == 50_000 or i == rows - 1:
                db.executemany(
                    "INSERT INTO predictions (logged_at, endpoint, experiment, variant, forced, "
                    "model_version, user_id, status, latency_ms, request, response) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    batch,
                )
                batch = []
        db.execute(
            "UPDATE log_size SET bytes = (SELECT SUM(length(request) + length(response)) "
            "FROM predictions)"
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default=None, help="Kedro environment of the served project")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--port", type=int, default=8798)
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    users = pd.read_parquet(ROOT / "data/05_model_input/skip_dataset.parquet", columns=["user_id"])
    users = users["user_id"].unique()[:5000]
    tracks = pd.read_parquet(ROOT / "data/03_primary/tracks.parquet", columns=["track_id"])
    tracks = tracks["track_id"].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        project = sandbox(ROOT, Path(tmp) / "project")
        log = project / "data/07_model_output/prediction_log.sqlite"
        start = time.perf_counter()
        fill(log, args.rows, tracks, users)
        print(f"Filled the log with {args.rows:,} rows in {time.perf_counter() - start:.0f} s "
              f"({log.stat().st_size / 2**20:,.0f} MB)")  # fmt: skip
        cmd = [sys.executable, "-m", "pozytywka", "serve", "--port", str(args.port)]
        cmd += ["--project-path", str(project)] + (["--env", args.env] if args.env else [])
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "POZYTYWKA_API_KEY": KEY}
        server = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_until_up(url, server)
            measure(url, server.pid, users, tracks)
        finally:
            server.terminate()
            server.wait(30)


def measure(url: str, pid: int, users: np.ndarray, tracks: np.ndarray) -> None:
    start = time.perf_counter()
    with urlopen(Request(url + "/ab-summary", headers={"X-API-Key": KEY}), timeout=600) as r:
        r.read()
    print(f"/ab-summary alone: {time.perf_counter() - start:.2f} s")
    client, rng = Client(url), np.random.default_rng(1)

    def small() -> float:
        body = {"user_id": int(rng.choice(users)), "track_id": str(rng.choice(tracks))}
        return client.post("/skip-predictions", body)[0] * 1e3

    quiet = [small() for _ in range(300)]
    before, peak, done = rss_mb(pid), [0.0], threading.Event()
    answer: dict = {}

    def ask() -> None:
        start = time.perf_counter()
        request = Request(url + "/ab-summary", headers={"X-API-Key": KEY})
        with urlopen(request, timeout=600) as response:
            answer["body"] = json.loads(response.read())
        answer["seconds"] = time.perf_counter() - start
        done.set()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.02)

    threads = [threading.Thread(target=ask), threading.Thread(target=sample)]
    for t in threads:
        t.start()
    during = []
    while not done.is_set():
        during.append(small())
    for t in threads:
        t.join()
    counted = sum(a["answers"] for e in answer["body"].values() if isinstance(e, dict)
                  for a in e.values() if isinstance(a, dict) and "answers" in a)  # fmt: skip
    grown = peak[0] - before
    print(f"/ab-summary: {answer['seconds']:.2f} s for {counted:,} answers counted; server "
          f"RSS {before:,.0f} MB before, peak {peak[0]:,.0f} MB (+{grown:,.0f} MB)")  # fmt: skip
    for name, ms in (("quiet", quiet), ("during the summary", during)):
        print(f"small requests {name}: {len(ms):,} sent, p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
