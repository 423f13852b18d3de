"""A SQLite MLflow store copied with its project points at the copy's own artifacts; the
batched metrics dataset logs what kedro-mlflow's logs."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.data.pandas_dataset import from_pandas

from pozytywka import hooks
from pozytywka.datasets import BatchedMlflowMetricsDataset
from pozytywka.hooks import TrainingTable
from pozytywka.tracking import (
    HEADLINE_METRICS,
    champion_decision,
    describe_experiment,
    drop_empty_default_experiment,
    relocate_store,
)
from tests.project import mlflow_store


def _store_with_one_run(root: Path) -> str:
    with mlflow_store(root):
        experiment = mlflow.create_experiment(
            "pozytywka", artifact_location=str(root / "mlartifacts")
        )
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_text("hello", "note.txt")
        return run.info.run_id


def test_a_copied_store_reads_and_writes_the_copys_artifacts(tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    run_id = _store_with_one_run(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original / "mlartifacts")  # the original's artifacts are gone

    moved = relocate_store(copy / "mlflow.db", copy)
    assert moved is not None and str(original) in moved[0] and moved[1] >= 2
    with mlflow_store(copy):
        assert mlflow.artifacts.load_text(f"runs:/{run_id}/note.txt") == "hello"
        experiment = mlflow.get_experiment_by_name("pozytywka")
        assert experiment.artifact_location.removeprefix("file://") == f"{copy}/mlartifacts"
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            mlflow.log_text("again", "note.txt")
        assert run.info.artifact_uri.removeprefix("file://").startswith(f"{copy}/mlartifacts/")
    assert not (original / "mlartifacts").exists()
    assert relocate_store(copy / "mlflow.db", copy) is None  # already at home: nothing to do


def test_a_store_outside_the_project_is_left_alone(tmp_path):
    (tmp_path / "store").mkdir()
    _store_with_one_run(tmp_path / "store")
    (tmp_path / "project").mkdir()
    assert relocate_store(tmp_path / "store" / "mlflow.db", tmp_path / "project") is None


def test_batched_metrics_log_what_kedro_mlflows_dataset_logs(tmp_path):
    data = {
        "auc": {"value": 0.75, "step": 0},
        "curve": [{"value": float(i) / 10, "step": i} for i in range(1001)],  # > one batch
    }
    with mlflow_store(tmp_path):
        experiment = mlflow.create_experiment("metrics", artifact_location=str(tmp_path / "a"))
        logged = {}
        for cls in (MlflowMetricsHistoryDataset, BatchedMlflowMetricsDataset):
            with mlflow.start_run(experiment_id=experiment) as run:
                cls(prefix="report").save(data)
                loaded = cls(run_id=run.info.run_id, prefix="report").load()
            logged[cls.__name__] = loaded
    batched, original = logged["BatchedMlflowMetricsDataset"], logged["MlflowMetricsHistoryDataset"]
    assert batched == original
    assert set(batched) == {"report.auc", "report.curve"} and len(batched["report.curve"]) == 1001


def test_metrics_outside_keep_are_not_logged(tmp_path):
    data = {
        "rec/test/ndcg_at_10": {"value": 0.3, "step": 0},
        "rec/test/als/ndcg_at_10": {"value": 0.2, "step": 0},
        "rec/test/ndcg_at_25": {"value": 0.4, "step": 0},
        "dq/users/missing/name": {"value": 3, "step": 0},
    }
    with mlflow_store(tmp_path):
        experiment = mlflow.create_experiment("keep", artifact_location=str(tmp_path / "a"))
        with mlflow.start_run(experiment_id=experiment) as run:
            BatchedMlflowMetricsDataset(keep=["rec/test/*ndcg_at_10"]).save(data)
        logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged == {"rec/test/ndcg_at_10": 0.3, "rec/test/als/ndcg_at_10": 0.2}


def test_a_logged_training_table_has_mlflows_schema_and_a_digest_of_its_data(monkeypatch):
    monkeypatch.setattr(hooks, "DIGEST_ROWS", 10)  # the one missing value lies past the head
    frame = pd.DataFrame(
        {
            "user_id": np.arange(50, dtype=np.int64),
            "track_id": pd.Series([f"t{i % 7}" for i in range(50)], dtype="string"),
            "weight": np.where(np.arange(50) == 49, np.nan, 1.0),
            "split": pd.Categorical(["train", "test"] * 25),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint about integer columns
        ours = TrainingTable.of(frame, "t").to_dict()
        theirs = from_pandas(frame, name="t").to_dict()
        table = TrainingTable.of(frame, "t")
    assert ours["schema"] == theirs["schema"] and ours["profile"] == theirs["profile"]
    assert '"name": "weight", "required": false' in ours["schema"]
    changed = frame.assign(weight=frame["weight"] * 2)
    assert TrainingTable.of(changed, "t").digest != table.digest
    assert TrainingTable.of(frame.copy(), "t").digest == table.digest


def test_the_recorded_command_uses_kedros_current_options():
    run_params = {"pipeline_names": ["from_raw"], "env": "tiny", "runtime_params": {"a.b": 1}}
    expected = 'kedro run --pipelines from_raw --env tiny --params "a.b=1"'
    assert hooks._kedro_command(run_params) == expected
    assert hooks._kedro_command({"pipeline_names": [], "env": "local"}) == "kedro run"


@pytest.mark.parametrize(
    ("value", "champion", "becomes", "says"),
    [
        (0.2, None, True, "Champion: the first version"),
        (0.1, {"version": "3", "fingerprint": "other", "value": 0.9}, True, "other data"),
        (0.2, {"version": "3", "fingerprint": "same", "value": 0.1}, True, "beats version 3"),
        (0.1, {"version": "3", "fingerprint": "same", "value": 0.2}, False, "does not beat"),
        (0.1, {"version": "3", "fingerprint": "same", "value": 0.1}, False, "does not beat"),
        (None, None, False, "not compared"),
    ],
)
def test_champion_is_decided_only_against_the_same_data(value, champion, becomes, says):
    decided, why = champion_decision("rec/test/precision_at_10", value, "same", champion)
    assert decided is becomes and says in why, why


def test_the_experiment_is_typed_and_the_empty_default_one_dropped(tmp_path):
    with mlflow_store(tmp_path):
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("pozytywka", str(tmp_path / "a"))
        view = describe_experiment(client, experiment)
        assert drop_empty_default_experiment(client) is True
        assert drop_empty_default_experiment(client) is False  # gone already
        tags = client.get_experiment(experiment).tags
        assert [e.name for e in client.search_experiments()] == ["pozytywka"]
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    shared = json.loads(tags["mlflow.sharedViewState.training"])
    headline = [f"metrics.`{m}`" for m in HEADLINE_METRICS]
    assert shared["columnOrder"][: len(HEADLINE_METRICS)] == headline
    assert set(headline) <= set(shared["selectedColumns"])
    assert view.endswith("workflowType=machine_learning&viewStateShareKey=training")


def test_a_default_experiment_deleted_meanwhile_by_another_process_is_no_error(tmp_path):
    # Two tune workers start at once: both see "Default", one deletes it first.
    with mlflow_store(tmp_path):
        client = mlflow.MlflowClient()
        client.create_experiment("pozytywka", str(tmp_path / "a"))

        class RacedClient:
            def __getattr__(self, name):
                return getattr(client, name)

            def delete_experiment(self, experiment_id):
                client.delete_experiment(experiment_id)  # the other worker, just before
                client.delete_experiment(experiment_id)

        assert drop_empty_default_experiment(RacedClient()) is False
        assert [e.name for e in client.search_experiments()] == ["pozytywka"]


def test_a_tag_written_meanwhile_by_another_process_is_no_error(tmp_path):
    # Two tune workers type the experiment at once: the store refuses the second insert.
    with mlflow_store(tmp_path):
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("pozytywka", str(tmp_path / "a"))

        class RacedClient:
            def __getattr__(self, name):
                return getattr(client, name)

            def set_experiment_tag(self, experiment_id, key, value):
                client.set_experiment_tag(experiment_id, key, value)  # the other worker
                raise mlflow.exceptions.MlflowException("duplicate key value")

        describe_experiment(RacedClient(), experiment)
        tags = client.get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
