"""`pozytywka` and `python -m pozytywka`: Kedro's ``run`` (the default command, so
`pozytywka --env tiny` is `kedro run --env tiny`) and the service commands of
pozytywka.serving.cli: `serve`, `ab-summary`, `simulate` and `tune`.
"""

import sys
from pathlib import Path
from typing import Any

import click
from kedro.framework.project import configure_project

from pozytywka.cli import run
from pozytywka.serving.cli import cli as service_commands


class RunByDefault(click.Group):
    """Arguments that name no command (nor ask for help) are ``run``'s."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in [*self.commands, *ctx.help_option_names]:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(
    "pozytywka",
    cls=RunByDefault,
    commands=[run, *service_commands.commands.values()],
    subcommand_metavar="[COMMAND] [ARGS]...",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Pozytywka ML. Without a command, `run`: `pozytywka --env tiny` is `kedro run --env
    tiny`; `pozytywka run -h` lists its options."""
    if ctx.invoked_subcommand == "run":
        configure_project(Path(__file__).parent.name)


def main(*args: Any, **kwargs: Any) -> Any:
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")  # interactive: return, don't exit
    return cli(*args, **kwargs)


if __name__ == "__main__":
    main()
