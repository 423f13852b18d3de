"""LightFM training throughput (1 thread, all, and one 1-thread fit per core at once) and
group-playlist latency.

    python benchmarks/bench_recommendation.py            # default catalogue + a 100k-track one

Needs the default catalogue's model inputs (`kedro run` first). For the 100,000-track figures
it builds a random model of the same rank over 100k items: latency depends on the shapes only.
Prints interactions per second per epoch (the search's parallel trials are the last line) and
p50/p95 latency of a playlist for groups of 2, 5
and 10 with every strategy.
"""

from __future__ import annotations

import argparse
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from lightfm import LightFM

from pozytywka.recsys.groups import STRATEGIES, group_playlist
from pozytywka.recsys.model import EmbeddingScorer, threads

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    with open(ROOT / "data" / "05_model_input" / f"{name}.pkl", "rb") as f:
        return pickle.load(f)


def _seconds_per_epoch(inter, weights, uf, itf, epochs: int, num_threads: int, seed=0) -> float:
    model = LightFM(no_components=32, loss="warp", random_state=seed)
    fit = dict(user_features=uf, item_features=itf, sample_weight=weights, num_threads=num_threads)
    model.fit_partial(inter, epochs=1, **fit)  # warm-up
    t0 = time.perf_counter()
    model.fit_partial(inter, epochs=epochs, **fit)
    return (time.perf_counter() - t0) / epochs


def training_throughput(epochs: int) -> None:
    inter, weights = load("train_interactions"), load("train_weights")
    uf, itf = load("user_feature_matrix"), load("item_feature_matrix")
    print(
        f"training: {inter.nnz:,} interactions, {inter.shape[0]:,} users x "
        f"{inter.shape[1]:,} tracks, {itf.shape[1]:,} item features"
    )
    cores = threads(0)
    for n in sorted({1, cores}):
        per_epoch = _seconds_per_epoch(inter, weights, uf, itf, epochs, n)
        print(
            f"  one fit, {n} thread(s): {per_epoch * 1000:8.1f} ms/epoch  "
            f"{inter.nnz / per_epoch:12,.0f} interactions/s"
        )
    t0 = time.perf_counter()
    with ThreadPoolExecutor(cores) as pool:
        runs = [
            pool.submit(_seconds_per_epoch, inter, weights, uf, itf, epochs, 1, seed)
            for seed in range(cores)
        ]
        per_fit = [run.result() for run in runs]
    wall = time.perf_counter() - t0
    print(
        f"  {cores} fits at once, 1 thread each: {np.mean(per_fit) * 1000:8.1f} ms/epoch each  "
        f"{cores * inter.nnz * epochs / wall:12,.0f} interactions/s in all (warm-ups included)"
    )


def latency(label: str, scorer, n_users: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print(f"group playlist latency, {label} (20 tracks; p50 / p95 ms over {repeats} groups)")
    for strategy in STRATEGIES:
        cells = []
        for size in (2, 5, 10):
            times = []
            for _ in range(repeats):
                members = rng.choice(n_users, size, replace=False)
                t0 = time.perf_counter()
                group_playlist(scorer(members), 20, strategy)
                times.append((time.perf_counter() - t0) * 1000)
            cells.append(
                f"{size:>2}: {np.percentile(times, 50):6.2f} / {np.percentile(times, 95):6.2f}"
            )
        print(f"  {strategy:<13}" + "   ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    training_throughput(args.epochs)
    with open(ROOT / "data" / "06_models" / "lightfm_model.pkl", "rb") as f:
        model = pickle.load(f)
    uf, itf = load("user_feature_matrix"), load("item_feature_matrix")
    scorer = EmbeddingScorer(model, uf, itf)
    latency(f"default catalogue ({itf.shape[0]:,} tracks)", scorer, uf.shape[0], args.repeats)

    rng = np.random.default_rng(1)
    dim = scorer.item_emb.shape[1]
    big = EmbeddingScorer.__new__(EmbeddingScorer)
    big.user_emb = rng.normal(size=(20_000, dim)).astype(np.float32)
    big.user_bias = np.zeros(20_000, np.float32)
    big.item_emb = rng.normal(size=(100_000, dim)).astype(np.float32)
    big.item_bias = rng.normal(size=100_000).astype(np.float32)
    latency("100,000 tracks", big, 20_000, max(args.repeats // 4, 20))


if __name__ == "__main__":
    main()
