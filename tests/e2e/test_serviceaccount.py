"""A pod uses its mounted service-account token against the API server, through the official client.

The cluster's `python:3.11-slim` image is Debian's python3 without the
`kubernetes` library, and nothing may be fetched from outside this machine, so
the pod mounts the host's own site-packages (where this test's `kubernetes`
and its dependencies are installed; the local cluster's nodes share the host
filesystem, host and image are both Python 3.11) read-only through a hostPath
volume and puts it on PYTHONPATH. It then runs the real
`kubernetes.config.load_incluster_config()` (token, ca.crt and namespace from
/var/run/secrets/kubernetes.io/serviceaccount, the server from
$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT) and CoreV1Api calls. Its
Role lets it list pods in its own namespace; anything else is 403.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
HOST_SITE_PACKAGES = str(Path(kubernetes.__file__).resolve().parent.parent)
POD_SITE_PACKAGES = "/opt/host-site-packages"

CLIENT = textwrap.dedent(
    """
    import json, os, time
    import kubernetes
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    config.load_incluster_config()
    configuration = client.Configuration.get_default_copy()
    configuration.retries = 0
    core = client.CoreV1Api(client.ApiClient(configuration))
    namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()

    def call(method, *args):
        for attempt in range(30):  # the Service VIP may take a moment to be programmed on this node
            try:
                answer = method(*args, _request_timeout=5)
                return {"code": 200, "names": [i.metadata.name for i in answer.items], "message": ""}
            except ApiException as err:
                return {"code": err.status, "names": [], "message": json.loads(err.body).get("message", "")}
            except HTTPError:
                time.sleep(1)
        return {"code": 0, "names": [], "message": "never reached the API server"}

    results = {
        "library": kubernetes.__file__,
        "host": configuration.host,
        "namespace": namespace,
        "token_mode": oct(os.stat("/var/run/secrets/kubernetes.io/serviceaccount/token").st_mode & 0o777),
        "pods": call(core.list_namespaced_pod, namespace),
        "secrets": call(core.list_namespaced_secret, namespace),
        "other_namespace": call(core.list_namespaced_pod, "kube-system"),
    }
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
                "containers": [
                    {
                        "name": "client",
                        "image": "python:3.11-slim",
                        "command": ["python3", "-c", CLIENT],
                        "env": [{"name": "PYTHONPATH", "value": POD_SITE_PACKAGES}],
                        "volumeMounts": [{"name": "host-python", "mountPath": POD_SITE_PACKAGES, "readOnly": True}],
                    }
                ],
                "volumes": [{"name": "host-python", "hostPath": {"path": HOST_SITE_PACKAGES, "type": "Directory"}}],
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
    assert results["library"] == f"{POD_SITE_PACKAGES}/kubernetes/__init__.py"  # the official client, not a stand-in
    assert results["host"] == "https://10.96.0.1:443"
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
