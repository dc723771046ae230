"""Reaching into named network namespaces from the host.

Two ways, for two needs: `nsenter_argv` runs a program inside a namespace
(the program stays there), and `entered` moves the calling thread in and
back out, so sockets it opens meanwhile live in the namespace (network
namespaces are per thread; a socket keeps the namespace it was made in).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def nsenter_argv(netns: str, argv: list[str] | tuple[str, ...]) -> list[str]:
    """`argv` run inside `netns`; nsenter execs it, so its pid is the program's pid."""
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def setns_fd(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def enter(netns: str) -> None:
    """Move the calling thread into `netns` for good (the forwarder does this once)."""
    path = netns_path(netns)
    if not path.exists():
        raise FileNotFoundError(f"network namespace {netns} does not exist ({path}); is the cluster up?")
    fd = os.open(path, os.O_RDONLY)
    try:
        setns_fd(fd)
    finally:
        os.close(fd)


@contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the block with this thread in `netns`, then return to where it was."""
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        enter(netns)
        try:
            yield
        finally:
            setns_fd(home)
    finally:
        os.close(home)


def netns_inode(netns: str) -> int | None:
    """The namespace's inode (what /proc/<pid>/ns/net points at), None if it does not exist."""
    try:
        return netns_path(netns).stat().st_ino
    except FileNotFoundError:
        return None
