"""The fault suite's fixtures: the `web` Service it sends traffic to, and the report of every fault.

CHAOS_FULL=1 runs every fault with longer settling (what `make chaos`
does); otherwise the shortened form runs a few faults, for `make test`.
CHAOS_REPORT=<path> writes the table of results there at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.chaos.support import FaultResult, write_report
from tests.e2e.helpers import running_pods, wait_for

NAMESPACE = "chaos"
WEB_MANIFEST = Path(__file__).with_name("web.yaml")
FULL = os.environ.get("CHAOS_FULL") == "1"
GOALS = {
    "zero failed requests": "pod deletion, rolling update, every component restart, a pod's OOM kill",
    "a worker's death and partition": "its pods out of the Endpoints within 10 s, "
    "replacements Running within 30 s (issue 4); the failed requests are the cost, reported",
    "no object lost or changed": "for every fault",
}


@pytest.fixture(scope="module")
def web(cluster: Any) -> Iterator[dict[str, Any]]:
    """3 busybox HTTP backends (with a readiness probe) on the workers behind `web`, in the suite's own namespace."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(WEB_MANIFEST))
        wait_ready_backends(cluster)
        yield json.loads(cluster.kubectl("get", "service", "web", "-n", NAMESPACE, "-o", "json"))
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
        wait_for(f"namespace {NAMESPACE} to be gone",
                 lambda: f"namespace/{NAMESPACE}" not in cluster.kubectl("get", "namespaces", "-o", "name").split(),
                 timeout=120)


def endpoint_ips(cluster: Any) -> set[str]:
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "web", "-n", NAMESPACE, "-o", "json"))
    return {a["ip"] for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []}


def wait_ready_backends(cluster: Any, timeout: float = 120) -> list[dict[str, Any]]:
    """3 Running, Ready backends, exactly the ready addresses of the Endpoints; the backends."""

    def ready() -> list[dict[str, Any]] | None:
        pods = running_pods(cluster, "app=web", NAMESPACE)
        if len(pods) == 3 and endpoint_ips(cluster) == {p["status"]["podIP"] for p in pods}:
            return pods
        return None

    return wait_for("3 ready web backends in the Endpoints", ready, timeout=timeout)


@pytest.fixture(scope="module")
def results() -> Iterator[list[FaultResult]]:
    """Every fault's result, written as the report table when CHAOS_REPORT is set (even if a fault failed)."""
    collected: list[FaultResult] = []
    yield collected
    report = os.environ.get("CHAOS_REPORT")
    if report and collected:
        command = os.environ.get("CHAOS_COMMAND") or shlex.join([Path(sys.executable).name, *sys.argv])
        write_report(Path(report), collected, command, GOALS)
