"""`pocket controller-manager` as a real process: flags, /healthz, /metrics, clear errors on bad flags."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from tests.conftest import free_port
from tests.controllers.helpers import eventually, make_namespace


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"process exited with {process.returncode}: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


async def test_controller_manager_reconciles_and_serves_health_and_metrics(apiserver):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pocket.cli",
            "controller-manager",
            "--api-server",
            apiserver.url,
            "--cluster-cidr",
            "10.244.0.0/16",
            "--node-cidr-mask-size",
            "24",
            "--health-port",
            str(port),
            "--node-monitor-grace-period",
            "20",
            "--pod-eviction-timeout",
            "30",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/healthz", process) == "ok"
        namespace = await make_namespace(apiserver.client)
        service = {
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"selector": {"app": "probe"}, "ports": [{"port": 80}]},
        }
        await apiserver.client.create("services", service, namespace)

        async def endpoints():
            items = (await apiserver.client.list("endpoints", namespace))["items"]
            return items

        await eventually(endpoints, what="the process to write Endpoints")
        body = wait_for_http(f"http://127.0.0.1:{port}/metrics", process)
        assert 'pocket_controller_reconciles_total{controller="endpoints",result="ok"}' in body
        assert 'pocket_controller_queue_depth{controller="endpoints"}' in body
    finally:
        process.terminate()
        process.wait(10)


def test_bad_flags_are_named():
    result = subprocess.run(
        [sys.executable, "-m", "control.controllers", "--cluster-cidr", "10.244.0.0/16", "--node-cidr-mask-size", "12"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "--node-cidr-mask-size 12" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "control.controllers", "--pod-eviction-timeout", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "--pod-eviction-timeout must be positive" in result.stderr
