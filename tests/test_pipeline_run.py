"""The whole DAG through Kedro (hooks, catalog, MLflow) on the tiny catalogue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pozytywka.pipeline_registry import register_pipelines
from pozytywka.tracking import HEADLINE_METRICS
from tests.project import mlflow_store

PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(trained_project):
    return trained_project


def test_default_pipeline_end_to_end(project):
    data = project / "data"
    for table in ["users", "artists", "tracks", "events", "listening_events"]:
        assert len(pd.read_parquet(data / "03_primary" / f"{table}.parquet")) > 0
    report = json.loads((data / "08_reporting" / "data_quality.json").read_text())
    injected = json.loads(
        (data / "01_raw" / "synthetic_truth" / "injected_defects.json").read_text()
    )
    for file, categories in injected.items():
        for category, kinds in categories.items():
            got = {k: e["count"] for k, e in report[category][file].items() if e["count"]}
            assert got == kinds, (file, category)
    assert (data / "08_reporting" / "data_quality.md").read_text().startswith("# Data quality")
    assert (data / "05_model_input" / "item_feature_matrix.pkl").exists()
    inter = pd.read_parquet(data / "04_feature" / "interactions.parquet")
    assert set(inter["split"]) == {"train", "test"}

    metrics = json.loads((data / "08_reporting" / "recommendation_metrics.json").read_text())
    everyone = ["baseline", "popularity", "als", "ease", "model", "ranker", "oracle"]
    assert {*everyone, "groups"} <= set(metrics)
    for scorer in everyone:
        assert 0 <= metrics[scorer]["auc"] <= 1 and "precision_at_10" in metrics[scorer]
        # an interval beside every figure but the catalogue-wide coverage
        assert set(metrics["intervals"][scorer]) == set(metrics[scorer]) - {
            "coverage",
            "evaluated_users",
        }
    assert set(metrics["groups"]) == {"mean_rank", "least_misery", "borda", "gfar"}
    # The served recommender, chosen on validation, is on the test split and in the groups.
    served = metrics["served"]
    choice = json.loads((data / "06_models" / "recommender_choice.json").read_text())
    validation = choice["validation"]
    best_single = max(set(validation) - {"ranker"}, key=lambda n: validation[n]["ndcg_at_10"])
    assert choice["served"] in {"popularity", best_single, "ranker"}  # the simplest, unless...
    if choice["served"] == "ranker":  # ... a gain is shown
        assert choice["served_minus"][best_single]["interval"][0] > 0
    assert served == {"lightfm": "model"}.get(choice["served"], choice["served"])
    assert set(metrics["groups"]["mean_rank"]) == {"baseline", "popularity", "model", "oracle"} | {
        served
    }
    assert {f"{served}_vs_{s}" for s in ("popularity", "ease")} - {f"{served}_vs_{served}"} <= set(
        metrics["served_difference"]
    )
    recommendations = pd.read_parquet(data / "07_model_output" / "user_recommendations.parquet")
    assert set(recommendations["recommender"]) == {choice["served"]}
    assert metrics["oracle"]["auc"] > metrics["baseline"]["auc"]
    # The strong baselines sit beside the model with paired intervals.
    assert {"model_vs_als", "model_vs_ease"} <= set(metrics["difference"])
    markdown = (data / "08_reporting" / "recommendation_metrics.md").read_text()
    assert f"{served} / oracle" in markdown and "model − ALS" in markdown
    assert "## Served recommender" in markdown and "## Ranker" in markdown
    for plot in [
        "group_score_by_size.png",
        "hyperparameter_effects.png",
        "optuna_history.png",
        "optuna_importance.png",
        "optuna_slice.png",
    ]:
        assert (data / "08_reporting" / plot).stat().st_size > 0

    skip = json.loads((data / "08_reporting" / "skip_prediction_metrics.json").read_text())
    scorers = {"baseline", "linear_svc", "final_uncalibrated", "final", "oracle"}
    assert set(skip) == {*scorers, "intervals", "difference", "sizes"}
    assert set(skip["intervals"]) == scorers
    assert {"balanced_accuracy", "roc_auc", "pr_auc", "f1_skip"} <= set(skip["final"])
    # Calibration before and after, in the JSON and in words.
    for scorer in ["final_uncalibrated", "final"]:
        assert {"brier_score", "expected_calibration_error"} <= set(skip[scorer])
    assert "brier_score" in skip["difference"]["calibrated_vs_uncalibrated"]
    skip_md = (data / "08_reporting" / "skip_prediction_metrics.md").read_text()
    assert "Do its probabilities mean what they say?" in skip_md
    assert (data / "08_reporting" / "skip_roc_pr_calibration.png").stat().st_size > 0
    # Every node's time and peak memory, slowest first.
    timings = json.loads((data / "08_reporting" / "node_timings.json").read_text())
    ran = {n.name for n in register_pipelines()["__default__"].nodes}
    assert {r["node"] for r in timings["nodes"]} == ran
    seconds = [r["seconds"] for r in timings["nodes"]]
    assert seconds == sorted(seconds, reverse=True) and all(
        r["peak_rss_mb"] > 0 for r in timings["nodes"]
    )
    # ... and each dataset's load and save time: the run is nodes plus I/O (plus hooks).
    io = {d["dataset"]: d for d in timings["datasets"]}
    assert io["raw_sessions"]["load_seconds"] > 0 and io["events"]["save_seconds"] > 0
    assert timings["run_seconds"] >= timings["total_node_seconds"] + timings["total_io_seconds"]

    with mlflow_store(project):
        every = mlflow.search_runs(experiment_names=["pozytywka"])
        top = every["tags.mlflow.parentRunId"].isna()
        runs, nested = every[top], every[~top]
        ranker_runs = nested[nested["tags.mlflow.runName"].str.startswith("ranker trial")]
        trial_runs = nested[nested["tags.mlflow.runName"].str.startswith("rec trial")]
        assert len(ranker_runs) + len(trial_runs) == len(nested)
        assert len(runs) == 1
        last = runs.iloc[0]
        # The run says what ran, from which commit, on which data.
        assert last["tags.kedro.command"] == "kedro run --env tiny"
        assert last["tags.mlflow.runName"] == "--env tiny"
        assert len(last["tags.git.commit"]) > 0 and len(last["tags.data.fingerprint"]) == 16
        # The winners' hyperparameters are parameters; each LightFM trial is a nested run.
        best = json.loads((data / "06_models" / "best_hyperparameters.json").read_text())
        assert float(last["params.rec.best.learning_rate"]) == pytest.approx(best["learning_rate"])
        assert "params.skip.best.model" in last
        trials = pd.read_csv(data / "08_reporting" / "optuna_trials.csv")
        assert len(trial_runs) == len(trials)
        assert set(trial_runs["tags.mlflow.parentRunId"]) == {last["run_id"]}
        assert trial_runs["params.learning_rate"].notna().all()
        # The ranker: its trials nested too, its settings and the served recommender params.
        ranker_trials = pd.read_csv(data / "08_reporting" / "ranker_trials.csv")
        assert len(ranker_runs) == len(ranker_trials) > 0
        assert ranker_runs["params.num_leaves"].notna().all()
        choice = json.loads((data / "06_models" / "recommender_choice.json").read_text())
        assert last["params.rec.served"] == choice["served"]
        assert int(last["params.ranker.best.rounds"]) == choice["ranker"]["rounds"]
        logged = {a.path for a in mlflow.MlflowClient().list_artifacts(last["run_id"])}
        assert {"ranker_model.pkl", "recommender_choice.json"} <= logged
        assert last["params.synthetic_data.size"] == "tiny"
        assert last["params.feature_engineering.split.strategy"] == "random"
        # Each defect count is in the data-quality artifact, not a column of the runs table.
        assert "metrics.dq/sessions/dropped/malformed_line" not in last
        logged_report = mlflow.artifacts.load_dict(f"runs:/{last['run_id']}/data_quality.json")
        assert (
            logged_report["dropped"]["sessions"]["malformed_line"]["count"]
            == injected["sessions"]["dropped"]["malformed_line"]
        )
        metric_columns = [c for c in every.columns if c.startswith("metrics.")]
        assert len(metric_columns) < 150, len(metric_columns)
        for headline in HEADLINE_METRICS:
            assert f"metrics.{headline}" in last, headline
        # Trials: their real times and states; the defaults named; failures say why.
        states = dict(zip(trials["number"], trials["state"], strict=True))
        for _, trial in trial_runs.iterrows():
            state = states[int(trial["tags.trial.number"])]
            status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[state]
            assert trial["status"] == status and trial["tags.trial.state"] == state
            assert trial["end_time"] >= trial["start_time"]
        defaults = trial_runs[trial_runs["tags.trial.number"] == "0"].iloc[0]
        assert defaults["tags.mlflow.runName"] == "rec trial 0 (defaults)"
        slowest = (trial_runs["end_time"] - trial_runs["start_time"]).max()
        assert slowest.total_seconds() >= trials["duration"].max() * 0.9
        # The experiment is typed as model training, with its headline view.
        experiment = mlflow.get_experiment(last["experiment_id"])
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        view = json.loads(experiment.tags["mlflow.sharedViewState.training"])
        assert view["columnOrder"][0] == f"metrics.`{HEADLINE_METRICS[0]}`"
        assert [e.name for e in mlflow.search_experiments()] == ["pozytywka"]  # no "Default"
        inputs = {i.dataset.name for i in mlflow.get_run(last["run_id"]).inputs.dataset_inputs}
        assert {"interactions", "skip_dataset"} <= inputs
        artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=last["run_id"])}
        assert {
            "data_quality.json",
            "data_quality.md",
            "recommendation_metrics.json",
            "optuna_trials.csv",
            "lightfm_model.pkl",
        } <= artifacts
        assert 0 <= last["metrics.rec/test/auc"] <= 1
        assert last["metrics.timing/total_node_seconds"] > 0
        assert "node_timings.json" in artifacts
        logged = mlflow.search_logged_models(
            experiment_ids=[last["experiment_id"]], output_format="list"
        )
        assert any(m.source_run_id == last["run_id"] for m in logged)


def test_the_trained_models_are_registered_as_candidates(project):
    """`models:/recommender@candidate` names this run's model and predicts in a fresh
    process (the service's `models.recommender_uri` can point at it)."""
    with mlflow_store(project):
        client = mlflow.MlflowClient()
        runs = mlflow.search_runs(experiment_names=["pozytywka"])
        run_id = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]["run_id"]
        for name in ["recommender", "skip_model"]:
            version = client.get_model_version_by_alias(name, "candidate")
            assert version.run_id == run_id
            # The first trained version is also the champion: there was none to beat.
            assert client.get_model_version_by_alias(name, "champion").version == version.version
            info = mlflow.models.get_model_info(f"models:/{name}@candidate")
            assert info.signature is not None and info.saved_input_example_info is not None
            files = mlflow.artifacts.download_artifacts(f"models:/{name}@candidate")
            requirements = (Path(files) / "requirements.txt").read_text()
            # The project's code travels with the model; no pin on an unpublished package.
            assert "pozytywka" not in requirements and "lightfm-next==" in requirements
            assert (Path(files) / "code" / "pozytywka" / "recsys" / "mlflow_model.py").exists()
    users = pd.read_parquet(project / "data" / "07_model_output" / "user_recommendations.parquet")
    user = int(users["user_id"].iloc[0])
    script = (
        "import sys, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/recommender@candidate')\n"
        f"out = m.predict(pd.DataFrame({{'user_id': [{user}]}}))\n"
        "print(len(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 0
