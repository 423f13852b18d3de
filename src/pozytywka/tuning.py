"""``pozytywka tune``: the LightFM search of the recommendation pipeline by several processes
on one Optuna study (docs/at-scale.md).

The launcher prepares the study once (empties it unless ``recommendation.search.resume``),
then starts N workers, each ``kedro run --pipelines tune`` in the project (the
``search_worker`` node on the catalog files of an earlier run). They join the study, reserve
each trial under the study's lock and stop once it holds ``search.n_trials`` from all of them
together, or at their own ``timeout_seconds``. Workers on other machines run the same
command against the same storage (``worker_command``). The winner is then picked over the
whole study by the recommendation pipeline with ``search.resume=true`` (``next_command``).

This module reads configuration and starts processes: it imports no pipeline.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import cast

import optuna
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

JOIN = "recommendation.search.resume=true"


def parse_params(text: str) -> dict:
    """Kedro's ``--params`` syntax (``a.b=1,c=x``) as the nested dict ``kedro run`` makes."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if bad := [item for item in items if "=" not in item]:
        raise ValueError(f"--params items must be key=value, not {bad}")
    return OmegaConf.to_container(OmegaConf.from_dotlist(items))  # type: ignore[return-value]


def prepare(project_path: Path, env: str | None, params_text: str) -> dict:
    """The search's configuration (``recommendation.search`` of ``env`` with ``--params``),
    read through a Kedro session, and its study emptied unless ``resume`` and then created,
    so that every worker only joins it. Loading the context also lets kedro-mlflow create
    the MLflow experiment once, before the workers would race to create it."""
    bootstrap_project(project_path)
    params = parse_params(params_text)
    with KedroSession.create(project_path=project_path, env=env, runtime_params=params) as s:
        search = cast(KedroSession, s).load_context().params["recommendation"]["search"]
    storage, name = search["storage"], search["study_name"]
    if not search["resume"]:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)
    optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    return search


def _overrides(params_text: str, *extra: str) -> str:
    return ",".join(p for p in [params_text.strip(" ,"), *extra] if p)


def worker_command(env: str | None, params_text: str, worker: int | str) -> list[str]:
    """One worker: ``kedro run --pipelines tune`` joining the study, its sampler seeded
    apart (``search.worker``)."""
    params = _overrides(params_text, JOIN, f"recommendation.search.worker={worker}")
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", "tune", "--params", params]
    return command + (["--env", env] if env else [])


def next_command(env: str | None, params_text: str) -> str:
    """The run that picks the winner over the whole study (it runs no more trials: the
    study is full) and trains, evaluates and reports it."""
    command = "kedro run --pipelines recommendation --from-nodes "
    command += f'recommendation.search_hyperparameters --params "{_overrides(params_text, JOIN)}"'
    return command + (f" --env {env}" if env else "")


def run_workers(project_path: Path, env: str | None, params_text: str, workers: int) -> list[int]:
    """Start ``workers`` worker processes in the project and wait for them (their logs on
    this process's standard error); their exit codes. Interrupted: they are stopped too."""
    processes = [
        subprocess.Popen(worker_command(env, params_text, i), cwd=project_path, stdout=sys.stderr)
        for i in range(workers)
    ]
    try:
        return [process.wait() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def trial_states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How many of ``trials`` are in each state (``COMPLETE``, ``PRUNED``, ``FAIL``, ...)."""
    return dict(Counter(t.state.name for t in trials))


def is_defaults_trial(trial: optuna.Trial | optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` holds the search's default configuration: the study's first, or a
    retry of it after its worker was lost (marked ``defaults`` when reserved)."""
    return bool(trial.user_attrs.get("defaults", trial.number == 0))


def study_summary(search: dict) -> dict:
    """How many trials the study holds, by state and by worker, and its best value."""
    study = optuna.load_study(study_name=search["study_name"], storage=search["storage"])
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value or 0.0) if complete else None
    return {
        "study": search["study_name"],
        "n_trials": search["n_trials"],
        "trials": len(trials),
        "states": trial_states(trials),
        "trials_by_worker": dict(Counter(str(t.user_attrs.get("worker")) for t in trials)),
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
    }


def launch(project_path: Path, env: str | None, params_text: str, workers: int) -> dict:
    """Prepare the study, run ``workers`` workers on it here (none: only prepare, for
    workers started elsewhere), and summarise it. ``exit_codes`` holds the workers'."""
    search = prepare(project_path, env, params_text)
    codes = run_workers(project_path, env, params_text, workers)
    return {
        **study_summary(search),
        "exit_codes": codes,
        "worker_command": shlex.join(worker_command(env, params_text, "K")[2:]),
        "next": next_command(env, params_text),
    }


def search_budget(study: optuna.Study, planned: int, time_cap_seconds: float) -> dict:
    """How much of its trial budget a search ran, and whether its time cap (a safety limit,
    not the budget) cut it short: then a quieter machine may have chosen another model."""
    stopped = study.user_attrs.get("stopped_by_time_cap", False) or any(
        t.user_attrs.get("stopped_by_time_cap") for t in study.get_trials(deepcopy=False)
    )
    return {
        "trials_planned": int(planned),
        "trials_run": len(study.get_trials(deepcopy=False)),
        "time_cap_seconds": float(time_cap_seconds),
        "cut_by_time_cap": bool(stopped),
    }
