"""Real connections through a VIP programmed by kproxy's transaction, all inside namespaces this test makes.

Layout (like a node with pods): a `node` namespace holding bridge br0
(10.244.1.1/24) with bridge-nf-call-iptables on, and `be` (backend,
10.244.1.10) and `cl` (client, 10.244.1.20) namespaces attached by veth,
each with a default route via the bridge. As on a cluster node, the node
routes the service range out of its `eth0` (here a veth whose peer stays in
the node namespace, so nothing leaves): without a route, the kernel answers
"network unreachable" before the filter table could REJECT.
"""

from __future__ import annotations

import select
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from kproxy.iptables.restore import IptablesPacketFilter, transaction
from kproxy.iptables.rules import build_ruleset
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables.ruleset import Nft, NftablesProgrammer
from tests.kproxy.netns import in_ns, namespaces

pytestmark = pytest.mark.root

BRIDGE_IP, BACKEND_IP, CLIENT_IP = "10.244.1.1", "10.244.1.10", "10.244.1.20"
WEB = ServicePortName("default", "web", "", "TCP")
EMPTY = ServicePortName("default", "empty", "", "TCP")
PLAIN = ServicePortName("default", "plain", "", "TCP")  # ClusterIP only: nftables mode's chainless shape
DATAGRAM = ServicePortName("default", "datagram", "", "UDP")

# Answers each connection (TCP 8080) or datagram (UDP 5353) with the peer address it saw, so the test can
# tell whether it was masqueraded.
SERVER = """
import socket, threading
def datagrams():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    for _ in range(20):
        data, peer = u.recvfrom(100)
        u.sendto(("hello " + peer[0]).encode(), peer)
threading.Thread(target=datagrams, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(8)
print("ready", flush=True)
for _ in range(20):
    c, peer = s.accept()
    c.sendall(("hello " + peer[0] + "\\n").encode())
    c.close()
"""

CLIENT = """
import socket, sys
udp = len(sys.argv) > 3
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
c.settimeout(5)
try:
    c.connect((sys.argv[1], int(sys.argv[2])))
    if udp:
        c.send(b"hi")
        print(c.recv(100).decode())
    else:
        print(c.makefile().readline().strip())
except ConnectionRefusedError:
    print("refused")
except OSError as err:
    print("error", type(err).__name__, err)
"""


@dataclass
class Pods:
    node: str
    backend: str
    client: str


def _attach(node: str, pod: str, link: str, ip: str) -> None:
    in_ns(node, "ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", pod)
    in_ns(node, "ip", "link", "set", link, "master", "br0", "up")
    in_ns(pod, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
    in_ns(pod, "ip", "link", "set", "eth0", "up")
    in_ns(pod, "ip", "route", "add", "default", "via", BRIDGE_IP)


@pytest.fixture
def pods() -> Iterator[Pods]:
    with namespaces("node", "be", "cl") as (node, backend, client):
        in_ns(node, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(node, "ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0")
        in_ns(node, "ip", "link", "set", "br0", "up")
        in_ns(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(node, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
        in_ns(node, "ip", "link", "set", "uplink", "up")
        in_ns(node, "ip", "link", "set", "eth0", "up")
        in_ns(node, "ip", "route", "add", "10.96.0.0/12", "dev", "eth0")
        in_ns(node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        _attach(node, backend, "vbe", BACKEND_IP)
        _attach(node, client, "vcl", CLIENT_IP)
        # A pod reaching itself through a VIP leaves and re-enters by the same bridge port.
        in_ns(node, "ip", "link", "set", "vbe", "type", "bridge_slave", "hairpin", "on")
        yield Pods(node, backend, client)


@pytest.fixture
def server(pods: Pods) -> Iterator[None]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", pods.backend, "python3", "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready and process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.kill()
        process.wait(timeout=10)


def connect(ns: str, ip: str, port: int, udp: bool = False) -> str:
    return in_ns(ns, "python3", "-c", CLIENT, ip, str(port), *(["udp"] if udp else [])).stdout.strip()


@pytest.fixture(params=["iptables", "nftables"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def program(pods: Pods, mode: str) -> None:
    """The same services, in kube-proxy's iptables layout or in kproxy's nftables table."""
    ports = [
        ServicePort(WEB, "10.96.100.1", 80, node_port=30080),
        ServicePort(EMPTY, "10.96.100.2", 80),
        ServicePort(PLAIN, "10.96.100.3", 80),
        ServicePort(DATAGRAM, "10.96.100.4", 53),
    ]
    endpoints: dict[ServicePortName, Sequence[Endpoint]] = {
        WEB: [Endpoint(BACKEND_IP, 8080)],
        EMPTY: [],
        PLAIN: [Endpoint(BACKEND_IP, 8080)],
        DATAGRAM: [Endpoint(BACKEND_IP, 5353)],
    }
    node = NodeConfig("node", (BRIDGE_IP,), "10.244.0.0/16")
    if mode == "nftables":
        NftablesProgrammer(Nft(pods.node), node).sync(ServiceSnapshot(ports, endpoints), full=True)
        return
    packet_filter = IptablesPacketFilter("legacy", ["ip", "netns", "exec", pods.node])
    packet_filter.restore(transaction(build_ruleset(ports, endpoints, node), packet_filter.save()))


def test_client_reaches_backend_through_the_cluster_ip(pods: Pods, server: None, mode: str) -> None:
    assert not connect(pods.client, "10.96.100.1", 80).startswith("hello")  # nothing programmed yet
    program(pods, mode)
    # Pod-to-pod through the VIP keeps the client's own address.
    assert connect(pods.client, "10.96.100.1", 80) == f"hello {CLIENT_IP}"


def test_service_without_endpoints_refuses_connections(pods: Pods, server: None, mode: str) -> None:
    program(pods, mode)
    assert connect(pods.client, "10.96.100.2", 80) == "refused"
    # The same port on the served VIP still works, so the refusal is the no-endpoints REJECT.
    assert connect(pods.client, "10.96.100.1", 80) == f"hello {CLIENT_IP}"


def test_backend_reaching_itself_through_the_vip_is_masqueraded(pods: Pods, server: None, mode: str) -> None:
    program(pods, mode)
    assert connect(pods.backend, "10.96.100.1", 80) == f"hello {BRIDGE_IP}"
    assert connect(pods.backend, "10.96.100.3", 80) == f"hello {BRIDGE_IP}"


def test_cluster_ip_only_services_carry_tcp_and_udp(pods: Pods, server: None, mode: str) -> None:
    program(pods, mode)
    assert connect(pods.client, "10.96.100.3", 80) == f"hello {CLIENT_IP}"
    assert connect(pods.client, "10.96.100.4", 53, udp=True) == f"hello {CLIENT_IP}"


def test_node_port_on_the_node_address_reaches_the_backend_masqueraded(pods: Pods, server: None, mode: str) -> None:
    program(pods, mode)
    # Cluster external policy: the endpoint could be on another node, so the source becomes the node's.
    assert connect(pods.client, BRIDGE_IP, 30080) == f"hello {BRIDGE_IP}"
