"""Does the LightFM search search? Objective reliability and search vs random search.

    python benchmarks/bench_search.py                    # after `kedro run` (its model inputs)
    python benchmarks/bench_search.py --pool 550 --seeds 5 --trials 60

1. A pool of random configurations from the reference space (``recommendation.search.space``),
   each trained on the fit part of the training likes, scored on validation (every candidate
   objective) and on the test split (precision@10). For each objective it prints how often
   the validation ranking of two models agrees with their test ranking.
2. Random search, simulated from the pool (many random orders of it), against the pipeline's
   search (multivariate TPE + ``search.pruner`` on epochs, defaults enqueued) over several seeds:
   the test precision@10 of the validation-best model after 10 / 30 / 60 trials, beside the
   validation-best of the whole pool (a long random search) and the pool's test-best.

Every model is trained on the same fit split; the test figure excludes training pairs. The
pool is cached in data/09_benchmarks/ (delete it to redraw).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import optuna
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from pozytywka.pipelines.recommendation.nodes import (
    _lightfm_objective,
    _open_study,
    _suggest,
    _train,
    prepare_training_data,
)
from pozytywka.recsys.metrics import per_user_ranking_metrics
from pozytywka.recsys.model import DivergedError, EmbeddingScorer

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ("precision_at_10", "ndcg_at_10", "recall_at_25", "ndcg_at_25", "mrr", "auc")
CHECKPOINTS = (10, 15, 20, 30, 60)


def load_inputs(variant: str, validation_size: float | None):
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog, params = context.catalog, context.params
        split = dict(params["recommendation"]["validation"])
        split["size"] = validation_size or split["size"]
        split["variants"] = {variant: split["variants"][variant]}
        data = prepare_training_data(
            catalog.load("interactions"),
            catalog.load("lightfm_dataset"),
            split,
            params["recommendation"]["evaluation"],
        )
        features = catalog.load("user_feature_matrix"), catalog.load("item_feature_matrix")
    return data, features, params["recommendation"], split["size"]


def evaluate(hp: dict, epochs: int, data, features, training) -> dict | None:
    """Validation metrics (every objective) and test precision@10 of one configuration."""
    inter, weights = next(iter(data["fit"].values()))
    t0 = time.perf_counter()
    try:
        model = _train(hp, epochs, inter, weights, *features, training)
    except DivergedError:
        return None
    scorer = EmbeddingScorer(model, *features)
    val, _ = per_user_ranking_metrics(
        scorer, data["validation"], data["fit_known"], users=data["validation_users"]
    )
    test, _ = per_user_ranking_metrics(
        scorer, data["test"], data["train_known"], users=data["test_users"]
    )
    return {
        **{f"val_{m}": float(val[m].mean()) for m in OBJECTIVES},
        "test_precision_at_10": float(test["precision_at_10"].mean()),
        "seconds": time.perf_counter() - t0,
    }


def random_configs(n: int, space: dict) -> list[tuple[dict, int]]:
    """``n`` draws from the pipeline's own search space (``_suggest``), uniformly at random."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=12345))
    return [_suggest(study.ask(), space) for _ in range(n)]


