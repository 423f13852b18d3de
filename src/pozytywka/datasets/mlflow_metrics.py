"""kedro-mlflow's metrics dataset, logged in batches, optionally only the figures worth a
column in MLflow's runs table."""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from itertools import chain

from kedro.io.core import DatasetError
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

BATCH = 1000  # MLflow's limit of metrics per log_batch call


class BatchedMlflowMetricsDataset(MlflowMetricsHistoryDataset):
    """``MlflowMetricsHistoryDataset`` (same data, keys, steps and loading) that logs its
    metrics with ``log_batch``, a thousand per call, instead of one call per value: a report
    of a few hundred figures took seconds against a database-backed store.

    ``keep``: glob patterns (``*`` crosses ``/``) of the metric names logged; the others are
    not, as the report they come from is logged whole as the run's artifact. A report's
    hundreds of figures would otherwise each be a column of the runs table.
    """

    def __init__(self, *args, keep: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._keep = keep

    def _save(self, data) -> None:
        if self._keep is not None:
            data = {k: v for k, v in data.items() if any(fnmatchcase(k, p) for p in self._keep)}
        try:
            run_id = self.run_id
        except DatasetError:  # no run to log to: the parent opens one, value by value
            super()._save(data)
            return
        if not self._logging_activated:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(step))
            for key, value, step in chain.from_iterable(
                self._build_args_list_from_metric_item(k, v) for k, v in data.items()
            )
        ]
        client = MlflowClient()
        for start in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + BATCH])

    def _describe(self) -> dict:
        return {**super()._describe(), "keep": self._keep}
