"""Helpers of the cluster tests: a throwaway PostgreSQL server from the system's binaries, an
MLflow tracking server on it, and a process working on a shared Optuna study.

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the
``postgres`` system user that Debian's ``postgresql`` package creates (``.ci/run`` installs the
package where ``pg_ctl`` is missing). Missing binaries fail the tests: they do not skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.project import answers_health, free_port, process_group, wait_for


def postgres_bindir() -> Path:
    """The directory of the newest installed ``pg_ctl`` (Debian keeps it off PATH, in
    /usr/lib/postgresql/<major>/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    found.sort(key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)))  # type: ignore[union-attr]
    path = found[-1] if found else shutil.which("pg_ctl")
    if path is None:
        pytest.fail(
            "PostgreSQL's server binaries (pg_ctl, initdb) are not installed: "
            "apt-get install postgresql (.ci/run does it)"
        )
    return Path(path).parent


def _server_user() -> str | None:
    """Who runs the server: ``postgres`` when we are root (PostgreSQL refuses root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, and there is no `postgres` user to run PostgreSQL as")
    return "postgres"


@dataclass
class PostgresServer:
    port: int

    def url(self, database: str) -> str:
        """The SQLAlchemy URL (psycopg driver) of ``database``: Optuna's, MLflow's."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres").replace("+psycopg", ""), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, database: str, sql: str) -> list[tuple]:
        with psycopg.connect(self.url(database).replace("+psycopg", "")) as connection:
            return connection.execute(sql).fetchall()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb and pg_ctl start on a free port (trust authentication on 127.0.0.1, no fsync),
    stopped and deleted on exit."""
    bindir, user = postgres_bindir(), _server_user()
    base = Path(tempfile.mkdtemp(prefix="pozytywka-pg-"))
    if user:
        shutil.chown(base, user, user)
    data, port = base / "data", free_port()

    def pg(*command: str) -> None:
        try:
            subprocess.run(
                [str(bindir / command[0]), *command[1:]],
                user=user,
                cwd=base,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            log = (base / "log").read_text() if (base / "log").exists() else ""
            pytest.fail(f"{command[0]} failed: {exc.stderr}{exc.stdout}\n{log}")

    pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg("pg_ctl", "-D", str(data), "-w", "-t", "60", "-l", str(base / "log"), "-o", options, "start")
    try:
        yield PostgresServer(port)
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class MlflowServer:
    process: subprocess.Popen
    url: str
    log: Path

    def wait_ready(self, timeout: float = 120) -> str:
        """Its URL once ``/health`` answers (the first start migrates the PostgreSQL schema)."""
        wait_for(
            lambda: answers_health(self.url),
            self.process,
            "the MLflow server",
            timeout,
            output=lambda: self.log.read_text()[-3000:],
        )
        return self.url


@contextmanager
def mlflow_server(backend_store_uri: str, root: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on that backend store, serving artifacts from ``root``; started
    here and not waited for (``wait_ready``), so it boots while other fixtures build."""
    port, log = free_port(), root / "mlflow-server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri]
    command += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    with (
        log.open("w") as out,
        process_group(command, stdout=out, stderr=subprocess.STDOUT) as process,
    ):
        yield MlflowServer(process, f"http://127.0.0.1:{port}", log)


def race_worker(storage: str, study_name: str, n_trials: int, start) -> None:
    """One process on the shared study, as ``search_worker`` runs it (reserve under the
    study's lock, then optimise one trial), with a trivial objective: many processes
    reserving at once, at the pace that makes a lost or doubled trial likely."""
    import optuna  # noqa: PLC0415

    from pozytywka.pipelines.recommendation import nodes  # noqa: PLC0415

    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True
    )
    lock = lambda: nodes._study_lock(storage, study_name)  # noqa: E731

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(0.02)
        return x

    start.wait(60)  # broken (an error, not a hang) if another process failed before it
    nodes._run_rounds(
        study,
        lambda trial: trial.suggest_float("x", 0.0, 1.0),
        lock,
        [{"x": 0.5}],
        n_trials,
        1,
        time.monotonic() + 60,
        lambda trials: [nodes._run_trial(study, t, nodes._tagged(objective)) for t in trials],
    )


HEARTBEAT = {"interval_seconds": 1, "grace_seconds": 2, "max_retry": 2}


def search_worker_on(storage: str, study_name: str, n_trials: int, hang_on: int, started) -> None:
    """One worker as ``_run_search`` runs it (heartbeats, stale trials retried, the study's
    lock), with a quick objective; on trial ``hang_on`` it sets ``started`` and hangs, to be
    killed mid-trial (-1: never)."""
    import optuna  # noqa: PLC0415

    from pozytywka.pipelines.recommendation import nodes  # noqa: PLC0415

    study = optuna.create_study(
        study_name=study_name,
        storage=nodes.study_storage(storage, HEARTBEAT),
        direction="maximize",
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float:
        if trial.number == hang_on:
            started.set()
            time.sleep(3600)
        time.sleep(0.05)
        return trial.params["x"]

    nodes._run_rounds(
        study,
        lambda trial: trial.suggest_float("x", 0.0, 1.0),
        lambda: nodes._study_lock(storage, study_name),
        [{"x": 0.5}],
        n_trials,
        1,
        time.monotonic() + 120,
        lambda trials: [nodes._run_trial(study, t, nodes._tagged(objective)) for t in trials],
    )
