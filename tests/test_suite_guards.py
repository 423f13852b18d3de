"""The suite's own guards: a hung test fails alone, with its stack, within the time limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.project import PROJECT_ROOT


def test_the_suite_has_a_per_test_time_limit(pytestconfig):
    assert 0 < float(pytestconfig.getini("timeout")) <= 600


def test_a_hung_test_is_ended_by_the_time_limit_and_the_next_one_runs(tmp_path):
    tests = tmp_path / "test_hang.py"
    tests.write_text(
        textwrap.dedent(
            """
            import time

            def test_hangs():
                time.sleep(120)

            def test_after_it():
                assert True
            """
        )
    )
    # The project's own configuration, with its limit lowered to 2 s for the demonstration.
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(tests),
        "-c",
        str(PROJECT_ROOT / "pyproject.toml"),
    ]
    command += ["--rootdir", str(tmp_path), "-o", "timeout=2", "--no-cov", "-p", "no:randomly"]
    command += ["-p", "no:cacheprovider"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Failed: Timeout (>2.0s) from pytest-timeout" in output, output
    assert "time.sleep(120)" in output, output  # where it hung
    assert "1 failed, 1 passed" in output, output
