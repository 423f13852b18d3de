"""The served recommender against every single scorer, on several data sets: the default
synthetic catalogue, the weak-signal one, a ratings-style world the generator did not make
(benchmarks/rating_world.py) and the small service-format export of tests/service_export.py
(no signal to find).

Each data set runs the whole project in a scratch copy (``kedro run``, or ``--pipelines
from_raw`` on the written export); the figures are the project's own report
(``recommendation_metrics.json``): test NDCG@10 and precision@10 with 95% intervals over test
users, which recommender was served, and its paired difference from the best single scorer
on test.

    python benchmarks/bench_two_stage.py                          # all four (~25 min on 2 cores)
    python benchmarks/bench_two_stage.py --data rating_world --keep /tmp/bench
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
sys.path.insert(0, str(ROOT))

SINGLE = ("model", "ease", "als", "popularity")  # LightFM is "model" in the report
DATA_SETS = ("default", "weak_signal", "rating_world", "service_export")
SHOWN = ("ndcg_at_10", "precision_at_10")


def _project(where: Path) -> Path:
    for name in ("conf", "pyproject.toml", ".telemetry"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, where / name, ignore=shutil.ignore_patterns("local"))
        elif source.exists():
            shutil.copy(source, where / name)
    (where / "conf" / "local").mkdir(exist_ok=True)
    for sub in ("src", "data/01_raw", "data/08_reporting"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    return where


def _run(data_set: str, where: Path) -> float:
    raw = where / "data" / "01_raw"
    command = ["kedro", "run"]
    if data_set == "weak_signal":
        command += ["--env", "weak_signal"]
    elif data_set == "rating_world":
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks/rating_world.py"), "--out", str(raw)],
            check=True,
        )
        command += ["--pipelines", "from_raw"]
    elif data_set == "service_export":
        from tests.service_export import write_service_export  # noqa: PLC0415

        write_service_export(raw)
        command += ["--pipelines", "from_raw"]
    t0 = time.perf_counter()
    with open(where / "run.log", "w") as log:
        subprocess.run(command, cwd=where, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def _cell(report: dict, scorer: str, metric: str) -> str:
    low, high = report["intervals"][scorer][metric]
    return f"{report[scorer][metric]:.4f} [{low:.4f}, {high:.4f}]"


def _summary(data_set: str, report: dict, seconds: float) -> list[str]:
    served = report.get("served", "model")
    singles = [s for s in SINGLE if s in report]
    lines = [
        f"## {data_set}: served {served} ({report['sizes']['test_users']} test users, "
        f"run {seconds:.0f} s)",
        "",
        "| scorer | " + " | ".join(SHOWN) + " |",
        "|---|" + "---:|" * len(SHOWN),
    ]
    for s in [*singles, *(["ranker"] if "ranker" in report else [])]:
        name = f"**{s}** (served)" if s == served else s
        lines.append(f"| {name} | " + " | ".join(_cell(report, s, m) for m in SHOWN) + " |")
    for m in SHOWN:
        best = max((s for s in singles if s != served), key=lambda s: report[s][m])
        diff = report["served_difference"].get(f"{served}_vs_{best}", {}).get(m)
        if diff is None:
            continue
        low, high = diff["interval"]
        lines.append(
            f"\n{m}: served − best other single scorer ({best}) = {diff['estimate']:+.4f} "
            f"[{low:+.4f}, {high:+.4f}]"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=",".join(DATA_SETS), help="comma-separated")
    parser.add_argument("--keep", type=Path, help="run the projects here and keep them")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_two_stage_"))
    for data_set in args.data.split(","):
        where = _project(base / data_set)
        seconds = _run(data_set, where)
        report = json.loads((where / "data/08_reporting/recommendation_metrics.json").read_text())
        print("\n".join(_summary(data_set, report, seconds)), flush=True)
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
