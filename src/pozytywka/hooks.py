"""Project hooks."""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
import time
import warnings
from functools import cached_property
from pathlib import Path

import mlflow
import optuna
import pandas as pd
from kedro.framework.hooks import hook_impl
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.entities import Metric, Param
from mlflow.models import infer_signature
from mlflow.types import ColSpec, Schema

from .datasets import GeneratedTextDataset
from .datasets.synthetic_truth import RAW_FILES, sha256_file
from .profiling import PeakSampler
from .tracking import (
    champion_decision,
    describe_experiment,
    drop_empty_default_experiment,
    relocate_store,
)
from .tuning import is_defaults_trial

logger = logging.getLogger(__name__)


class ProtectUserRawData:
    """Stop before any node runs if a pipeline would write over a user's raw export.

    The generated-file guard of GeneratedTextDataset also holds at save time; checking up front
    means a refused run leaves nothing behind (no ground truth beside someone else's data).
    """

    # tryfirst: before kedro-mlflow opens a run, so a refused run leaves no MLflow run open.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        for name in sorted(pipeline.all_outputs()):
            dataset = catalog.get(name)
            if isinstance(dataset, GeneratedTextDataset):
                dataset.ensure_writable()


class RecordNodeTimings:
    """Each node's wall time and peak resident memory, in run order, and each dataset's load
    and save seconds (the time between nodes), saved through the catalog as ``node_timings``
    (``data/08_reporting/node_timings.json``) and logged to MLflow (``timing/<node>/seconds``,
    ``timing/<node>/peak_rss_mb``, ``timing/run_seconds``), so every run shows its profile.
    Nodes run one at a time here (the default runner)."""

    def __init__(self) -> None:
        self._samplers: dict[str, PeakSampler] = {}
        self._rows: list[dict] = []
        self._io: dict[str, dict[str, float]] = {}
        self._io_started: dict[tuple[str, str], float] = {}
        self._run_started = time.perf_counter()

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._samplers, self._rows, self._io, self._io_started = {}, [], {}, {}
        self._run_started = time.perf_counter()

    @hook_impl
    def before_node_run(self, node) -> None:
        self._samplers[node.name] = sampler = PeakSampler()
        sampler.start()

    @hook_impl
    def after_node_run(self, node) -> None:
        sampler = self._samplers.pop(node.name, None)
        if sampler is not None:
            seconds, peak = sampler.stop()
            self._rows.append({"node": node.name, "seconds": seconds, "peak_rss_mb": peak})

    @hook_impl
    def on_node_error(self, node) -> None:
        sampler = self._samplers.pop(node.name, None)
        if sampler is not None:
            sampler.stop()

    def _io_start(self, dataset_name: str, kind: str) -> None:
        self._io_started[(dataset_name, kind)] = time.perf_counter()

    def _io_end(self, dataset_name: str, kind: str) -> None:
        started = self._io_started.pop((dataset_name, kind), None)
        if started is not None:
            row = self._io.setdefault(dataset_name, {"load_seconds": 0.0, "save_seconds": 0.0})
            row[f"{kind}_seconds"] += time.perf_counter() - started

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        self._io_start(dataset_name, "load")

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        self._io_end(dataset_name, "load")

    @hook_impl
    def before_dataset_saved(self, dataset_name: str) -> None:
        self._io_start(dataset_name, "save")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        self._io_end(dataset_name, "save")

    @hook_impl(tryfirst=True)  # before kedro-mlflow closes the run
    def after_pipeline_run(self, catalog) -> None:
        timings = self._timings()
        if "node_timings" in catalog:
            catalog.save("node_timings", timings)
        if mlflow.active_run() is not None:  # the totals as metrics, every node in the file
            mlflow.log_metrics(
                {
                    f"timing/{k}": float(timings[k])
                    for k in ("run_seconds", "total_node_seconds", "peak_rss_mb")
                }
            )
            mlflow.log_dict(timings, "node_timings.json")

    def _timings(self) -> dict:
        """The profile: nodes and datasets slowest first, their totals, and the run's wall
        time from its start to the last node (``run_seconds``; the process adds Kedro's and
        MLflow's start-up, a few seconds)."""
        datasets = [
            {"dataset": name, **row, "seconds": row["load_seconds"] + row["save_seconds"]}
            for name, row in self._io.items()
        ]
        return {
            "run_seconds": time.perf_counter() - self._run_started,
            "total_node_seconds": sum(r["seconds"] for r in self._rows),
            "total_io_seconds": sum(d["seconds"] for d in datasets),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in self._rows), default=0.0),
            "nodes": sorted(self._rows, key=lambda r: -r["seconds"]),
            "datasets": sorted(datasets, key=lambda d: -d["seconds"]),
        }


