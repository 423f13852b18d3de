"""Throughput of the synthetic generator and of data processing, in events per second.

    python benchmarks/bench_data_pipeline.py              # 1M events (default)
    python benchmarks/bench_data_pipeline.py --events 10000000 --users 20000 --tracks 100000

Runs the node functions directly (no Kedro I/O) with the project's default parameters, so the
figures are the nodes' own cost; prints one line per stage and a summary table.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from kedro.config import OmegaConfigLoader

from pozytywka.pipelines.data_processing.nodes import (
    clean_artists,
    clean_sessions,
    clean_tracks,
    clean_users,
)
from pozytywka.pipelines.feature_engineering.nodes import build_session_tracks
from pozytywka.pipelines.synthetic_data.nodes import generate_clean_catalogue, write_dirty_exports

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=2_500)
    ap.add_argument("--artists", type=int, default=4_000)
    ap.add_argument("--tracks", type=int, default=25_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    base = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base")
    params = copy.deepcopy(base["parameters"]["synthetic_data"])
    params["seed"] = args.seed
    params["size"] = {
        "n_users": args.users,
        "n_artists": args.artists,
        "n_tracks": args.tracks,
        "n_events": args.events,
    }

    timings: dict[str, float] = {}

    def timed(stage, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        timings[stage] = time.perf_counter() - t0
        return out

    clean = timed("generate", generate_clean_catalogue, params)
    n_events = len(clean[3])
    users_txt, artists_txt, tracks_txt, sessions_txt, _ = timed(
        "write_dirty_jsonl", write_dirty_exports, *clean[:4], params
    )
    users = timed("clean_users", lambda: clean_users(users_txt)[0])
    artists = timed("clean_artists", lambda: clean_artists(artists_txt)[0])
    tracks = timed("clean_tracks", lambda: clean_tracks(tracks_txt, artists)[0])
    events = timed("clean_sessions", lambda: clean_sessions(sessions_txt, users, tracks)[0])
    timed("dedup_session_tracks", build_session_tracks, events)

    print(
        f"catalogue: {args.users} users, {args.artists} artists, {args.tracks} tracks, "
        f"{n_events:,} events ({len(sessions_txt) / 1e6:.0f} MB of sessions.jsonl)"
    )
    print(f"{'stage':<24}{'seconds':>10}{'events/s':>14}")
    for stage, sec in timings.items():
        print(f"{stage:<24}{sec:>10.2f}{n_events / sec:>14,.0f}")
    gen = timings["generate"] + timings["write_dirty_jsonl"]
    proc = sum(v for k, v in timings.items() if k.startswith("clean_"))
    print(f"{'generator total':<24}{gen:>10.2f}{n_events / gen:>14,.0f}")
    print(f"{'processing total':<24}{proc:>10.2f}{n_events / proc:>14,.0f}")


if __name__ == "__main__":
    main()
