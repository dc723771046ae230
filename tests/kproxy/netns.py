"""Network namespaces the kproxy tests make (`pkt-kproxy-…`) and always remove."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def run(*command: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)


def in_ns(ns: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", ns, *command, check=check)


def processes_in(ns: str) -> list[str]:
    """The pids of the processes running in `ns`."""
    return run("ip", "netns", "pids", ns).stdout.split()


@contextmanager
def namespaces(*roles: str) -> Iterator[list[str]]:
    """One new namespace per role, named `pkt-kproxy-<random>-<role>`; all deleted on exit."""
    tag = secrets.token_hex(3)
    made: list[str] = []
    try:
        for role in roles:
            name = f"pkt-kproxy-{tag}-{role}"
            run("ip", "netns", "add", name)
            made.append(name)
            in_ns(name, "ip", "link", "set", "lo", "up")
        yield made
    finally:
        for name in made:
            run("ip", "netns", "del", name, check=False)
