"""Detached processes with pid files, and finding processes by network namespace.

A pid file holds the pid and the process's start time (field 22 of
/proc/<pid>/stat), so a recycled pid is never mistaken for the process
`pocket up` started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Started:
    """A process just launched: its pid, the Popen (to see it exit early) and its log."""

    pid: int
    popen: subprocess.Popen[bytes]
    log_file: Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return [raw[: raw.index(" ")]] + ["comm"] + raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[21]) if fields else None


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: its exit status is for its parent's Popen to collect)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[2] not in ("Z", "X")


def start(argv: list[str], log_file: Path, pid_file: Path, env: dict[str, str] | None = None) -> Started:
    """Launch `argv` detached (own session, no stdin, output appended to `log_file`) and record it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    pid_file.write_text(f"{popen.pid} {start_time(popen.pid) or 0}\n")
    return Started(popen.pid, popen, log_file)


def read_pid(pid_file: Path) -> int | None:
    """The recorded process's pid if it still runs (same start time), else None."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    if not alive(pid):
        return None
    if int(started) and start_time(pid) != int(started):
        return None
    return pid


def clear_stale(pid_file: Path) -> bool:
    """Remove a program's own plain pid file if the process it names is gone; True if removed."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    if alive(pid):
        return False
    pid_file.unlink(missing_ok=True)
    return True


def is_running(pid_file: Path) -> bool:
    return read_pid(pid_file) is not None


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until none of `pids` is alive or `timeout` passes; return those still alive."""
    deadline = time.monotonic() + timeout
    left = {pid for pid in pids if alive(pid)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid for pid in left if alive(pid)}
    return left


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(pid_file: Path, timeout: float = 10.0) -> int | None:
    """SIGTERM the recorded process, SIGKILL it after `timeout`; remove the pid file. Returns the pid."""
    pid = read_pid(pid_file)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        if wait_gone({pid}, timeout):
            _signal(pid, signal.SIGKILL)
            wait_gone({pid}, 5.0)
    pid_file.unlink(missing_ok=True)
    return pid


def kill(pids: set[int], timeout: float = 10.0) -> set[int]:
    """SIGKILL every pid and wait for them to go; return any that would not."""
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return wait_gone(pids, timeout)


def all_pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def net_inode(pid: int) -> int | None:
    try:
        link = os.readlink(PROC / str(pid) / "ns" / "net")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(link[link.index("[") + 1 : -1])


def in_netns(inodes: set[int]) -> set[int]:
    """Pids of processes whose network namespace is one of `inodes`."""
    return {pid for pid in all_pids() if net_inode(pid) in inodes and alive(pid)}


def with_descendants(pids: set[int]) -> set[int]:
    """`pids` and every process below them (container processes sit in their own namespaces under shims)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[3]), []).append(pid)
    found = set(pids)
    stack = list(pids)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found



def in_containers(container_ids: set[str]) -> set[int]:
    """Pids in the cgroups of these Docker containers: container processes, even ones orphaned by a dead shim."""
    if not container_ids:
        return set()
    found = set()
    for pid in all_pids():
        try:
            lines = (PROC / str(pid) / "cgroup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        names = {line.rsplit("/", 1)[-1] for line in lines}
        if names & container_ids and alive(pid):
            found.add(pid)
    return found
