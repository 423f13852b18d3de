"""The service's prediction log (SQLite), read-only, and files a run may not have made yet."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.pandas import ParquetDataset


class PredictionLogDataset(AbstractDataset[None, pd.DataFrame]):
    """Every record of the service's prediction log (serving/prediction_log.py), opened
    read-only so that a running service keeps writing while it is read; a missing log is a
    clear error, not an empty file created in its place."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        if not self._filepath.exists():
            raise DatasetError(
                f"no prediction log at {self._filepath}: start the service (pozytywka serve) "
                "and let it answer (or simulate: pozytywka simulate) before the A/B analysis"
            )
        uri = f"file:{self._filepath.resolve()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=30.0)) as db:
            try:
                return pd.read_sql_query("SELECT * FROM predictions ORDER BY id", db)
            except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
                raise DatasetError(f"{self._filepath} is not a prediction log: {exc}") from exc

    def save(self, data: None) -> None:
        raise DatasetError("the prediction log is written by the service only")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class OptionalParquetDataset(ParquetDataset):
    """``pandas.ParquetDataset`` that loads as an empty frame when nothing was saved yet (the
    simulator's truth exists only after a simulation)."""

    def load(self) -> pd.DataFrame:
        if not self._exists():
            return pd.DataFrame()
        return super().load()
