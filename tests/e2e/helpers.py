"""Helpers for end-to-end tests against the shared local cluster."""

from __future__ import annotations

import json
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

MANIFESTS = Path(__file__).parent / "manifests"

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0, interval: float = 1.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as err:  # the cluster is converging; keep the last reason
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error}")


def get_json(cluster: Any, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def pod_exec_status(
    cluster: Any, pod: str, cmd: list[str], namespace: str = "default", container: str | None = None
) -> tuple[int, str]:
    """Run a command in a pod's container through its node's Docker engine; return (exit code, output).

    (`kubectl exec` belongs to the API issue; this goes to the runtime directly.)
    """
    obj = get_json(cluster, "pod", pod, "-n", namespace)
    node = obj["spec"]["nodeName"]
    container = container or obj["spec"]["containers"][0]["name"]
    labels = [
        f"io.kubernetes.pod.name={pod}",
        f"io.kubernetes.pod.namespace={namespace}",
        f"io.kubernetes.container.name={container}",
    ]
    found = cluster.docker(node).containers.list(filters={"label": labels})
    assert found, f"no running container {container!r} of pod {namespace}/{pod} on node {node}"
    exit_code, output = found[0].exec_run(cmd)
    return exit_code, output.decode(errors="replace")


def pod_exec(cluster: Any, pod: str, cmd: list[str], namespace: str = "default", container: str | None = None) -> str:
    """Like pod_exec_status, but the command must succeed."""
    exit_code, text = pod_exec_status(cluster, pod, cmd, namespace, container)
    assert exit_code == 0, f"{cmd} in {pod} exited {exit_code}: {text}"
    return text


def running_pods(cluster: Any, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
    """Pods matching `selector` that are Running, Ready and not terminating."""
    pods = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    out = []
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if (
            pod.get("status", {}).get("phase") == "Running"
            and conditions.get("Ready") == "True"
            and not pod["metadata"].get("deletionTimestamp")
        ):
            out.append(pod)
    return out
