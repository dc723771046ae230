"""The nftables ruleset for fixed inputs, traced packet by packet (the same cases as the iptables tests)."""

from __future__ import annotations

import gc
import subprocess
from collections.abc import Iterator, Sequence

import pytest

from kproxy.iptables.restore import PacketFilterError
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables.netlink import UnsupportedRule, compile_rule
from kproxy.nftables.ruleset import (
    HAIRPIN_ENDPOINTS,
    NO_ENDPOINT_SERVICES,
    SERVICE_CHAIN_PREFIXES,
    Nft,
    NftablesProgrammer,
    RecordingNft,
    ServiceNft,
    affinity_set,
    build_nft,
    chain_name,
    change_batch,
    diff_changes,
    diff_script,
    render_changes,
)
from tests.kproxy.netns import in_ns, namespaces
from tests.kproxy.nft_tracer import NftTrace
from tests.kproxy.tracer import Packet

NODE_IP = "192.168.56.11"
NODE = NodeConfig("worker1", (NODE_IP,), "10.244.0.0/16")
LOCAL = frozenset(NODE.node_ips)
WEB = ServicePortName("default", "web", "http", "TCP")
EPS = [Endpoint("10.244.1.5", 8080, node_name="worker1", is_local=True), Endpoint("10.244.2.7", 8080)]


def three() -> list[Endpoint]:
    return [Endpoint(f"10.244.{n}.{n}", 8080) for n in (1, 2, 3)]


def traced(ports: list[ServicePort], endpoints: dict[ServicePortName, list[Endpoint]]) -> NftTrace:
    return NftTrace(build_nft(ports, endpoints, NODE))


def test_cluster_ip_spreads_evenly_and_pod_source_keeps_its_address() -> None:
    rules = traced([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three()})
    outcomes = rules.summary(Packet("10.244.9.9", "10.96.0.50", 80, local_ips=LOCAL))
    assert set(outcomes) == {("ACCEPT", f"10.244.{n}.{n}:8080", False) for n in (1, 2, 3)}
    assert all(odds == pytest.approx(1 / 3) for odds in outcomes.values())
    # Other port or protocol: not captured.
    assert rules.summary(Packet("10.244.9.9", "10.96.0.50", 81)) == {("ACCEPT", None, False): 1.0}
    assert rules.summary(Packet("10.244.9.9", "10.96.0.50", 80, proto="udp")) == {("ACCEPT", None, False): 1.0}


def test_off_cluster_source_and_node_itself_are_masqueraded() -> None:
    rules = traced([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three()})
    assert {m for _, _, m in rules.summary(Packet("192.168.56.1", "10.96.0.50", 80, local_ips=LOCAL))} == {True}
    from_node = rules.summary(Packet(NODE_IP, "10.96.0.50", 80, local_ips=LOCAL), hook="OUTPUT")
    assert sum(from_node.values()) == pytest.approx(1.0) and {m for _, _, m in from_node} == {True}


def test_hairpin_backend_reaching_itself_is_masqueraded() -> None:
    rules = traced([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three()})
    outcomes = rules.summary(Packet("10.244.2.2", "10.96.0.50", 80, local_ips=LOCAL))
    assert outcomes[("ACCEPT", "10.244.2.2:8080", True)] == pytest.approx(1 / 3)
    assert outcomes[("ACCEPT", "10.244.1.1:8080", False)] == pytest.approx(1 / 3)


def test_no_endpoints_rejects_cluster_ip_external_ip_and_node_port() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, external_ips=("192.168.56.200",))
    ruleset = build_nft([port], {WEB: []}, NODE)
    assert not [c for c in ruleset.chains if c.startswith(("svc-", "ep-"))]
    rules = NftTrace(ruleset)
    assert rules.summary(Packet("10.244.7.7", "10.96.0.50", 80, local_ips=LOCAL)) == {("REJECT", None, False): 1.0}
    assert rules.summary(Packet(NODE_IP, "10.96.0.50", 80, local_ips=LOCAL), hook="OUTPUT") == {
        ("REJECT", None, False): 1.0
    }
    for packet in (
        Packet("192.168.56.1", "192.168.56.200", 80, local_ips=LOCAL),
        Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL),
    ):
        assert rules.summary(packet) == {("REJECT", None, False): 1.0}


