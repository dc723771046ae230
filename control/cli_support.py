"""The one way a component becomes a command (`pocket X` and `python -m pkg`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from collections.abc import Callable

from control.observability import setup_logging


@dataclass(frozen=True)
class Command:
    """A subcommand: its arguments and the function that runs it (returns an exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level (default: warnings only)")


def main_for(command: Command, argv: list[str] | None = None) -> int:
    """Run one component standalone, as `python -m <package>` does."""
    parser = argparse.ArgumentParser(prog=f"python -m {command.name}", description=command.help)
    add_common(parser)
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return command.run(args)
