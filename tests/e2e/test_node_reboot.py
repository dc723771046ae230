"""A rebooted node brings its pods back (issue 5's restart safety), on the local cluster.

`pocket node stop worker1` crashes the node as a power cut would: every
process in its namespace dies (dockerd, containerd, the containers, the
kubelet, kproxy), and eth0 goes down.  `pocket node start worker1` boots it
again a moment later, well inside the node-lifecycle grace period, so the
pods are not evicted.  As in Kubernetes, the kubelet then finds the pods'
sandboxes dead and starts new ones (new network namespace, an address
from IPAM), recreates the containers with restartCount 1, and the pods
serve through their Services again, with nothing stale left in the
node's Docker or IPAM.  The test works in its own namespace, deleted at
the end; the node is started again even when the test fails.
"""

from __future__ import annotations

import json
import time
from functools import partial
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet.runtime import LABEL_POD_NAMESPACE, LABEL_POD_UID, LABEL_TYPE, TYPE_CONTAINER, TYPE_SANDBOX
from tests.e2e.conftest import pocket
from tests.e2e.helpers import get_json, pod_exec, wait_for

pytestmark = pytest.mark.e2e

NODE = "worker1"
REBOOT_GAP = 1.0  # seconds the node stays down: with stop and start, well inside the 8 s node-monitor grace
REQUESTS = 5


def server_container() -> dict[str, Any]:
    """busybox httpd answering with the pod's name."""
    return {
        "name": "httpd",
        "image": "busybox",
        "command": ["sh", "-c", 'mkdir -p /www && echo "$POD_NAME" > /www/index.html && exec httpd -f -p 8080 -h /www'],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }


def pod_spec() -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": 1,
        "nodeSelector": {"kubernetes.io/hostname": NODE},
        "containers": [server_container()],
    }


def manifests() -> list[dict[str, Any]]:
    service = lambda app: {  # noqa: E731
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "rb-web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "rb-web"}},
                "template": {"metadata": {"labels": {"app": "rb-web"}}, "spec": pod_spec()},
            },
        },
        service("rb-web"),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "rb-bare", "labels": {"app": "rb-bare"}},
            "spec": pod_spec(),
        },
        service("rb-bare"),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "rb-client"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "nodeSelector": {"kubernetes.io/hostname": "control-plane"},
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
                "containers": [{"name": "shell", "image": "busybox", "command": ["sleep", "3600"]}],
            },
        },
    ]


@pytest.fixture
def namespace(cluster: Any, tmp_path: Path) -> Iterator[str]:
    """A namespace holding the manifests above; deleted (and waited for) at the end."""
    name = f"node-reboot-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        for index, obj in enumerate(manifests()):
            (tmp_path / f"{index}.json").write_text(json.dumps(obj))
        cluster.kubectl("apply", "-n", name, "-f", str(tmp_path))
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")
        gone = lambda: f"namespace/{name}" not in cluster.kubectl("get", "namespaces", "-o", "name").split()  # noqa: E731
        wait_for(f"namespace {name} to be gone", gone, timeout=120)


def ready_pods(cluster: Any, namespace: str) -> dict[str, dict[str, Any]] | None:
    """rb-web's and rb-bare's pods by app once both are Running and Ready (else None)."""
    found: dict[str, dict[str, Any]] = {}
    for pod in get_json(cluster, "pods", "-n", namespace, "-l", "app in (rb-web,rb-bare)")["items"]:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True":
            found[pod["metadata"]["labels"]["app"]] = pod
    return found if set(found) == {"rb-web", "rb-bare"} else None


def container_id(pod: dict[str, Any]) -> str:
    (status,) = pod["status"]["containerStatuses"]
    return str(status["containerID"])


def fetch(cluster: Any, namespace: str, cluster_ip: str) -> list[str]:
    """REQUESTS answers from the Service at cluster_ip, asked from the client pod on the control plane."""
    script = f"for i in $(seq {REQUESTS}); do timeout 5 wget -qO- http://{cluster_ip}/ || echo FAILED; done"
    return pod_exec(cluster, "rb-client", ["sh", "-c", script], namespace=namespace).split()


def serves(cluster: Any, namespace: str, cluster_ip: str, pod_name: str) -> bool:
    return fetch(cluster, namespace, cluster_ip) == [pod_name] * REQUESTS


def node_containers(cluster: Any, namespace: str) -> list[Any]:
    """All containers (running or not) of this namespace's pods in the node's Docker."""
    return list(cluster.docker(NODE).containers.list(all=True, filters={"label": f"{LABEL_POD_NAMESPACE}={namespace}"}))