def build_pool(n: int, data, features, rec: dict, cache: Path) -> list[dict]:
    pool = json.loads(cache.read_text()) if cache.exists() else []
    configs = random_configs(n, rec["search"]["space"])
    t0 = time.perf_counter()
    for i in range(len(pool), n):
        hp, epochs = configs[i]
        result = evaluate(hp, epochs, data, features, rec["training"])
        pool.append({"hp": hp, "epochs": epochs, "result": result})
        if i % 10 == 9 or i == n - 1:
            cache.write_text(json.dumps(pool))
            print(f"  pool {i + 1}/{n} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return pool[:n]


def agreement(values: np.ndarray, test: np.ndarray) -> float:
    """Share of model pairs (differing on test) that validation orders as test does."""
    dv = np.sign(values[:, None] - values[None, :])
    dt = np.sign(test[:, None] - test[None, :])
    upper = np.triu(np.ones_like(dv, dtype=bool), 1) & (dt != 0)
    return float((dv[upper] == dt[upper]).mean())


def report_agreement(pool: list[dict]) -> None:
    ok = [p["result"] for p in pool if p["result"] is not None]
    test = np.array([r["test_precision_at_10"] for r in ok])
    good = test >= np.median(test)
    print(f"\nObjective reliability: {len(ok)} models ({len(pool) - len(ok)} diverged)")
    print("  validation metric   agreement with test p@10: all pairs | better half of models")
    for m in OBJECTIVES:
        v = np.array([r[f"val_{m}"] for r in ok])
        print(f"  {m:<18}  {agreement(v, test):10.3f} | {agreement(v[good], test[good]):10.3f}")


def best_so_far(val: np.ndarray, test: np.ndarray, n: int) -> float:
    """Test value of the validation-best of the first ``n`` (NaN: none completed)."""
    head = val[:n]
    if not np.isfinite(head).any():
        return float("nan")
    return float(test[int(np.nanargmax(head))])


def simulate_random(
    pool: list[dict], objective: str, repeats: int, checkpoints: list[int]
) -> dict[int, np.ndarray]:
    val = np.array([p["result"][f"val_{objective}"] if p["result"] else np.nan for p in pool])
    test = np.array([p["result"]["test_precision_at_10"] if p["result"] else np.nan for p in pool])
    rng = np.random.default_rng(0)
    out: dict[int, list] = {n: [] for n in checkpoints}
    for _ in range(repeats):
        order = rng.permutation(len(pool))
        for n in checkpoints:
            out[n].append(best_so_far(val[order], test[order], n))
    return {n: np.array(v) for n, v in out.items()}


def run_search(seed: int, n_trials: int, objective: str, data, features, rec: dict, cache: dict):
    """The pipeline's study on the same split; test p@10 of the best-so-far at checkpoints."""
    search = {
        **rec["search"],
        "objective": objective,
        "storage": "sqlite:///:memory:",
        "resume": False,
        "seed": seed,
    }
    study = _open_study(search, seed)
    space = {*search["space"], "epochs"}
    study.enqueue_trial({k: v for k, v in rec["training"]["defaults"].items() if k in space})
    inter, weights = next(iter(data["fit"].values()))
    fn = _lightfm_objective(
        data, inter, weights, *features, [], search, rec["training"], time.monotonic() + 1e9
    )
    t0 = time.perf_counter()
    study.optimize(fn, n_trials=n_trials, catch=(ValueError, FloatingPointError))
    seconds = time.perf_counter() - t0
    done = optuna.trial.TrialState.COMPLETE
    val = np.array(
        [t.value if t.state == done and t.value is not None else np.nan for t in study.trials]
    )
    out = {}
    for n in (n for n in CHECKPOINTS if n <= n_trials):
        head = val[:n]
        if not np.isfinite(head).any():
            out[n] = float("nan")
            continue
        best = study.trials[int(np.nanargmax(head))]
        key = json.dumps(best.params, sort_keys=True)
        if key not in cache:
            p = dict(best.params)
            epochs = p.pop("epochs")
            cache[key] = evaluate(p, epochs, data, features, rec["training"])[
                "test_precision_at_10"
            ]
        out[n] = cache[key]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"  TPE seed {seed}: {len(study.trials)} trials in {seconds:.0f} s", flush=True)
    return out, seconds, pruned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pool", type=int, default=150, help="random configurations (550: reference; 0: none)"
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="first of the --seeds seeds")
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--objective", default=None, help="default: recommendation.search.objective")
    ap.add_argument("--variant", default="likes")
    ap.add_argument("--validation-size", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None, help="LightFM threads (default: params)")
    args = ap.parse_args()
    data, features, rec, size = load_inputs(args.variant, args.validation_size)
    if args.threads is not None:
        rec["training"]["num_threads"] = args.threads
    objective = args.objective or rec["search"]["objective"]
    print(
        f"data: {data['fit'][args.variant][0].nnz:,} fit pairs, {data['validation'].nnz:,} "
        f"validation likes, {data['test'].nnz:,} test likes; variant {args.variant}"
    )
    cache_dir = ROOT / "data" / "09_benchmarks"
    cache_dir.mkdir(parents=True, exist_ok=True)
    pool = []
    if args.pool:
        pool = build_pool(
            args.pool, data, features, rec, cache_dir / f"search_pool_{args.variant}_{size}.json"
        )
        report_agreement(pool)
        ok = [p for p in pool if p["result"]]
        test = np.array([p["result"]["test_precision_at_10"] for p in ok])
        val = np.array([p["result"][f"val_{objective}"] for p in ok])
        print(f"\nSearch on validation {objective}; test precision@10 of the validation-best model")
        print(
            f"  pool of {len(pool)} random trials: validation-best "
            f"{test[int(np.argmax(val))]:.4f}, test-best {test.max():.4f}"
        )
    default = evaluate(
        {k: v for k, v in rec["training"]["defaults"].items() if k != "epochs"},
        rec["training"]["defaults"]["epochs"],
        data,
        features,
        rec["training"],
    )
    print(f"  defaults: {default['test_precision_at_10']:.4f}")
    checkpoints = [n for n in CHECKPOINTS if n <= args.trials]
    rand = simulate_random(pool, objective, 500, checkpoints) if pool else {}
    print("  trials   random search (mean [5%, 95%] of 500 orders)   the search (per seed)")
    cache: dict = {}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = [run_search(s, args.trials, objective, data, features, rec, cache) for s in seeds]
    for n in checkpoints:
        r = rand[n][np.isfinite(rand[n])] if pool else np.array([np.nan])
        tpe = ", ".join(f"{run[0][n]:.4f}" for run in runs)
        print(
            f"  {n:>6}   {np.mean(r):.4f} [{np.percentile(r, 5):.4f}, {np.percentile(r, 95):.4f}]"
            f"                  {tpe}  (mean {np.nanmean([run[0][n] for run in runs]):.4f})"
        )
    for s, (_, seconds, pruned) in zip(seeds, runs, strict=True):
        print(f"  TPE seed {s}: {args.trials} trials in {seconds:.0f} s, {pruned} pruned")


if __name__ == "__main__":
    main()