def test_node_port_external_ip_and_load_balancer_ip_go_through_ext_masqueraded() -> None:
    port = ServicePort(
        WEB, "10.96.0.50", 80, node_port=30080, external_ips=("192.168.56.200",), load_balancer_ips=("192.168.56.240",)
    )
    rules = traced([port], {WEB: EPS})
    for packet in (
        Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL),
        Packet("192.168.56.1", "192.168.56.200", 80, local_ips=LOCAL),
        Packet("192.168.56.1", "192.168.56.240", 80, local_ips=LOCAL),
    ):
        outcomes = rules.trace(packet)
        assert all(chain_name("ext-", WEB) in o.chains and o.masquerade for o in outcomes)
        assert {o.dnat for o in outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}
    # A node port on an address that is not the node's is not a node port.
    assert rules.summary(Packet("192.168.56.1", "192.168.56.99", 30080, local_ips=LOCAL)) == {
        ("ACCEPT", None, False): 1.0
    }


def test_external_traffic_policy_local_keeps_the_source_and_uses_local_endpoints() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, external_policy_local=True)
    rules = traced([port], {WEB: EPS})
    assert rules.summary(Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL)) == {
        ("ACCEPT", "10.244.1.5:8080", False): pytest.approx(1.0)
    }
    from_pod = rules.summary(Packet("10.244.3.3", NODE_IP, 30080, local_ips=LOCAL))
    assert set(from_pod) == {("ACCEPT", "10.244.1.5:8080", False), ("ACCEPT", "10.244.2.7:8080", False)}
    # No local endpoint: outside traffic is dropped, not sent to another node.
    remote_only = traced([port], {WEB: [EPS[1]]})
    assert remote_only.summary(Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL)) == {("DROP", None, False): 1.0}


def test_the_node_itself_reaches_a_local_policy_load_balancer_ip_without_local_endpoints() -> None:
    """As kube-proxy's iptables filters: the DROP is for traffic arriving from outside, not the node's own."""
    port = ServicePort(WEB, "10.96.0.50", 80, load_balancer_ips=("192.168.56.240",), external_policy_local=True)
    rules = traced([port], {WEB: [EPS[1]]})  # the only endpoint is on another node
    assert rules.summary(Packet("192.168.56.1", "192.168.56.240", 80, local_ips=LOCAL)) == {("DROP", None, False): 1.0}
    from_node = rules.summary(Packet(NODE_IP, "192.168.56.240", 80, local_ips=LOCAL), hook="OUTPUT")
    assert from_node == {("ACCEPT", "10.244.2.7:8080", True): pytest.approx(1.0)}


def test_client_ip_affinity_sends_a_known_client_to_its_endpoint() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, sticky_seconds=300)
    rules = traced([port], {WEB: three()})
    known = affinity_set(WEB, Endpoint("10.244.2.2", 8080))
    outcome = rules.summary(Packet("10.244.9.9", "10.96.0.50", 80, recent=frozenset({known})))
    assert outcome == {("ACCEPT", "10.244.2.2:8080", False): pytest.approx(1.0)}
    fresh = rules.summary(Packet("10.244.9.9", "10.96.0.50", 80))
    assert len(fresh) == 3
    ep_rules = build_nft([port], {WEB: three()}, NODE).chains[chain_name("ep-", WEB, Endpoint("10.244.2.2", 8080))]
    assert f"update @{known} {{ ip saddr }}" in ep_rules


