"""Processes tests start (etcd, API servers, controllers): waiting until one answers, and stopping it."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def wait_ready(
    ready: Callable[[], object], what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    """Poll `ready` (connection and TLS errors count as not yet) until truthy; RuntimeError with the log's
    tail if the process exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if ready():
                return
        except (OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
