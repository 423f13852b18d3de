"""Pozytywka ML file for ensuring the package is executable
as `pozytywka` and `python -m pozytywka`: `pozytywka serve`, `pozytywka ab-summary`,
`pozytywka simulate` and `pozytywka tune` run the click commands of pozytywka.serving.cli,
anything else is Kedro's `run`.
"""

import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

SERVICE_COMMANDS = {"serve", "ab-summary", "simulate", "tune"}


def main(*args, **kwargs) -> Any:
    argv = list(args[0]) if args and isinstance(args[0], list | tuple) else sys.argv[1:]
    if argv and argv[0] in SERVICE_COMMANDS:
        from pozytywka.serving.cli import cli  # noqa: PLC0415 - only the service needs it

        return cli.main(argv, standalone_mode=True)

    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
