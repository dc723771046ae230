"""End-to-end on real VMs: `make test-vagrant` (not part of `make test`: this file's name is not test_*.py).

The module fixture starts libvirt if it is not running, brings up a control
plane and two workers with `vagrant up` (the offline box, isolated
networks), and afterwards destroys them and removes everything the run added
to the host. The checks are the local cluster's (tests/e2e/test_service_path.py,
imported below and run against the VMs), plus what only VMs have: node
addresses on the private network, a NodePort reached from the host, and
`vagrant provision` changing nothing on a working cluster. Security as the
local cluster's, checked over TLS from the host: anonymous requests get 401,
kubectl works with the generated kubeconfig (CA and admin certificate, no
--insecure-skip-tls-verify), etcd refuses clients without a certificate and
holds Secrets as ciphertext, and each worker's kubelet and kproxy run as
`system:node:<name>` with a certificate issued through an approved CSR.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kubelet.bootstrap import CLIENT_FILE
from pocket.certs import APISERVER_ETCD_CLIENT, cluster_pki, node_identity
from pocket.config import API_PORT, CONTROL_PLANE_ROLE, ETCD_CLIENT_PORT, WORKER_ROLE
from pocket.setup import node_cluster, node_units
from tests.e2e.helpers import get_json, running_pods, wait_for
from tests.e2e.test_service_path import (  # noqa: F401  (pytest collects the imported checks and fixture)
    test_backends_spread_over_workers_and_client_on_control_plane,
    test_cluster_ip_balances_across_pods,
    test_deleted_backend_is_replaced_and_service_answers,
    test_kubectl_get_and_logs,
    test_resolv_conf,
    test_service_environment_variables,
    test_service_name_resolves_to_cluster_ip,
    test_unknown_name_is_nxdomain,
    web,
)
from tests.vagrant.libvirt_host import LibvirtHost
from tests.vagrant.vms import VAGRANT_DIR, VagrantCluster, vagrant

NODE_IPS = {"control-plane": "192.168.56.10", "worker1": "192.168.56.11", "worker2": "192.168.56.12"}
POCKET_UNITS = re.compile(r"^(pocket-\S+\.service)", re.MULTILINE)


def phase(title: str, started: float) -> None:
    print(f"[test-vagrant] {title}: {time.monotonic() - started:.0f}s", flush=True)


def machines_running() -> bool:
    """Every machine of the Vagrantfile is running (a cluster left up by hand is reused, and left up)."""
    status = vagrant("status", "--machine-readable", timeout=120)
    states = [line.split(",")[3] for line in status.stdout.splitlines() if line.split(",")[2:3] == ["state"]]
    return len(states) == len(NODE_IPS) and all(state == "running" for state in states)


@pytest.fixture(scope="module")
def cluster() -> Iterator[VagrantCluster]:
    host = LibvirtHost()
    started = time.monotonic()
    host.start()
    reused = machines_running()
    try:
        if not reused:
            up = vagrant("up", "--provider=libvirt")
            phase(f"vagrant up (exit {up.returncode})", started)
            assert up.returncode == 0, f"vagrant up failed:\n{up.stdout[-6000:]}\n{up.stderr[-3000:]}"
        ssh_config = VAGRANT_DIR / ".pocket" / "ssh-config"
        config = vagrant("ssh-config", timeout=120)
        assert config.returncode == 0, config.stderr
        ssh_config.write_text(config.stdout)
        yield VagrantCluster(ssh_config)
    finally:
        torn_down = time.monotonic()
        destroy = vagrant("destroy", "-f", timeout=900) if not reused else None
        problems = host.stop()
        phase("vagrant destroy and host tear-down" if destroy else "host tear-down (cluster reused, left up)",
              torn_down)
        phase("whole run", started)
        assert destroy is None or destroy.returncode == 0, destroy.stdout + destroy.stderr
        assert not problems, f"tear-down left: {problems}"


def test_nodes_are_ready_on_their_private_addresses(cluster: VagrantCluster) -> None:
    nodes = get_json(cluster, "nodes")["items"]
    addresses = {
        n["metadata"]["name"]: {a["type"]: a["address"] for a in n["status"]["addresses"]}["InternalIP"]
        for n in nodes
    }
    assert addresses == NODE_IPS
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", node["metadata"]["name"]


@pytest.mark.usefixtures("web")
def test_node_port_from_the_host(cluster: VagrantCluster) -> None:
    """The host reaches the web pods through a NodePort on every VM, including one with no backend."""
    cluster.kubectl("expose", "deployment", "web", "--name", "web-nodeport", "--type", "NodePort", "--port", "80",
                    "--target-port", "http")
    try:
        port = get_json(cluster, "service", "web-nodeport")["spec"]["ports"][0]["nodePort"]
        pods = {p["metadata"]["name"] for p in running_pods(cluster, "app=web")}
        for ip in NODE_IPS.values():
            def fetch(url: str = f"http://{ip}:{port}/") -> str:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return resp.read().decode().strip()

            answer = wait_for(f"an answer from {ip}:{port}", fetch, timeout=120)
            assert answer in pods, f"{ip}:{port} answered {answer!r}, not one of {pods}"
    finally:
        cluster.kubectl("delete", "service", "web-nodeport", "--ignore-not-found")


def unit_pids(cluster: VagrantCluster, node: str) -> dict[str, str]:
    units = cluster.node_exec(node, "systemctl", "list-units", "--plain", "--no-legend", "pocket-*.service")
    assert units.returncode == 0, units.stderr
    pids = {}
    for unit in POCKET_UNITS.findall(units.stdout):
        show = cluster.node_exec(node, "systemctl", "show", "-p", "MainPID", "--value", unit)
        pids[unit] = show.stdout.strip()
    return pids


def expected_units(node: str) -> set[str]:
    """The units `pocket node setup` makes for this node of the Vagrantfile's cluster."""
    role = CONTROL_PLANE_ROLE if node == "control-plane" else WORKER_ROLE
    cluster, spec = node_cluster(role, node, NODE_IPS[node], NODE_IPS["control-plane"], tuple(NODE_IPS.items()))
    return {unit.name for unit in node_units(cluster, spec, "overlay2", "/opt/pocketkube/bin/python")}


