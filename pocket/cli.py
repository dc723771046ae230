"""`pocket`: one entry point for every component and for the local cluster."""

from __future__ import annotations

import argparse
import importlib
import sys

from control.cli_support import Command, add_common
from control.observability import setup_logging

# subcommand -> module that defines COMMAND; imported only when used, so
# `pocket kdns` does not pay for docker or pyroute2.
COMMANDS = {
    "apiserver": "control.apiserver.cli",
    "scheduler": "control.scheduler.cli",
    "controller-manager": "control.controllers.cli",
    "kubelet": "kubelet.cli",
    "kproxy": "kproxy.cli",
    "kdns": "kdns.cli",
    "up": "pocket.commands",
    "down": "pocket.commands",
    "status": "pocket.commands",
    "node": "pocket.commands",
    "restart": "pocket.commands",
    "client": "pocket.commands",
    "forward": "pocket.commands",
}


def _command(name: str) -> Command:
    module = importlib.import_module(COMMANDS[name])
    commands = getattr(module, "COMMANDS", None)
    if commands is not None:
        return commands[name]
    return module.COMMAND


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="pocket", description="pocketkube: a small but real Kubernetes")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        sub.add_parser(name, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command = _command(argv[0])
    sub_parser = argparse.ArgumentParser(prog=f"pocket {command.name}", description=command.help)
    add_common(sub_parser)
    command.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    setup_logging(args.verbose)
    return command.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
