"""`kubectl rollout restart` on the local cluster (issue 3's acceptance).

kubectl patches `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]`;
as in Kubernetes, the changed template makes the deployment controller
create a new ReplicaSet (revision 2) and replace every old pod.  The test
works in its own namespace, deleted at the end also on failure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
REPLICAS = 2


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exec sleep 100000"]}],
                },
            },
        },
    }


@pytest.fixture
def namespace(cluster: Any) -> Iterator[str]:
    name = f"rollout-restart-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")
        gone = lambda: f"namespace/{name}" not in cluster.kubectl("get", "namespaces", "-o", "name").split()  # noqa: E731
        wait_for(f"namespace {name} to be gone", gone, timeout=120)


def replicasets(cluster: Any, namespace: str, app: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "replicasets", "-n", namespace, "-l", f"app={app}")["items"])


def pods(cluster: Any, namespace: str, app: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "pods", "-n", namespace, "-l", f"app={app}")["items"])


def test_rollout_restart_replaces_every_pod_through_a_new_replicaset(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    app = "restartme"
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(deployment(app)))
    cluster.kubectl("apply", "-n", namespace, "-f", str(manifest))
    cluster.kubectl("rollout", "status", f"deployment/{app}", "-n", namespace, "--timeout=120s", timeout=150)
    (first_rs,) = replicasets(cluster, namespace, app)
    old_pods = pods(cluster, namespace, app)
    assert len(old_pods) == REPLICAS
    old_uids = {p["metadata"]["uid"] for p in old_pods}

    out = cluster.kubectl("rollout", "restart", f"deployment/{app}", "-n", namespace)
    assert f"deployment.apps/{app} restarted" in out
    template = get_json(cluster, "deployment", app, "-n", namespace)["spec"]["template"]
    restarted_at = template["metadata"]["annotations"][RESTARTED_AT]
    datetime.strptime(restarted_at, "%Y-%m-%dT%H:%M:%SZ")  # RFC 3339, as kubectl writes it

    status = cluster.kubectl("rollout", "status", f"deployment/{app}", "-n", namespace, "--timeout=120s", timeout=150)
    assert f'deployment "{app}" successfully rolled out' in status

    rss = {rs["metadata"]["name"]: rs for rs in replicasets(cluster, namespace, app)}
    assert set(rss) - {first_rs["metadata"]["name"]}, f"no new ReplicaSet after the restart: {sorted(rss)}"
    (new_name,) = set(rss) - {first_rs["metadata"]["name"]}
    new_rs, old_rs = rss[new_name], rss[first_rs["metadata"]["name"]]
    assert new_rs["metadata"]["annotations"][REVISION] == "2"
    assert old_rs["metadata"]["annotations"][REVISION] == "1"
    assert new_rs["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == restarted_at
    assert new_rs["spec"]["replicas"] == REPLICAS and old_rs["spec"]["replicas"] == 0
    deployment_now = get_json(cluster, "deployment", app, "-n", namespace)
    assert deployment_now["metadata"]["annotations"][REVISION] == "2"
    assert deployment_now["status"]["updatedReplicas"] == REPLICAS

    def replaced() -> list[dict[str, Any]] | None:
        """Only new pods remain (the old ones finished terminating), all Running."""
        now = pods(cluster, namespace, app)
        if any(p["metadata"]["uid"] in old_uids for p in now):
            return None
        running = [p for p in now if p["status"].get("phase") == "Running"]
        return running if len(running) == len(now) == REPLICAS else None

    new_pods = wait_for("the old pods to be replaced by Running new ones", replaced, timeout=120)
    new_hash = new_rs["metadata"]["labels"]["pod-template-hash"]
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in new_pods} == {new_hash}
    assert {p["metadata"]["ownerReferences"][0]["name"] for p in new_pods} == {new_name}
    assert all(p["metadata"]["annotations"][RESTARTED_AT] == restarted_at for p in new_pods)

    history = cluster.kubectl("rollout", "history", f"deployment/{app}", "-n", namespace)
    revisions = [line.split()[0] for line in history.splitlines()[2:] if line.strip()]
    assert revisions == ["1", "2"], history
    second = cluster.kubectl("rollout", "history", f"deployment/{app}", "-n", namespace, "--revision=2")
    assert f"{RESTARTED_AT}: {restarted_at}" in second
    first = cluster.kubectl("rollout", "history", f"deployment/{app}", "-n", namespace, "--revision=1")
    assert RESTARTED_AT not in first
