"""Load benchmark of the running service on loopback: p50/p95/p99 latency and requests/s.

    python benchmarks/bench_serving.py            # after `kedro run`; starts `pozytywka serve`
    python benchmarks/bench_serving.py --url http://127.0.0.1:8000   # an already running one
    python benchmarks/bench_serving.py --event-writers 40   # skip latency beside event writes

Latency is measured one request at a time on a kept-alive connection (what one client sees);
throughput with ``--concurrency`` clients, each on its own connection. Members, users and
tracks are drawn at random from the model's users and the catalogue, with a fixed seed.
The server it starts serves a sandbox of the project (links to its artifacts, but its own empty
prediction log and incoming/ folder), so benchmark traffic never reaches the project's A/B log
or the next run's training data.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


class Client:
    def __init__(self, url: str):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def post(self, path: str, body: dict) -> tuple[float, int]:
        data = json.dumps(body)
        start = time.perf_counter()
        self.conn.request("POST", path, data, {"content-type": "application/json"})
        response = self.conn.getresponse()
        response.read()
        return time.perf_counter() - start, response.status


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    u = urlparse(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    sys.exit("the server did not come up")


KEY = "bench-key"
OWN = {"01_raw": {"incoming"}, "07_model_output": {"prediction_log.sqlite"}}


def sandbox(root: Path, into: Path) -> Path:
    """``into`` as the project: its configuration copied, its data linked, but for the files
    the service writes (OWN), which start empty."""
    shutil.copytree(root / "conf", into / "conf", ignore=shutil.ignore_patterns("local"))
    (into / "conf" / "local").mkdir()
    for name in ["pyproject.toml", ".telemetry"]:
        shutil.copy(root / name, into / name)
    (into / "src").mkdir()
    for layer in (root / "data").iterdir():
        if layer.name not in OWN:
            (into / "data").mkdir(exist_ok=True)
            (into / "data" / layer.name).symlink_to(layer)
            continue
        (into / "data" / layer.name).mkdir(parents=True)
        for item in layer.iterdir():
            if not item.name.startswith(tuple(OWN[layer.name])):
                (into / "data" / layer.name / item.name).symlink_to(item)
    return into


def event_writers(url: str, n: int, users, tracks, stop, written) -> None:
    """``n`` clients posting batches of 20 play events until ``stop``; ``written[i]``: events
    client i had acknowledged. Run in a process of its own (``writers_scenario``), so that the
    writers' threads do not hold the GIL the latency client measures with."""

    def work(i: int) -> None:
        u = urlparse(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        headers = {"content-type": "application/json", "x-api-key": KEY}
        rng = np.random.default_rng(i)
        batches = [  # made up front: the writers' CPU is the server's, on one machine
            json.dumps(
                {
                    "events": [
                        {
                            "session_id": int(rng.integers(1, 2**40)),
                            "timestamp": "2026-12-01T12:00:00Z",
                            "user_id": int(rng.choice(users)),
                            "track_id": str(rng.choice(tracks)),
                            "event_type": "play",
                        }
                        for _ in range(20)
                    ]
                }
            )
            for _ in range(50)
        ]
        sent = 0
        while not stop.is_set():
            conn.request("POST", "/events", batches[sent % len(batches)], headers)
            sent += 1
            response = conn.getresponse()
            response.read()
            if response.status == 202:
                written[i] += 20

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def writers_scenario(url: str, args, users, tracks, rng) -> None:
    """Skip-prediction latency alone, then beside ``args.event_writers`` event writers."""
    reqs = bodies("pair", args.requests + args.warmup, users, tracks, rng)
    alone = latency(url, "/skip-predictions", reqs, args.warmup)
    stop, written = multiprocessing.Event(), multiprocessing.Array("q", args.event_writers)
    writers = multiprocessing.Process(
        target=event_writers, args=(url, args.event_writers, users, tracks, stop, written)
    )
    writers.start()
    time.sleep(2)
    start, before = time.perf_counter(), sum(written)
    busy = latency(url, "/skip-predictions", reqs, args.warmup)
    rate = (sum(written) - before) / (time.perf_counter() - start)
    stop.set()
    writers.join(60)
    print(
        f"| `/skip-predictions` alone | {alone['p50_ms']:.2f} | {alone['p95_ms']:.2f} | "
        f"{alone['p99_ms']:.2f} | – |"
    )
    print(
        f"| beside {args.event_writers} event writers | {busy['p50_ms']:.2f} | "
        f"{busy['p95_ms']:.2f} | {busy['p99_ms']:.2f} | {rate:,.0f} events/s |"
    )
    print(f"\np50 rise: {100 * (busy['p50_ms'] / alone['p50_ms'] - 1):+.0f}%")


def bodies(kind: str, n: int, users: np.ndarray, tracks: np.ndarray, rng) -> list[dict]:
    if kind.startswith("group"):
        size = int(kind.split("_")[1])
        out = []
        for _ in range(n):
            members = rng.choice(users, size, replace=False).tolist()
            out.append({"user_id": members[0], "other_users": members[1:], "playlist_length": 20})
        return out
    return [
        {"user_id": int(u), "track_id": str(t)}
        for u, t in zip(rng.choice(users, n), rng.choice(tracks, n), strict=True)
    ]


def latency(url: str, path: str, requests: list[dict], warmup: int) -> dict:
    client = Client(url)
    for body in requests[:warmup]:
        client.post(path, body)
    times, statuses = [], []
    for body in requests[warmup:]:
        t, status = client.post(path, body)
        times.append(t)
        statuses.append(status)
    ms = np.array(times) * 1e3
    return {
        "p50_ms": np.percentile(ms, 50),
        "p95_ms": np.percentile(ms, 95),
        "p99_ms": np.percentile(ms, 99),
        "errors": sum(s != 200 for s in statuses),
    }


def throughput(url: str, path: str, requests: list[dict], concurrency: int) -> float:
    chunks = [requests[i::concurrency] for i in range(concurrency)]
    errors: list[int] = []

    def work(chunk):
        client = Client(url)
        errors.extend(s for _, s in (client.post(path, b) for b in chunk) if s != 200)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} errors during the throughput run of {path}")
    return len(requests) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="benchmark this running server instead of starting one")
    ap.add_argument("--env", default=None, help="Kedro environment of the served project")
    ap.add_argument("--port", type=int, default=8799)
    ap.add_argument("--requests", type=int, default=1000, help="timed requests per scenario")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument(
        "--only",
        default=None,
        help="only the scenarios whose path or request contains this, e.g. 'group_6' or "
        "'/playlists/advanced'",
    )
    ap.add_argument(
        "--event-writers",
        type=int,
        default=0,
        help="instead: skip-prediction latency alone and beside this many event writers",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args, sandbox(ROOT, Path(tmp) / "project"))


