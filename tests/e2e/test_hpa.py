"""HorizontalPodAutoscaler on the local cluster (issue 4's acceptance).

A Deployment whose pods burn cpu only while a flag file exists in the
container (the test creates and removes it through the node's Docker), an
HPA at 50% of a 100m request with 1 to 3 replicas and a 10 s scale-down
window.  Under load the HPA scales the Deployment up; after the load stops
it scales it back down.  Metrics come from the cluster's metrics.k8s.io API
(kubelet stats), decisions from the controller manager's HPA controller.

The burn is bounded three ways: the container's cpu limit (200m), a 150 s
timeout on each burn, and the test's own namespace, deleted at the end.
The seconds from load to scale-up and from quiet to scale-down are printed, not asserted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import get_json, pod_exec, running_pods, wait_for

pytestmark = pytest.mark.e2e

APP = "hpa-burn"
FLAG = "/tmp/burn"
# Burn while the flag exists (at most 150 s per flag, which it then removes); idle otherwise.
BURNER = (
    f"while :; do if [ -f {FLAG} ]; then timeout 150 sh -c 'while [ -f {FLAG} ]; do :; done'; rm -f {FLAG}; fi; "
    "sleep 1; done"
)
SCALE_TIMEOUT = 240.0


def manifests(namespace: str) -> list[dict[str, Any]]:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "burn",
                            "image": "busybox",
                            "command": ["sh", "-c", BURNER],
                            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}},
                        }
                    ],
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
        },
    }
    return [deployment, hpa]


@pytest.fixture
def namespace(cluster: Any) -> Iterator[str]:
    name = f"pkt-hpa-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")
        wait_for(f"namespace {name} to be gone", lambda: name not in cluster.kubectl("get", "namespaces", "-o", "name"))


def replicas(cluster: Any, namespace: str) -> int:
    return int(get_json(cluster, "deployment", APP, "-n", namespace)["spec"]["replicas"])


def hpa_status(cluster: Any, namespace: str) -> dict[str, Any]:
    return dict(get_json(cluster, "hpa", APP, "-n", namespace).get("status") or {})


def rescale_messages(cluster: Any, namespace: str) -> list[str]:
    return [
        e["message"]
        for e in get_json(cluster, "events", "-n", namespace)["items"]
        if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler" and e["reason"] == "SuccessfulRescale"
    ]


def test_hpa_scales_up_under_load_and_back_down(cluster: Any, namespace: str, tmp_path: Path) -> None:
    groups = json.loads(cluster.kubectl("get", "--raw", "/apis"))["groups"]
    assert "metrics.k8s.io" in {g["name"] for g in groups}, "the cluster's API server serves no metrics.k8s.io"
    for i, doc in enumerate(manifests(namespace)):
        (tmp_path / f"{i}-{doc['kind'].lower()}.json").write_text(json.dumps(doc))
    cluster.kubectl("apply", "-f", str(tmp_path))
    (pod,) = wait_for("the first pod running", lambda: running_pods(cluster, f"app={APP}", namespace), timeout=120)
    first = pod["metadata"]["name"]

    # Idle: the HPA reads the metrics API and sees no reason to scale.
    status = wait_for(
        "the HPA to report cpu utilization",
        lambda: (s := hpa_status(cluster, namespace)).get("currentMetrics") and s,
        timeout=SCALE_TIMEOUT,
    )
    assert status["currentMetrics"][0]["resource"]["current"]["averageUtilization"] < 50
    assert replicas(cluster, namespace) == 1

    pod_exec(cluster, first, ["touch", FLAG], namespace)
    load_started = time.monotonic()
    wait_for("the HPA to scale up to 3", lambda: replicas(cluster, namespace) == 3, timeout=SCALE_TIMEOUT)
    print(f"\nHPA: 1 -> 3 replicas {time.monotonic() - load_started:.0f} s after the load started")
    up = [m for m in rescale_messages(cluster, namespace) if m.endswith("above target")]
    assert up and all(m.endswith("reason: cpu resource utilization (percentage of request) above target") for m in up)
    conditions = {c["type"]: c for c in hpa_status(cluster, namespace)["conditions"]}
    assert conditions["ScalingActive"]["status"] == "True"
    wait_for("3 running pods", lambda: len(running_pods(cluster, f"app={APP}", namespace)) == 3, timeout=120)

    pod_exec(cluster, first, ["rm", "-f", FLAG], namespace)
    load_stopped = time.monotonic()
    wait_for("the HPA to scale back down to 1", lambda: replicas(cluster, namespace) == 1, timeout=SCALE_TIMEOUT)
    print(f"HPA: 3 -> 1 replicas {time.monotonic() - load_stopped:.0f} s after the load stopped")
    assert "New size: 1; reason: All metrics below target" in rescale_messages(cluster, namespace)
    status = hpa_status(cluster, namespace)
    assert status["desiredReplicas"] == 1 and status["lastScaleTime"]