def test_one_spread_service_change_is_a_few_elements_and_no_rule() -> None:
    ports = [ServicePort(ServicePortName("ns", f"s{n}", "", "TCP"), f"10.96.1.{n}", 80) for n in range(200)]
    endpoints = {p.key: three() for p in ports}
    before = build_nft(ports, endpoints, NODE)
    assert not [c for c in before.chains if c.startswith(SERVICE_CHAIN_PREFIXES)]
    # One endpoint replaced: its map entry and a hairpin pair; the old pair stays, the other services use it.
    endpoints[ports[7].key] = [*three()[:2], Endpoint("10.244.9.9", 8080)]
    changes, written = diff_changes(before, build_nft(ports, endpoints, NODE))
    assert written == 0
    assert changes == [
        ("delete element", "service-endpoints-tcp", "10.96.1.7 . tcp . 80 . 2"),
        ("add element", "service-endpoints-tcp", "10.96.1.7 . tcp . 80 . 2", "10.244.9.9 . 8080"),
        ("add element", HAIRPIN_ENDPOINTS, "10.244.9.9 . 10.244.9.9", ""),
    ]
    # Another endpoint count: the key moves to a new set, and chain `services` gains that set's two rules.
    endpoints[ports[7].key] = three()[:2]
    script, written = diff_script(before, build_nft(ports, endpoints, NODE))
    assert written == 1 and "flush chain ip kproxy services" in script
    assert "add set ip kproxy spread-tcp-2 " in script
    assert "delete element ip kproxy spread-tcp-3 { 10.96.1.7 . tcp . 80 }" in script
    assert "add element ip kproxy spread-tcp-2 { 10.96.1.7 . tcp . 80 }" in script
    # A new service: its elements only.
    added = ServicePort(ServicePortName("ns", "new", "", "TCP"), "10.96.2.1", 80)
    endpoints.update({ports[7].key: three(), added.key: three()})
    changes, written = diff_changes(before, build_nft([*ports, added], endpoints, NODE))
    assert written == 0 and {c[0] for c in changes} == {"add element"}
    assert {c[2] for c in changes} == {"10.96.2.1 . tcp . 80", *(f"10.96.2.1 . tcp . 80 . {i}" for i in range(3))}


def test_one_chained_service_change_is_a_constant_size_diff() -> None:
    ports = [
        ServicePort(ServicePortName("ns", f"s{n}", "", "TCP"), f"10.96.1.{n}", 80, node_port=30000 + n)
        for n in range(200)
    ]
    endpoints = {p.key: three() for p in ports}
    before = build_nft(ports, endpoints, NODE)
    endpoints[ports[7].key] = three()[:2]
    script, chains = diff_script(before, build_nft(ports, endpoints, NODE))
    assert chains == 1  # only s7's service chain is rewritten
    assert len(script.splitlines()) < 12
    assert f"delete chain ip kproxy {chain_name('ep-', ports[7].key, three()[2])}" in script
    assert "s1" not in script


def test_programmer_partial_then_full() -> None:
    nft = RecordingNft()
    programmer = NftablesProgrammer(nft, NODE)
    ports = [ServicePort(WEB, "10.96.0.50", 80)]
    programmer.sync(ServiceSnapshot(ports, {WEB: EPS}), full=True)
    programmer.sync(ServiceSnapshot(ports, {WEB: []}), full=False)
    assert (
        f"add element ip kproxy {NO_ENDPOINT_SERVICES} {{ 10.96.0.50 . tcp . 80 : goto reject-chain }}"
        in nft.scripts[1]
    )
    assert "flush map" not in nft.scripts[1]
    programmer.sync(ServiceSnapshot(ports, {WEB: []}), full=False)
    assert len(nft.scripts) == 2  # nothing changed, nothing applied
    programmer.sync(ServiceSnapshot(ports, {WEB: []}), full=True)
    assert "flush map ip kproxy service-ips" in nft.scripts[2]


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("nft") as (ns,):
        yield ns


