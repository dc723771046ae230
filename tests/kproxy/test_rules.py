"""The rule generator, checked against upstream's exact text and by tracing packets through it."""

from __future__ import annotations

import random

import pytest

from kproxy.iptables.restore import transaction
from kproxy.iptables.rules import build_ruleset, endpoint_chain, probability, service_chain
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName
from tests.kproxy.tracer import Packet, Ruleset, TraceError

NODE_IP = "192.168.56.11"
NODE = NodeConfig("worker1", (NODE_IP,), "10.244.0.0/16")
LOCAL = frozenset(NODE.node_ips)
WEB = ServicePortName("default", "web", "http", "TCP")
EPS = [Endpoint("10.244.1.5", 8080, node_name="worker1", is_local=True), Endpoint("10.244.2.7", 8080)]


def rules_for(ports: list[ServicePort], endpoints: dict[ServicePortName, list[Endpoint]], node=NODE) -> Ruleset:
    """The rules as the kernel would hold them after one sync on an empty node."""
    return Ruleset(transaction(build_ruleset(ports, endpoints, node), ""))


def three_endpoints() -> list[Endpoint]:
    return [Endpoint(f"10.244.{n}.{n}", 8080) for n in (1, 2, 3)]


def test_chain_names_match_upstream_verified_hashes() -> None:
    svc1 = ServicePortName("ns1", "svc1", "p80", "TCP")
    assert service_chain("KUBE-SVC-", svc1) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert endpoint_chain(svc1, Endpoint("10.180.0.1", 80)) == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    redis = ServicePortName("default", "redis-primary", "tcp-redis", "TCP")
    assert service_chain("KUBE-SVC-", redis) == "KUBE-SVC-EIBQQOS6SBBQOCC6"
    # An unnamed port hashes `ns/name` alone; SVL/EXT share the SVC suffix.
    assert str(ServicePortName("ns1", "svc1", "", "TCP")) == "ns1/svc1"
    assert service_chain("KUBE-EXT-", svc1) == "KUBE-EXT-XPGD46QRK7WJZT7O"


def test_upstream_example_rule_text_in_order() -> None:
    svc1 = ServicePortName("ns1", "svc1", "p80", "TCP")
    text = build_ruleset(
        [ServicePort(svc1, "172.30.0.41", 80)],
        {svc1: [Endpoint("10.180.0.1", 80)]},
        NodeConfig("node1", cluster_cidr="10.0.0.0/8"),
    )
    expected = [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 '
        "-j KUBE-SVC-XPGD46QRK7WJZT7O",
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 '
        "--dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" '
        "-j KUBE-SEP-SXIVWICOYRO3J4NJ",
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp "
        "-j DNAT --to-destination 10.180.0.1:80",
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule '
        'in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ]
    nat = text[text.index("*nat") :].splitlines()
    # Rules are grouped by chain; within each chain they keep upstream's order.
    for chain in ("KUBE-SERVICES", "KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SXIVWICOYRO3J4NJ"):
        in_chain = [line for line in expected if line.startswith(f"-A {chain} ")]
        assert [line for line in nat if line in in_chain] == in_chain
    # The nodeports jump is the very last rule of KUBE-SERVICES.
    assert [line for line in nat if line.startswith("-A KUBE-SERVICES ")][-1] == expected[-1]
    for plumbing in (
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
    ):
        assert plumbing in nat


def test_output_is_deterministic_whatever_the_input_order() -> None:
    ports = [ServicePort(ServicePortName("ns", f"s{n}", "", "TCP"), f"10.96.0.{n}", 80) for n in range(5)]
    endpoints = {p.key: three_endpoints() for p in ports}
    first = build_ruleset(ports, endpoints, NODE)
    shuffled = random.Random(7).sample(ports, len(ports))
    reversed_eps = {k: list(reversed(v)) for k, v in endpoints.items()}
    assert build_ruleset(shuffled, reversed_eps, NODE) == first


def test_cluster_ip_spreads_evenly_over_three_endpoints() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80)
    rules = rules_for([port], {WEB: three_endpoints()})
    outcomes = rules.summary(Packet("10.244.9.9", "10.96.0.50", 80, local_ips=LOCAL))
    assert set(outcomes) == {("ACCEPT", f"10.244.{n}.{n}:8080", False) for n in (1, 2, 3)}
    for odds in outcomes.values():
        assert odds == pytest.approx(1 / 3, abs=1e-9)
    svc = [r.text for r in rules.chain("nat", service_chain("KUBE-SVC-", WEB))][1:]  # after the masquerade rule
    assert "--probability 0.3333333333" in svc[0] and "--probability 0.5000000000" in svc[1]
    assert "statistic" not in svc[2]
    assert probability(4) == "0.2500000000"


