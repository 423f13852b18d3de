"""Did a change keep the quality? Each figure of a run beside an earlier run's estimate and its
bootstrap interval over test users, for the recommenders and the skip models.

    cp -r data/08_reporting /tmp/before        # before the change, after `kedro run`
    kedro run                                  # with the change
    python benchmarks/compare_runs.py /tmp/before data/08_reporting

Exits 1 when a figure falls outside the earlier run's 95% interval. Each LightFM fit is
deterministic (one thread) and the search runs its trials in fixed rounds, so the same trials
are chosen on a busy machine as on a quiet one; unless a search's time cap cut it (the reports
say so), every scorer should match to the last digit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHECKS = {
    "recommendation_metrics.json": (
        ["model", "defaults", "popularity", "oracle", "ease", "als"],
        ["auc", "precision_at_10", "ndcg_at_10", "recall_at_10", "mrr"],
    ),
    "skip_prediction_metrics.json": (
        ["final", "final_uncalibrated", "linear_svc", "baseline", "oracle"],
        ["roc_auc", "pr_auc", "balanced_accuracy", "accuracy", "brier_score"],
    ),
}


def compare(before: dict, after: dict, scorers: list[str], metrics: list[str]) -> list[tuple]:
    """(scorer, metric, before, interval, after, inside) for every figure both runs have."""
    rows = []
    for scorer in scorers:
        for metric in metrics:
            interval = before.get("intervals", {}).get(scorer, {}).get(metric)
            if interval is None or metric not in after.get(scorer, {}):
                continue  # e.g. "defaults" is absent when the search kept the defaults
            value = after[scorer][metric]
            inside = interval[0] <= value <= interval[1]
            rows.append((scorer, metric, before[scorer][metric], interval, value, inside))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="data/08_reporting of the earlier run")
    ap.add_argument("after", type=Path, help="data/08_reporting of the run to check")
    args = ap.parse_args()
    outside = 0
    for name, (scorers, metrics) in CHECKS.items():
        before, after = (json.loads((d / name).read_text()) for d in (args.before, args.after))
        print(f"\n{name}\n")
        print("| scorer | metric | before | before's 95% interval | after | inside |")
        print("|---|---|---:|---|---:|---|")
        for scorer, metric, was, (lo, hi), now, inside in compare(before, after, scorers, metrics):
            outside += not inside
            print(
                f"| {scorer} | {metric} | {was:.4f} | [{lo:.4f}, {hi:.4f}] | {now:.4f} | "
                f"{'yes' if inside else '**no**'} |"
            )
    print(f"\nfigures outside the earlier run's interval: {outside}")
    sys.exit(1 if outside else 0)


if __name__ == "__main__":
    main()
