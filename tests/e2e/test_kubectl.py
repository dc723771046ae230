"""`kubectl exec` on the local cluster: kubectl -> API server -> the pod's kubelet -> its node's dockerd."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import running_pods, wait_for

pytestmark = pytest.mark.e2e

POD = "exec-e2e"
MANIFEST = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": POD, "labels": {"app": POD}},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "shell", "image": "busybox", "command": ["sleep", "3600"]}],
    },
}


def kubectl_status(cluster: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl whose exit code the test inspects (cluster.kubectl fails on any non-zero code)."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


@pytest.fixture(scope="module")
def shell_pod(cluster: Any) -> Iterator[str]:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", "-"],
        input=json.dumps(MANIFEST),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "created" in proc.stdout or "configured" in proc.stdout or "unchanged" in proc.stdout
    try:
        wait_for("the exec pod to run", lambda: running_pods(cluster, f"app={POD}"), timeout=120)
        yield POD
    finally:
        cluster.kubectl("delete", "pod", POD, "--wait=true", "--timeout=60s")


def test_exec_reaches_a_service_from_inside_the_pod(cluster: Any, shell_pod: str) -> None:
    # the kubernetes Service's 443 is the API server's HTTPS port, through kproxy and kdns; busybox's
    # TLS client is too old for the API server's (no ECDSA, no SHA-2 signature algorithms), so a TCP connect it is
    connected = kubectl_status(cluster, "exec", shell_pod, "--", "timeout", "10", "nc", "kubernetes.default.svc", "443")
    assert connected.returncode == 0, connected.stderr
    refused = kubectl_status(cluster, "exec", shell_pod, "--", "timeout", "10", "nc", "kubernetes.default.svc", "444")
    assert refused.returncode != 0  # a port the Service does not have


def test_exec_exit_code_stderr_and_stdin(cluster: Any, shell_pod: str) -> None:
    failed = kubectl_status(cluster, "exec", shell_pod, "--", "sh", "-c", "echo bad >&2; exit 5")
    assert failed.returncode == 5, failed.stderr
    assert "bad" in failed.stderr
    echoed = kubectl_status(cluster, "exec", "-i", shell_pod, "--", "sh", "-c", "tr a-z A-Z", stdin="pocket\n")
    assert (echoed.returncode, echoed.stdout) == (0, "POCKET\n"), echoed.stderr
