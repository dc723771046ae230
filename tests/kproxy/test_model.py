"""Building the rule inputs from Service and EndpointSlice JSON, and the restore transaction around them."""

from __future__ import annotations

import pytest

from kproxy.iptables.restore import JUMP_RULES, transaction
from kproxy.iptables.rules import build_ruleset
from kproxy.model import (
    DEFAULT_STICKY_SECONDS,
    Endpoint,
    InvalidObject,
    NodeConfig,
    ServicePortName,
    endpoints_of_slice,
    service_ports_of,
    snapshot,
)


def service(name: str, spec: dict, status: dict | None = None) -> dict:
    obj = {"kind": "Service", "metadata": {"namespace": "shop", "name": name}, "spec": spec}
    if status:
        obj["status"] = status
    return obj


def endpoint_slice(service_name: str, endpoints: list[dict], ports: list[dict], name: str = "", **extra) -> dict:
    meta = {
        "namespace": "shop",
        "name": name or f"{service_name}-abcde",
        "labels": {"kubernetes.io/service-name": service_name},
    }
    return {
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
        **extra,
    }


def ep(ip: str, node: str = "", **conditions: bool) -> dict:
    out: dict = {"addresses": [ip], "conditions": conditions}
    if node:
        out["nodeName"] = node
    return out


def test_service_ports_carry_what_the_rules_need() -> None:
    lb = service(
        "front",
        {
            "type": "LoadBalancer",
            "clusterIP": "10.96.3.3",
            "externalIPs": ["192.168.56.200"],
            "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP",
            "ports": [
                {"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"},
            ],
        },
        {"loadBalancer": {"ingress": [{"ip": "192.168.56.240"}]}},
    )
    http, dns = service_ports_of(lb)
    assert http.key == ServicePortName("shop", "front", "http", "TCP")
    assert (http.cluster_ip, http.port, http.node_port) == ("10.96.3.3", 80, 30080)
    assert http.external_ips == ("192.168.56.200",) and http.load_balancer_ips == ("192.168.56.240",)
    assert http.sticky_seconds == DEFAULT_STICKY_SECONDS and http.external_policy_local
    assert dns.protocol == "UDP" and dns.node_port == 30053


def test_cluster_ip_service_ignores_node_port_and_external_policy() -> None:
    (port,) = service_ports_of(
        service(
            "api",
            {
                "clusterIP": "10.96.3.4",
                "externalTrafficPolicy": "Local",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [{"port": 443}],
            },
        )
    )
    assert port.key == ServicePortName("shop", "api", "", "TCP")
    assert port.node_port == 0 and not port.external_policy_local and port.sticky_seconds == 60


@pytest.mark.parametrize(
    "spec",
    [
        {"clusterIP": "None", "ports": [{"port": 80}]},
        {"type": "ExternalName", "externalName": "example.org"},
        {"ports": [{"port": 80}]},
    ],
)
def test_headless_external_name_and_unallocated_services_are_not_proxied(spec: dict) -> None:
    assert service_ports_of(service("x", spec)) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"clusterIP": "10.96.300.1", "ports": [{"port": 80}]}, "spec.clusterIP"),
        ({"clusterIP": "10.96.0.9", "ports": [{"port": 0}]}, "spec.ports[0].port"),
        ({"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ports[0].protocol"),
        ({"clusterIP": "10.96.0.9", "externalIPs": ["nope"], "ports": [{"port": 80}]}, "spec.externalIPs"),
    ],
)
def test_bad_service_names_the_field(spec: dict, field: str) -> None:
    with pytest.raises(InvalidObject, match=r"service shop/bad: " + field.replace("[", r"\[").replace("]", r"\]")):
        service_ports_of({"metadata": {"namespace": "shop", "name": "bad"}, "spec": spec})


