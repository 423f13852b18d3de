"""kedro-mlflow's metrics dataset, logged in batches."""

from __future__ import annotations

import time
from itertools import chain

from kedro.io.core import DatasetError
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

BATCH = 1000  # MLflow's limit of metrics per log_batch call


class BatchedMlflowMetricsDataset(MlflowMetricsHistoryDataset):
    """``MlflowMetricsHistoryDataset`` (same data, keys, steps and loading) that logs its
    metrics with ``log_batch``, a thousand per call, instead of one call per value: a report
    of a few hundred figures took seconds against a database-backed store."""

    def _save(self, data) -> None:
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
