"""``pozytywka serve``, ``pozytywka ab-summary``, ``pozytywka simulate`` and ``pozytywka tune``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from pathlib import Path

import click


@click.group()
def cli() -> None:
    """Pozytywka ML service commands (`pozytywka` alone runs the Kedro pipelines)."""


@cli.command(short_help="Serve the models of the last `kedro run` over HTTP.")
@click.option("--env", "-e", default=None, help="Kedro configuration environment.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="Worker processes (each loads the models; Prometheus counts are per worker).",
)
@click.option("--project-path", default=".", show_default=True, type=click.Path(exists=True))
def serve(env: str | None, host: str, port: int, workers: int, project_path: str) -> None:
    """Start the FastAPI service on the artifacts the last `kedro run` saved."""

    from .loading import StartupError, load_service  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ["POZYTYWKA_PROJECT_PATH"] = str(Path(project_path).resolve())
    if env:
        os.environ["POZYTYWKA_ENV"] = env
    try:  # load once up front, so a missing artifact is a clear message, not a traceback
        state = load_service(project_path, env)
    except StartupError as exc:
        click.echo(f"pozytywka serve: cannot start: {exc}", err=True)
        sys.exit(2)
    with socket.socket() as probe:  # as uvicorn binds: a port in use is one line, not exit 3
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            click.echo(
                f"pozytywka serve: cannot start: {host}:{port} is not free ({exc.strerror})",
                err=True,
            )
            sys.exit(2)
    for line in state.summary():
        click.echo(f"pozytywka serve: {line}")
    click.echo(
        f"pozytywka serve: listening on http://{host}:{port} (docs: /docs), {workers} worker(s)"
    )
    _run(state, host, port, workers)


def _run(state, host: str, port: int, workers: int) -> None:
    """uvicorn with the limits of conf serving.yml: header and keep-alive deadlines (the
    body's is the app's), one worker in this process or ``workers`` processes."""
    import uvicorn  # noqa: PLC0415

    from .protocol import HEADER_TIMEOUT_ENV, HeaderDeadlineProtocol  # noqa: PLC0415

    limits = state.config["limits"]
    os.environ[HEADER_TIMEOUT_ENV] = str(limits["header_timeout_s"])  # workers inherit it
    options = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "http": HeaderDeadlineProtocol,
        "timeout_keep_alive": limits["keep_alive_s"],
    }
    if workers == 1:
        from .app import create_app  # noqa: PLC0415

        uvicorn.run(create_app(state), **options)
        return
    state.log.close()
    state.catalogue.registry.close()
    uvicorn.run(
        "pozytywka.serving.app:app_from_environment", factory=True, workers=workers, **options
    )


@cli.command("ab-summary", short_help="Print the A/B summary of the prediction log.")
@click.option("--env", "-e", default=None, help="Kedro configuration environment.")
@click.option("--project-path", default=".", show_default=True, type=click.Path(exists=True))
def ab_summary_command(env: str | None, project_path: str) -> None:
    """Print the A/B summary of the prediction log, with the outcomes of the events the
    service received, as JSON (`kedro run --pipelines ab_analysis` makes the full report)."""
    from .incoming import IncomingWriter  # noqa: PLC0415
    from .loading import in_project, incoming_path, project_context  # noqa: PLC0415
    from .prediction_log import PredictionLog, ab_summary_with_outcomes  # noqa: PLC0415

    with contextlib.redirect_stdout(sys.stderr):  # Kedro's log lines: stdout is the JSON
        root = Path(project_path).resolve()
        context = project_context(root, env)
        config = context.config_loader["serving"]
        log = PredictionLog(in_project(root, config["prediction_log"]["path"]))
        events = IncomingWriter(incoming_path(context.config_loader, root, "sessions")).read_all()
        summary = ab_summary_with_outcomes(
            log, events, context.params["ab_analysis"], config["ab_summary"]["outcome_answers"]
        )
    click.echo(json.dumps(summary, indent=2, default=str))


@cli.command(short_help="Rehearse the A/B experiments with simulated listeners.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The service.")
@click.option("--users", default=200, show_default=True, help="Simulated users.")
@click.option("--days", default=2, show_default=True, help="Sessions per user.")
@click.option("--requests-per-day", default=2, show_default=True)
@click.option(
    "--playlist-share",
    default=0.6,
    show_default=True,
    help="Share of requests that ask a group playlist (the rest: recommendations).",
)
@click.option("--group-sizes", default="2,3,4,5", show_default=True, help="Comma-separated.")
@click.option("--playlist-length", default=20, show_default=True)
@click.option("--k", default=20, show_default=True, help="Recommendations per request.")
@click.option("--skip-checks", default=3, show_default=True, help="Skip predictions per answer.")
@click.option("--concurrency", default=8, show_default=True, help="Users simulated at once.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--counterfactual/--no-counterfactual",
    default=True,
    show_default=True,
    help="Also ask the other arm (forced route) for the true effect.",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per request.")
@click.option("--env", "-e", default=None, help="Kedro configuration environment.")
@click.option("--project-path", default=".", show_default=True, type=click.Path(exists=True))
def simulate(url: str, timeout: float, env: str | None, project_path: str, **plan_options) -> None:
    """Rehearse the A/B experiments: simulated listeners of the synthetic catalogue ask the
    running service for playlists, recommendations and skip predictions, listen as the
    generator's hidden truth says they would, and post the events. Saves each answer's true
    expected outcomes (ab_simulation_truth) for `kedro run --pipelines ab_analysis`."""
    from .loading import project_context  # noqa: PLC0415

    root = Path(project_path).resolve()
    os.chdir(root)  # the catalog's paths are relative to the project
    with contextlib.redirect_stdout(sys.stderr):  # Kedro's log lines: stdout is the JSON
        context = project_context(root, env)
        truth = context.catalog.load("synthetic_truth")
    if truth is None:
        click.echo(
            "pozytywka simulate: no synthetic truth belongs to data/01_raw (simulated listeners "
            "need the generated catalogue: `kedro run` first)",
            err=True,
        )
        sys.exit(2)
    from ..experiments.simulator import SimulationPlan  # noqa: PLC0415

    try:  # the options not taken above are SimulationPlan's fields, by name
        sizes = tuple(int(g) for g in plan_options.pop("group_sizes").split(","))
        plan = SimulationPlan(group_sizes=sizes, **plan_options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        result = _simulate(url, timeout, context, truth, plan)
    except ValueError as exc:
        click.echo(f"pozytywka simulate: {exc}", err=True)
        sys.exit(2)
    context.catalog.save("ab_simulation_truth", result.truth)
    summary = result.summary()
    context.catalog.save("ab_simulation_summary", summary)
    click.echo(json.dumps(summary, indent=2))
    click.echo(
        "pozytywka simulate: analyse with: kedro run --pipelines ab_analysis "
        f'--params "ab_analysis.since={result.started_at}"'
    )


def _simulate(url: str, timeout: float, context, truth: dict, plan):
    """The simulation against the service at ``url``, with the project's users and key."""
    import asyncio  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    from ..experiments.simulator import Listeners, simulate  # noqa: PLC0415
    from .loading import api_key_of  # noqa: PLC0415

    async def main():
        limits = httpx.Limits(max_connections=plan.concurrency * 2)
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
            return await simulate(
                client,
                Listeners(truth),
                context.catalog.load("users")["user_id"].to_numpy(),
                plan,
                api_key_of(context.config_loader),
                max_batch=context.config_loader["serving"]["events"]["max_batch"],
            )

    return asyncio.run(main())