@pytest.mark.root
def test_real_nft_apply_diff_repair_and_foreign_tables_untouched(node_ns: str) -> None:
    in_ns(node_ns, "nft", "add table ip other; add chain ip other c; add rule ip other c tcp dport 9 accept")
    nft = Nft(node_ns)
    programmer = NftablesProgrammer(nft, NODE)
    ports = [ServicePort(WEB, "10.96.0.50", 80, node_port=30080, sticky_seconds=60)]
    programmer.sync(ServiceSnapshot(ports, {WEB: EPS}), full=True)
    chains = nft.list_names()[0]
    assert {chain_name("svc-", WEB), chain_name("ext-", WEB)} <= chains
    programmer.sync(ServiceSnapshot(ports, {WEB: EPS[:1]}), full=False)
    assert chain_name("ep-", WEB, EPS[1]) not in nft.list_names()[0]
    # Someone deletes one of kproxy's chains' rules; the full sync puts them back.
    in_ns(node_ns, "nft", f"flush chain ip kproxy {chain_name('svc-', WEB)}")
    programmer.sync(ServiceSnapshot(ports, {WEB: EPS[:1]}), full=True)
    listing = in_ns(node_ns, "nft", "list", "chain", "ip", "kproxy", chain_name("svc-", WEB)).stdout
    assert f"goto {chain_name('ep-', WEB, EPS[0])}" in listing
    # A chainless service: an element deleted behind kproxy's back comes back with the full sync.
    plain = ServicePort(ServicePortName("default", "plain", "", "TCP"), "10.96.0.60", 80)
    ports.append(plain)
    programmer.sync(ServiceSnapshot(ports, {WEB: EPS[:1], plain.key: EPS}), full=False)
    entry = "10.96.0.60 . tcp . 80 . 1"
    in_ns(node_ns, "nft", f"delete element ip kproxy service-endpoints-tcp {{ {entry} }}")
    programmer.sync(ServiceSnapshot(ports, {WEB: EPS[:1], plain.key: EPS}), full=True)
    listing = in_ns(node_ns, "nft", "list", "map", "ip", "kproxy", "service-endpoints-tcp").stdout
    assert f"{entry} : 10.244.2.7 . 8080" in listing
    # A restarted kproxy finds a set it no longer wants (no service has two endpoints now) and deletes it.
    assert "spread-tcp-2" in nft.list_names()[1]
    NftablesProgrammer(nft, NODE).sync(ServiceSnapshot(ports, {WEB: EPS[:1], plain.key: EPS[:1]}), full=True)
    assert "spread-tcp-2" not in nft.list_names()[1] and "spread-tcp-1" in nft.list_names()[1]
    # Services gone: their chains go; the other table is untouched.
    programmer.sync(ServiceSnapshot([], {}), full=True)
    assert not [c for c in nft.list_names()[0] if c.startswith(("svc-", "ext-", "ep-"))]
    assert not [s for s in nft.list_names()[1] if s.startswith(("spread-", "aff-"))]
    other = subprocess.run(
        ["ip", "netns", "exec", node_ns, "nft", "list", "table", "ip", "other"], capture_output=True, text=True
    )
    assert "tcp dport 9 accept" in other.stdout


def every_shape(endpoints: list[Endpoint]) -> tuple[list[ServicePort], dict[ServicePortName, Sequence[Endpoint]]]:
    """Services using every rule and element shape kproxy writes: affinity, Local policies, node ports, UDP,
    chainless ClusterIPs."""
    dns = ServicePortName("kube-system", "dns", "dns", "UDP")
    plain = ServicePortName("default", "plain", "http", "TCP")
    local = ServicePortName("default", "local", "http", "TCP")
    empty = ServicePortName("default", "empty", "http", "TCP")
    ports = [
        ServicePort(WEB, "10.96.0.50", 80, node_port=30080, sticky_seconds=60, external_ips=("192.168.56.200",)),
        ServicePort(dns, "10.96.0.10", 53),
        ServicePort(
            local,
            "10.96.0.60",
            80,
            node_port=30081,
            load_balancer_ips=("192.168.56.240",),
            external_policy_local=True,
            internal_policy_local=True,
        ),
        ServicePort(empty, "10.96.0.70", 80, node_port=30082),
        ServicePort(plain, "10.96.0.80", 80),
    ]
    return ports, {WEB: endpoints, dns: endpoints[:1], local: endpoints, empty: (), plain: endpoints}


@pytest.fixture
def two_ns() -> Iterator[list[str]]:
    with namespaces("nl", "cli") as made:
        yield made


@pytest.mark.root
def test_netlink_changes_leave_the_same_table_as_nft_f(two_ns: list[str]) -> None:
    """The same diffs, once as a netlink batch and once as an `nft -f` script, list identically."""
    by_netlink, by_script = (Nft(ns) for ns in two_ns)
    steps: list[tuple[list[ServicePort], dict[ServicePortName, Sequence[Endpoint]]]] = [
        every_shape(EPS),
        # Both endpoints replaced, as many as before: elements and chains only.
        every_shape([Endpoint("10.244.1.6", 8080, node_name="worker1", is_local=True), Endpoint("10.244.2.8", 8080)]),
        every_shape([*EPS, Endpoint("10.244.3.9", 8080, node_name="worker1", is_local=True)]),
        every_shape(EPS[1:]),  # no local endpoint left: Local services drop
        every_shape([]),  # nothing anywhere: every address rejects
        every_shape(EPS[:1]),
        ([ServicePort(WEB, "10.96.0.51", 8080)], {WEB: tuple(EPS)}),  # the rest removed, one moved
    ]
    previous = build_nft(*steps[0], NODE)
    by_netlink_elements: list[tuple[str, ...]] = []
    for nft in (by_netlink, by_script):
        NftablesProgrammer(nft, NODE).sync(ServiceSnapshot(*steps[0]), full=True)
    for ports, endpoints in steps[1:]:
        wanted = build_nft(ports, endpoints, NODE)
        changes, _ = diff_changes(previous, wanted)
        change_batch(changes)  # all of it goes by netlink (new `spread-` sets declared by nft -f first)
        by_netlink_elements += [c for c in changes if c[1].startswith(("service-endpoints-", "spread-"))]
        by_netlink.apply_changes(changes)
        by_script.apply(render_changes(changes))
        listings = [in_ns(ns, "nft", "list", "table", "ip", "kproxy").stdout for ns in two_ns]
        assert listings[0] == listings[1]
        assert all(f"chain {name} {{" in listings[0] for name in wanted.chains)
        previous = wanted
    assert {"service-endpoints-tcp", "service-endpoints-udp"} <= {c[1] for c in by_netlink_elements}
    assert {"add set", "delete set"} <= {c[0] for c in by_netlink_elements}  # endpoint counts came and went