def test_other_port_or_protocol_is_not_captured() -> None:
    rules = rules_for([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three_endpoints()})
    assert rules.summary(Packet("10.244.9.9", "10.96.0.50", 81)) == {("ACCEPT", None, False): 1.0}
    assert rules.summary(Packet("10.244.9.9", "10.96.0.50", 80, proto="udp")) == {("ACCEPT", None, False): 1.0}


def test_udp_service_matches_udp() -> None:
    dns = ServicePortName("kube-system", "kube-dns", "dns", "UDP")
    rules = rules_for([ServicePort(dns, "10.96.0.10", 53)], {dns: [Endpoint("10.244.0.3", 53)]})
    outcomes = rules.summary(Packet("10.244.1.9", "10.96.0.10", 53, proto="udp"))
    assert outcomes == {("ACCEPT", "10.244.0.3:53", False): pytest.approx(1.0)}


def test_hairpin_backend_reaching_itself_is_masqueraded() -> None:
    rules = rules_for([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three_endpoints()})
    outcomes = rules.summary(Packet("10.244.2.2", "10.96.0.50", 80, local_ips=LOCAL))
    assert outcomes[("ACCEPT", "10.244.2.2:8080", True)] == pytest.approx(1 / 3)
    assert outcomes[("ACCEPT", "10.244.1.1:8080", False)] == pytest.approx(1 / 3)
    assert outcomes[("ACCEPT", "10.244.3.3:8080", False)] == pytest.approx(1 / 3)


def test_off_cluster_source_is_masqueraded_pod_source_is_not() -> None:
    rules = rules_for([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three_endpoints()})
    off_cluster = rules.summary(Packet("192.168.56.1", "10.96.0.50", 80, local_ips=LOCAL))
    assert {masq for _, _, masq in off_cluster} == {True}
    pod = rules.summary(Packet("10.244.7.7", "10.96.0.50", 80, local_ips=LOCAL))
    assert {masq for _, _, masq in pod} == {False}
    # Without a cluster CIDR there is no way to tell, and no such rule (kube-proxy without a local detector).
    bare = rules_for([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three_endpoints()}, NodeConfig("worker1"))
    assert {m for _, _, m in bare.summary(Packet("192.168.56.1", "10.96.0.50", 80))} == {False}


def test_node_itself_reaches_cluster_ip_through_output() -> None:
    rules = rules_for([ServicePort(WEB, "10.96.0.50", 80)], {WEB: three_endpoints()})
    outcomes = rules.summary(Packet(NODE_IP, "10.96.0.50", 80, local_ips=LOCAL), hook="OUTPUT")
    assert sum(outcomes.values()) == pytest.approx(1.0)
    assert {dnat for _, dnat, _ in outcomes} == {f"10.244.{n}.{n}:8080" for n in (1, 2, 3)}
    assert {masq for _, _, masq in outcomes} == {True}  # the node IP is outside the pod CIDR


