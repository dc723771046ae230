"""The HA plan (`pocket up --control-planes 3`): addresses, etcd members with peer TLS, certificates valid for
every control plane, each node's API forwarder, and the single-control-plane default left as it was."""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from control.pki import load_certificate
from pocket import forward
from pocket.certs import APISERVER, ETCD_SERVER, api_server_url, cluster_pki, ensure_cluster_pki
from pocket.commands import add_cluster_arguments, cluster_config
from pocket.config import DEFAULT_NODES, NODE_LOCAL_API_PORT, ClusterConfig, plan_nodes
from pocket.netns import entered
from pocket.network import MAX_IFNAME, peer_name
from pocket.node import API_FORWARD, ETCD, KDNS, REGISTRY, node_components
from tests.pocket.test_plan import flags

HA = ClusterConfig(prefix="pkt-ha-", nodes=plan_nodes(3), kubeconfig=Path("/tmp/pkt-ha.kubeconfig"))
SINGLE = ClusterConfig(prefix="pkt-ha-", kubeconfig=Path("/tmp/pkt-ha.kubeconfig"))


def parsed(*argv: str) -> ClusterConfig:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return cluster_config(parser.parse_args(list(argv)))


def components(cluster: ClusterConfig, node: str) -> dict[str, tuple[str, ...]]:
    return {c.name: c.argv for c in node_components(cluster, cluster.node(node), python="/usr/bin/python3",
                                                    pki=cluster_pki(cluster))}


def test_address_plan_keeps_the_first_control_plane_and_the_workers() -> None:
    assert [(n.name, n.role, n.ip) for n in HA.nodes] == [
        ("control-plane", "control-plane", "192.168.56.10"),
        ("control2", "control-plane", "192.168.56.20"),
        ("control3", "control-plane", "192.168.56.21"),
        ("worker1", "worker", "192.168.56.11"),
        ("worker2", "worker", "192.168.56.12"),
    ]
    assert plan_nodes(1) == DEFAULT_NODES
    assert all(len(peer_name(ns, HA)) <= MAX_IFNAME for ns in HA.all_netns())
    assert len({peer_name(ns, HA) for ns in HA.all_netns()}) == len(HA.all_netns())


def test_the_flag_reaches_the_config_and_bad_counts_are_refused() -> None:
    assert parsed().nodes == DEFAULT_NODES
    assert parsed("--control-planes", "3").nodes == plan_nodes(3)
    for bad in ("2", "0", "9"):
        with pytest.raises(SystemExit, match="--control-planes must be an odd number from 1 to 7.*got " + bad):
            parsed("--control-planes", bad)


def test_etcd_members_peer_over_tls_with_the_cluster_ca() -> None:
    pki = cluster_pki(HA)
    initial = ("control-plane=https://192.168.56.10:2380,control2=https://192.168.56.20:2380,"
               "control3=https://192.168.56.21:2380")
    dirs = set()
    for node, ip in (("control-plane", "192.168.56.10"), ("control2", "192.168.56.20"), ("control3", "192.168.56.21")):
        etcd = flags(components(HA, node)[ETCD])
        assert etcd["--initial-cluster"] == initial
        assert etcd["--listen-peer-urls"] == etcd["--initial-advertise-peer-urls"] == f"https://{ip}:2380"
        assert "--peer-client-cert-auth" in etcd
        assert etcd["--peer-trusted-ca-file"] == str(pki.ca)
        assert etcd["--peer-cert-file"] == str(pki.cert(ETCD_SERVER))
        assert etcd["--peer-key-file"] == str(pki.key(ETCD_SERVER))
        dirs.add(etcd["--data-dir"])
    assert dirs == {str(HA.etcd_dir), str(HA.state_dir / "etcd-control2"), str(HA.state_dir / "etcd-control3")}


def test_single_control_plane_etcd_is_unchanged() -> None:
    etcd = flags(components(SINGLE, "control-plane")[ETCD])
    assert etcd["--initial-cluster"] == "control-plane=http://127.0.0.1:2380"
    assert etcd["--listen-peer-urls"] == "http://127.0.0.1:2380"
    assert etcd["--data-dir"] == str(SINGLE.etcd_dir)
    assert not any(flag.startswith("--peer-") for flag in etcd)
    assert API_FORWARD not in components(SINGLE, "worker1")
    assert api_server_url(SINGLE) == "https://192.168.56.10:6443"


def test_every_node_reaches_the_api_through_its_own_forwarder() -> None:
    assert api_server_url(HA) == f"https://127.0.0.1:{NODE_LOCAL_API_PORT}"
    for node in HA.nodes:
        argv = components(HA, node.name)[API_FORWARD]
        assert argv[3] == "forward"
        assert flags(argv) == {
            "--listen": f"127.0.0.1:{NODE_LOCAL_API_PORT}",
            "--netns": HA.node_netns(node.name),
            "--target": "192.168.56.10:6443,192.168.56.20:6443,192.168.56.21:6443",
        }


