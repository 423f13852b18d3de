"""MLflow helpers: metrics as the catalog's ``MlflowMetricsHistoryDataset`` takes them, a
SQLite store that stays with its project when the project is copied, the experiment's
training view and the rule that names a registered model's champion."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


def mlflow_metrics(values: Mapping[str, float | int | None]) -> dict[str, dict[str, float]]:
    """``{name: value}`` -> ``{name: {"value": v, "step": 0}}``, leaving out undefined values
    (None, NaN, infinite), which MLflow cannot store."""
    return {
        name: {"value": float(v), "step": 0}
        for name, v in values.items()
        if v is not None and math.isfinite(v)
    }


# Where a SQLite MLflow store keeps file paths (artifact roots of experiments, runs, models).
PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def relocate_store(database: Path, project: Path) -> tuple[str, int] | None:
    """Re-point a SQLite MLflow store copied with its project at the copy's own artifacts.

    MLflow records artifact locations as absolute paths, so a copied project would read and
    write the original's ``mlartifacts/``. If ``database`` (inside ``project``) names
    artifacts under other project folders, every such path is rewritten to ``project``.
    Returns (the old folders, rows changed), or None when nothing pointed elsewhere.
    """
    project = project.resolve()
    if not database.exists() or project not in database.resolve().parents:
        return None
    with closing(sqlite3.connect(database)) as db, db:
        roots = [r for (r,) in db.execute("SELECT artifact_location FROM experiments")]
        olds = sorted({o for o in map(_project_of, roots) if o and o != str(project)})
        if not olds:
            return None
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        changed = sum(
            _replace_prefix(db, table, column, prefix, prefix.replace(old, str(project), 1))
            for old in olds
            for table, column in PATH_COLUMNS
            if table in tables
            for prefix in (f"file://{old}/", f"{old}/")
        )
    return ", ".join(olds), changed


def _replace_prefix(db: sqlite3.Connection, table: str, column: str, old: str, new: str) -> int:
    return db.execute(
        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608
        f"WHERE substr({column}, 1, ?) = ?",
        (new, len(old) + 1, len(old), old),
    ).rowcount


def _project_of(location: str | None) -> str | None:
    """The project folder of an artifact root ``[file://]<project>/mlartifacts|mlruns[/...]``."""
    path = (location or "").removeprefix("file://")
    for folder in ("/mlartifacts", "/mlruns"):
        if folder in path:
            return path[: path.index(folder)]
    return None


# The figures a person compares runs on, in this order: the runs table's first columns in the
# project's training view (TRAINING_VIEW). Model versions are ranked by hooks.CHAMPION_METRICS.
HEADLINE_METRICS = (
    "rec/test/ndcg_at_10",
    "rec/test/precision_at_10",
    "rec/test/model_fraction_of_oracle/ndcg_at_10",
    "rec/test/ease/ndcg_at_10",
    "rec/test/popularity/ndcg_at_10",
    "skip/test/roc_auc",
    "skip/test/linear_svc/roc_auc",
    "skip/test/brier_score",
    "timing/run_seconds",
)
TRAINING_VIEW = "training"  # the view's share key: ...?viewStateShareKey=training


def describe_experiment(client, experiment_id: str) -> str:
    """Type the experiment as model training (MLflow's ``mlflow.experimentKind``) and store a
    view of its runs table with the headline figures as its first columns (the UI's shared
    view state, an experiment tag). Returns the view's address in the MLflow UI."""
    columns = [f"metrics.`{m}`" for m in HEADLINE_METRICS]
    columns += ["attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`"]
    view = {
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": columns,
        "columnOrder": columns,  # the table's order (the selection alone is shown sorted)
    }
    _set_tag(client, experiment_id, "mlflow.experimentKind", "custom_model_development")
    _set_tag(client, experiment_id, f"mlflow.sharedViewState.{TRAINING_VIEW}", json.dumps(view))
    return (
        f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={TRAINING_VIEW}"
    )


def _set_tag(client, experiment_id: str, key: str, value: str) -> None:
    """An experiment tag that several processes may write at once (``pozytywka tune``'s
    workers): a store can refuse the second insert, which is fine if the tag holds ``value``."""
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        if client.get_experiment(experiment_id).tags.get(key) != value:
            raise


def drop_empty_default_experiment(client) -> bool:
    """Delete MLflow's "Default" experiment (id 0, made with every new store) while it holds
    no run: every run of the project goes to its own experiment. Whether it was deleted."""
    try:
        default = client.get_experiment("0")
    except MlflowException:  # a store without one
        return False
    if default is None or default.lifecycle_stage != "active" or default.name != "Default":
        return False
    if client.search_runs(["0"], max_results=1, run_view_type=ViewType.ALL):
        return False
    try:
        client.delete_experiment("0")
    except MlflowException:  # another process (a second tune worker) deleted it first
        return False
    return True


def champion_decision(
    metric: str, value: float | None, fingerprint: str | None, champion: dict | None
) -> tuple[bool, str]:
    """Whether a new model version becomes its registered model's ``champion``, and why, in
    words for the version's description. ``champion``: the current one's ``version``,
    ``fingerprint`` (of the raw data it was trained on) and ``value`` of ``metric``, or None.

    Versions are compared only on the same data: a model trained on another export (other
    users and tracks) never keeps ``champion`` against one for this data, however it scored.
    """
    if value is None:
        return False, f"Candidate: its run has no {metric}, so it was not compared."
    if champion is None:
        return True, f"Champion: the first version ({metric} {value:.4f}, data {fingerprint})."
    if champion["fingerprint"] != fingerprint:
        return True, (
            f"Champion: the first version trained on data {fingerprint} ({metric} "
            f"{value:.4f}); version {champion['version']} was trained on other data "
            f"({champion['fingerprint']}), whose users and tracks may not be these."
        )
    theirs = champion["value"]
    if theirs is None or value > theirs:
        was = "no figure" if theirs is None else f"{theirs:.4f}"
        return True, (
            f"Champion: {metric} {value:.4f} beats version {champion['version']}'s {was} "
            f"on the same data ({fingerprint})."
        )
    return False, (
        f"Candidate: {metric} {value:.4f} does not beat champion version "
        f"{champion['version']}'s {theirs:.4f} on the same data ({fingerprint})."
    )
