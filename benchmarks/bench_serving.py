"""Load benchmark of the running service on loopback: p50/p95/p99 latency and requests/s.

    python benchmarks/bench_serving.py            # after `kedro run`; starts `pozytywka serve`
    python benchmarks/bench_serving.py --url http://127.0.0.1:8000   # an already running one

Latency is measured one request at a time on a kept-alive connection (what one client sees);
throughput with ``--concurrency`` clients, each on its own connection. Members, users and
tracks are drawn at random from the model's users and the catalogue, with a fixed seed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
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
    args = ap.parse_args()

    server = None
    url = args.url or f"http://127.0.0.1:{args.port}"
    if not args.url:
        cmd = [sys.executable, "-m", "pozytywka", "serve", "--port", str(args.port)]
        if args.env:
            cmd += ["--env", args.env]
        server = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
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
            f"{health['models']}; {os.cpu_count()} cores; {args.requests} timed requests "
            f"per row after {args.warmup} warm-up, throughput with {args.concurrency} "
            "clients\n"
        )
        print("| endpoint | request | p50 ms | p95 ms | p99 ms | req/s | errors |")
        print("|---|---|---:|---:|---:|---:|---:|")
        rng = np.random.default_rng(0)
        scenarios = [
            (p, f"group_{n}")
            for n in (2, 5, 6, 10)
            for p in ("/playlists", "/playlists/advanced", "/playlists/base")
        ]
        scenarios += [
            (p, "pair")
            for p in ("/skip-predictions", "/skip-predictions/advanced", "/skip-predictions/base")
        ]
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
