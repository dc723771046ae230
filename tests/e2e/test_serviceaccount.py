"""A pod uses its mounted service-account token against the API server, as in-cluster clients do.

The cluster's `python:3.11-slim` image is Debian's python3 without the
official `kubernetes` client library, so the pod does by hand what
`kubernetes.config.load_incluster_config()` does: read
/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}
and talk HTTPS to $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
verifying the server with ca.crt and sending the token as a bearer token.
Its Role lets it list pods in its own namespace; anything else is 403.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

CLIENT = textwrap.dedent(
    """
    import json, os, ssl, time, urllib.error, urllib.request
    base = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = open(f"{base}/token").read()
    namespace = open(f"{base}/namespace").read()
    context = ssl.create_default_context(cafile=f"{base}/ca.crt")
    server = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])

    def get(path):
        request = urllib.request.Request(server + path, headers={"Authorization": "Bearer " + token})
        for attempt in range(30):  # the Service VIP may take a moment to be programmed on this node
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as resp:
                    return resp.status, json.load(resp)
            except urllib.error.HTTPError as err:
                return err.code, json.load(err)
            except OSError:
                time.sleep(1)
        return 0, {}

    results = {"namespace": namespace, "token_mode": oct(os.stat(f"{base}/token").st_mode & 0o777)}
    for name, path in {
        "pods": f"/api/v1/namespaces/{namespace}/pods",
        "secrets": f"/api/v1/namespaces/{namespace}/secrets",
        "other_namespace": "/api/v1/namespaces/kube-system/pods",
    }.items():
        code, body = get(path)
        results[name] = {"code": code, "names": [i["metadata"]["name"] for i in body.get("items", [])],
                         "message": body.get("message", "")}
    print("RESULT " + json.dumps(results), flush=True)
    """
)


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"pkt-e2e-sa-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def apply(cluster: LocalCluster, namespace: str, *objects: dict[str, Any]) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    path = cluster.config.state_dir / f"{namespace}-manifest.json"
    path.write_text(manifest)
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    finally:
        path.unlink()


def test_pod_lists_what_its_role_allows_and_nothing_else(cluster: LocalCluster, namespace: str) -> None:
    wait_for("the default ServiceAccount", lambda: get_json(cluster, "serviceaccount", "default", "-n", namespace))
    wait_for("kube-root-ca.crt", lambda: get_json(cluster, "configmap", "kube-root-ca.crt", "-n", namespace))
    apply(
        cluster,
        namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader-reads-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "incluster"},
            "spec": {
                "serviceAccountName": "reader",
                "restartPolicy": "Never",
                "containers": [{"name": "client", "image": "python:3.11-slim", "command": ["python3", "-c", CLIENT]}],
            },
        },
    )
    pod = get_json(cluster, "pod", "incluster", "-n", namespace)
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert any(m["mountPath"] == MOUNT and m["readOnly"] for m in mounts)

    def finished() -> str | None:
        phase = get_json(cluster, "pod", "incluster", "-n", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    assert wait_for("the in-cluster client to finish", finished, timeout=180) == "Succeeded"
    logs = cluster.kubectl("logs", "incluster", "-n", namespace)
    line = next(line for line in logs.splitlines() if line.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    print("in-cluster client saw:", results)
    assert results["namespace"] == namespace
    assert results["pods"]["code"] == 200 and "incluster" in results["pods"]["names"]
    user = f"system:serviceaccount:{namespace}:reader"
    assert results["secrets"]["code"] == 403
    assert results["secrets"]["message"] == (
        f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" '
        f'in the namespace "{namespace}"'
    )
    assert results["other_namespace"]["code"] == 403
    assert f'User "{user}" cannot list resource "pods"' in results["other_namespace"]["message"]


def test_opting_out_mounts_no_token(cluster: LocalCluster, namespace: str) -> None:
    wait_for("the default ServiceAccount", lambda: get_json(cluster, "serviceaccount", "default", "-n", namespace))
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "notoken"},
            "spec": {
                "automountServiceAccountToken": False,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": "python:3.11-slim",
                        "command": ["python3", "-c", f"import os; print('TOKEN', os.path.exists({MOUNT!r}))"],
                    }
                ],
            },
        },
    )

    def finished() -> str | None:
        phase = get_json(cluster, "pod", "notoken", "-n", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    assert wait_for("the pod to finish", finished, timeout=180) == "Succeeded"
    assert "TOKEN False" in cluster.kubectl("logs", "notoken", "-n", namespace)