def test_control_planes_run_the_control_plane_but_one_registry_and_the_usual_kdns() -> None:
    first, second = components(HA, "control-plane"), components(HA, "control2")
    assert {"etcd", "apiserver", "controller-manager", "scheduler", "kubelet", "kproxy"} <= set(second)
    assert REGISTRY in first and REGISTRY not in second and KDNS not in second
    assert KDNS in first and KDNS in components(HA, "worker1")
    assert flags(second["apiserver"])["--advertise-address"] == "192.168.56.20"
    assert ETCD not in components(HA, "worker1")


@pytest.fixture
def pki_dir(tmp_path: Path) -> Iterator[ClusterConfig]:
    yield ClusterConfig(prefix="pkt-ha-", state_dir=tmp_path, nodes=plan_nodes(3), kubeconfig=tmp_path / "kc")


def ip_sans(path: Path) -> set[str]:
    names = load_certificate(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_serving_certificates_carry_every_control_plane_ip(pki_dir: ClusterConfig) -> None:
    assert ensure_cluster_pki(pki_dir)
    paths = cluster_pki(pki_dir)
    ips = {"192.168.56.10", "192.168.56.20", "192.168.56.21"}
    assert ip_sans(paths.cert(APISERVER)) >= ips | {"10.96.0.1", "127.0.0.1"}
    assert ip_sans(paths.cert(ETCD_SERVER)) >= ips | {"127.0.0.1"}
    assert f"server: https://127.0.0.1:{NODE_LOCAL_API_PORT}" in paths.kubeconfig("scheduler").read_text()
    assert not ensure_cluster_pki(pki_dir)  # idempotent
    ctx = ssl.create_default_context(cafile=str(paths.ca))
    ctx.load_cert_chain(paths.cert(APISERVER), paths.key(APISERVER))  # the pair matches


def test_targets_parse_and_bad_lists_are_named() -> None:
    assert forward.parse_targets("10.0.0.1:6443,10.0.0.2:6443") == [("10.0.0.1", 6443), ("10.0.0.2", 6443)]
    with pytest.raises(ValueError, match="listed twice"):
        forward.parse_targets("10.0.0.1:6443,10.0.0.1:6443")
    with pytest.raises(ValueError, match="expected HOST:PORT.*'10.0.0.2'"):
        forward.parse_targets("10.0.0.1:6443,10.0.0.2")


async def echo_server(tag: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(tag + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def ask(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    await writer.drain()
    answer = await reader.read(100)
    writer.close()
    return answer


async def test_forwarder_fails_over_to_the_next_target_and_stays_there() -> None:
    first, first_port = await echo_server(b"first:")
    second, second_port = await echo_server(b"second:")
    targets = forward.Targets([("127.0.0.1", first_port), ("127.0.0.1", second_port)])
    listener = forward.bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    serving = asyncio.create_task(forward.serve(listener, targets))
    try:
        assert await ask(port) == b"first:ping"
        first.close()
        await first.wait_closed()
        assert await ask(port) == b"second:ping"
        assert targets.order()[0] == ("127.0.0.1", second_port)
        second.close()
        await second.wait_closed()
        assert await ask(port) == b""  # nothing accepts: the client's connection is closed
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    """pkt-haf-<random>-a and -b joined by a veth (10.250.0.1 and .2); both deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    near, far = f"pkt-haf-{tag}-a", f"pkt-haf-{tag}-b"
    try:
        for name in (near, far):
            subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", near, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                        "netns", far], check=True)
        for name, address in ((near, "10.250.0.1/24"), (far, "10.250.0.2/24")):
            subprocess.run(["ip", "-n", name, "addr", "add", address, "dev", "eth0"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "eth0", "up"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield near, far
    finally:
        for name in (near, far):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.root
def test_a_connection_to_a_vanished_target_is_closed_by_keepalive(two_namespaces: tuple[str, str]) -> None:
    """A target whose node vanishes (link down, no RST) must not hold an idle client connection forever:
    the forwarder's keepalives end it, so a watch reconnects through a live API server."""
    near, far = two_namespaces
    with entered(far):
        server = socket.create_server(("10.250.0.2", 0))
    target_port = server.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen_port = probe.getsockname()[1]
    forwarder = subprocess.Popen(
        [sys.executable, "-m", "pocket.cli", "forward", "--listen", f"127.0.0.1:{listen_port}", "--netns", near,
         "--target", f"10.250.0.2:{target_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", listen_port), timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the forwarder never listened"
                time.sleep(0.2)
        with client:
            server.settimeout(10)
            accepted, _ = server.accept()
            client.sendall(b"hello")
            assert accepted.recv(5) == b"hello"
            subprocess.run(["ip", "-n", far, "link", "set", "eth0", "down"], check=True)  # the node vanishes
            client.settimeout(30)  # without keepalives this read would wait forever
            try:
                assert client.recv(100) == b""
            except ConnectionResetError:
                pass  # closed with a reset: just as good
            accepted.close()
    finally:
        server.close()
        forwarder.terminate()
        forwarder.wait(timeout=10)