def test_slice_endpoints_matched_by_port_name_with_conditions_and_locality() -> None:
    obj = endpoint_slice(
        "front",
        [
            ep("10.244.1.5", "worker1", ready=True),
            ep("10.244.2.6", "worker2"),  # conditions unknown: ready, and serving as ready
            ep("10.244.1.9", "worker1", ready=False, serving=False),
            ep("10.244.2.7", "worker2", ready=False, serving=True, terminating=True),
        ],
        [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
    )
    by_port = endpoints_of_slice(obj, "worker1")
    http = by_port[ServicePortName("shop", "front", "http", "TCP")]
    assert http == [
        Endpoint("10.244.1.5", 8080, node_name="worker1", is_local=True),
        Endpoint("10.244.2.6", 8080, node_name="worker2", is_local=False),
        Endpoint("10.244.1.9", 8080, ready=False, serving=False, node_name="worker1", is_local=True),
        Endpoint("10.244.2.7", 8080, ready=False, serving=True, terminating=True, node_name="worker2"),
    ]
    assert [e.port for e in by_port[ServicePortName("shop", "front", "dns", "UDP")]] == [5353] * 4


def test_slices_without_service_or_of_another_family_give_nothing() -> None:
    orphan = endpoint_slice("front", [ep("10.244.1.5")], [{"port": 80}])
    del orphan["metadata"]["labels"]
    assert endpoints_of_slice(orphan, "worker1") == {}
    v6 = endpoint_slice("front", [ep("fd00::5")], [{"port": 80}], addressType="IPv6")
    assert endpoints_of_slice(v6, "worker1") == {}
    with pytest.raises(InvalidObject, match=r"endpointslice shop/front-abcde: endpoints\[0\].addresses\[0\]"):
        endpoints_of_slice(endpoint_slice("front", [ep("bogus")], [{"port": 80}]), "worker1")


def test_snapshot_joins_by_port_name_merges_slices_and_skips_bad_objects() -> None:
    services = [
        service("front", {"clusterIP": "10.96.3.3", "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}),
        service("broken", {"clusterIP": "not-an-ip", "ports": [{"port": 80}]}),
    ]
    http = [{"name": "http", "port": 8080}]
    slices = [
        endpoint_slice("front", [ep("10.244.1.5"), ep("10.244.1.6", ready=False)], http, name="front-1"),
        # The second slice repeats 10.244.1.6 (moving between slices), now ready: it counts once, as ready.
        endpoint_slice("front", [ep("10.244.2.5"), ep("10.244.1.6", ready=True)], http, name="front-2"),
        endpoint_slice("broken", [ep("bogus")], [{"port": 80}]),
    ]
    snap = snapshot(services, slices, "worker1")
    assert [p.key.name for p in snap.service_ports] == ["front"]
    assert [(e.ip, e.ready) for e in snap.endpoints[ServicePortName("shop", "front", "http", "TCP")]] == [
        ("10.244.1.5", True),
        ("10.244.1.6", True),
        ("10.244.2.5", True),
    ]
    rules = build_ruleset(snap.service_ports, snap.endpoints, NodeConfig("worker1"))
    assert "--to-destination 10.244.1.5:8080" in rules and "--to-destination 10.244.2.5:8080" in rules


def test_node_config_rejects_bad_cidr() -> None:
    with pytest.raises(InvalidObject, match="cluster CIDR '10.244.0.0/33'"):
        NodeConfig("worker1", cluster_cidr="10.244.0.0/33")


SAVED = """# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-OLDOLDOLDOLDOLDO - [0:0]
:KUBE-SEP-OLDOLDOLDOLDOLDO - [0:0]
:FOREIGN - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -p tcp --dport 9999 -j FOREIGN
COMMIT
"""


def table_block(payload: str, table: str) -> str:
    """One table's part of a payload: from its `*table` line to its COMMIT."""
    start = payload.index(f"*{table}\n")
    return payload[start : payload.index("COMMIT\n", start) + len("COMMIT\n")]


def test_transaction_deletes_only_stale_service_chains_and_adds_only_missing_jumps() -> None:
    payload = transaction(build_ruleset([], {}, NodeConfig("worker1")), SAVED)
    nat = table_block(payload, "nat")
    for stale in ("KUBE-SVC-OLDOLDOLDOLDOLDO", "KUBE-SEP-OLDOLDOLDOLDOLDO"):
        assert f":{stale} - [0:0]" in nat and f"-X {stale}" in nat
    assert "FOREIGN" not in payload and "-X KUBE-SERVICES" not in payload
    assert "-I PREROUTING" not in payload  # already there
    assert '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in nat
    assert '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' in nat
    filter_part = table_block(payload, "filter")
    assert sum(1 for j in JUMP_RULES if j.table == "filter") == filter_part.count("-I ")
    # Each table block stays well formed: deletions and jumps before its COMMIT, nothing after the last one.
    assert payload.count("COMMIT\n") == 2 and payload.endswith("COMMIT\n")
