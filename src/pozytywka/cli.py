"""The project's commands: Kedro adds ``cli``'s to `kedro` (its ``run`` over Kedro's own), and
``run`` is also `pozytywka`'s default. ``run`` is Kedro's, after a check of the pipeline names."""

from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.project import pipelines as registered_pipelines


@click.group(name="pozytywka")
def cli() -> None:
    """Pozytywka ML: `pozytywka --help` lists the service commands too."""


@cli.command(
    params=list(kedro_run.params),
    help=kedro_run.help,
    short_help="Kedro's run, checking the pipeline names first.",
)
@click.pass_context
def run(ctx: click.Context, pipeline: str | None, pipelines: list[str], **_: Any) -> Any:
    check_pipeline_names([pipeline, *pipelines] if pipeline else pipelines)
    return ctx.forward(kedro_run)


def check_pipeline_names(names: list[str]) -> None:
    """A usage error naming the unknown pipelines and the registered ones (instead of
    Kedro's traceback from inside the session)."""
    unknown = [name for name in names if name not in registered_pipelines]
    if unknown:
        raise click.UsageError(
            f"no pipeline named {', '.join(map(repr, unknown))}; "
            f"the registered ones: {', '.join(sorted(registered_pipelines))}."
        )
