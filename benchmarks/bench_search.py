"""Does the LightFM search search? Objective reliability, search vs random search, and the
pipeline's search on several data sets.

    python benchmarks/bench_search.py                    # after `kedro run` (its model inputs)
    python benchmarks/bench_search.py --pool 550 --seeds 5 --trials 60
    python benchmarks/bench_search.py --worlds default,weak_signal,rating_world

``--worlds`` (3. below) needs no earlier run: it writes each data set's model inputs into its
own scratch project under ``--worlds-dir`` (data/09_benchmarks/search_worlds/; kept for the
next time, the conf copied afresh each time), then runs the pipeline's own nodes on them.

1. A pool of random configurations from the reference space (``recommendation.search.space``),
   each trained on the fit part of the training likes, scored on validation (every candidate
   objective) and on the test split (precision@10). For each objective it prints how often
   the validation ranking of two models agrees with their test ranking.
2. Random search, simulated from the pool (many random orders of it), against the pipeline's
   search (multivariate TPE + ``search.pruner`` on epochs, defaults enqueued) over several seeds:
   the test precision@10 of the validation-best model after 10 / 30 / 60 trials, beside the
   validation-best of the whole pool (a long random search) and the pool's test-best.

3. The pipeline's search as ``kedro run`` runs it (the variant comparison, the search with
   the space fitted to the data, the final model and, when another won, the defaults, both on
   every training pair) on each data set of ``--worlds``: ``default`` (the generator's default
   catalogue), ``weak_signal`` (``--env weak_signal``) and ``rating_world`` (a ratings-style
   export the generator did not write: benchmarks/rating_world.py). It prints the fitted
   space, the trials (pruned), the chosen trial, its validation objective and the defaults',
   test NDCG@10 and precision@10 of the chosen model and of the defaults, the search's wall
   and CPU seconds, and its training work (epochs x rank x pairs, in epochs of a rank-32 model
   on 100,000 pairs: a load-free measure of cost).

Every model is trained on the same fit split; the test figure excludes training pairs. The
pool is cached in data/09_benchmarks/ (delete it to redraw).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from pozytywka.pipelines.recommendation import nodes
from pozytywka.pipelines.recommendation.nodes import (
    _lightfm_objective,
    _open_study,
    _suggest,
    _train,
    _within,
    compare_training_variants,
    fitted_space,
    prepare_training_data,
    search_hyperparameters,
    train_final_models,
)
from pozytywka.recsys.metrics import evaluate_ranking, per_user_ranking_metrics
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


def random_configs(n: int, space: dict, defaults: dict) -> list[tuple[dict, int]]:
    """``n`` draws from the pipeline's own search space (``_suggest``), uniformly at random."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=12345))
    return [_suggest(study.ask(), space, defaults) for _ in range(n)]


def fitted(data, rec: dict) -> dict:
    """The search space as the pipeline fits it to the data (``fitted_space``)."""
    search = rec["search"]
    pairs = next(iter(data["fit"].values()))[0].nnz
    epochs = rec["training"]["defaults"].get("epochs", 0)
    return fitted_space(search["space"], pairs, search.get("pair_updates"), epochs)


def build_pool(n: int, data, features, rec: dict, cache: Path) -> list[dict]:
    pool = json.loads(cache.read_text()) if cache.exists() else []
    configs = random_configs(n, fitted(data, rec), rec["training"]["defaults"])
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
    search["space"] = fitted(data, rec)
    study = _open_study(search, seed)
    for point in [rec["training"]["defaults"], *search.get("enqueue", [])]:
        study.enqueue_trial(_within(search["space"], point))
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
            p = {**rec["training"]["defaults"], **best.params}
            epochs = p.pop("epochs")
            cache[key] = evaluate(p, epochs, data, features, rec["training"])[
                "test_precision_at_10"
            ]
        out[n] = cache[key]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"  TPE seed {seed}: {len(study.trials)} trials in {seconds:.0f} s", flush=True)
    return out, seconds, pruned


# The data sets of --worlds: the Kedro environment, and where the raw export comes from.
WORLDS = {
    "default": (None, "generator"),
    "weak_signal": ("weak_signal", "generator"),
    "rating_world": (None, "rating_world"),
}