@pytest.mark.root
def test_netlink_batch_is_atomic_and_names_the_change_it_failed_on(node_ns: str) -> None:
    nft = Nft(node_ns)
    NftablesProgrammer(nft, NODE).sync(ServiceSnapshot([], {}), full=True)
    before = in_ns(node_ns, "nft", "list", "table", "ip", "kproxy").stdout
    changes = [("add chain", "svc-new"), ("add rule", "svc-new", "goto ep-missing")]
    with pytest.raises(PacketFilterError, match="goto ep-missing"):
        nft.apply_changes(changes)
    assert in_ns(node_ns, "nft", "list", "table", "ip", "kproxy").stdout == before  # svc-new was not left behind


def test_rules_outside_the_known_shapes_are_refused_by_the_compiler() -> None:
    with pytest.raises(UnsupportedRule, match="counter"):
        compile_rule("ip saddr 10.0.0.1 counter")
    with pytest.raises(UnsupportedRule, match="icmp"):
        compile_rule("meta l4proto icmp dnat to 10.0.0.1:80")


def test_programmer_sends_only_the_services_that_changed() -> None:
    nft = RecordingNft()
    programmer = NftablesProgrammer(nft, NODE)
    keys = [ServicePortName("default", f"s{i}", "http", "TCP") for i in range(50)]
    ports = [ServicePort(key, f"10.96.1.{i}", 80) for i, key in enumerate(keys)]
    endpoints: dict[ServicePortName, Sequence[Endpoint]] = {
        key: [Endpoint(f"10.244.1.{i}", 8080)] for i, key in enumerate(keys)
    }
    programmer.sync(ServiceSnapshot(ports, endpoints), full=True)
    # Equal but freshly made objects are no change at all.
    copies = [ServicePort(p.key, p.cluster_ip, p.port) for p in ports]
    programmer.sync(ServiceSnapshot(copies, {k: tuple(v) for k, v in endpoints.items()}), full=False)
    assert len(nft.scripts) == 1
    moved = {**endpoints, keys[7]: [Endpoint("10.244.9.9", 8080)]}
    programmer.sync(ServiceSnapshot(ports, moved), full=False)
    assert nft.scripts[1].splitlines() == [
        "delete element ip kproxy hairpin-endpoints { 10.244.1.7 . 10.244.1.7 }",
        "delete element ip kproxy service-endpoints-tcp { 10.96.1.7 . tcp . 80 . 0 }",
        "add element ip kproxy hairpin-endpoints { 10.244.9.9 . 10.244.9.9 }",
        "add element ip kproxy service-endpoints-tcp { 10.96.1.7 . tcp . 80 . 0 : 10.244.9.9 . 8080 }",
    ]
    programmer.sync(ServiceSnapshot(ports[:7] + ports[8:], moved), full=False)
    assert "delete element ip kproxy spread-tcp-1 { 10.96.1.7 . tcp . 80 }" in nft.scripts[2]
    assert "10.96.1.8" not in nft.scripts[2]


