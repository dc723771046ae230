"""Partial and full syncs against real iptables (both backends) in a namespace this test makes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pytest

from kproxy.iptables.restore import IptablesPacketFilter, chain_rules, parse_save
from kproxy.iptables.rules import endpoint_chain, service_chain
from kproxy.iptables.sync import IptablesProgrammer, saved_form
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from tests.kproxy.netns import in_ns, namespaces
from tests.kproxy.tracer import Packet, Ruleset

pytestmark = pytest.mark.root

NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
IPTABLES = {"legacy": "iptables-legacy", "nft": "iptables"}
KEYS = [ServicePortName("default", f"s{n}", "", "TCP") for n in range(4)]


class SpyFilter(IptablesPacketFilter):
    """The real filter, also remembering each restore payload (as streamed) and whether it flushed."""

    def __init__(self, backend: str, prefix: list[str]):
        super().__init__(backend, prefix)
        self.calls: list[tuple[str, bool]] = []

    def restore(self, payload: str | Iterable[str], noflush: bool = True) -> None:
        pieces: list[str] = []
        self.calls.append(("", noflush))
        super().restore(_kept(payload, pieces), noflush)
        self.calls[-1] = ("".join(pieces), noflush)


def _kept(payload: str | Iterable[str], into: list[str]) -> Iterator[str]:
    for piece in (payload,) if isinstance(payload, str) else payload:
        into.append(piece)
        yield piece


def snap(count: int, last_endpoint: str = "10.244.3.3") -> ServiceSnapshot:
    ports = [ServicePort(k, f"10.96.0.{10 + n}", 80) for n, k in enumerate(KEYS[:count])]
    endpoints = {k: [Endpoint(f"10.244.{n}.1", 8080), Endpoint(f"10.244.{n}.2", 8080)] for n, k in enumerate(KEYS)}
    endpoints[KEYS[0]] = [Endpoint(last_endpoint, 8080)]
    return ServiceSnapshot(ports, {k: endpoints[k] for k in KEYS[:count]})


def declared(payload: str) -> set[str]:
    return {line[1:].split()[0] for line in payload.splitlines() if line.startswith(":")}


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("sync") as (ns,):
        yield ns


@pytest.mark.parametrize("backend", sorted(IPTABLES))
def test_partial_syncs_write_only_changes_and_full_sync_repairs(node_ns: str, backend: str) -> None:
    iptables = IPTABLES[backend]
    in_ns(node_ns, iptables, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    spy = SpyFilter(backend, ["ip", "netns", "exec", node_ns])
    programmer = IptablesProgrammer(spy, NODE)

    assert programmer.sync(snap(3), full=True).full
    first = spy.save()
    assert "-A PREROUTING -p tcp -m tcp --dport 9999 -j ACCEPT" in first

    # One endpoint changes: its service's chains, the new endpoint chain and nothing else are written.
    programmer.sync(snap(3, last_endpoint="10.244.3.4"), full=False)
    payload, noflush = spy.calls[-1]
    old_sep = endpoint_chain(KEYS[0], Endpoint("10.244.3.3", 8080))
    new_sep = endpoint_chain(KEYS[0], Endpoint("10.244.3.4", 8080))
    assert noflush and declared(payload) == {service_chain("KUBE-SVC-", KEYS[0]), new_sep, old_sep}
    assert f"-X {old_sep}" in payload
    traced = Ruleset(spy.save()).summary(Packet("10.244.9.9", "10.96.0.10", 80))
    assert traced == {("ACCEPT", "10.244.3.4:8080", False): pytest.approx(1.0)}

    # Nothing changed: nothing is written.
    calls = len(spy.calls)
    programmer.sync(snap(3, last_endpoint="10.244.3.4"), full=False)
    assert len(spy.calls) == calls

    # Someone flushes one of kproxy's chains; the next full sync puts back that chain alone.
    tampered = service_chain("KUBE-SVC-", KEYS[1])
    in_ns(node_ns, iptables, "-t", "nat", "-F", tampered)
    assert Ruleset(spy.save()).summary(Packet("10.244.9.9", "10.96.0.11", 80)) == {("ACCEPT", None, False): 1.0}
    programmer.sync(snap(3, last_endpoint="10.244.3.4"), full=True)
    payload, _ = spy.calls[-1]
    assert tampered in declared(payload) and service_chain("KUBE-SVC-", KEYS[2]) not in declared(payload)
    repaired = Ruleset(spy.save()).summary(Packet("10.244.9.9", "10.96.0.11", 80))
    assert set(repaired) == {("ACCEPT", "10.244.1.1:8080", False), ("ACCEPT", "10.244.1.2:8080", False)}

    # A restarted kproxy (nothing in memory) finds every chain as it wants it: its first full sync writes nothing.
    calls = len(spy.calls)
    assert IptablesProgrammer(spy, NODE).sync(snap(3, last_endpoint="10.244.3.4"), full=True).chains_written == 0
    assert len(spy.calls) == calls

    # A removed service's chains are deleted by a partial sync.
    programmer.sync(snap(2, last_endpoint="10.244.3.4"), full=False)
    nat = parse_save(spy.save())["nat"]
    assert service_chain("KUBE-SVC-", KEYS[2]) not in nat.chains
    assert "-A PREROUTING -p tcp -m tcp --dport 9999 -j ACCEPT" in nat.rules


def test_nft_backend_replaces_tables_above_the_bulk_limit_keeping_foreign_rules(node_ns: str) -> None:
    in_ns(node_ns, "iptables", "-t", "nat", "-N", "FOREIGN")
    in_ns(node_ns, "iptables", "-t", "nat", "-A", "FOREIGN", "-s", "10.1.2.3", "-j", "RETURN")
    in_ns(node_ns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    spy = SpyFilter("nft", ["ip", "netns", "exec", node_ns])
    programmer = IptablesProgrammer(spy, NODE, bulk_limit=5)
    programmer.sync(snap(4), full=True)
    assert spy.calls[-1][1] is False  # too many chains for --noflush: a whole-table restore
    saved = spy.save()
    kept = parse_save(saved)
    assert "-A FOREIGN -s 10.1.2.3/32 -j RETURN" in kept["nat"].rules
    assert "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in kept["filter"].rules
    for n in range(4):
        assert ("nat", service_chain("KUBE-SVC-", KEYS[n])) in chain_rules(saved)
    # A small change after that goes through --noflush again.
    programmer.sync(snap(4, last_endpoint="10.244.3.9"), full=False)
    assert spy.calls[-1][1] is True
    # A partial sync that would exceed the limit becomes a full one.
    programmer.sync(snap(1, last_endpoint="10.244.3.9"), full=False)
    assert spy.calls[-1][1] is False
    assert "-A FOREIGN -s 10.1.2.3/32 -j RETURN" in parse_save(spy.save())["nat"].rules
    assert service_chain("KUBE-SVC-", KEYS[3]) not in parse_save(spy.save())["nat"].chains


@pytest.mark.parametrize("backend", sorted(IPTABLES))
def test_saved_form_matches_what_save_prints_for_every_rule_kind(node_ns: str, backend: str) -> None:
    web, empty, local = (ServicePortName("default", n, p, proto) for n, p, proto in
                         (("web", "http", "TCP"), ("empty", "", "UDP"), ("loc", "", "TCP")))  # fmt: skip
    ports = [
        ServicePort(web, "10.96.0.50", 80, node_port=30080, external_ips=("192.168.56.200",),
                    load_balancer_ips=("192.168.56.240",), sticky_seconds=300),
        ServicePort(empty, "10.96.0.51", 53, node_port=30053, external_ips=("192.168.56.201",)),
        ServicePort(local, "10.96.0.52", 80, node_port=30081, external_policy_local=True, internal_policy_local=True),
    ]  # fmt: skip
    endpoints: dict[ServicePortName, Sequence[Endpoint]] = {
        web: [Endpoint(f"10.244.{n}.5", 8080) for n in (1, 2, 3)],
        local: [Endpoint("10.244.1.5", 8080)],
    }
    packet_filter = IptablesPacketFilter(backend, ["ip", "netns", "exec", node_ns])
    programmer = IptablesProgrammer(packet_filter, NODE)
    programmer.sync(ServiceSnapshot(ports, endpoints), full=True)
    kernel = chain_rules(packet_filter.save())
    for key, rules in programmer.written.items():
        assert kernel[key] == tuple(saved_form(r) for r in rules), key
    assert programmer.sync(ServiceSnapshot(ports, endpoints), full=True).chains_written == 0