@cli.command(short_help="Run the LightFM search with N workers on one study.")
@click.option(
    "--workers",
    "-n",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Worker processes here, each `kedro run --pipelines tune` (0: only prepare the study, "
    "for workers started elsewhere).",
)
@click.option("--env", "-e", default=None, help="Kedro configuration environment (cluster).")
@click.option(
    "--params",
    default="",
    help='Kedro --params for every worker, e.g. "recommendation.search.n_trials=60".',
)
@click.option("--project-path", default=".", show_default=True, type=click.Path(exists=True))
def tune(workers: int, env: str | None, params: str, project_path: str) -> None:
    """Run the LightFM search with N processes on one Optuna study (recommendation.search.
    storage: PostgreSQL in conf/cluster), on the training data of an earlier `kedro run`.
    Prints the study's summary as JSON, and the command that trains its winner."""
    from ..tuning import launch  # noqa: PLC0415

    root = Path(project_path).resolve()
    os.chdir(root)  # the catalog's and an SQLite storage's paths are relative to the project
    with contextlib.redirect_stdout(sys.stderr):  # Kedro's log lines: stdout is the JSON
        try:
            summary = launch(root, env, params, workers)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--params") from exc
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"pozytywka tune: train the winner with: {summary['next']}", err=True)
    sys.exit(1 if any(summary["exit_codes"]) else 0)
