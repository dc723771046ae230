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

FINDINGS = [
    "Without a readiness probe a replacement backend joins the Endpoints when its process starts, before httpd "
    "listens: one refused connection in a pod-deletion run. The suite's backends declare a readiness probe "
    "(tests/e2e/chaos/web.yaml), as any Service that wants zero failed requests must.",
    "A restarted kdns binds port 53 before its first sync from the API server and answers SERVFAIL for names it "
    "does not know yet (about a second): a client that asks once fails (seen once, restarting worker1's kdns). "
    "The client retries SERVFAIL on its second attempt as glibc does, and the Service's random choice usually "
    "sends it to the other kdns. CoreDNS instead holds its answers until the first sync (up to 5 s); kdns "
    "could do the same.",
    "A dead or cut-off worker costs a few requests (timeouts to its backends, an occasional refused "
    "connection) until the controllers take its backends out of the Endpoints (the notes column).",
]


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
        write_report(Path(report), collected, command, GOALS, FINDINGS)
