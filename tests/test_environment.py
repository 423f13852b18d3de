"""What the installed environment must provide: fast kernels, and no background work of
MLflow's that the project does not use."""

import os
import subprocess
import sys

import lightfm._lightfm_fast as lightfm_fast

from tests.project import make_project


def test_lightfm_uses_its_openmp_build():
    # lightfm falls back to a single-threaded build (with only a warning) when OpenMP is missing.
    assert lightfm_fast.fit_warp.__module__ == "lightfm._lightfm_fast_openmp"


def _without_opt_outs() -> dict:
    """This environment without anything that turns MLflow's telemetry off from outside (CI
    variables, DO_NOT_TRACK, MLFLOW_DISABLE_TELEMETRY, pytest's own marker): the project
    must do it by itself, as on a newcomer's machine."""
    ci_markers = {"CI", "GITHUB_ACTIONS", "PYTEST_CURRENT_TEST", "DO_NOT_TRACK"}
    return {
        k: v for k, v in os.environ.items() if k not in ci_markers and not k.startswith("MLFLOW_")
    }


def test_mlflow_telemetry_and_autologging_stay_off_in_a_kedro_session(tmp_path):
    # As `kedro run` starts (the CLI bootstraps the project and loads kedro-mlflow's commands,
    # then the session's context runs kedro-mlflow's setup), after a notebook's import of
    # MLflow, which then sets up its telemetry before the project can say no.
    root = make_project(tmp_path / "project")
    script = f"""
import mlflow
from pathlib import Path
from kedro.framework.cli.cli import KedroCLI
from kedro.framework.session import KedroSession
KedroCLI(project_path=Path({str(root)!r})).project_groups
from mlflow.telemetry.client import get_telemetry_client
from mlflow.utils import import_hooks
print("telemetry client", get_telemetry_client())
with KedroSession.create(project_path=Path({str(root)!r}), env="tiny") as session:
    session.load_context()
print("import hooks", sorted(import_hooks._post_import_hooks))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=_without_opt_outs(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # No client, so no telemetry thread: none has started before the project's first call.
    assert "telemetry client None" in done.stdout, done.stdout
    # No autologging import hooks (kedro-mlflow's disable_autologging: True registers one per
    # ML library even to turn them off).
    assert "import hooks []" in done.stdout, done.stdout
