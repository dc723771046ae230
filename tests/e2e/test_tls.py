"""TLS on the local cluster: kubectl over HTTPS with the generated kubeconfig, and every plain or
certificate-less way in refused: the API server, etcd and the kubelets.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from control import pki
from pocket.certs import ADMIN, APISERVER_ETCD_CLIENT, ClusterPKI, node_identity
from pocket.cluster import security
from pocket.config import API_PORT, ETCD_CLIENT_PORT, KUBELET_PORT
from pocket.netns import entered, nsenter_argv

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls(cluster: Any) -> ClusterPKI:
    found = security(cluster.config)
    assert found is not None, "the cluster under test runs without TLS: `pocket down` and `pocket up` it"
    return found


def _get(cluster: Any, node: str, url: str, context: ssl.SSLContext | None, data: bytes | None = None) -> int:
    """HTTP status of a request made from inside a node's network namespace."""
    with entered(cluster.config.node_netns(node)):
        try:
            with urllib.request.urlopen(url, data=data, timeout=10, context=context) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return err.code


def _context(paths: ClusterPKI, identity: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(paths.ca))
    if identity is not None:
        context.load_cert_chain(paths.cert(identity), paths.key(identity))
    return context


def test_kubectl_works_over_tls_with_the_generated_kubeconfig(cluster: Any, tls: ClusterPKI) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]
    assert server["server"].startswith("https://127.0.0.1:")
    assert "certificate-authority-data" in server and "insecure-skip-tls-verify" not in server
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert {n["metadata"]["name"] for n in nodes} == {n.name for n in cluster.config.nodes}
    # The same kubectl without the client certificate is a stranger.
    stranger = cluster.kubeconfig.parent / f".{cluster.kubeconfig.name}.stranger"
    user = config["users"][0]["user"]
    config["users"][0]["user"] = {"token": "pkt-not-a-token"}
    stranger.write_text(yaml.safe_dump(config))
    try:
        refused = subprocess.run(["kubectl", "--kubeconfig", str(stranger), "get", "nodes"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        stranger.unlink()
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr, refused.stderr
    assert "client-certificate-data" in user


def test_the_api_server_speaks_https_only(cluster: Any, tls: ClusterPKI) -> None:
    cp = cluster.config.control_plane
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(cluster, cp.name, f"http://{cp.ip}:{API_PORT}/healthz", None)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{cluster.config.api_port}/healthz", timeout=10)
    assert _get(cluster, cp.name, f"https://{cp.ip}:{API_PORT}/healthz", _context(tls)) == 200
    assert _get(cluster, "worker1", f"https://{cp.ip}:{API_PORT}/api/v1/nodes", _context(tls)) == 401
    assert _get(cluster, "worker1", f"https://{cp.ip}:{API_PORT}/api/v1/nodes", _context(tls, ADMIN)) == 200


def test_etcd_refuses_a_client_without_a_certificate(cluster: Any, tls: ClusterPKI) -> None:
    cp = cluster.config.control_plane
    url = f"https://{cp.ip}:{ETCD_CLIENT_PORT}/v3/kv/range"
    body = b'{"key": "L3JlZ2lzdHJ5", "count_only": true}'
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        _get(cluster, "worker1", url, _context(tls), body)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(cluster, "worker1", url.replace("https://", "http://"), None, body)
    # The API server's etcd client certificate is let in (the refusals above are about the certificate).
    assert _get(cluster, "worker1", url, _context(tls, APISERVER_ETCD_CLIENT), body) == 200


def test_etcd_listens_only_on_the_control_plane_addresses(cluster: Any, tls: ClusterPKI) -> None:
    cp = cluster.config.control_plane
    netns = cluster.config.node_netns(cp.name)
    listening = subprocess.run(nsenter_argv(netns, ["ss", "-Hltn", f"sport = :{ETCD_CLIENT_PORT}"]),
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines() if line.strip()}
    assert addresses == {cp.ip, "127.0.0.1"}


def test_kubelets_refuse_anonymous_and_other_nodes(cluster: Any, tls: ClusterPKI) -> None:
    for node in cluster.config.nodes:
        base = f"https://{node.ip}:{KUBELET_PORT}"
        other = next(n.name for n in cluster.config.nodes if n.name != node.name)
        assert _get(cluster, node.name, f"{base}/healthz", _context(tls)) == 401
        assert _get(cluster, node.name, f"{base}/stats/summary", _context(tls)) == 401
        assert _get(cluster, node.name, f"{base}/stats/summary", _context(tls, node_identity(other))) == 403
        assert _get(cluster, node.name, f"{base}/healthz", _context(tls, ADMIN)) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(cluster, node.name, f"http://{node.ip}:{KUBELET_PORT}/healthz", None)
        served = pki.load_certificate(tls.cert(f"kubelet-{node.name}"))
        assert pki.subject_of(served)[0] == f"system:node:{node.name}"
