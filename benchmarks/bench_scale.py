"""How the run's cost grows with the event log: seconds and peak memory per stage at 1M, 3M
and 10M events, and the slower nodes' seconds (each model's training and evaluation).

    python benchmarks/bench_scale.py                       # 1M, 3M, 10M events (~50 min)
    python benchmarks/bench_scale.py --events 1000000      # one size
    python benchmarks/bench_scale.py --pipelines synthetic_data data_processing \\
        feature_engineering                                # the data stages only

Each size runs the real pipelines (`kedro run --pipelines <stage>`, one process per stage,
so each stage's peak is its own) in a scratch copy of the project (its code and configuration,
empty data folders), with users, artists and tracks in proportion to the `large` preset
(20,000 users, 20,000 artists, 100,000 tracks at 10M events). The figures come from each
run's `node_timings.json`: the stage's node seconds, its I/O seconds and its peak resident
memory; the process's own wall time (with Kedro's start-up) is printed beside.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LARGE = {"n_users": 20_000, "n_artists": 20_000, "n_tracks": 100_000, "n_events": 10_000_000}
STAGES = (
    "synthetic_data",
    "data_processing",
    "feature_engineering",
    "skip_prediction",  # with its oracle and report nodes
    "recommendation",
)


def scratch_project(where: Path) -> Path:
    """A copy of the project's code and configuration, with no data."""
    project = where / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    _copy_code(project)
    return project


def _copy_code(project: Path) -> None:
    for folder in ("src", "conf"):
        shutil.rmtree(project / folder, ignore_errors=True)
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )


def _project(keep: Path | None, tmp: Path) -> Path:
    """The scratch project: a fresh one in ``tmp``, or the kept one (its code refreshed)."""
    if keep is None:
        return scratch_project(tmp)
    if not (keep / "project").exists():
        keep.mkdir(parents=True, exist_ok=True)
        return scratch_project(keep)
    _copy_code(keep / "project")
    return keep / "project"


def size_params(n_events: int) -> str:
    share = n_events / LARGE["n_events"]
    sizes = {k: max(int(v * share), 10) for k, v in LARGE.items()}
    sizes["n_events"] = n_events
    return ",".join(
        [
            "synthetic_data.size=large",
            *(f"synthetic_data.sizes.large.{k}={v}" for k, v in sizes.items()),
        ]
    )


def run_stage(project: Path, stage: str, params: str) -> dict:
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", stage, "--params", params]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{stage} failed:\n{done.stderr[-3000:]}")
    timings = json.loads((project / "data" / "08_reporting" / "node_timings.json").read_text())
    return {
        "wall_seconds": wall,
        "node_seconds": timings["total_node_seconds"],
        "io_seconds": timings.get("total_io_seconds", 0.0),
        "peak_gb": timings["peak_rss_mb"] / 1024,
        "slowest": timings["nodes"][:3],
        "nodes": {n["node"]: n["seconds"] for n in timings["nodes"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    ap.add_argument("--pipelines", nargs="+", default=list(STAGES))
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="scratch project kept here (one size): rerun a later stage on its data",
    )
    args = ap.parse_args()
    results: dict[int, dict[str, dict]] = {}
    for n_events in args.events:
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
            project = _project(args.keep, Path(tmp))
            results[n_events] = {}
            for stage in args.pipelines:
                row = run_stage(project, stage, size_params(n_events))
                results[n_events][stage] = row
                slowest = ", ".join(f"{n['node']} {n['seconds']:.1f} s" for n in row["slowest"])
                print(
                    f"{n_events:>11,} events  {stage:<20} {row['node_seconds']:7.1f} s nodes "
                    f"+ {row['io_seconds']:5.1f} s I/O  (process {row['wall_seconds']:6.1f} s)  "
                    f"peak {row['peak_gb']:5.2f} GB  slowest: {slowest}",
                    flush=True,
                )
    print_table(results, args.pipelines)


def print_table(results: dict[int, dict[str, dict]], stages: list[str]) -> None:
    sizes = list(results)
    print()
    print("| stage | " + " | ".join(f"{n / 1e6:g}M events: s (peak GB)" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for stage in stages:
        cells = [
            f"{r['node_seconds'] + r['io_seconds']:.0f} ({r['peak_gb']:.1f})"
            for r in (results[n][stage] for n in sizes)
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print(f"| all stages | {' | '.join(_total(results[n]) for n in sizes)} |")
    print()
    print(
        "| node (2 s or more at some size) | "
        + " | ".join(f"{n / 1e6:g}M: s" for n in sizes)
        + " |"
    )
    print("|---|" + "---:|" * len(sizes))
    seconds = [{k: v for r in results[n].values() for k, v in r["nodes"].items()} for n in sizes]
    for node in sorted(
        {k for s in seconds for k, v in s.items() if v >= 2}, key=lambda k: -seconds[-1].get(k, 0)
    ):
        print(
            f"| {node} | " + " | ".join(f"{s.get(node, float('nan')):.0f}" for s in seconds) + " |"
        )
    first = sizes[0]
    for n in sizes[1:]:
        growth = {
            stage: (results[n][stage]["node_seconds"] + results[n][stage]["io_seconds"])
            / max(results[first][stage]["node_seconds"] + results[first][stage]["io_seconds"], 1e-9)
            for stage in stages
        }
        print(
            f"{n / first:g}x the events: "
            + ", ".join(f"{stage} {g:.1f}x the time" for stage, g in growth.items())
        )


def _total(stages: dict[str, dict]) -> str:
    """The stages' seconds (nodes, I/O) added up, the highest peak, and the processes' wall
    time added up (Kedro's start-up included)."""
    seconds = sum(r["node_seconds"] + r["io_seconds"] for r in stages.values())
    wall = sum(r["wall_seconds"] for r in stages.values())
    return f"{seconds:.0f} ({max(r['peak_gb'] for r in stages.values()):.1f}); processes {wall:.0f}"


if __name__ == "__main__":
    main()