class KeepMlflowStoreInProject:
    """A project copied (or moved) with its SQLite MLflow store writes into its own
    ``mlartifacts/``, not the original's: the store's absolute artifact paths are re-pointed
    before kedro-mlflow opens the run."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict) -> None:
        uri = mlflow.get_tracking_uri()
        if not uri.startswith("sqlite:///"):
            return
        project = Path(run_params.get("project_path") or ".")
        moved = relocate_store(Path(uri.removeprefix("sqlite:///")), project)
        if moved:
            logger.info(
                "MLflow store was copied from %s: %d artifact paths now point into %s",
                moved[0],
                moved[1],
                project.resolve(),
            )


class DescribeMlflowRun:
    """Make each MLflow run say what ran, for people comparing runs in the UI.

    kedro-mlflow opens the run; this names it after the pipeline, environment and overrides,
    tags it with the git commit, the kedro command and the raw data's fingerprint, logs each
    search's winning hyperparameters as parameters and each Optuna trial of the LightFM search
    as a nested run (its hyperparameters, its validation objective per epoch as steps, its
    real start, end and state). The experiment is typed as model training, with a view of
    its runs table that shows the headline figures first (``tracking.describe_experiment``).
    """

    def __init__(self) -> None:
        self._raw_dir: Path | None = None

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the run
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        run = mlflow.active_run()
        if run is None:
            return
        project = Path(run_params.get("project_path") or ".")
        self._raw_dir = project / "data" / "01_raw"
        command = _kedro_command(run_params)
        client = mlflow.MlflowClient()
        view = describe_experiment(client, run.info.experiment_id)
        drop_empty_default_experiment(client)
        logger.info("MLflow UI (kedro mlflow ui): the training runs at %s", view)
        mlflow.set_tags(
            {
                "mlflow.runName": command.removeprefix("kedro run").strip() or "default",
                "kedro.command": command,
                "kedro.env": run_params.get("env") or "local",
                "git.commit": _git(project, "rev-parse", "HEAD"),
                "git.dirty": str(bool(_git(project, "status", "--porcelain", "--untracked=no"))),
            }
        )

    @hook_impl
    def after_node_run(self, node, outputs: dict) -> None:
        if mlflow.active_run() is None:
            return
        for name in LOGGED_INPUTS.intersection(outputs):
            # The training tables as MLflow datasets (name, digest, schema) on the run.
            mlflow.log_input(TrainingTable.of(outputs[name], name), context="training")
        if "best_hyperparameters" in outputs:
            best = outputs["best_hyperparameters"]
            mlflow.log_params({f"rec.best.{k}": v for k, v in best.items() if _scalar(v)})
        if isinstance(outputs.get("optuna_study"), optuna.Study):
            _log_trials(outputs["optuna_study"], "rec")
        if isinstance(outputs.get("ranker_study"), optuna.Study):
            _log_trials(outputs["ranker_study"], "ranker")
        if "recommender_choice" in outputs:
            choice = outputs["recommender_choice"]
            ranker = choice.get("ranker", {})
            mlflow.log_params(
                {
                    "rec.served": choice["served"],
                    **{f"ranker.best.{k}": v for k, v in ranker.get("params", {}).items()},
                    **({"ranker.best.rounds": ranker["rounds"]} if "rounds" in ranker else {}),
                }
            )
        if "skip_model_selection" in outputs:
            chosen = outputs["skip_model_selection"]["best_params"]
            mlflow.log_params({f"skip.best.{k}": v for k, v in chosen.items()})

    @hook_impl(tryfirst=True)  # before kedro-mlflow closes the run
    def after_pipeline_run(self, run_params: dict) -> None:
        run = mlflow.active_run()
        if run is None or self._raw_dir is None:
            return
        mlflow.set_tag("data.fingerprint", _fingerprint(self._raw_dir))
        _mark_candidates(run.info.run_id)


# Tables the models learn from, logged as the run's input datasets.
LOGGED_INPUTS = {"interactions", "skip_dataset"}
DIGEST_ROWS = 10_000  # rows hashed into a logged table's digest, as MLflow's own digest does


class TrainingTable(PandasDataset):
    """An MLflow pandas dataset whose digest and schema cost no pass over every value.

    MLflow's own digest checks the type of every cell and its schema inference visits every
    value of text columns: 72 s for the 5M-row interactions of a 10M-event run. Here the
    digest hashes the first DIGEST_ROWS rows, the row count and the columns; the column types
    come from those rows and ``required`` (no missing value) from the whole column.
    """

    @classmethod
    def of(cls, df: pd.DataFrame, name: str) -> TrainingTable:
        head = df.head(DIGEST_ROWS)
        digest = hashlib.md5(usedforsecurity=False)
        digest.update(pd.util.hash_pandas_object(head, index=False).to_numpy().tobytes())
        digest.update(repr((len(df), list(map(str, df.columns)))).encode())
        # MLflow's from_pandas names where the table came from (the code that ran)
        source = from_pandas(head.iloc[:0], digest=digest.hexdigest()[:8]).source
        return cls(df=df, source=source, name=name, digest=digest.hexdigest()[:8])

    @cached_property
    def schema(self) -> Schema | None:
        with warnings.catch_warnings():  # its hint on integer columns with missing values:
            # required-ness is read from the whole column below
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
            head = infer_signature(self._df.head(DIGEST_ROWS)).inputs
        has_missing = self._df.isna().any()
        return Schema(
            [ColSpec(c.type, c.name, required=not has_missing[c.name]) for c in head.inputs]
        )


# The figure a registered model's versions are compared on (higher is better).
CHAMPION_METRICS = {"recommender": "rec/test/precision_at_10", "skip_model": "skip/test/roc_auc"}


def _mark_candidates(run_id: str) -> None:
    """The model versions this run registered get the alias ``candidate`` (so
    ``models:/recommender@candidate`` is the latest trained model), the raw data's
    fingerprint as a tag and a description that says whether and why each is ``champion``
    (``tracking.champion_decision``: only ever compared on the same data)."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    fingerprint = run.data.tags.get("data.fingerprint")
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        name, number = version.name, version.version
        client.set_registered_model_alias(name, "candidate", number)
        client.set_model_version_tag(name, number, "data.fingerprint", str(fingerprint))
        metric = CHAMPION_METRICS.get(name)
        if metric is None:
            continue
        champion = _champion(client, name, metric)
        becomes, why = champion_decision(
            metric, run.data.metrics.get(metric), fingerprint, champion
        )
        client.update_model_version(name, number, description=why)
        if becomes:
            client.set_registered_model_alias(name, "champion", number)
            if champion is not None:  # its description no longer says it is the champion
                replaced = f"Former champion: version {number} replaced it. {why}"
                client.update_model_version(name, champion["version"], description=replaced)
        logger.info("MLflow: %s version %s. %s", name, number, why)


