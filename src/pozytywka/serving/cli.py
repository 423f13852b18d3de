"""``pozytywka serve`` and ``pozytywka ab-summary``."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click


@click.group()
def cli() -> None:
    """Pozytywka ML service commands (`pozytywka` alone runs the Kedro pipelines)."""


@cli.command()
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
    import uvicorn  # noqa: PLC0415

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
    for line in state.summary():
        click.echo(f"pozytywka serve: {line}")
    click.echo(
        f"pozytywka serve: listening on http://{host}:{port} (docs: /docs), {workers} worker(s)"
    )
    if workers == 1:
        from .app import create_app  # noqa: PLC0415

        uvicorn.run(create_app(state), host=host, port=port, log_level="warning")
        return
    state.log.close()
    uvicorn.run(
        "pozytywka.serving.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


@cli.command("ab-summary")
@click.option("--env", "-e", default=None, help="Kedro configuration environment.")
@click.option("--project-path", default=".", show_default=True, type=click.Path(exists=True))
def ab_summary_command(env: str | None, project_path: str) -> None:
    """Print the A/B summary of the prediction log as JSON."""
    from .loading import in_project, project_context  # noqa: PLC0415
    from .prediction_log import PredictionLog, ab_summary  # noqa: PLC0415

    root = Path(project_path).resolve()
    config = project_context(root, env).config_loader["serving"]
    log = PredictionLog(in_project(root, config["prediction_log"]["path"]))
    click.echo(json.dumps(ab_summary(log.frame()), indent=2))
