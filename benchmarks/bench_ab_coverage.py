"""Coverage of the A/B report's 95% intervals over repeated simulated experiments.

    python benchmarks/bench_ab_coverage.py                 # after `kedro run`: 40 experiments
    python benchmarks/bench_ab_coverage.py --runs 10 --users 100 --env weak_signal

Each experiment draws other users (seed = run number), serves them with the trained project's
service (in process, through httpx's ASGI transport: the same app, without sockets), a fresh
prediction log and incoming folder, and analyses them as the ab_analysis pipeline does with the
events the service received. For every metric the simulator knows the truth of, it counts how
often the interval of the difference covered the true difference (the average effect on the
simulated users); a calibrated 95% interval covers it in about 95% of runs (with 40 runs, 90-99%
is within sampling error). Prints per metric: coverage, mean estimate, mean truth, mean interval
width, how often p < 0.05, and the mean minimum detectable effect; writes
data/09_benchmarks/ab_coverage.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from scipy.stats import binomtest

from pozytywka.experiments.outcomes import answers, events_from_records, join
from pozytywka.experiments.report import build_report
from pozytywka.experiments.simulator import Listeners, SimulationPlan, simulate
from pozytywka.serving.app import create_app
from pozytywka.serving.incoming import IncomingWriter
from pozytywka.serving.loading import load_service, project_context
from pozytywka.serving.prediction_log import PredictionLog

ROOT = Path(__file__).resolve().parents[1]
KEY = "benchmark-key"


async def _experiment(app, listeners, users, plan, max_batch):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        return await simulate(
            client, listeners, users, plan, KEY, max_batch=max_batch, progress=False
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--requests-per-day", type=int, default=2)
    parser.add_argument("--skip-checks", type=int, default=2)
    parser.add_argument("--env", default=None)
    parser.add_argument("--project-path", default=str(ROOT))
    args = parser.parse_args()

    root = Path(args.project_path).resolve()
    os.chdir(root)
    os.environ["POZYTYWKA_API_KEY"] = KEY
    context = project_context(root, args.env)
    truth = context.catalog.load("synthetic_truth")
    if truth is None:
        raise SystemExit("no synthetic truth for data/01_raw: `kedro run` first")
    listeners = Listeners(truth)
    users = context.catalog.load("users")["user_id"].to_numpy()
    params = context.params["ab_analysis"]
    params["statistics"]["cumulative_points"] = 0
    state = load_service(root, args.env)
    max_batch = state.config["events"]["max_batch"]
    rows: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            state.log = PredictionLog(Path(tmp) / f"log{run}.sqlite")
            state.events = IncomingWriter(Path(tmp) / f"incoming{run}")
            plan = SimulationPlan(
                users=args.users,
                days=args.days,
                requests_per_day=args.requests_per_day,
                skip_checks=args.skip_checks,
                seed=run,
            )
            result = asyncio.run(
                _experiment(
                    create_app(state, close_on_shutdown=False), listeners, users, plan, max_batch
                )
            )
            answered = answers(state.log.frame())
            served, skips = join(
                answered, events_from_records(state.events.read_all()), params["attribution"]
            )
            report = build_report(answered, served, skips, result.truth, params)
            state.log.close()
            for experiment in ("playlists", "skip_predictions"):
                for metric, m in report["experiments"][experiment]["metrics"].items():
                    if "truth" not in m or not m["difference"].get("interval", [None])[0]:
                        continue
                    rows.setdefault(f"{experiment}/{metric}", []).append(
                        {
                            "estimate": m["difference"]["estimate"],
                            "interval": m["difference"]["interval"],
                            "p_value": m["difference"]["p_value"],
                            "truth": m["truth"]["difference"],
                            "covered": m["truth"]["interval_covers_truth"],
                            "mde": m["power"].get("minimum_detectable_effect"),
                            "users": sum(a["users"] for a in m["arms"].values()),
                        }
                    )
            like = report["experiments"]["playlists"]["metrics"]["like_rate"]
            low, high = like["difference"]["interval"]
            print(
                f"run {run + 1}/{args.runs}: like-rate lift {like['difference']['estimate']:+.4f} "
                f"[{low:+.4f}, {high:+.4f}], true {like['truth']['difference']:+.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    summary = {}
    print(
        f"\n{args.runs} simulated experiments of {args.users} users x {args.days} days x "
        f"{args.requests_per_day} requests (env {args.env or 'base'}):"
    )
    print(
        f"{'metric':38} {'coverage':>16} {'estimate':>9} {'truth':>9} {'width':>8} "
        f"{'p<0.05':>7} {'MDE':>8} {'users':>6}"
    )
    for name, runs in rows.items():
        covered = sum(bool(r["covered"]) for r in runs)
        ci = binomtest(covered, len(runs)).proportion_ci(0.95)
        entry = {
            "runs": len(runs),
            "coverage": covered / len(runs),
            "coverage_interval": [ci.low, ci.high],
            "mean_estimate": float(np.mean([r["estimate"] for r in runs])),
            "mean_truth": float(np.mean([r["truth"] for r in runs])),
            "mean_interval_width": float(
                np.mean([r["interval"][1] - r["interval"][0] for r in runs])
            ),
            "share_significant": float(np.mean([r["p_value"] < 0.05 for r in runs])),
            "mean_mde": float(np.mean([r["mde"] for r in runs if r["mde"] is not None])),
            "mean_users": float(np.mean([r["users"] for r in runs])),
        }
        summary[name] = entry
        print(
            f"{name:38} {entry['coverage']:6.1%} [{ci.low:.0%},{ci.high:.0%}] "
            f"{entry['mean_estimate']:+9.4f} {entry['mean_truth']:+9.4f} "
            f"{entry['mean_interval_width']:8.4f} {entry['share_significant']:7.0%} "
            f"{entry['mean_mde']:8.4f} {entry['mean_users']:6.0f}"
        )
    out = root / "data" / "09_benchmarks" / "ab_coverage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "metrics": summary}, indent=2))
    print(f"\n{time.perf_counter() - started:.0f} s; written to {out.relative_to(root)}")


if __name__ == "__main__":
    main()
