"""`pocket scheduler` as a real process: /healthz and /metrics, and a clear error on a bad flag."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import free_port
from tests.controllers.test_cli import wait_for_http


def test_scheduler_serves_health_and_metrics(apiserver_module):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pocket.cli",
            "scheduler",
            "--api-server",
            apiserver_module.url,
            "--health-port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/healthz", process) == "ok"
        assert "pocket_scheduler_schedule_attempts" in wait_for_http(f"http://127.0.0.1:{port}/metrics", process)
    finally:
        process.terminate()
        process.wait(10)


def test_bad_retry_interval_is_named():
    result = subprocess.run(
        [sys.executable, "-m", "control.scheduler", "--retry-interval", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "--retry-interval must be positive" in result.stderr
