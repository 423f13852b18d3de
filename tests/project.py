"""Helpers the tests share: the project's own parameters, and throwaway project copies run
through a Kedro session (imported by tests and fixtures; conftest.py holds only fixtures)."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key"  # the serving tests' write key


def load_params(name: str) -> dict:
    """The project's base parameters of one pipeline, resolved as Kedro resolves them
    (``${globals:...}`` included)."""
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    return copy.deepcopy(loader["parameters"][name])


def tiny_params() -> dict:
    """Project parameters at the tiny size, with every defect kind on in every file."""
    params = load_params("synthetic_data")
    params["size"] = "tiny"
    params["dirt"]["file_overrides"] = {}
    return params


def make_project(root: Path) -> Path:
    """A throwaway copy of the project's configuration, with empty data folders."""
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    for name in ["pyproject.toml", ".telemetry"]:
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "src").mkdir()  # the package itself is imported from the installed project
    for layer in ["01_raw", "08_reporting"]:
        (root / "data" / layer).mkdir(parents=True)
    return root


def run_project(root: Path, **kwargs):
    """``kedro run --env tiny`` (or a part of it) in ``root``, from that directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        # This project's own store, absolute: MLflow caches stores by URI, so the relative
        # default would send every project of this test session (copies included) to the
        # first one's database.
        (root / "conf" / "tiny" / "mlflow.yml").write_text(
            (root / "conf" / "base" / "mlflow.yml")
            .read_text()
            .replace("sqlite:///mlflow.db", f"sqlite:///{root / 'mlflow.db'}")
        )
        bootstrap_project(root)
        try:
            with KedroSession.create(project_path=root, env="tiny") as session:
                return session.run(**kwargs)
        finally:
            # kedro-mlflow re-enters its run (nested) at every node and ends it once: close
            # what is left, or the next session in this process would log into this run.
            while mlflow.active_run():
                mlflow.end_run()


@contextmanager
def mlflow_store(root: Path) -> Iterator[None]:
    """MLflow's client pointed at a project's store for reading, then reset: set_tracking_uri
    also exports MLFLOW_TRACKING_URI, which a later Kedro session would otherwise log to."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)


def copy_project(source: Path, target: Path) -> Path:
    """A copy of a run project (data, conf, MLflow database), without run folders."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("mlruns", "mlartifacts"))
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    ready: Callable[[], bool],
    process: subprocess.Popen,
    what: str,
    timeout: float = 120,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``ready`` until it holds; fail if ``process`` (``what``) exits first, with its
    ``output``, or if ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"{what} exited ({process.returncode}): {output()}")
        assert time.monotonic() < deadline, f"{what} was not ready within {timeout:.0f} s"
        time.sleep(0.2)


def answers_health(url: str) -> bool:
    """Whether the server at ``url`` answers ``/health`` with 200."""
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def process_group(command: list[str], **popen) -> Iterator[subprocess.Popen]:
    """``command`` started in a session of its own and, on exit (a failed, timed-out or
    interrupted test included), ended with everything it started: ``pozytywka serve
    --workers N``'s workers, an MLflow server's. A plain ``kill`` reaches the first process
    only, and the workers would outlive the suite."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the process's group, then SIGKILL to what is left after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):  # the workers, if the leader went first
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


@contextmanager
def live_service(root: Path, workers: int = 1, env: dict | None = None) -> Iterator[LiveService]:
    """``pozytywka serve --env tiny`` on the project at ``root``, in its own process group
    (with the write key), until its health check answers; the group is ended on exit."""
    port = free_port()
    command = [sys.executable, "-m", "pozytywka", "serve", "--env", "tiny", "--port", str(port)]
    command += ["--workers", str(workers), "--project-path", str(root)]
    log = root / f"service-{port}.log"  # a file, not a pipe: a full pipe would block the server
    with (
        log.open("w") as stderr,
        process_group(
            command,
            env={**os.environ, "POZYTYWKA_API_KEY": API_KEY, **(env or {})},
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        ) as process,
    ):
        service = LiveService(process, f"http://127.0.0.1:{port}", port)
        wait_for(
            lambda: answers_health(service.url),
            process,
            "the service",
            output=lambda: log.read_text()[-5000:],
        )
        yield service


@dataclass
class LiveService:
    process: subprocess.Popen
    url: str
    port: int
