"""The whole A/B loop on the trained tiny project: serve over HTTP, simulate listeners, analyse
with the ab_analysis pipeline; and a service killed mid-simulation keeps what it acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from pozytywka.experiments.outcomes import answers, join
from pozytywka.experiments.report import build_report
from pozytywka.experiments.simulator import Listeners, SimulationPlan, simulate
from pozytywka.serving.app import create_app
from pozytywka.serving.cli import cli
from pozytywka.serving.loading import load_service, project_context
from pozytywka.serving.prediction_log import PredictionLog
from tests.project import API_KEY, copy_project, live_service, run_project

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Served:
    """The app on a real socket, in a thread."""

    def __init__(self, app):
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def _simulate(url: str, root: Path, plan: SimulationPlan):
    context = project_context(root, "tiny")

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await simulate(
                client,
                Listeners(context.catalog.load("synthetic_truth")),
                context.catalog.load("users")["user_id"].to_numpy(),
                plan,
                API_KEY,
                progress=False,
            )

    return asyncio.run(main()), context


@pytest.fixture(scope="module")
def experiment(trained_project, tmp_path_factory):
    """`pozytywka simulate` on every tiny user, three playlist answers nobody listened to,
    then `kedro run --pipelines ab_analysis`; the service and the pipeline both attribute by
    session, with 99% intervals."""
    root = copy_project(trained_project, tmp_path_factory.mktemp("experiment") / "project")
    (root / "conf" / "tiny" / "parameters_ab_analysis.yml").write_text(
        # The simulator's days pass in seconds: a 30-minute window would credit a prediction
        # with the track's events of later days; its days are sessions, so attribute by session.
        "ab_analysis:\n  attribution:\n    window: session\n"
        "  statistics:\n    alpha: 0.01\n    n_resamples: 300\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POZYTYWKA_API_KEY", API_KEY)
        mp.chdir(root)
        state = load_service(root, "tiny")
        state.config["playlists"]["baseline_seed"] = 11  # a repeatable experiment
        with _Served(create_app(state)) as url:
            args = ["--url", url, "--env", "tiny", "--project-path", str(root), "--users", "60"]
            args += ["--days", "6", "--concurrency", "4", "--seed", "3"]
            done = CliRunner().invoke(cli, ["simulate", *args])
            assert done.exit_code == 0, done.output
            users = [int(u) for u in state.recommender.recommender.user_index][:4]
            for u in users[:3]:
                r = httpx.post(f"{url}/playlists", json={"user_id": u, "other_users": [users[3]]})
                assert r.status_code == 200
            key = {"X-API-Key": API_KEY}
            summary = httpx.get(f"{url}/ab-summary", headers=key, timeout=60).json()
        printed = CliRunner().invoke(
            cli, ["ab-summary", "--env", "tiny", "--project-path", str(root)]
        )
        assert printed.exit_code == 0, printed.output
        assert json.loads(printed.stdout) == summary
    run_project(root, pipeline_names=["ab_analysis"])
    report = json.loads((root / "data" / "08_reporting" / "ab_report.json").read_text())
    simulated = json.loads((root / "data" / "08_reporting" / "ab_simulation.json").read_text())
    return root, simulated, report, summary


def test_the_interval_covers_the_simulators_true_lift(experiment):
    root, result, report, _ = experiment
    assert sum(r["failed"] + r["refused"] for r in result["requests"].values()) == 0
    playlists = report["experiments"]["playlists"]
    assert playlists["assignment"]["passed"] is True
    for metric in ("like_rate", "hit_rate", "skip_rate"):
        m = playlists["metrics"][metric]
        low, high = m["difference"]["interval"]
        assert low <= m["truth"]["difference"] <= high, (metric, m)
        assert m["truth"]["interval_covers_truth"] is True
    skip = report["experiments"]["skip_predictions"]["metrics"]["accuracy"]
    assert skip["truth"]["interval_covers_truth"] is True, skip
    sim = report["simulation"]["experiments"]["playlists"]
    assert sim["users_with_truth"] == sim["users_observed"] > 20
    markdown = (root / "data" / "08_reporting" / "ab_report.md").read_text()
    assert "## Group playlists" in markdown and "| like_rate |" in markdown
    for plot in ("ab_outcomes", "ab_cumulative_lift"):
        assert (root / "data" / "08_reporting" / f"{plot}.png").stat().st_size > 10_000


def test_answers_nothing_followed_are_counted_and_every_event_is_attributed(experiment):
    root, result, report, _ = experiment
    missing = report["experiments"]["playlists"]["answers_without_later_event"]
    assert sum(missing.values()) == 3
    served = report["experiments"]["playlists"]["metrics"]["play_rate"]["arms"]
    assert all(0.9 < a["mean"] <= 1 for a in served.values())  # simulated users play it all
    counts = report["answers"]["playlists"]
    ok = {route: r["ok"] for route, r in result["requests"].items()}
    assert sum(c["ok"] for c in counts.values()) == ok["/playlists"] + 3
    assert sum(c["forced"] for c in counts.values()) == (
        ok["/playlists/base"] + ok["/playlists/advanced"]
    )


def test_the_sample_ratio_check_fails_for_a_skewed_split(experiment):
    root, _, report, _ = experiment
    log = PredictionLog(root / "data" / "07_model_output" / "prediction_log.sqlite").frame()
    params = project_context(root, "tiny").params["ab_analysis"]
    events = __import__("pandas").read_parquet(root / "data" / "03_primary" / "events.parquet")
    answered = answers(log)
    base_users = answered.loc[
        (answered["experiment"] == "playlists")
        & (answered["variant"] == "base")
        & ~answered["forced"],
        "user_id",
    ].unique()
    skewed = answered[~answered["user_id"].isin(base_users[: len(base_users) * 3 // 4])]
    for frame, passed in ((answered, True), (skewed, False)):
        served, skips = join(frame, events, params["attribution"])
        section = build_report(frame, served, skips, None, params)["experiments"]["playlists"]
        assert section["assignment"]["passed"] is passed, section["assignment"]


def test_a_killed_service_loses_no_acknowledged_event_or_logged_answer(
    trained_project, tmp_path_factory, monkeypatch
):
    root = copy_project(trained_project, tmp_path_factory.mktemp("killed") / "project")
    monkeypatch.chdir(root)  # the catalog's paths are relative to the project
    with live_service(root) as service:
        log_path = root / "data" / "07_model_output" / "prediction_log.sqlite"

        def kill_midway():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if log_path.exists():
                    log = PredictionLog(log_path)
                    written = log.count()
                    log.close()
                    if written >= 600:  # well into the run of 50 clients
                        break
                time.sleep(0.05)
            os.killpg(service.process.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_midway, daemon=True)
        killer.start()
        plan = SimulationPlan(users=60, days=20, requests_per_day=2, concurrency=50, seed=1)
        result, _ = _simulate(service.url, root, plan)
        killer.join(60)
    tally = result.tally
    # The service died under the simulation: answers failed, events went unacknowledged.
    assert sum(tally.failed.values()) + tally.events_unsent > 0
    log = PredictionLog(root / "data" / "07_model_output" / "prediction_log.sqlite").frame()
    for route, acknowledged in tally.ok.items():
        if route != "/events":
            assert (log.loc[log["endpoint"] == route, "status"] == 200).sum() >= acknowledged
    kept = sum(
        len(p.read_text().splitlines())
        for p in (root / "data" / "01_raw" / "incoming" / "sessions").glob("*.jsonl")
    )
    assert kept >= tally.events_acknowledged > 0


def test_the_service_summary_shows_outcomes_per_arm(experiment):
    _, result, report, summary = experiment
    outcomes = summary["outcomes"]["playlists"]
    assert outcomes["headline"] == "like_rate"
    assert set(outcomes["arms"]) == {"base", "advanced"}
    # the service joins the events it received, as the pipeline does with the export too
    for arm, figures in outcomes["arms"].items():
        expected = report["experiments"]["playlists"]["metrics"]["like_rate"]["arms"][arm]
        assert figures["like_rate"] == pytest.approx(expected["mean"])
    assert summary["playlists"]["base"]["answers"] > 0  # the counts are still there
