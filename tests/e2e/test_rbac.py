"""Authorization on the local cluster (`--authorization-mode Node,RBAC`, NodeRestriction): a kubelet reads
the Secret of its own pod, a node's real certificate cannot reach another node's objects or Secrets its pods
do not use, and a user gets what a RoleBinding grants and Kubernetes' 403 for the rest.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control.api.errors import ApiError
from control.client import Client
from pocket.certs import node_identity
from pocket.cluster import security
from tests.e2e.helpers import get_json, pod_exec, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def namespace(cluster: Any) -> Iterator[str]:
    name = f"pkt-rbac-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def _node_client(cluster: Any, node: str) -> Client:
    """A client holding the node's own certificate (what its kubelet and kproxy use), through the host forwarder."""
    paths = security(cluster.config)
    assert paths is not None, "the cluster under test runs without TLS: `pocket down` and `pocket up` it"
    context = ssl.create_default_context(cafile=str(paths.ca))
    identity = node_identity(node)
    context.load_cert_chain(paths.cert(identity), paths.key(identity))
    return Client(f"https://127.0.0.1:{cluster.config.api_port}", ssl_context=context)


def _kubectl(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl whose failure is the answer (`auth can-i` exits 1 for "no"); the caller checks it."""
    command = ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_kubelet_mounts_its_pods_secret(cluster: Any, namespace: str, tmp_path: Path) -> None:
    cluster.kubectl("create", "secret", "generic", "mounted", "--from-literal=word=swordfish", "-n", namespace)
    container = {
        "name": "sh",
        "image": "busybox",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "s", "mountPath": "/s"}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader", "namespace": namespace},
        "spec": {
            "nodeName": "worker1",
            "containers": [container],
            "volumes": [{"name": "s", "secret": {"secretName": "mounted"}}],
        },
    }
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod))
    cluster.kubectl("apply", "-f", str(path))
    wait_for(
        "the pod with a Secret volume to run",
        lambda: get_json(cluster, "pod", "reader", "-n", namespace)["status"].get("phase") == "Running",
    )
    assert pod_exec(cluster, "reader", ["cat", "/s/word"], namespace) == "swordfish"


async def test_a_node_certificate_reaches_only_its_own(cluster: Any, namespace: str) -> None:
    cluster.kubectl("create", "secret", "generic", "elsewhere", "--from-literal=k=v", "-n", namespace)
    async with _node_client(cluster, "worker1") as worker1:
        own = await worker1.get("nodes", "worker1")
        assert own["metadata"]["name"] == "worker1"
        with pytest.raises(ApiError) as caught:
            await worker1.patch("nodes", "worker2", {"metadata": {"labels": {"pkt-stolen": "yes"}}})
        assert caught.value.code == 403
        assert caught.value.status["message"] == (
            'nodes "worker2" is forbidden: node "worker1" is not allowed to modify node "worker2"'
        )
        with pytest.raises(ApiError) as caught:
            await worker1.get("secrets", "elsewhere", namespace)
        assert caught.value.code == 403
        assert "no relationship found between node 'worker1' and this object" in caught.value.status["message"]
        with pytest.raises(ApiError) as caught:
            await worker1.list("secrets", namespace="kube-system")
        assert caught.value.code == 403
        with pytest.raises(ApiError) as caught:
            await worker1.get("leases", "worker2", "kube-node-lease")
        assert caught.value.code == 403


def test_a_user_gets_what_a_role_binding_grants(cluster: Any, namespace: str) -> None:
    def can_i(*args: str) -> str:
        return _kubectl(cluster, "auth", "can-i", *args, "--as", "pkt-jane", "-n", namespace).stdout.strip()

    assert can_i("list", "pods") == "no"
    cluster.kubectl("create", "rolebinding", "jane-view", "--clusterrole=view", "--user=pkt-jane", "-n", namespace)
    wait_for("the binding to be seen", lambda: can_i("list", "pods") == "yes", timeout=20)
    assert can_i("create", "pods") == "no"
    assert can_i("get", "secrets") == "no"
    listed = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "--as", "pkt-jane", "-o", "json"))
    assert listed["kind"] == "List"
    refused = _kubectl(cluster, "create", "configmap", "c", "-n", namespace, "--as", "pkt-jane")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'error: failed to create configmap: configmaps is forbidden: User "pkt-jane" cannot create resource '
        f'"configmaps" in API group "" in the namespace "{namespace}"'
    )