def test_provision_again_changes_nothing(cluster: VagrantCluster) -> None:
    """`vagrant provision` re-runs `pocket node setup`: no file rewritten, no unit restarted."""
    before = {node: unit_pids(cluster, node) for node in ("control-plane", "worker1")}
    for node, pids in before.items():
        assert set(pids) == expected_units(node), pids
    for node in before:
        proc = vagrant("provision", node, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "nothing changed" in proc.stdout, proc.stdout[-4000:]
        assert not re.search(r"(starting|restarting) pocket-", proc.stdout), proc.stdout[-4000:]
    assert {node: unit_pids(cluster, node) for node in before} == before


# -- security, over TLS from the host ---------------------------------------------------------------------------


def node_file(cluster: VagrantCluster, node: str, path: Path) -> bytes:
    proc = cluster.node_exec(node, "cat", str(path))
    assert proc.returncode == 0, f"{node}:{path}: {proc.stderr}"
    return proc.stdout.encode()


@pytest.fixture(scope="module")
def ca_file(cluster: VagrantCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster CA, as the generated kubeconfig carries it."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    path = tmp_path_factory.mktemp("pkt-vagrant-ca") / "ca.crt"
    path.write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
    return path


def test_kubeconfig_carries_the_ca_and_the_admin_credential(cluster: VagrantCluster, ca_file: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == f"https://{NODE_IPS['control-plane']}:{API_PORT}"
    assert "insecure-skip-tls-verify" not in config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    admin = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert admin.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    assert cluster.kubeconfig.stat().st_mode & 0o077 == 0, "the kubeconfig holds the admin key: owner-only"
    assert cluster.kubectl("auth", "can-i", "create", "secrets", "-n", "kube-system").strip() == "yes"


def test_anonymous_requests_get_401_over_https(ca_file: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    base = f"https://{NODE_IPS['control-plane']}:{API_PORT}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10, context=context) as resp:
        assert resp.status == 200
    for path in ("/api/v1/namespaces", "/api/v1/namespaces/kube-public/configmaps/cluster-info"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + path, timeout=10, context=context)
        assert caught.value.code == 401, path
    refused(urllib.request.Request(f"http://{NODE_IPS['control-plane']}:{API_PORT}/api/v1/namespaces"), None)


def refused(request: urllib.request.Request, context: ssl.SSLContext | None) -> None:
    """The server gives no HTTP answer at all (a failed handshake, a closed connection)."""
    try:
        urllib.request.urlopen(request, timeout=10, context=context)
    except urllib.error.HTTPError as err:
        pytest.fail(f"{request.full_url} answered {err.code}")
    except (OSError, http.client.HTTPException):
        return
    pytest.fail(f"{request.full_url} answered")


def test_etcd_wants_a_client_certificate_and_stores_secrets_encrypted(
    cluster: VagrantCluster, ca_file: Path, tmp_path: Path
) -> None:
    url = f"https://{NODE_IPS['control-plane']}:{ETCD_CLIENT_PORT}/v3/kv/range"
    name = f"pkt-vagrant-{uuid.uuid4().hex[:6]}"
    value = "pkt-at-rest-" + uuid.uuid4().hex
    body = json.dumps({"key": base64.b64encode(f"/registry/secrets/default/{name}".encode()).decode()}).encode()
    refused(urllib.request.Request(url, data=body), ssl.create_default_context(cafile=str(ca_file)))
    layout = cluster_pki(cluster.layout)  # the VMs use ClusterConfig's default paths
    cert, key = tmp_path / "etcd-client.crt", tmp_path / "etcd-client.key"
    cert.write_bytes(node_file(cluster, "control-plane", layout.cert(APISERVER_ETCD_CLIENT)))
    key.touch(mode=0o600)
    key.write_bytes(node_file(cluster, "control-plane", layout.key(APISERVER_ETCD_CLIENT)))
    client = ssl.create_default_context(cafile=str(ca_file))
    client.load_cert_chain(cert, key)
    cluster.kubectl("create", "secret", "generic", name, f"--from-literal=password={value}")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10, context=client) as resp:
            (stored,) = json.loads(resp.read())["kvs"]
        raw = base64.b64decode(stored["value"])
        assert raw.startswith(b"k8s:enc:aesgcm:v1:")
        assert value.encode() not in raw and base64.b64encode(value.encode()) not in raw
    finally:
        cluster.kubectl("delete", "secret", name, "--ignore-not-found")


@pytest.mark.parametrize("worker", ["worker1", "worker2"])
def test_workers_run_as_their_node_with_a_certificate_issued_by_csr(
    cluster: VagrantCluster, ca_file: Path, worker: str
) -> None:
    """The kubelet's client certificate came from an approved CSR (bootstrap token, or the node renewing);
    kproxy uses the kubeconfig the kubelet wrote; the control plane never made a client key for the worker."""
    layout = cluster.layout
    pem = node_file(cluster, worker, layout.node_dir(worker) / "kubelet" / "pki" / CLIENT_FILE)
    certificate = x509.load_pem_x509_certificate(pem)
    assert certificate.subject.rfc4514_string() == f"CN=system:node:{worker},O=system:nodes"
    assert certificate.issuer == x509.load_pem_x509_certificate(ca_file.read_bytes()).subject
    csrs = json.loads(cluster.kubectl("get", "csr", "-o", "json"))["items"]
    issued = [c for c in csrs if base64.b64decode((c.get("status") or {}).get("certificate", ""))
              == certificate.public_bytes(Encoding.PEM)]
    assert len(issued) == 1, f"no CSR issued {worker}'s certificate: {[c['metadata']['name'] for c in csrs]}"
    requester = issued[0]["spec"]["username"]
    assert requester == f"system:node:{worker}" or requester.startswith("system:bootstrap:"), requester
    assert {c["type"] for c in issued[0]["status"]["conditions"]} == {"Approved"}
    kubeconfig = cluster_pki(layout).kubeconfig(node_identity(worker))
    for unit in ("pocket-kubelet.service", "pocket-kproxy.service"):
        exec_start = cluster.node_exec(worker, "systemctl", "show", "-p", "ExecStart", "--value", unit).stdout
        assert f"--kubeconfig {kubeconfig} " in exec_start, (unit, exec_start)
    written = yaml.safe_load(node_file(cluster, worker, kubeconfig))
    assert written["users"][0]["user"]["client-certificate"].endswith(CLIENT_FILE)
    on_control_plane = cluster.node_exec("control-plane", "ls", str(cluster_pki(layout).directory)).stdout.split()
    assert not [f for f in on_control_plane if f.startswith(node_identity(worker))], on_control_plane


def test_control_plane_runs_with_node_rbac_and_encryption(cluster: VagrantCluster) -> None:
    exec_start = cluster.node_exec("control-plane", "systemctl", "show", "-p", "ExecStart", "--value",
                                   "pocket-apiserver.service").stdout
    for flags in ("--authorization-mode Node,RBAC", "--enable-admission-plugins NodeRestriction",
                  "--encryption-provider-config", "--service-account-signing-key-file", "--tls-cert-file",
                  "--kubelet-certificate-authority"):
        assert flags in exec_start, (flags, exec_start)