def test_no_endpoints_rejects_in_filter_and_writes_no_nat_chains() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, external_ips=("192.168.56.200",))
    text = build_ruleset([port], {WEB: [Endpoint("10.244.1.1", 8080, ready=False, serving=False)]}, NODE)
    assert (
        '-A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" -m tcp -p tcp '
        "-d 10.96.0.50 --dport 80 -j REJECT" in text
    )
    assert "KUBE-SVC-" not in text and "KUBE-SEP-" not in text and "KUBE-EXT-" not in text
    rules = Ruleset(transaction(text, ""))
    pod = Packet("10.244.7.7", "10.96.0.50", 80, local_ips=LOCAL)
    assert rules.summary(pod) == {("REJECT", None, False): 1.0}
    assert rules.summary(replace_dst(pod, "10.96.0.50"), hook="OUTPUT") == {("REJECT", None, False): 1.0}
    external = Packet("192.168.56.1", "192.168.56.200", 80, local_ips=LOCAL)
    assert rules.summary(external) == {("REJECT", None, False): 1.0}
    node_port = Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL)
    assert rules.summary(node_port) == {("REJECT", None, False): 1.0}
    (reject,) = [r.text for r in rules.chain("filter", "KUBE-EXTERNAL-SERVICES") if "30080" in r.text]
    assert "-m addrtype --dst-type LOCAL" in reject


def replace_dst(packet: Packet, dst: str) -> Packet:
    return Packet(packet.src, dst, packet.dport, packet.proto, packet.local_ips)


def test_node_port_and_external_ip_go_through_the_ext_chain() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, external_ips=("192.168.56.200",))
    rules = rules_for([port], {WEB: EPS})
    ext, svc = service_chain("KUBE-EXT-", WEB), service_chain("KUBE-SVC-", WEB)
    for packet in (
        Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL),
        Packet("192.168.56.1", "192.168.56.200", 80, local_ips=LOCAL),
    ):
        traced = rules.trace(packet)
        assert sum(traced.values()) == pytest.approx(1.0)
        for outcome in traced:
            assert outcome.verdict == "ACCEPT" and outcome.masquerade
            chains = list(outcome.chains)
            assert chains.index(ext) < chains.index(svc)
        assert {o.dnat for o in traced} == {"10.244.1.5:8080", "10.244.2.7:8080"}
    # A node port on an address that is not the node's is not a node port.
    assert rules.summary(Packet("192.168.56.1", "192.168.56.99", 30080, local_ips=LOCAL)) == {
        ("ACCEPT", None, False): 1.0
    }


def test_load_balancer_ingress_ip_goes_through_the_ext_chain() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, load_balancer_ips=("192.168.56.240",))
    rules = rules_for([port], {WEB: EPS})
    traced = rules.trace(Packet("192.168.56.1", "192.168.56.240", 80, local_ips=LOCAL))
    assert all(service_chain("KUBE-EXT-", WEB) in o.chains for o in traced)
    assert {o.dnat for o in traced} == {"10.244.1.5:8080", "10.244.2.7:8080"}


def test_external_traffic_policy_local() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, external_policy_local=True)
    rules = rules_for([port], {WEB: EPS})
    # From outside: only the local endpoint, client source kept (no masquerade), via KUBE-SVL.
    outside = rules.trace(Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL))
    assert {(o.dnat, o.masquerade) for o in outside} == {("10.244.1.5:8080", False)}
    assert all(service_chain("KUBE-SVL-", WEB) in o.chains for o in outside)
    # From a pod: short-circuited to the cluster-wide chain.
    pod = rules.summary(Packet("10.244.3.3", NODE_IP, 30080, local_ips=LOCAL))
    assert pod == {
        ("ACCEPT", "10.244.1.5:8080", False): pytest.approx(0.5),
        ("ACCEPT", "10.244.2.7:8080", False): pytest.approx(0.5),
    }
    # From the node itself: cluster-wide and masqueraded.
    node = rules.summary(Packet(NODE_IP, NODE_IP, 30080, local_ips=LOCAL), hook="OUTPUT")
    assert {(dnat, masq) for _, dnat, masq in node} == {("10.244.1.5:8080", True), ("10.244.2.7:8080", True)}
    # The cluster IP is still served by every endpoint.
    assert len(rules.summary(Packet("10.244.3.3", "10.96.0.50", 80, local_ips=LOCAL))) == 2


