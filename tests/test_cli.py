"""The commands a newcomer types first: `pozytywka --help` lists every command, `pozytywka`
alone is Kedro's `run`, and an unknown pipeline is one line naming the registered ones."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from pozytywka.__main__ import cli
from tests.project import make_project

COMMANDS = ["run", "serve", "ab-summary", "simulate", "tune"]


def test_help_lists_run_and_the_service_commands_with_no_warning():
    done = subprocess.run(
        [sys.executable, "-m", "pozytywka", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("Commands:")[1].split()
    assert all(command in listed for command in COMMANDS), done.stdout
    assert "Warning" not in done.stdout + done.stderr, done.stderr


def test_without_a_command_the_arguments_are_runs():
    done = CliRunner().invoke(cli, ["--pipelines", "nosuch", "--env", "tiny"])
    assert done.exit_code == 2
    assert "Usage: pozytywka run" in done.output and "'nosuch'" in done.output


def test_a_service_command_is_its_own():
    done = CliRunner().invoke(cli, ["serve", "--help"])
    assert done.exit_code == 0 and "--workers" in done.output


def test_kedro_run_of_an_unknown_pipeline_names_the_registered_ones(tmp_path):
    root = make_project(tmp_path / "project")
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines", "from_raw,nosuch"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: no pipeline named 'nosuch'; the registered"), done.stderr
    assert "from_raw" in error and "ab_analysis" in error and "Traceback" not in done.stderr
    assert not (root / "mlruns").exists() and not (root / "mlflow.db").exists()  # no run began
