"""Who may use a kubelet's API on the running cluster: whoever the API server's RBAC lets use nodes/<subresource>.

kubectl logs and exec go through the API server (its kubelet-client certificate, system:masters) and keep
working. Calling the kubelet port directly from the node's network: no credentials is 401; a service account
bound to the `view` ClusterRole (its token) or a user with only `view` (a client certificate from the cluster
CA) gets 403 for logs and exec; a service account bound to a ClusterRole with nodes/proxy get+create reads the
logs and runs a command over the exec protocol.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control import pki
from pocket.certs import ClusterPKI
from pocket.cluster import security
from pocket.config import KUBELET_PORT
from pocket.netns import entered
from tests.e2e.conftest import LocalCluster
from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e

RBAC = "rbac.authorization.k8s.io"
EXEC_PROTOCOL = "v5.channel.k8s.io"
STDOUT_CHANNEL = 1
ERROR_CHANNEL = 3
MARKER = "pkt-kubelet-auth-marker"


@dataclass
class Setup:
    namespace: str
    pod: str
    node: str
    node_ip: str
    suffix: str
    pki: ClusterPKI


def _apply(cluster: LocalCluster, path: Path, *objects: dict[str, Any]) -> None:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))
    try:
        cluster.kubectl("apply", "-f", str(path))
    finally:
        path.unlink()


def _binding(name: str, role: str, subject: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    }


@pytest.fixture(scope="module")
def setup(cluster: LocalCluster) -> Iterator[Setup]:
    """A namespace with a running pod, two service accounts and the cluster-wide RBAC objects they need."""
    found = security(cluster.config)
    assert found is not None, "the cluster under test runs without TLS"
    suffix = uuid.uuid4().hex[:6]
    namespace = f"pkt-e2e-kauth-{suffix}"
    cluster_objects = [
        ("clusterrole", f"pkt-kauth-node-proxy-{suffix}"),
        ("clusterrolebinding", f"pkt-kauth-viewer-{suffix}"),
        ("clusterrolebinding", f"pkt-kauth-cert-viewer-{suffix}"),
        ("clusterrolebinding", f"pkt-kauth-proxier-{suffix}"),
    ]
    cluster.kubectl("create", "namespace", namespace)
    try:
        _apply(
            cluster,
            cluster.config.state_dir / f"{namespace}.json",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer", "namespace": namespace}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "proxier", "namespace": namespace}},
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"pkt-kauth-node-proxy-{suffix}"},
                "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get", "create"]}],
            },
            _binding(
                f"pkt-kauth-viewer-{suffix}",
                "view",
                {"kind": "ServiceAccount", "name": "viewer", "namespace": namespace},
            ),
            _binding(
                f"pkt-kauth-cert-viewer-{suffix}",
                "view",
                {"kind": "User", "name": f"pkt-kauth-viewer-{suffix}", "apiGroup": RBAC},
            ),
            _binding(
                f"pkt-kauth-proxier-{suffix}",
                f"pkt-kauth-node-proxy-{suffix}",
                {"kind": "ServiceAccount", "name": "proxier", "namespace": namespace},
            ),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "target", "namespace": namespace},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox:latest",
                            "command": ["sh", "-c", f"echo {MARKER}; exec sleep 3600"],
                        }
                    ],
                },
            },
        )

        def running() -> dict[str, Any] | None:
            pod = get_json(cluster, "pod", "target", "-n", namespace)
            return pod if pod["status"].get("phase") == "Running" else None

        pod = wait_for("the target pod to run", running, timeout=120)
        node = pod["spec"]["nodeName"]
        yield Setup(namespace, "target", node, cluster.config.node(node).ip, suffix, found)
    finally:
        for kind, name in cluster_objects:
            cluster.kubectl("delete", kind, name, "--ignore-not-found")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def _context(setup: Setup, cert: pki.CertPaths | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(setup.pki.ca))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def _kubelet(
    cluster: LocalCluster,
    setup: Setup,
    path: str,
    *,
    token: str | None = None,
    cert: pki.CertPaths | None = None,
    method: str = "GET",
) -> tuple[int, str]:
    """(status, body) of a request to the pod's kubelet, made from inside that node's network namespace."""
    url = f"https://{setup.node_ip}:{KUBELET_PORT}{path}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers, method=method, data=b"" if method == "POST" else None)
    with entered(cluster.config.node_netns(setup.node)):
        try:
            with urllib.request.urlopen(request, timeout=10, context=_context(setup, cert)) as resp:
                return int(resp.status), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")


def _exec_over_websocket(cluster: LocalCluster, setup: Setup, token: str, command: list[str]) -> tuple[str, str]:
    """Run `command` in the pod through the kubelet's exec endpoint as kubectl's protocol does: (stdout, status)."""
    url = f"https://{setup.node_ip}:{KUBELET_PORT}/exec/{setup.namespace}/{setup.pod}/main"
    params = [("command", c) for c in command] + [("stdout", "true")]

    async def run() -> tuple[str, str]:
        channels = {STDOUT_CHANNEL: b"", ERROR_CHANNEL: b""}
        connector = aiohttp.TCPConnector(ssl=_context(setup))
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.ws_connect(
                url, params=params, protocols=[EXEC_PROTOCOL], headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY and message.data[0] in channels:
                        channels[message.data[0]] += message.data[1:]
        return channels[STDOUT_CHANNEL].decode(), channels[ERROR_CHANNEL].decode()

    with entered(cluster.config.node_netns(setup.node)):
        return asyncio.run(run())


def _token(cluster: LocalCluster, setup: Setup, account: str) -> str:
    return cluster.kubectl("create", "token", account, "-n", setup.namespace, "--duration", "10m").strip()


def _logs_path(setup: Setup) -> str:
    return f"/containerLogs/{setup.namespace}/{setup.pod}/main"


def _exec_path(setup: Setup) -> str:
    return f"/exec/{setup.namespace}/{setup.pod}/main?command=true&stdout=true"


def test_kubectl_logs_and_exec_still_work(cluster: LocalCluster, setup: Setup) -> None:
    assert MARKER in cluster.kubectl("logs", setup.pod, "-n", setup.namespace)
    out = cluster.kubectl("exec", setup.pod, "-n", setup.namespace, "--", "echo", "exec-through-the-api-server")
    assert out.strip() == "exec-through-the-api-server"


def test_no_credentials_is_401(cluster: LocalCluster, setup: Setup) -> None:
    for path in (_logs_path(setup), "/stats/summary", "/healthz"):
        status, body = _kubelet(cluster, setup, path)
        assert status == 401, path
        assert json.loads(body)["reason"] == "Unauthorized"


def test_a_view_only_token_gets_403(cluster: LocalCluster, setup: Setup) -> None:
    token = _token(cluster, setup, "viewer")
    # the token is good at the API server: the viewer may list pods there
    user = f"system:serviceaccount:{setup.namespace}:viewer"
    assert cluster.kubectl("auth", "can-i", "list", "pods", "-n", setup.namespace, "--as", user).strip() == "yes"
    status, body = _kubelet(cluster, setup, _logs_path(setup), token=token)
    assert status == 403
    assert json.loads(body)["message"] == f"Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)"
    status, body = _kubelet(cluster, setup, _exec_path(setup), token=token, method="POST")
    assert status == 403 and "verb=create, resource=nodes, subresource=proxy" in body


def test_a_view_only_certificate_gets_403(cluster: LocalCluster, setup: Setup, tmp_path: Path) -> None:
    assert setup.pki.ca.exists() and setup.pki.key(pki.CA_NAME).exists()  # ensure_ca then only loads it
    ca = pki.ensure_ca(setup.pki.directory)
    cert = pki.ensure_cert(tmp_path, ca, "viewer", pki.CertSpec(f"pkt-kauth-viewer-{setup.suffix}"))
    status, body = _kubelet(cluster, setup, _logs_path(setup), cert=cert)
    assert status == 403 and f"user=pkt-kauth-viewer-{setup.suffix}," in body
    status, _ = _kubelet(cluster, setup, _exec_path(setup), cert=cert, method="POST")
    assert status == 403


def test_nodes_proxy_rights_read_logs_and_exec(cluster: LocalCluster, setup: Setup) -> None:
    token = _token(cluster, setup, "proxier")
    status, body = _kubelet(cluster, setup, _logs_path(setup), token=token)
    assert status == 200 and MARKER in body
    stdout, status_channel = _exec_over_websocket(cluster, setup, token, ["echo", "exec-straight-to-the-kubelet"])
    assert stdout == "exec-straight-to-the-kubelet\n"
    assert json.loads(status_channel)["status"] == "Success"
    # nodes/proxy is not nodes/stats
    status, _ = _kubelet(cluster, setup, "/stats/summary", token=token)
    assert status == 403
