"""The transaction applied with the real iptables-legacy-restore in a namespace this test makes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kproxy.iptables.restore import IptablesPacketFilter, parse_save, transaction
from kproxy.iptables.rules import build_ruleset, endpoint_chain, service_chain
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName
from tests.kproxy.netns import in_ns, namespaces
from tests.kproxy.tracer import Packet, Ruleset

pytestmark = pytest.mark.root

NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
WEB = ServicePortName("default", "web", "http", "TCP")
DNS = ServicePortName("kube-system", "kube-dns", "dns", "UDP")
PORTS = [
    ServicePort(WEB, "10.96.0.50", 80, node_port=30080, sticky_seconds=300),
    ServicePort(DNS, "10.96.0.10", 53),
]
ENDPOINTS = {
    WEB: [Endpoint("10.244.1.5", 8080), Endpoint("10.244.2.6", 8080)],
    DNS: [Endpoint("10.244.0.3", 53)],
}


IPTABLES = {"legacy": "iptables-legacy", "nft": "iptables"}


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("ipt") as (ns,):
        yield ns


def sync(packet_filter: IptablesPacketFilter, ports: list[ServicePort]) -> str:
    payload = transaction(build_ruleset(ports, ENDPOINTS, NODE), packet_filter.save())
    packet_filter.restore(payload)
    return packet_filter.save()


@pytest.mark.parametrize("backend", sorted(IPTABLES))
def test_apply_read_back_keep_foreign_rules_and_remove_stale_chains(node_ns: str, backend: str) -> None:
    iptables = IPTABLES[backend]
    in_ns(node_ns, iptables, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    in_ns(node_ns, iptables, "-t", "nat", "-N", "FOREIGN-CHAIN")
    in_ns(node_ns, iptables, "-t", "nat", "-A", "FOREIGN-CHAIN", "-s", "10.1.2.3", "-j", "RETURN")
    packet_filter = IptablesPacketFilter(backend, ["ip", "netns", "exec", node_ns])

    saved = sync(packet_filter, PORTS)
    nat = parse_save(saved)["nat"]
    web_chains = {service_chain("KUBE-SVC-", WEB), service_chain("KUBE-EXT-", WEB)}
    web_chains |= {endpoint_chain(WEB, e) for e in ENDPOINTS[WEB]}
    assert web_chains | {service_chain("KUBE-SVC-", DNS)} <= nat.chains
    assert "-A PREROUTING -p tcp -m tcp --dport 9999 -j ACCEPT" in nat.rules
    assert "-A FOREIGN-CHAIN -s 10.1.2.3/32 -j RETURN" in nat.rules
    # What the kernel holds behaves as generated: trace the saved text itself.
    kernel = Ruleset(saved)
    outcomes = kernel.summary(Packet("10.244.9.9", "10.96.0.50", 80, local_ips=frozenset(NODE.node_ips)))
    assert outcomes == {
        ("ACCEPT", "10.244.1.5:8080", False): pytest.approx(0.5),
        ("ACCEPT", "10.244.2.6:8080", False): pytest.approx(0.5),
    }

    # Second sync without the web service: its chains go, nothing else changes, jumps are not duplicated.
    saved = sync(packet_filter, PORTS[1:])
    tables = parse_save(saved)
    assert not web_chains & tables["nat"].chains
    assert service_chain("KUBE-SVC-", DNS) in tables["nat"].chains
    assert "FOREIGN-CHAIN" in tables["nat"].chains
    assert "-A PREROUTING -p tcp -m tcp --dport 9999 -j ACCEPT" in tables["nat"].rules
    assert sum(r.endswith("-j KUBE-SERVICES") for r in tables["nat"].rules if r.startswith("-A PREROUTING")) == 1
    assert sum(r.endswith("-j KUBE-FORWARD") for r in tables["filter"].rules) == 1
    assert "30080" not in saved


def test_resync_repairs_rules_changed_behind_its_back(node_ns: str) -> None:
    packet_filter = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns])
    first = sync(packet_filter, PORTS)
    svc = service_chain("KUBE-SVC-", DNS)
    in_ns(node_ns, "iptables-legacy", "-t", "nat", "-F", svc)
    in_ns(
        node_ns,
        "iptables-legacy",
        "-t",
        "nat",
        "-D",
        "PREROUTING",
        "-m",
        "comment",
        "--comment",
        "kubernetes service portals",
        "-j",
        "KUBE-SERVICES",
    )
    assert parse_save(packet_filter.save())["nat"].rules != parse_save(first)["nat"].rules
    repaired = sync(packet_filter, PORTS)
    assert sorted(parse_save(repaired)["nat"].rules) == sorted(parse_save(first)["nat"].rules)
