"""The network phase for real, in namespaces of its own (`pkt-up-<random>-`), torn down by `down`.

Also the host forwarder: bound on 127.0.0.1 in the host namespace,
forwarding into a node namespace of this test network.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocket import network, processes
from pocket.cluster import down
from pocket.config import ClusterConfig
from pocket.netns import nsenter_argv
from tests.conftest import free_port

pytestmark = pytest.mark.root


@pytest.fixture
def test_cluster(tmp_path: Path) -> Iterator[ClusterConfig]:
    config = ClusterConfig(
        prefix=f"pkt-up-{secrets.token_hex(3)}-",
        state_dir=tmp_path / "state",
        run_dir=tmp_path / "run",
        kubeconfig=tmp_path / "kube" / "config",
    )
    try:
        yield config
    finally:
        said: list[str] = []
        down(config, said.append)
        assert not [n for n in network.list_netns() if n.startswith(config.prefix)]


def in_ns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(nsenter_argv(netns, list(argv)), capture_output=True, text=True, timeout=20)


def ping(netns: str, address: str) -> bool:
    return in_ns(netns, "busybox", "ping", "-c", "1", "-W", "2", address).returncode == 0


def host_links() -> set[str]:
    """Interfaces in the host namespace with a name the network phase uses (other tests may add their own)."""
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {link["ifname"] for link in json.loads(out)}
    return {name for name in names if name.startswith("v-") or name in ("pkbr0", "eth0")}


def test_network_phase_connects_every_node_and_down_removes_it(test_cluster: ClusterConfig) -> None:
    links_before = host_links()
    assert network.ensure_network(test_cluster) is True
    assert {n for n in network.list_netns() if n.startswith(test_cluster.prefix)} == set(test_cluster.all_netns())
    assert host_links() == links_before, "nothing is added to the host namespace"

    hosts = test_cluster.endpoints()
    for netns, _ in hosts:
        for _, address in hosts:
            assert ping(netns, address), f"{netns} cannot reach {address}"

    for node in test_cluster.nodes:
        netns = test_cluster.node_netns(node.name)
        assert in_ns(netns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        routes = subprocess.run(["ip", "-n", netns, "route", "show"], capture_output=True, text=True).stdout
        assert "10.96.0.0/12 dev eth0" in routes
        assert "default" not in routes
    client_forward = in_ns(test_cluster.client_netns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip()
    assert client_forward == "0"

    assert network.ensure_network(test_cluster) is False

    said: list[str] = []
    assert down(test_cluster, said.append) == 0
    assert said == ["pocketkube is down; nothing of it is left."]
    assert not set(test_cluster.all_netns()) & set(network.list_netns())
    assert not test_cluster.state_dir.exists()
    assert host_links() == links_before


def test_network_phase_completes_a_half_made_network(test_cluster: ClusterConfig) -> None:
    network.ensure_network(test_cluster)
    worker2 = test_cluster.node_netns("worker2")
    subprocess.run(["ip", "-n", worker2, "link", "del", "eth0"], check=True)
    network.set_link(test_cluster.node_netns("worker1"), "eth0", up=False)
    subprocess.run(["ip", "netns", "del", test_cluster.client_netns], check=True)
    assert not ping(test_cluster.node_netns("control-plane"), "192.168.56.12")

    assert network.ensure_network(test_cluster) is True

    for address in ("192.168.56.11", "192.168.56.12", "192.168.56.1"):
        assert ping(test_cluster.node_netns("control-plane"), address), address
    assert network.ensure_network(test_cluster) is False


def test_forwarder_reaches_a_server_inside_a_node_namespace(test_cluster: ClusterConfig) -> None:
    network.ensure_network(test_cluster)
    control_plane = test_cluster.node_netns("control-plane")
    www = test_cluster.state_dir / "www"
    www.mkdir(parents=True)
    (www / "index.html").write_text("served from the control-plane namespace\n")
    server = processes.start(
        nsenter_argv(control_plane, ["busybox", "httpd", "-f", "-p", "192.168.56.10:6443", "-h", str(www)]),
        test_cluster.log_dir / "httpd.log",
        test_cluster.pid_dir / "httpd.pid",
    )
    port = free_port()
    forwarder = processes.start(
        [
            sys.executable,
            "-m",
            "pocket.cli",
            "forward",
            "--listen",
            f"127.0.0.1:{port}",
            "--netns",
            control_plane,
            "--target",
            "192.168.56.10:6443",
        ],
        test_cluster.log_dir / "forward.log",
        test_cluster.pid_dir / "forward.pid",
    )
    assert server.popen.poll() is None
    body = ""
    deadline = time.monotonic() + 15
    while not body and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as resp:
                body = resp.read().decode()
        except OSError:
            assert forwarder.popen.poll() is None, (test_cluster.log_dir / "forward.log").read_text()
            time.sleep(0.1)
    assert body == "served from the control-plane namespace\n"
    # The forwarder itself now lives in the control-plane namespace; its listener stayed on the host.
    assert processes.net_inode(forwarder.pid) == (Path("/var/run/netns") / control_plane).stat().st_ino
    for _ in range(20):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as resp:
            assert resp.read().decode() == body


def test_forwarder_rejects_a_bad_address() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pocket.cli",
            "forward",
            "--listen",
            "127.0.0.1:notaport",
            "--netns",
            "x",
            "--target",
            "192.168.56.10:6443",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "expected HOST:PORT" in proc.stderr and "127.0.0.1:notaport" in proc.stderr