def _champion(client, name: str, metric: str) -> dict | None:
    """The current champion's version, data fingerprint and ``metric``, or None."""
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        return None
    champion_run = client.get_run(str(champion.run_id))
    return {
        "version": champion.version,
        "fingerprint": champion.tags.get("data.fingerprint")
        or champion_run.data.tags.get("data.fingerprint"),
        "value": champion_run.data.metrics.get(metric),
    }


def _kedro_command(run_params: dict) -> str:
    """The ``kedro run`` command line that reproduces this run (Kedro 1.x run parameters)."""
    parts = ["kedro run"]
    if run_params.get("pipeline_names"):
        parts.append("--pipelines " + ",".join(run_params["pipeline_names"]))
    if run_params.get("env") not in (None, "local"):
        parts.append(f"--env {run_params['env']}")
    if run_params.get("runtime_params"):
        overrides = ",".join(f"{k}={v}" for k, v in sorted(run_params["runtime_params"].items()))
        parts.append(f'--params "{overrides}"')
    return " ".join(parts)


def _git(project: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _fingerprint(raw_dir: Path) -> str:
    """SHA-256 over the raw exports' own SHA-256s: the same data gives the same tag."""
    digest = hashlib.sha256()
    for name in RAW_FILES:
        path = raw_dir / f"{name}.jsonl"
        digest.update(f"{name}:{sha256_file(path) if path.exists() else '-'};".encode())
    return digest.hexdigest()[:16]


def _scalar(value) -> bool:
    return isinstance(value, str | int | float | bool)


# A trial's run status: MLflow has no "pruned", so a pruned trial is KILLED (stopped early)
# with ``trial.state`` PRUNED and ``trial.pruned_by`` the pruner or the time cap.
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def _log_trials(study: optuna.Study, prefix: str) -> None:
    """One nested run per trial, with the trial's own start, end and state: hyperparameters,
    the objective at each pruning checkpoint (step = epoch), the final validation figures,
    why it failed or was stopped, and whether it is the defaults (trial 0)."""
    client, active = mlflow.MlflowClient(), mlflow.active_run()
    if active is None:
        return
    parent = active.info
    for trial in study.trials:
        start = _ms(trial.datetime_start) or int(time.time() * 1000)  # WAITING: not started
        end = _ms(trial.datetime_complete) or start
        defaults = is_defaults_trial(trial)
        name = f"{prefix} trial {trial.number}" + (" (defaults)" if defaults else "")
        tags = {
            "mlflow.parentRunId": parent.run_id,
            "trial.number": str(trial.number),
            "trial.state": trial.state.name,
            "trial.defaults": str(defaults).lower(),
        }
        if trial.state == optuna.trial.TrialState.PRUNED:
            stopped = trial.user_attrs.get("stopped_by_time_cap")
            tags["trial.pruned_by"] = "time cap" if stopped else "pruner"
        if "failed" in trial.user_attrs:
            tags["trial.failure"] = str(trial.user_attrs["failed"])[:5000]
        run = client.create_run(parent.experiment_id, start_time=start, tags=tags, run_name=name)
        figures = {  # not the flags (stopped_by_time_cap): those are tags
            k: v
            for k, v in trial.user_attrs.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if trial.value is not None:
            figures["objective"] = trial.value
        metrics = [
            Metric("validation_objective", value, end, epoch)
            for epoch, value in sorted(trial.intermediate_values.items())
            if math.isfinite(value)
        ] + [Metric(k, float(v), end, 0) for k, v in figures.items() if math.isfinite(v)]
        params = [Param(k, str(v)) for k, v in trial.params.items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        status = TRIAL_STATUS.get(trial.state.name, "FAILED")  # RUNNING or WAITING: never ended
        client.set_terminated(run.info.run_id, status=status, end_time=end)


def _ms(moment) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