def run(args, project: Path) -> None:
    server = None
    url = args.url or f"http://127.0.0.1:{args.port}"
    if not args.url:
        cmd = [sys.executable, "-m", "pozytywka", "serve", "--port", str(args.port)]
        cmd += ["--project-path", str(project)]
        if args.env:
            cmd += ["--env", args.env]
        server = subprocess.Popen(
            cmd,
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "POZYTYWKA_API_KEY": KEY},
        )
    try:
        if server is not None:
            wait_until_up(url, server)
        health = json.loads(urlopen_json(url + "/health"))
        users = pd.read_parquet(
            ROOT / "data/05_model_input/skip_dataset.parquet", columns=["user_id"]
        )["user_id"].unique()
        tracks = pd.read_parquet(ROOT / "data/03_primary/tracks.parquet", columns=["track_id"])[
            "track_id"
        ].to_numpy()
        print(
            f"Service: {health['tracks']:,} tracks, {health['users']:,} users; models "
            f"{health['models']}; served recommender {health.get('served_recommender')}, "
            f"playlist arms {health.get('playlist_arms')}; {os.cpu_count()} cores; "
            f"{args.requests} timed requests "
            f"per row after {args.warmup} warm-up, throughput with {args.concurrency} "
            "clients\n"
        )
        rng = np.random.default_rng(0)
        if args.event_writers:
            print("| requests | p50 ms | p95 ms | p99 ms | events written |")
            print("|---|---:|---:|---:|---:|")
            writers_scenario(url, args, users, tracks, rng)
            return
        print("| endpoint | request | p50 ms | p95 ms | p99 ms | req/s | errors |")
        print("|---|---|---:|---:|---:|---:|---:|")
        scenarios = [
            (p, f"group_{n}")
            for n in (2, 5, 6, 10)
            for p in ("/playlists", "/playlists/advanced", "/playlists/base")
        ]
        scenarios += [
            (p, "pair")
            for p in ("/skip-predictions", "/skip-predictions/advanced", "/skip-predictions/base")
        ]
        if args.only:
            scenarios = [(p, k) for p, k in scenarios if args.only in p or args.only in k]
        for path, kind in scenarios:
            reqs = bodies(kind, args.requests + args.warmup, users, tracks, rng)
            lat = latency(url, path, reqs, args.warmup)
            rps = throughput(url, path, reqs, args.concurrency)
            label = f"group of {kind.split('_')[1]}" if kind.startswith("group") else "one pair"
            print(
                f"| `{path}` | {label} | {lat['p50_ms']:.2f} | {lat['p95_ms']:.2f} | "
                f"{lat['p99_ms']:.2f} | {rps:,.0f} | {lat['errors']} |"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


def urlopen_json(url: str) -> str:
    from urllib.request import urlopen  # noqa: PLC0415

    with urlopen(url, timeout=10) as response:
        return response.read().decode()


if __name__ == "__main__":
    main()
