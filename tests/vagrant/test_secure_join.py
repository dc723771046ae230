"""A worker VM's join, against the control plane `pocket node setup` makes, with real processes on 127.0.0.1.

The control plane's PKI comes from `ensure_control_plane_pki`; etcd requires client certificates; the API
server and the controller manager run with exactly the security flags the VM units carry
(`apiserver_security`, `controller_manager_certificates`: HTTPS only, Node,RBAC, NodeRestriction,
encryption at rest, CSR signing). Then the worker side as setup runs it: discovery with the bootstrap
token, the CA pinned from signed cluster-info, the sealed serving certificate, and the kubelet's TLS
bootstrap to a `system:node:<name>` certificate approved by the controller manager.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from control import pki as x509_pki
from control.api.errors import ApiError
from control.client import Client, ssl_context_for
from kubelet.bootstrap import CLIENT_FILE, bootstrap_client_certificate, current_certificate_ok
from pocket.certs import ADMIN, CONTROLLER_MANAGER, ClusterPKI, cluster_pki, kubelet_serving, node_identity
from pocket.config import CONTROL_PLANE_ROLE, WORKER_ROLE, ClusterConfig, NodeSpec
from pocket.kubeconfig import Credentials, write_kubeconfig
from pocket.node import apiserver_security, controller_manager_certificates
from pocket.setup import (
    CLUSTER_INFO,
    CLUSTER_INFO_NAMESPACE,
    NODE_FILES_SECRET,
    SetupError,
    bootstrap_kubeconfig_path,
    ensure_control_plane_pki,
    join_cluster,
    publish_for_joining,
    write_admin_kubeconfig,
)
from tests.conftest import ETCD, KUBECTL, free_port
from tests.processes import stop, wait_ready

TOKEN = "pktjoin0123456789abcdef0123456789"
OTHER = "pktother0123456789abcdef012345678"
NODES = (
    NodeSpec("control-plane", CONTROL_PLANE_ROLE, "127.0.0.1"),
    NodeSpec("worker1", WORKER_ROLE, "127.0.0.2"),
    NodeSpec("worker2", WORKER_ROLE, "127.0.0.3"),
)


@dataclass
class ControlPlane:
    cluster: ClusterConfig
    server: str
    work: Path

    @property
    def paths(self) -> ClusterPKI:
        return cluster_pki(self.cluster)

    def client(self, identity: str = ADMIN) -> Client:
        paths = self.paths
        context = ssl_context_for(paths.ca.read_bytes(), paths.cert(identity).read_bytes(),
                                  paths.key(identity).read_bytes())
        return Client(self.server, ssl_context=context, timeout=10)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})




def _replace_flag(argv: tuple[str, ...], flag: str, value: str) -> list[str]:
    args = list(argv)
    args[args.index(flag) + 1] = value
    return args


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    work = tmp_path_factory.mktemp("pkt-vjoin")
    cluster = ClusterConfig(state_dir=work / "control-plane", nodes=NODES)
    assert ensure_control_plane_pki(cluster)
    paths = cluster_pki(cluster)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url, peer_url = f"https://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{api_port}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        etcd_log = work / "etcd.log"
        etcd = _start([ETCD, "--name", "pkt-vjoin", "--data-dir", str(work / "etcd"),
                       "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                       "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                       "--initial-cluster", f"pkt-vjoin={peer_url}", "--client-cert-auth",
                       "--trusted-ca-file", str(paths.ca), "--cert-file", str(paths.cert("etcd-server")),
                       "--key-file", str(paths.key("etcd-server"))], etcd_log)
        processes.append(etcd)
        wait_ready(lambda: (work / "etcd" / "member").exists(), "etcd", etcd, etcd_log, timeout=60)
        api_log = work / "apiserver.log"
        api = _start([sys.executable, "-m", "pocket.cli", "apiserver",
                      *_replace_flag(apiserver_security(paths), "--etcd-servers", etcd_url),
                      "--bind-address", "127.0.0.1", "--port", str(api_port), "--advertise-address", "127.0.0.1",
                      "--service-cluster-ip-range", "10.96.0.0/12"], api_log)
        processes.append(api)
        context = ssl.create_default_context(cafile=str(paths.ca))

        def ready() -> bool:
            with urllib.request.urlopen(f"{server}/readyz", timeout=2, context=context) as resp:
                return resp.status == 200

        wait_ready(ready, "apiserver", api, api_log, timeout=60)
        manager_kubeconfig = work / "controller-manager.conf"  # the unit's, pointed at this test's port
        write_kubeconfig(manager_kubeconfig, server, Credentials.from_files(
            paths.ca, paths.cert(CONTROLLER_MANAGER), paths.key(CONTROLLER_MANAGER)))
        manager_log = work / "controller-manager.log"
        health_port = free_port()
        manager = _start([sys.executable, "-m", "pocket.cli", "controller-manager",
                          "--kubeconfig", str(manager_kubeconfig), "--health-port", str(health_port),
                          *controller_manager_certificates(paths)], manager_log)
        processes.append(manager)

        def manager_ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as resp:
                return resp.status == 200

        wait_ready(manager_ready, "controller-manager", manager, manager_log, timeout=60)
        yield ControlPlane(cluster, server, work)
    finally:
        for process in reversed(processes):
            stop(process)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_control_plane_pki_has_no_worker_client_identity(control_plane: ControlPlane) -> None:
    """Workers get their client certificate by CSR: the control plane holds only their serving certificates."""
    paths = control_plane.paths
    names = {p.name for p in paths.directory.rglob("*") if p.is_file()}
    assert {"node-control-plane.crt", "kubelet-worker1.crt", "kubelet-worker2.crt"} <= names
    assert not {n for n in names if n.startswith(("node-worker1", "node-worker2"))}, names
    for path in paths.directory.rglob("*"):
        if path.suffix in (".key", ".conf", ".yaml"):
            assert mode(path) == 0o600, path
    assert not ensure_control_plane_pki(control_plane.cluster), "a second run changes nothing"


def test_anonymous_gets_401_and_cannot_read_cluster_info(control_plane: ControlPlane) -> None:
    context = ssl.create_default_context(cafile=str(control_plane.paths.ca))
    url = f"{control_plane.server}/api/v1/namespaces/{CLUSTER_INFO_NAMESPACE}/configmaps/{CLUSTER_INFO}"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=5, context=context)
    assert caught.value.code == 401


async def publish(control_plane: ControlPlane) -> bool:
    async with control_plane.client() as admin:
        return await publish_for_joining(admin, control_plane.cluster, TOKEN, control_plane.server)


def join(control_plane: ControlPlane, node: str, token: str = TOKEN, timeout: float = 60) -> tuple[ClusterPKI, bool]:
    paths = ClusterPKI(control_plane.work / node / "pki")
    return paths, join_cluster(paths, control_plane.server, node, token, timeout)


def test_worker_joins_with_pinned_ca_and_its_sealed_serving_certificate(control_plane: ControlPlane) -> None:
    assert asyncio.run(publish(control_plane))
    assert not asyncio.run(publish(control_plane)), "publishing again changes nothing (sealed files kept)"
    cp = control_plane.paths
    paths, changed = join(control_plane, "worker1")
    assert changed
    assert paths.ca.read_bytes() == cp.ca.read_bytes()
    for name in (kubelet_serving("worker1"),):
        assert paths.cert(name).read_bytes() == cp.cert(name).read_bytes()
        assert paths.key(name).read_bytes() == cp.key(name).read_bytes()
        assert (mode(paths.cert(name)), mode(paths.key(name))) == (0o644, 0o600)
    serving = x509.load_pem_x509_certificate(paths.cert(kubelet_serving("worker1")).read_bytes())
    assert serving.issuer == x509_pki.load_certificate(cp.ca).subject
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.2" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    kdns = paths.kubeconfig("kdns")
    assert kdns.read_text() == cp.kubeconfig("kdns").read_text() and mode(kdns) == 0o600, "worker1 runs kdns"
    bootstrap = yaml.safe_load(bootstrap_kubeconfig_path(paths).read_text())
    assert mode(bootstrap_kubeconfig_path(paths)) == 0o600
    assert bootstrap["clusters"][0]["cluster"] == {
        "server": control_plane.server,
        "certificate-authority-data": base64.b64encode(cp.ca.read_bytes()).decode(),
    }
    assert bootstrap["users"][0]["user"]["token"].count(".") == 1
    assert not join(control_plane, "worker1")[1], "joining again writes nothing"
    other, _ = join(control_plane, "worker2")
    assert other.cert(kubelet_serving("worker2")).exists()
    assert not other.kubeconfig("kdns").exists(), "kdns runs on the control plane and the first worker only"
    assert not other.cert(kubelet_serving("worker1")).exists()


def test_another_join_token_cannot_join(control_plane: ControlPlane) -> None:
    asyncio.run(publish(control_plane))
    with pytest.raises(SetupError, match="did not let this node join.*401"):
        join(control_plane, "worker1-other", OTHER, timeout=1)
    assert not (control_plane.work / "worker1-other" / "pki" / "ca.crt").exists()


def test_kubelet_bootstraps_a_node_identity_by_csr(control_plane: ControlPlane) -> None:
    """The worker kubelet's --bootstrap-kubeconfig, as setup wrote it, gets system:node:worker1 approved and
    signed; with it the node lists Services (kproxy) but cannot read the uploaded node files."""
    asyncio.run(publish(control_plane))
    paths, _ = join(control_plane, "worker1")
    kubeconfig = paths.kubeconfig(node_identity("worker1"))
    cert_dir = control_plane.work / "worker1" / "kubelet-pki"
    assert asyncio.run(bootstrap_client_certificate("worker1", bootstrap_kubeconfig_path(paths), kubeconfig,
                                                    cert_dir, 60))
    assert current_certificate_ok(kubeconfig, "worker1")
    certificate = x509.load_pem_x509_certificate((cert_dir / CLIENT_FILE).read_bytes())
    assert certificate.subject.rfc4514_string() == "CN=system:node:worker1,O=system:nodes"
    assert certificate.issuer == x509_pki.load_certificate(control_plane.paths.ca).subject

    async def as_node_and_admin() -> tuple[int, int, list[dict]]:
        async with Client.from_kubeconfig(kubeconfig) as node:
            services = len((await node.list("services"))["items"])
            try:
                await node.get("secrets", NODE_FILES_SECRET, "kube-system")
                secret_code = 200
            except ApiError as err:
                secret_code = err.code
        async with control_plane.client() as admin:
            csrs = (await admin.list("certificatesigningrequests"))["items"]
            stored = await admin.get("secrets", NODE_FILES_SECRET, "kube-system")
        for value in stored["data"].values():
            assert b"BEGIN" not in base64.b64decode(base64.b64decode(value)), "node files are stored sealed"
        return services, secret_code, csrs

    services, secret_code, csrs = asyncio.run(as_node_and_admin())
    assert services >= 1
    assert secret_code == 403
    pem = certificate.public_bytes(Encoding.PEM)
    (issued,) = [c for c in csrs if base64.b64decode(c["status"].get("certificate", "")) == pem]
    assert issued["spec"]["username"].startswith("system:bootstrap:")
    assert [c["type"] for c in issued["status"]["conditions"]] == ["Approved"]
    assert issued["status"]["conditions"][0]["reason"] == "AutoApproved", json.dumps(issued["status"])


def test_admin_kubeconfig_for_the_host_carries_ca_and_admin_certificate(control_plane: ControlPlane) -> None:
    path = control_plane.work / "host" / "kubeconfig"
    assert write_admin_kubeconfig(path, control_plane.cluster)
    assert not write_admin_kubeconfig(path, control_plane.cluster), "written once"
    assert mode(path) == 0o600
    config = yaml.safe_load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"  # the control plane's address, the API server's port
    assert base64.b64decode(cluster["certificate-authority-data"]) == control_plane.paths.ca.read_bytes()
    admin = x509.load_pem_x509_certificate(base64.b64decode(config["users"][0]["user"]["client-certificate-data"]))
    assert admin.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    config["clusters"][0]["cluster"]["server"] = control_plane.server  # this test's port
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(path), "auth", "can-i", "create", "secrets"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(control_plane.work / "home")})  # kubectl's cache stays here
    assert (proc.returncode, proc.stdout.strip()) == (0, "yes"), proc.stderr
