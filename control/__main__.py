"""`python -m control <apiserver|scheduler|controller-manager> [flags]`."""

from __future__ import annotations

import importlib
import sys

from control.cli_support import main_for

# component -> module defining COMMAND, imported only when chosen
COMPONENTS = {
    "apiserver": "control.apiserver.cli",
    "scheduler": "control.scheduler.cli",
    "controller-manager": "control.controllers.cli",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMPONENTS:
        print(f"usage: python -m control {{{','.join(COMPONENTS)}}} [flags]", file=sys.stderr)
        return 2
    return main_for(importlib.import_module(COMPONENTS[argv[0]]).COMMAND, argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
