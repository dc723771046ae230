"""The one way a component becomes a command (`pocket X` and `python -m pkg`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from collections.abc import Callable

from control.api.timestamps import parse_duration
from control.client import Client
from control.observability import setup_logging


@dataclass(frozen=True)
class Command:
    """A subcommand: its arguments and the function that runs it (returns an exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]



def bool_flag(value: str) -> bool:
    """argparse type of a Go bool flag given a value (`--anonymous-auth=false`)."""
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"want true or false, got {value!r}")


def duration_flag(text: str) -> float:
    """argparse type of a Go duration flag ("30s", "5m0s", "500ms"), in seconds."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level (default: warnings only)")


def add_api_arguments(parser: argparse.ArgumentParser, default_server: str | None = None) -> None:
    """How a component finds the API server: a kubeconfig (HTTPS, credentials) or a plain URL (test setups)."""
    parser.add_argument(
        "--kubeconfig", default="", help="kubeconfig with the API server, its CA and this component's credentials"
    )
    parser.add_argument(
        "--api-server", default=default_server, help="plain API server URL, used when --kubeconfig is not given"
    )


def api_client(args: argparse.Namespace, user_agent: str) -> Client:
    """The client `add_api_arguments` describes; ValueError (naming the flag or file) if it cannot be made."""
    if args.kubeconfig:
        return Client.from_kubeconfig(args.kubeconfig, user_agent=user_agent)
    if not args.api_server:
        raise ValueError("give --kubeconfig (HTTPS) or --api-server (plain HTTP)")
    return Client(args.api_server, user_agent=user_agent)


def main_for(command: Command, argv: list[str] | None = None) -> int:
    """Run one component standalone, as `python -m <package>` does."""
    parser = argparse.ArgumentParser(prog=f"python -m {command.name}", description=command.help)
    add_common(parser)
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return command.run(args)
