"""The A/B analysis's inputs: the service's log read-only, the simulator's optional truth."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.io import DatasetError

from pozytywka.datasets import OptionalParquetDataset, PredictionLogDataset
from pozytywka.serving.prediction_log import PredictionLog, Record


def test_the_log_is_read_as_the_service_wrote_it(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    record = Record(
        "2026-12-01T00:00:00+00:00",
        "/playlists",
        "playlists",
        "base",
        False,
        "v",
        7,
        200,
        1.5,
        "{}",
        json.dumps({"tracks": []}),
    )
    log.append(record)
    frame = PredictionLogDataset(str(path)).load()
    log.close()
    assert frame[["endpoint", "user_id", "status"]].values.tolist() == [["/playlists", 7, 200]]
    with pytest.raises(DatasetError, match="written by the service"):
        PredictionLogDataset(str(path)).save(frame)


def test_a_missing_or_foreign_log_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"no prediction log .*\(pozytywka serve\)"):
        PredictionLogDataset(str(tmp_path / "none.sqlite")).load()
    assert not (tmp_path / "none.sqlite").exists()  # nothing created in its place
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(DatasetError, match="not a prediction log"):
        PredictionLogDataset(str(garbage)).load()


def test_truth_loads_empty_until_a_simulation_saved_it(tmp_path):
    dataset = OptionalParquetDataset(filepath=str(tmp_path / "truth.parquet"))
    assert dataset.load().empty
    dataset.save(pd.DataFrame({"user_id": [1]}))
    assert dataset.load()["user_id"].tolist() == [1]