def ipam_owners(cluster: Any) -> list[str]:
    """The pod uid of every address the node's IPAM has handed out."""
    ipam = cluster.config.node_dir(NODE) / "kubelet" / "ipam"
    return [f.read_text().strip() for f in ipam.glob("*/*") if f.name != "last_reserved_ip"]


@pytest.fixture
def reboot(cluster: Any) -> Iterator[Any]:
    """`reboot()` crashes the node and boots it after REBOOT_GAP; the node is started again if the test fails."""
    state = {"stopped": False}

    def run() -> None:
        began = time.monotonic()
        stopped = pocket("node", "stop", NODE, timeout=60)
        state["stopped"] = True
        assert stopped.returncode == 0, f"pocket node stop: {stopped.stdout}{stopped.stderr}"
        time.sleep(REBOOT_GAP)
        started = pocket("node", "start", NODE, timeout=180)
        assert started.returncode == 0, f"pocket node start: {started.stdout}{started.stderr}"
        state["stopped"] = False
        print(f"{NODE} down and back (Ready) in {time.monotonic() - began:.1f}s:\n{stopped.stdout}{started.stdout}")

    try:
        yield run
    finally:
        if state["stopped"]:
            pocket("node", "start", NODE, timeout=180)
        cluster.close()  # Docker clients of the node's old dockerd


def test_rebooted_node_brings_its_pods_back(cluster: Any, namespace: str, reboot: Any) -> None:
    before = wait_for("rb-web and rb-bare Running and Ready", lambda: ready_pods(cluster, namespace), timeout=120)
    assert {pod["spec"]["nodeName"] for pod in before.values()} == {NODE}
    wait_for(
        "the client pod",
        lambda: get_json(cluster, "pod", "rb-client", "-n", namespace)["status"].get("phase") == "Running",
    )
    ips = {app: get_json(cluster, "service", app, "-n", namespace)["spec"]["clusterIP"] for app in before}
    for app, pod in before.items():
        name = pod["metadata"]["name"]
        wait_for(
            f"{app} to answer through its Service", partial(serves, cluster, namespace, ips[app], name), timeout=60
        )
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0

    reboot()

    def back() -> dict[str, dict[str, Any]] | None:
        pods = ready_pods(cluster, namespace)
        if pods is None or any(container_id(pods[app]) == container_id(before[app]) for app in pods):
            return None
        return pods

    after = wait_for("both pods Running and Ready again with new containers", back, timeout=120)
    for app, pod in after.items():
        # the same pods (nothing evicted or replaced), on the same node, restarted once with their sandbox
        assert pod["metadata"]["uid"] == before[app]["metadata"]["uid"], f"{app} was replaced, not restarted"
        assert pod["spec"]["nodeName"] == NODE
        (status,) = pod["status"]["containerStatuses"]
        assert status["restartCount"] == 1, f"{app}: {status}"
        assert status["ready"] and "running" in status["state"]
        assert pod["status"]["podIP"]
        name = pod["metadata"]["name"]
        wait_for(
            f"{app} to answer through its Service again",
            partial(serves, cluster, namespace, ips[app], name),
            timeout=60,
        )
        assert fetch(cluster, namespace, ips[app]) == [name] * REQUESTS

    # Nothing stale: per pod a running sandbox and container, and of the dead ones only the previous
    # container (kept for `logs --previous`) and its sandbox, as Kubernetes keeps them; all of them
    # known pods'; the pod IP is the one IPAM holds for it (and the only one); no two pods share one.
    uids = {pod["metadata"]["uid"]: app for app, pod in after.items()}
    containers = node_containers(cluster, namespace)
    assert {c.labels[LABEL_POD_UID] for c in containers} <= set(uids), "containers of pods that no longer exist"
    for uid, app in uids.items():
        mine = [c for c in containers if c.labels[LABEL_POD_UID] == uid]
        kinds = sorted((c.labels[LABEL_TYPE], c.status == "running") for c in mine)
        wanted = sorted((kind, running) for kind in (TYPE_CONTAINER, TYPE_SANDBOX) for running in (False, True))
        assert kinds == wanted, f"{app}: {[(c.name, c.status) for c in mine]}"
        (previous,) = [c for c in mine if c.labels[LABEL_TYPE] == TYPE_CONTAINER and c.status != "running"]
        assert container_id(before[app]) == f"docker://{previous.id}"
        assert ipam_owners(cluster).count(uid) == 1, f"{app} holds {ipam_owners(cluster).count(uid)} addresses"
        eth0 = pod_exec(
            cluster, after[app]["metadata"]["name"], ["ip", "-4", "-o", "addr", "show", "eth0"], namespace=namespace
        )
        assert f" {after[app]['status']['podIP']}/" in eth0, eth0
    assert after["rb-web"]["status"]["podIP"] != after["rb-bare"]["status"]["podIP"]
    node = get_json(cluster, "node", NODE)
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
