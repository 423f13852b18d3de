"""Past one machine (issue 15): several workers on one Optuna study in a real PostgreSQL, and
MLflow tracking to a server whose backend store is PostgreSQL (docs/at-scale.md)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys

import optuna
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from mlflow import MlflowClient
from sqlalchemy.pool import NullPool

from pozytywka import settings
from pozytywka.pipelines.recommendation.nodes import _study_lock, search_hyperparameters
from tests.cluster import mlflow_server, postgres_server, race_worker, search_worker_on
from tests.project import PROJECT_ROOT, copy_project, process_group, wait_for

FINISHED = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
FINISHED |= {optuna.trial.TrialState.FAIL}


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    """An MLflow tracking server on PostgreSQL, booting while the other fixtures build."""
    backend = postgres.create_database("mlflow")
    with mlflow_server(backend, tmp_path_factory.mktemp("mlflow")) as server:
        yield server


def _loader(conf, env: str) -> OmegaConfigLoader:
    args = {k: v for k, v in settings.CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    patterns = {**args["config_patterns"], "mlflow": ["mlflow*", "mlflow/**"]}
    return OmegaConfigLoader(str(conf), env=env, **{**args, "config_patterns": patterns})


def test_the_cluster_environment_takes_its_addresses_from_the_environment(monkeypatch):
    monkeypatch.setenv("POZYTYWKA_OPTUNA_STORAGE", "postgresql+psycopg://u@db:5432/optuna")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    loader = _loader(PROJECT_ROOT / "conf", "cluster")
    search = loader["parameters"]["recommendation"]["search"]
    assert search["storage"] == "postgresql+psycopg://u@db:5432/optuna"
    assert (
        search["n_trials"]
        == _loader(PROJECT_ROOT / "conf", "base")["parameters"]["recommendation"]["search"][
            "n_trials"
        ]
    )  # soft merge: only the storage changes
    mlflow_conf = loader["mlflow"]
    assert mlflow_conf["server"]["mlflow_tracking_uri"] == "http://mlflow:5000"
    # The server's artifact store, not a path on whichever machine ran the run.
    assert (
        mlflow_conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"]
        is None
    )
    monkeypatch.delenv("POZYTYWKA_OPTUNA_STORAGE")
    default = _loader(PROJECT_ROOT / "conf", "cluster")["parameters"]["recommendation"]["search"]
    assert default["storage"].startswith("postgresql+psycopg://")


def test_racing_processes_run_exactly_the_trial_budget(postgres):
    """Four processes reserve trials on one study as fast as they can: the study ends with
    exactly n_trials, numbered 0..n-1, each finished, the defaults enqueued once. The study
    is created first, as `pozytywka tune` does (Optuna's schema creation is not safe to
    race), through a pool that keeps no connection: the forked children share none."""
    storage, n_trials = postgres.create_database("race"), 40
    optuna.create_study(
        study_name="race",
        storage=optuna.storages.RDBStorage(storage, engine_kwargs={"poolclass": NullPool}),
    )
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [
        context.Process(target=race_worker, args=(storage, "race", n_trials, start))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    trials = optuna.load_study(study_name="race", storage=storage).trials
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [
        (t.number, t.state.name, t.user_attrs) for t in trials if t.state.name != "COMPLETE"
    ]
    assert [t.number for t in trials if t.params["x"] == 0.5] == [0]  # the defaults, once
    assert len({t.params["x"] for t in trials}) == n_trials
    assert len({t.user_attrs["worker"] for t in trials}) >= 2


def test_a_worker_killed_mid_trial_leaves_no_trial_running_and_the_budget_is_finished(postgres):
    """A worker is killed (SIGKILL) inside trial 2; a second worker, started beside it,
    fails the silent trial once its heartbeat is older than the grace period, retries it
    with the same parameters, and the study ends with its 8 trials finished, none running."""
    storage, n_trials = postgres.create_database("killed"), 8
    optuna.create_study(
        study_name="killed",
        storage=optuna.storages.RDBStorage(storage, engine_kwargs={"poolclass": NullPool}),
    )
    context = multiprocessing.get_context("fork")
    started = context.Event()
    doomed = context.Process(
        target=search_worker_on, args=(storage, "killed", n_trials, 2, started)
    )
    doomed.start()
    assert started.wait(60), "the first worker never reached trial 2"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(10)
    survivor = context.Process(
        target=search_worker_on, args=(storage, "killed", n_trials, -1, started)
    )
    survivor.start()
    survivor.join(120)
    assert survivor.exitcode == 0
    trials = optuna.load_study(study_name="killed", storage=storage).trials
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    lost = trials[2]
    assert lost.state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].params == lost.params
    assert states.count("COMPLETE") == n_trials and len(trials) == n_trials + 1
    assert [t.number for t in trials if t.params["x"] == 0.5] == [0]  # the defaults, once


def _cluster_project(trained_project, tmp_path):
    """A copy of the tiny run with conf/cluster's files in its conf/tiny: one trial at a time
    per worker, each of 40-50 epochs and never pruned."""
    root = copy_project(trained_project, tmp_path / "project")
    cluster = PROJECT_ROOT / "conf" / "cluster"
    shutil.copy(
        cluster / "parameters_recommendation.yml", root / "conf/tiny/parameters_cluster.yml"
    )
    shutil.copy(cluster / "mlflow.yml", root / "conf/tiny/mlflow.yml")
    path = root / "conf/tiny/parameters_recommendation.yml"
    conf = yaml.safe_load(path.read_text())
    conf["recommendation"]["search"].update(
        n_trials=8,
        timeout_seconds=120,
        evaluate_every=10,
        space={"epochs": [40, 50], "no_components": [8, 16]},
        pruner={"kind": "median", "startup_trials": 100, "warmup_epochs": 2},
    )
    conf["recommendation"]["search"]["parallel_trials"] = 1
    conf["recommendation"].setdefault("training", {})["num_threads"] = 1
    path.write_text(yaml.safe_dump(conf))
    return root


@pytest.mark.slow
def test_two_workers_finish_one_study_and_track_to_mlflow_on_postgresql(
    postgres, tracking_server, trained_project, tmp_path, monkeypatch
):
    root = _cluster_project(trained_project, tmp_path)
    storage = postgres.create_database("optuna")
    stale = optuna.create_study(study_name="lightfm", storage=storage)
    stale.enqueue_trial({"stale": 1.0})  # an earlier search's: pozytywka tune empties it once
    env = {
        **os.environ,
        "POZYTYWKA_OPTUNA_STORAGE": storage,
        "MLFLOW_TRACKING_URI": tracking_server.wait_ready(),
    }
    command = [sys.executable, "-m", "pozytywka", "tune", "--workers", "2", "--env", "tiny"]
    stdout, stderr = tmp_path / "tune.out", tmp_path / "tune.err"
    # The test holds the study's lock until both workers wait for it, so neither can run the
    # whole study while the other is still starting; the lock's queue then serves them in turn.
    with contextlib.ExitStack() as stack:
        out, err = stack.enter_context(stdout.open("w")), stack.enter_context(stderr.open("w"))
        with _study_lock(storage, "lightfm"):
            tune = stack.enter_context(
                process_group(command, cwd=root, env=env, stdout=out, stderr=err, text=True)
            )
            _wait_for_lock_waiters(postgres, tune, 2)
        assert tune.wait(timeout=400) == 0, stderr.read_text()[-5000:]
    output = stdout.read_text()
    summary = json.loads(output[output.find("{\n") :])  # after Kedro's first line

    n_trials = 8
    trials = optuna.load_study(study_name="lightfm", storage=storage).trials
    assert [t.number for t in trials] == list(range(n_trials))  # none lost, none doubled
    assert all(t.state in FINISHED for t in trials), [t.state for t in trials]
    assert not any("stale" in t.params for t in trials)
    defaults = yaml.safe_load((root / "conf/tiny/parameters_recommendation.yml").read_text())
    assert (
        trials[0].params["no_components"]
        == defaults["recommendation"]["training"]["defaults"]["no_components"]
    )
    params = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(params)) == n_trials  # no trial twice (the defaults included)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, summary  # both workers ran trials of the one study
    assert summary["trials"] == n_trials and summary["exit_codes"] == [0, 0]

    # Each worker was an MLflow run on the tracking server, stored in PostgreSQL.
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("pozytywka")
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "--pipelines tune" in r.data.tags.get("kedro.command", "")
    ]
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["recommendation.search.worker"] for r in runs} == {"0", "1"}
    stored = {row[0] for row in postgres.query("mlflow", "SELECT run_uuid FROM runs")}
    assert {r.info.run_id for r in runs} <= stored

    # The pipeline's search node, joining the full study, runs no trial and picks the
    # winner among all of them, whichever worker ran it.
    monkeypatch.setenv("POZYTYWKA_OPTUNA_STORAGE", storage)
    rec = _loader(root / "conf", "tiny")["parameters"]["recommendation"]
    assert rec["search"]["storage"] == storage
    data = _load(root, "05_model_input/recommendation_data.pkl")
    comparison = json.loads((root / "data/06_models/training_variant_comparison.json").read_text())
    features = [_load(root, f"05_model_input/{e}_feature_matrix.pkl") for e in ("user", "item")]
    best, table, study = search_hyperparameters(
        data,
        comparison,
        *features,
        {**rec["search"], "resume": True},
        rec["training"],
        rec["groups"],
    )
    assert len(study.trials) == n_trials and len(table) == n_trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    challenger = max((t for t in complete if t.number != 0), key=lambda t: t.value)
    assert best["search_best"]["trial"] == challenger.number
    assert best["best_trial"] in {0, challenger.number}


def _wait_for_lock_waiters(postgres, process: subprocess.Popen, n: int) -> None:
    """Until ``n`` processes wait for an advisory lock (the study's) on ``postgres``."""
    sql = "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    wait_for(
        lambda: postgres.query("postgres", sql)[0][0] >= n,
        process,
        f"pozytywka tune (until {n} workers wait for the study's lock)",
        timeout=300,
    )


def _load(root, relative: str):
    with (root / "data" / relative).open("rb") as handle:
        return pickle.load(handle)