def prepare_world(name: str, work: Path) -> Path:
    """A scratch project for world ``name`` with its model inputs (made once, then kept;
    the conf is copied afresh every time, so the search runs with today's parameters)."""
    env, source = WORLDS[name]
    root = work / name
    shutil.rmtree(root / "conf", ignore_errors=True)
    shutil.copytree(ROOT / "conf", root / "conf")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for folder in ("src", "data/01_raw", "data/08_reporting"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    if (root / "data/05_model_input/lightfm_dataset.pkl").exists():
        return root
    pipelines = "synthetic_data,data_processing,feature_engineering"
    if source == "rating_world":
        writer = [sys.executable, str(ROOT / "benchmarks/rating_world.py")]
        subprocess.run([*writer, "--out", str(root / "data/01_raw"), "--force"], check=True)
        pipelines = "data_processing,feature_engineering"
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", pipelines]
    print(f"  {name}: {' '.join(command[2:])}{f' --env {env}' if env else ''}", flush=True)
    with (root / "prepare.log").open("w") as log:
        subprocess.run(
            command + (["--env", env] if env else []), cwd=root, check=True, stdout=log, stderr=log
        )
    return root


class TrainingWork:
    """Counts every fit's epochs x rank x pairs (and its thread's CPU seconds) while on."""

    def __init__(self) -> None:
        self.work, self.cpu, self._lock = 0.0, 0.0, threading.Lock()
        self._fit = nodes.fit_epochs

    def __enter__(self) -> TrainingWork:
        def counted(model, inter, weights, uf, itf, epochs, threads, on_epoch=None):
            done, start = [0], time.thread_time()

            def each(epoch, trained):
                done[0] = epoch
                if on_epoch is not None:
                    on_epoch(epoch, trained)

            try:
                return self._fit(model, inter, weights, uf, itf, epochs, threads, each)
            finally:
                with self._lock:
                    self.work += done[0] * model.no_components * inter.nnz / (32 * 1e5)
                    self.cpu += time.thread_time() - start

        nodes.fit_epochs = counted  # _train looks it up in the nodes module
        return self

    def __exit__(self, *exc) -> None:
        nodes.fit_epochs = self._fit


def search_world(name: str, root: Path) -> dict:
    """The pipeline's search nodes on one world; its figures (see the module docstring)."""
    env = WORLDS[name][0]
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        context = session.load_context()
        catalog, rec = context.catalog, context.params["recommendation"]
        data = prepare_training_data(
            catalog.load("interactions"),
            catalog.load("lightfm_dataset"),
            rec["validation"],
            rec["evaluation"],
        )
        uf, itf = catalog.load("user_feature_matrix"), catalog.load("item_feature_matrix")
    search = {**rec["search"], "storage": f"sqlite:///{root / 'optuna.db'}", "resume": False}
    comparison = compare_training_variants(data, uf, itf, rec["training"], search["objective"])
    t0, cpu0 = time.perf_counter(), time.process_time()
    with TrainingWork() as work:
        best, table, study = search_hyperparameters(
            data, comparison, uf, itf, search, rec["training"], rec["groups"]
        )
    table.to_csv(root / "trials.csv", index=False)  # every trial, for a closer look
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    final, default = train_final_models(data, best, uf, itf, rec["training"])
    defaults_model = default.get("model", final)  # the defaults won: the final model is them

    def test(model) -> dict:
        scorer = EmbeddingScorer(model, uf, itf)
        figures = evaluate_ranking(
            scorer, data["test"], data["train_known"], full_ranks=False, users=data["test_users"]
        )
        return {m: figures[m] for m in ("ndcg_at_10", "precision_at_10")}

    trials = study.get_trials(deepcopy=False)
    searched = {k: best[k] for k in best["space"] if k in best}
    return {
        "world": name,
        "variant": comparison["chosen"],
        "fit_pairs": int(data["fit"][comparison["chosen"]][0].nnz),
        "space": best["space"],
        "trials": len(trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "chosen_trial": best["best_trial"],
        "chosen": searched,
        "validation": best["validation_value"],
        "validation_defaults": trials[0].value,
        "test": test(final),
        "test_defaults": test(defaults_model),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "work": work.work,
    }


def run_worlds(names: list[str], work: Path) -> None:
    rows = []
    for name in names:
        row = search_world(name, prepare_world(name, work))
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    print(
        "\n| data set | fit pairs | epochs | trials (pruned) | chosen | validation (defaults) "
        "| test NDCG@10 (defaults) | test p@10 (defaults) | seconds (CPU) | work |"
    )
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        t, d = r["test"], r["test_defaults"]
        chosen = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["chosen"].items()
        )
        print(
            f"| {r['world']} ({r['variant']}) | {r['fit_pairs']:,} | {r['space']['epochs']} "
            f"| {r['trials']} ({r['pruned']}) | #{r['chosen_trial']}: {chosen} "
            f"| {r['validation']:.4f} ({r['validation_defaults']:.4f}) "
            f"| {t['ndcg_at_10']:.4f} ({d['ndcg_at_10']:.4f}) "
            f"| {t['precision_at_10']:.4f} ({d['precision_at_10']:.4f}) "
            f"| {r['seconds']:.0f} ({r['cpu_seconds']:.0f}) | {r['work']:.0f} |"
        )


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
    ap.add_argument("--worlds", default=None, help=f"comma-separated, of {', '.join(WORLDS)}")
    ap.add_argument(
        "--worlds-dir",
        type=Path,
        default=ROOT / "data" / "09_benchmarks" / "search_worlds",
        help="where the worlds' scratch projects are made and kept",
    )
    args = ap.parse_args()
    if args.worlds:
        run_worlds(args.worlds.split(","), args.worlds_dir)
        return
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
