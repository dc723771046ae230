"""`pocket down --keep` then `pocket up` brings the same cluster back (issue 10's persistence).

The test brings up its OWN cluster (prefix pkP-, its own state and run dirs,
kubeconfig and API port), never the shared `pk-` one. It creates a
Deployment, a Service, a ConfigMap and a client pod, stops the cluster with
`down --keep` (nothing of it may keep running: processes, namespaces, mounts,
container cgroups, host iptables rules, the API port), starts it again with
`up`, and checks that the objects are the same ones (same uids) and that the
pods run again and answer through their Service; a plain `down` then removes
everything, state included. The cluster is removed at the end even on failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pocket.cluster import container_ids
from pocket.commands import add_cluster_arguments, cluster_config
from pocket.config import ClusterConfig
from pocket.netns import netns_inode
from tests.e2e.conftest import LocalCluster, host_iptables
from tests.e2e.helpers import get_json, pod_exec, running_pods, wait_for
from tests.e2e.test_down import api_port_open, snapshot, still_alive

pytestmark = pytest.mark.e2e

FLAGS = ["--prefix", "pkP-", "--state-dir", "/var/lib/pocketkube-P", "--run-dir", "/run/pocketkube-P",
         "--kubeconfig", "/tmp/pkP.kubeconfig", "--api-port", "6467"]


def config_from(flags: list[str]) -> ClusterConfig:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return cluster_config(parser.parse_args(flags))


CONFIG = config_from(FLAGS)
NAMESPACE = "persist"
UP_TIMEOUT = 420
REQUESTS = 4


def pocket(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`pocket <command>` on this test's own cluster."""
    argv = [sys.executable, "-m", "pocket.cli", args[0], *FLAGS, *args[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def manifests() -> list[dict[str, Any]]:
    web = {
        "name": "httpd",
        "image": "busybox",
        "command": ["sh", "-c", 'mkdir -p /www && echo "$GREETING" > /www/index.html && exec httpd -f -p 8080 -h /www'],
        "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "greeting", "key": "text"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting"}, "data": {"text": "kept"}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [web]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "shell", "image": "busybox", "command": ["sleep", "3600"]}],
            },
        },
    ]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A fresh pkP- cluster (whatever an interrupted earlier run left is removed first), removed at the end."""
    cleared = pocket("down", timeout=120)
    assert cleared.returncode == 0, f"`pocket down` of leftovers failed:\n{cleared.stdout}{cleared.stderr}"
    iptables_before = host_iptables()
    try:
        up = pocket("up")
        assert up.returncode == 0, f"`pocket up` failed:\n{up.stdout}{up.stderr}"
        local = LocalCluster(CONFIG, started_here=True, host_iptables_before_up=iptables_before)
        yield local
        local.close()
    finally:
        pocket("down", timeout=120)


def kept_objects(cluster: LocalCluster) -> dict[str, str]:
    """kind/name -> uid of the objects the test made (and the ReplicaSet the Deployment made)."""
    items = get_json(cluster, "deployment,replicaset", "-n", NAMESPACE)["items"]
    items += get_json(cluster, "service/web", "configmap/greeting", "pod/client", "-n", NAMESPACE)["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"] for o in items}


def answers(cluster: LocalCluster, cluster_ip: str) -> list[str]:
    script = f"for i in $(seq {REQUESTS}); do timeout 5 wget -qO- http://{cluster_ip}/ || echo FAILED; done"
    return pod_exec(cluster, "client", ["sh", "-c", script], namespace=NAMESPACE).split()


def serving(cluster: LocalCluster) -> bool:
    """Both web pods Running and Ready, the client Running, and the Service answering from the ConfigMap."""
    if len(running_pods(cluster, "app=web", NAMESPACE)) != 2:
        return False
    if get_json(cluster, "pod", "client", "-n", NAMESPACE)["status"].get("phase") != "Running":
        return False
    cluster_ip = get_json(cluster, "service", "web", "-n", NAMESPACE)["spec"]["clusterIP"]
    return answers(cluster, cluster_ip) == ["kept"] * REQUESTS


def test_down_keep_then_up_brings_the_same_cluster_back(own_cluster: LocalCluster, tmp_path: Path) -> None:
    cluster = own_cluster
    cluster.kubectl("create", "namespace", NAMESPACE)
    for index, obj in enumerate(manifests()):
        (tmp_path / f"{index}.json").write_text(json.dumps(obj))
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(tmp_path))
    wait_for("the web pods to serve through their Service", partial(serving, cluster), timeout=180)
    before_objects = kept_objects(cluster)
    assert {"Deployment/web", "Service/web", "ConfigMap/greeting", "Pod/client"} <= set(before_objects)
    assert any(key.startswith("ReplicaSet/web-") for key in before_objects)

    inodes = {inode for name in CONFIG.all_netns() if (inode := netns_inode(name)) is not None}
    containers = container_ids(CONFIG, [node.name for node in CONFIG.nodes])
    before = snapshot(CONFIG, inodes, containers)
    assert before["netns"] == set(CONFIG.all_netns()) and before["mounts"] and before["processes"]
    cluster.close()

    down = pocket("down", "--keep", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    after = snapshot(CONFIG, inodes, containers)
    assert after["netns"] == set()
    assert still_alive(before["processes"]) == set()
    assert after["processes"] == set()
    assert after["mounts"] == []
    assert after["cgroups"] == []
    assert after["iptables"] == cluster.host_iptables_before_up
    assert not api_port_open(CONFIG.api_port)
    assert not CONFIG.run_dir.exists()
    # what makes it the same cluster stays: etcd's data, the PKI, each node's Docker data root and kubelet dir
    assert (CONFIG.etcd_dir / "member").is_dir()
    assert (CONFIG.state_dir / "pki" / "ca.crt").is_file()
    for node in CONFIG.nodes:
        assert (CONFIG.node_dir(node.name) / "docker" / "containers").is_dir()
        assert (CONFIG.node_dir(node.name) / "kubelet").is_dir()
    assert CONFIG.kubeconfig.is_file()

    up = pocket("up")
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for("the web pods to serve through their Service again", partial(serving, cluster), timeout=180)
    after_objects = kept_objects(cluster)
    for key in ("Deployment/web", "Service/web", "ConfigMap/greeting", "Pod/client"):
        assert after_objects[key] == before_objects[key], f"{key} is not the same object after `up`"
    assert {k: v for k, v in after_objects.items() if k.startswith("ReplicaSet/")} == {
        k: v for k, v in before_objects.items() if k.startswith("ReplicaSet/")
    }, "the Deployment made a new ReplicaSet"
    cluster.close()

    gone = pocket("down", timeout=120)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not CONFIG.state_dir.exists() and not CONFIG.run_dir.exists() and not CONFIG.kubeconfig.exists()
    assert cluster_namespaces_left() == set()
    assert host_iptables() == cluster.host_iptables_before_up


def cluster_namespaces_left() -> set[str]:
    return snapshot(CONFIG, set(), set())["netns"]
