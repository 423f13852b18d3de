"""MLflow helpers: metrics as the catalog's ``MlflowMetricsHistoryDataset`` takes them, and a
SQLite store that stays with its project when the project is copied."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path


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
