"""A user's own export, end to end through Kedro: `kedro run --pipelines from_raw`.

The export is written by ``tests/service_export.py`` (not by the generator): the service's real
spellings and forms, a few real defects, no synthetic truth of its own, and a stale truth from an
earlier synthetic run beside it that must not be used.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from kedro.io.core import DatasetError

from pozytywka.serving.app import create_app
from pozytywka.serving.loading import load_service
from tests.project import make_project, mlflow_store, run_project
from tests.service_export import (
    DEFECTS,
    N_TRACKS,
    UNKNOWN_ARTIST_TRACKS,
    write_service_export,
)

pytestmark = pytest.mark.slow

REPORTS = [
    "data_quality.json",
    "data_quality.md",
    "recommendation_metrics.json",
    "recommendation_metrics.md",
    "skip_prediction_metrics.json",
    "skip_prediction_metrics.md",
    "group_score_by_size.png",
    "hyperparameter_effects.png",
    "optuna_history.png",
    "skip_roc_pr_calibration.png",
    "skip_confusion_matrices.png",
    "skip_importance.png",
]


@pytest.fixture(scope="module")
def export_project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("service_export"))
    raw = root / "data" / "01_raw"
    run_project(root, pipeline_names=["synthetic_data"])  # an earlier synthetic run's truth...
    for generated in raw.glob("*.jsonl*"):
        generated.unlink()
    facts = write_service_export(raw)  # ...then the user's own export in its place
    before = {p: p.stat().st_mtime_ns for p in raw.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError, match="not written by the synthetic generator"):
        run_project(root)  # plain `kedro run` refuses, before any node runs
    assert {p: p.stat().st_mtime_ns for p in raw.rglob("*") if p.is_file()} == before
    run_project(root, pipeline_names=["from_raw"])
    return root, facts


def _report(root, name: str) -> dict:
    return json.loads((root / "data" / "08_reporting" / name).read_text())


def test_every_report_is_written_without_an_oracle(export_project):
    root, _ = export_project
    for name in REPORTS:
        assert (root / "data" / "08_reporting" / name).stat().st_size > 0, name
    rec = _report(root, "recommendation_metrics.json")
    assert {"baseline", "popularity", "model"} <= set(rec) and "oracle" not in rec
    assert (
        "synthetic_truth" in rec["oracle_absent_reason"] or "truth" in rec["oracle_absent_reason"]
    )
    for scorer in ["baseline", "popularity", "model"]:
        low, high = rec["intervals"][scorer]["precision_at_10"]
        assert low <= rec[scorer]["precision_at_10"] <= high
    diff = rec["difference"]["model_vs_popularity"]["precision_at_10"]
    assert set(diff) == {"estimate", "interval", "significant"}
    assert rec["sizes"]["test_users"] > 0 and rec["sizes"]["test_interactions"] > 0
    skip = _report(root, "skip_prediction_metrics.json")
    assert {"baseline", "linear_svc", "final"} <= set(skip) and "oracle" not in skip
    assert "model_vs_rule" in skip["difference"]
    for name in ["recommendation_metrics.md", "skip_prediction_metrics.md"]:
        markdown = (root / "data" / "08_reporting" / name).read_text()
        assert "No oracle" in markdown and "| oracle" not in markdown
    skip_md = (root / "data" / "08_reporting" / "skip_prediction_metrics.md").read_text()
    assert "Left out of every model, no value in the training split: `instrumentalness`" in skip_md


def test_the_run_is_one_mlflow_run_with_the_metrics(export_project):
    root, _ = export_project
    with mlflow_store(root):
        runs = mlflow.search_runs(experiment_names=["pozytywka"])
    runs = runs[runs["tags.mlflow.parentRunId"].isna()]  # not the search's trial runs
    last = runs.sort_values("start_time").iloc[-1]
    assert last["tags.kedro.command"] == "kedro run --pipelines from_raw --env tiny"
    for metric in [
        "rec/test/auc",
        "rec/test/precision_at_10",
        "skip/test/roc_auc",
        "rec/test/model_vs_popularity/precision_at_10",
    ]:
        assert f"metrics.{metric}" in last and pd.notna(last[f"metrics.{metric}"]), metric
    assert not any(c.startswith("metrics.rec/test/oracle") for c in runs.columns)


def test_only_real_defects_are_counted_and_no_good_row_is_lost(export_project):
    root, facts = export_project
    quality = _report(root, "data_quality.json")
    dropped = {
        (f, k): v["count"]
        for f, kinds in quality["dropped"].items()
        for k, v in kinds.items()
        if v["count"]
    }
    assert dropped == DEFECTS
    repaired = {
        (f, k): v["count"]
        for f, kinds in quality["repaired"].items()
        for k, v in kinds.items()
        if v["count"]
    }
    assert repaired == {
        ("sessions", "user_id_from_session"): facts["recoverable_null_user_ids"],
        ("tracks", "unknown_artist_id"): UNKNOWN_ARTIST_TRACKS,
        ("tracks", "missing_value"): N_TRACKS,  # instrumentalness, never filled in
    }
    events = pd.read_parquet(root / "data" / "03_primary" / "events.parquet")
    assert len(events) == facts["events"]
    assert (events["event_type"] == "advertisement").sum() == facts["advertisements"]
    assert events["user_id"].notna().all()


def test_the_service_answers_for_the_exports_own_ids(export_project):
    root, _ = export_project
    events = pd.read_parquet(root / "data" / "03_primary" / "events.parquet")
    played = events[events["event_type"] == "play"]
    users = played["user_id"].value_counts().index[:3].tolist()
    track = str(played["track_id"].iloc[0])
    with TestClient(create_app(load_service(root, "tiny"))) as client:
        playlist = client.post(
            "/playlists/advanced",
            json={"user_id": users[0], "other_users": users[1:], "playlist_length": 10},
        )
        assert playlist.status_code == 200 and len(playlist.json()["tracks"]) == 10
        recs = client.post("/recommendations", json={"user_id": users[0], "k": 5})
        assert recs.status_code == 200
        skip = client.post(
            "/skip-predictions/advanced", json={"user_id": users[0], "track_id": track}
        )
        assert skip.status_code == 200 and 0 <= skip.json()["skip_probability"] <= 1