def test_an_element_two_services_share_outlives_either() -> None:
    """Both Services select the same pod: removing one keeps the pod's hairpin pair; a full build agrees."""
    nft = RecordingNft()
    programmer = NftablesProgrammer(nft, NODE)
    first, second = (ServicePortName("default", name, "http", "TCP") for name in ("a", "b"))
    ports = [ServicePort(first, "10.96.1.1", 80), ServicePort(second, "10.96.1.2", 80)]
    pod = [Endpoint("10.244.1.5", 8080)]
    programmer.sync(ServiceSnapshot(ports, {first: pod, second: pod}), full=True)
    programmer.sync(ServiceSnapshot(ports[1:], {second: pod}), full=False)
    assert "hairpin" not in nft.scripts[1]
    assert programmer.elements == build_nft(ports[1:], {second: pod}, NODE).elements
    programmer.sync(ServiceSnapshot([], {}), full=False)
    assert "delete element ip kproxy hairpin-endpoints { 10.244.1.5 . 10.244.1.5 }" in nft.scripts[2]
    assert programmer.elements == build_nft([], {}, NODE).elements


def test_partial_syncs_end_where_a_full_build_does() -> None:
    """After any sequence of partial syncs the programmer's view equals the table built from scratch."""
    nft = RecordingNft()
    programmer = NftablesProgrammer(nft, NODE)
    ports = [
        ServicePort(WEB, "10.96.0.50", 80),
        ServicePort(ServicePortName("default", "np", "", "TCP"), "10.96.0.51", 80, node_port=30001),
        ServicePort(ServicePortName("kube-system", "dns", "dns", "UDP"), "10.96.0.10", 53),
    ]
    states: list[dict[ServicePortName, Sequence[Endpoint]]] = [
        {p.key: three() for p in ports},
        {p.key: three()[:1] for p in ports},
        {ports[0].key: [], ports[1].key: EPS, ports[2].key: three()},
        {p.key: [*EPS, *three()] for p in ports},
        {},
        {p.key: three()[1:] for p in ports},
    ]
    programmer.sync(ServiceSnapshot(ports, states[0]), full=True)
    for endpoints in states[1:]:
        programmer.sync(ServiceSnapshot(ports, endpoints), full=False)
        assert programmer.elements == build_nft(ports, endpoints, NODE).elements


def test_two_services_claiming_one_address_resolve_as_a_full_build_does() -> None:
    """Invalid but possible (externalIPs, a reused VIP): the smaller value holds; when it goes, the other takes over."""
    nft = RecordingNft()
    programmer = NftablesProgrammer(nft, NODE)
    twin = ServicePortName("default", "twin", "http", "TCP")
    ports = [ServicePort(WEB, "10.96.0.50", 80), ServicePort(twin, "10.96.0.50", 80)]
    endpoints: dict[ServicePortName, Sequence[Endpoint]] = {WEB: three()[:1], twin: [Endpoint("10.244.7.7", 8080)]}
    programmer.sync(ServiceSnapshot(ports, endpoints), full=True)
    assert programmer.elements == build_nft(ports, endpoints, NODE).elements
    held = programmer.elements["service-endpoints-tcp"]["10.96.0.50 . tcp . 80 . 0"]
    assert held == "10.244.1.1 . 8080"
    programmer.sync(ServiceSnapshot(ports[1:], endpoints), full=False)  # the holder goes: its rival takes over
    assert programmer.elements == build_nft(ports[1:], endpoints, NODE).elements
    assert (
        "add element ip kproxy service-endpoints-tcp { 10.96.0.50 . tcp . 80 . 0 : 10.244.7.7 . 8080 }"
        in (nft.scripts[1])
    )
    programmer.sync(ServiceSnapshot(ports, endpoints), full=False)  # back: the smaller value wins again
    assert programmer.elements == build_nft(ports, endpoints, NODE).elements
    programmer.sync(ServiceSnapshot(ports[1:], endpoints), full=False)
    programmer.sync(ServiceSnapshot([], {}), full=False)
    assert programmer.elements == build_nft([], {}, NODE).elements
    assert not programmer.claims.counts and not programmer.claims.rivals


def test_the_collector_is_off_while_a_full_sync_builds_services_and_on_after() -> None:
    collector_on: list[bool] = []

    class Watching(NftablesProgrammer):
        def _part(self, port: ServicePort, endpoints: Sequence[Endpoint]) -> ServiceNft:
            collector_on.append(gc.isenabled())
            return super()._part(port, endpoints)

    Watching(RecordingNft(), NODE).sync(ServiceSnapshot(*every_shape(EPS)), full=True)
    assert len(collector_on) == 5 and not any(collector_on)
    assert gc.isenabled()
