"""The HA control plane (`pocket up --control-planes 3`) survives losing a control-plane node.

This file brings up its OWN cluster (prefix pkHA-, its own state and run dirs, kubeconfig and API port;
never the shared pk- cluster), kills the control-plane node whose scheduler leads, and checks that the
cluster keeps working: the API answers through the host forwarder, the scheduler and the controller
manager have a leader on a surviving node, the `kubernetes` Endpoints drop the dead API server, a new
pod is created, scheduled and runs, and Services keep answering. `pocket down` removes it all at the
end, even on failure. About three minutes (bring-up, the leases expiring, down), run once by `make test`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocket.commands import add_cluster_arguments, cluster_config
from pocket.config import CONTROLLER_MANAGER_HEALTH_PORT, SCHEDULER_HEALTH_PORT, ClusterConfig
from pocket.network import list_netns
from pocket.netns import nsenter_argv
from tests.e2e.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

FLAGS = [
    "--prefix", "pkHA-",
    "--state-dir", "/var/lib/pocketkube-pkHA",
    "--run-dir", "/run/pocketkube-pkHA",
    "--kubeconfig", "/tmp/pkHA-e2e.kubeconfig",
    "--api-port", "6473",
    "--control-planes", "3",
]
NAMESPACE = "pkha-e2e"
UP_TIMEOUT = 420
DOWN_TIMEOUT = 120
RECOVERY = 90  # seconds allowed for each check after the kill (leases are 15 s)
WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: busybox:latest
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def pocket(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pocket.cli", *args[:1], *FLAGS, *args[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def config() -> ClusterConfig:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return cluster_config(parser.parse_args(FLAGS))


CONFIG = config()


def kubectl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(CONFIG.kubeconfig), "--request-timeout=10s", *args],
        capture_output=True, text=True, input=stdin, timeout=30,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def get(*args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def in_node(node: str, *argv: str) -> str:
    """A command in a node's namespace; its output, or '' if it failed."""
    result = subprocess.run(nsenter_argv(CONFIG.node_netns(node), list(argv)), capture_output=True, text=True,
                            timeout=15)
    return result.stdout if result.returncode == 0 else ""


def leader_node(port: int, lease: str, among: list[str]) -> str | None:
    """The control plane whose scheduler (or controller manager) reports holding `lease` on /metrics."""
    leaders = []
    for name in among:
        metrics = in_node(name, "curl", "-s", "-m", "3", f"http://{CONFIG.node(name).ip}:{port}/metrics")
        if f'pocket_leader_election_master_status{{name="{lease}"}} 1.0' in metrics:
            leaders.append(name)
    assert len(leaders) <= 1, f"two {lease} leaders at once: {leaders}"
    return leaders[0] if leaders else None


def kubernetes_endpoints() -> list[str]:
    subsets = get("endpoints", "kubernetes", "-n", "default").get("subsets") or []
    return sorted(a["ip"] for s in subsets for a in s.get("addresses") or [])


def service_answers(node: str, ip: str) -> bool:
    return in_node(node, "curl", "-s", "-m", "3", f"http://{ip}/").startswith("web-")


def services_answer(worker: str, service_ip: str) -> None:
    """The web Service and the `kubernetes` Service (the API servers through kproxy) answer from a worker."""
    wait_for(f"the web Service answering from {worker}", lambda: service_answers(worker, service_ip), RECOVERY)
    wait_for(f"the kubernetes Service answering from {worker}", lambda: in_node(
        worker, "curl", "-sk", "-m", "3", "https://10.96.0.1/healthz") == "ok", RECOVERY)


@pytest.fixture(scope="module")
def ha_cluster() -> Iterator[ClusterConfig]:
    """A fresh 3-control-plane cluster, always taken down afterwards (and checked to be gone)."""
    assert not [ns for ns in list_netns() if ns.startswith(CONFIG.prefix)], "a pkHA- cluster is already up"
    try:
        up = pocket("up", timeout=UP_TIMEOUT)
        assert up.returncode == 0, f"pocket up --control-planes 3 failed:\n{up.stdout}\n{up.stderr}"
        yield CONFIG
    finally:
        down = pocket("down", timeout=DOWN_TIMEOUT)
        assert down.returncode == 0, f"pocket down failed:\n{down.stdout}\n{down.stderr}"
        assert not [ns for ns in list_netns() if ns.startswith(CONFIG.prefix)]
        assert not Path(CONFIG.state_dir).exists()


def test_killing_a_control_plane_node_leaves_the_cluster_working(ha_cluster: ClusterConfig) -> None:
    control_planes = [n.name for n in ha_cluster.control_planes]
    assert control_planes == ["control-plane", "control2", "control3"]
    ips = sorted(n.ip for n in ha_cluster.control_planes)
    nodes = {n["metadata"]["name"] for n in get("nodes")["items"]}
    assert nodes == {n.name for n in ha_cluster.nodes}
    assert wait_for("every API server in the kubernetes Endpoints", lambda: kubernetes_endpoints() == ips, 30)
    for name in control_planes:  # each etcd member serves: it has a leader, so the three form one cluster
        assert '"health":"true"' in in_node(name, "curl", "-s", "-m", "3", "http://127.0.0.1:2381/health")

    kubectl("create", "namespace", NAMESPACE)
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=WEB)
    service_ip = get("service", "web", "-n", NAMESPACE)["spec"]["clusterIP"]
    wait_for("the web Service answering from worker1", lambda: service_answers("worker1", service_ip), RECOVERY)

    victim = wait_for("a scheduler leader", lambda: leader_node(SCHEDULER_HEALTH_PORT, "kube-scheduler",
                                                                 control_planes), 60)
    stop = pocket("node", "stop", victim, timeout=UP_TIMEOUT)  # may queue behind another cluster's command
    assert stop.returncode == 0, stop.stdout + stop.stderr
    survivors = [name for name in control_planes if name != victim]

    wait_for("the API through the host forwarder", lambda: get("nodes")["items"], RECOVERY)
    new_scheduler = wait_for("a new scheduler leader", lambda: leader_node(
        SCHEDULER_HEALTH_PORT, "kube-scheduler", survivors), RECOVERY)
    assert new_scheduler in survivors
    assert wait_for("a controller-manager leader on a surviving node", lambda: leader_node(
        CONTROLLER_MANAGER_HEALTH_PORT, "kube-controller-manager", survivors), RECOVERY) in survivors
    live_ips = sorted(ha_cluster.node(name).ip for name in survivors)
    wait_for("the dead API server gone from the kubernetes Endpoints", lambda: kubernetes_endpoints() == live_ips,
             RECOVERY)

    kubectl("run", "after", "-n", NAMESPACE, "--image=busybox:latest", "--image-pull-policy=IfNotPresent",
            "--restart=Never", "--", "sleep", "3600")
    pod = wait_for("the new pod scheduled and running", lambda: (
        p if (p := get("pod", "after", "-n", NAMESPACE))["status"].get("phase") == "Running" else None), RECOVERY)
    assert pod["spec"]["nodeName"] in {"worker1", "worker2"}

    kubectl("scale", "deployment", "web", "-n", NAMESPACE, "--replicas=3")  # the controller manager acts
    wait_for("the Deployment scaled to 3 ready pods", lambda: get("deployment", "web", "-n", NAMESPACE)[
        "status"].get("readyReplicas") == 3, RECOVERY)
    for worker in ("worker1", "worker2"):
        services_answer(worker, service_ip)
