"""Batch skip scoring throughput (pairs per second) and single-pair latency.

python benchmarks/bench_skip_prediction.py      # after `kedro run` (uses its model and tables)
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
from kedro.config import OmegaConfigLoader

from pozytywka.pipelines.skip_prediction.nodes import score_pairs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=200)
    args = ap.parse_args()
    params = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base")[
        "parameters"
    ]["skip_prediction"]["scoring"]
    with open(ROOT / "data/06_models/skip_model.pkl", "rb") as f:
        model = pickle.load(f)
    dataset = pd.read_parquet(ROOT / "data/05_model_input/skip_dataset.parquet")
    tables = {
        n: pd.read_parquet(ROOT / f"data/03_primary/{n}.parquet")
        for n in ["tracks", "artists", "users"]
    }
    genres = json.loads((ROOT / "data/04_feature/genre_vocabulary.json").read_text())
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(
        {
            "user_id": rng.choice(tables["users"]["user_id"], args.pairs),
            "track_id": rng.choice(tables["tracks"]["track_id"], args.pairs),
        }
    )
    t0 = time.perf_counter()
    score_pairs(
        pairs, model, dataset, tables["tracks"], tables["artists"], tables["users"], genres, params
    )
    batch = time.perf_counter() - t0
    print(f"model: {type(model).__name__}; {len(dataset):,} training-table rows")
    print(f"batch of {args.pairs:,} pairs: {batch:.2f} s, {args.pairs / batch:,.0f} pairs/s")
    times = []
    for i in range(args.single):
        one = pairs.iloc[[i]]
        t0 = time.perf_counter()
        score_pairs(
            one,
            model,
            dataset,
            tables["tracks"],
            tables["artists"],
            tables["users"],
            genres,
            params,
        )
        times.append((time.perf_counter() - t0) * 1000)
    print(
        f"single pair: p50 {np.percentile(times, 50):.1f} ms, "
        f"p95 {np.percentile(times, 95):.1f} ms over {args.single} calls "
        "(recomputes training rates each call; a service would cache them)"
    )


if __name__ == "__main__":
    main()