def test_external_traffic_policy_local_without_local_endpoints_drops_outside_traffic() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, node_port=30080, external_policy_local=True)
    remote_only = [Endpoint("10.244.2.7", 8080)]
    text = build_ruleset([port], {WEB: remote_only}, NODE)
    assert '"default/web:http has no local endpoints"' in text
    rules = Ruleset(transaction(text, ""))
    assert rules.summary(Packet("192.168.56.1", NODE_IP, 30080, local_ips=LOCAL)) == {("DROP", None, False): 1.0}
    pod = rules.summary(Packet("10.244.3.3", NODE_IP, 30080, local_ips=LOCAL))
    assert pod == {("ACCEPT", "10.244.2.7:8080", False): pytest.approx(1.0)}


def test_internal_traffic_policy_local() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, internal_policy_local=True)
    rules = rules_for([port], {WEB: EPS})
    assert rules.summary(Packet("10.244.3.3", "10.96.0.50", 80, local_ips=LOCAL)) == {
        ("ACCEPT", "10.244.1.5:8080", False): pytest.approx(1.0)
    }
    none_local = rules_for([port], {WEB: [Endpoint("10.244.2.7", 8080)]})
    assert none_local.summary(Packet("10.244.3.3", "10.96.0.50", 80, local_ips=LOCAL)) == {("DROP", None, False): 1.0}


def test_client_ip_session_affinity() -> None:
    port = ServicePort(WEB, "10.96.0.50", 80, sticky_seconds=600)
    endpoints = three_endpoints()
    rules = rules_for([port], {WEB: endpoints})
    svc = service_chain("KUBE-SVC-", WEB)
    seps = [endpoint_chain(WEB, e) for e in endpoints]
    svc_rules = [r.text for r in rules.chain("nat", svc)][1:]  # after the masquerade rule
    for index, sep in enumerate(seps):
        assert f"-m recent --name {sep} --rcheck --seconds 600 --reap -j {sep}" in svc_rules[index]
        (dnat,) = [r.text for r in rules.chain("nat", sep) if "DNAT" in r.text]
        assert f"-m recent --name {sep} --set" in dnat
    # A client already on the second endpoint's list sticks to it; a new client is spread.
    returning = Packet("10.244.9.9", "10.96.0.50", 80, local_ips=LOCAL, recent=frozenset({seps[1]}))
    assert rules.summary(returning) == {("ACCEPT", "10.244.2.2:8080", False): pytest.approx(1.0)}
    assert len(rules.summary(Packet("10.244.9.9", "10.96.0.50", 80, local_ips=LOCAL))) == 3


def test_serving_terminating_endpoints_used_only_when_none_is_ready() -> None:
    draining = Endpoint("10.244.1.1", 8080, ready=False, serving=True, terminating=True)
    gone = Endpoint("10.244.1.2", 8080, ready=False, serving=False, terminating=True)
    port = ServicePort(WEB, "10.96.0.50", 80)
    packet = Packet("10.244.9.9", "10.96.0.50", 80, local_ips=LOCAL)
    only_draining = rules_for([port], {WEB: [draining, gone]}).summary(packet)
    assert only_draining == {("ACCEPT", "10.244.1.1:8080", False): pytest.approx(1.0)}
    with_ready = rules_for([port], {WEB: [draining, Endpoint("10.244.1.3", 8080)]}).summary(packet)
    assert with_ready == {("ACCEPT", "10.244.1.3:8080", False): pytest.approx(1.0)}
    assert rules_for([port], {WEB: [gone]}).summary(packet) == {("REJECT", None, False): 1.0}


def test_forward_chain_accepts_marked_and_established_traffic() -> None:
    rules = rules_for([], {})
    forward = [r.text for r in rules.chain("filter", "KUBE-FORWARD")]
    assert "-m mark --mark 0x4000/0x4000 -j ACCEPT" in forward[1]
    assert "--ctstate RELATED,ESTABLISHED -j ACCEPT" in forward[2]
    established = Packet("10.244.1.1", "10.244.2.2", 80, ctstate="ESTABLISHED")
    assert rules.trace(established) and all(
        "KUBE-SERVICES" not in o.chains[o.chains.index("FORWARD") :] for o in rules.trace(established)
    )


def test_tracer_refuses_what_it_does_not_model() -> None:
    with pytest.raises(TraceError, match="--tos"):
        Ruleset("*nat\n:X - [0:0]\n-A X -m tos --tos 1 -j ACCEPT\nCOMMIT\n")
