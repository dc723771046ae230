"""Endpoints computation: selection, readiness, named target ports, hostnames, labels, change detection."""

from __future__ import annotations

from control.controllers.endpoints import compute_subsets, endpoints_differ, endpoints_labels
from tests.controllers.helpers import make_pod

SERVICE = {
    "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
    "spec": {
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.20",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
    },
}


def address(pod):
    out = {
        "ip": pod["status"]["podIP"],
        "targetRef": {
            "kind": "Pod",
            "namespace": "default",
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    }
    if pod["spec"].get("nodeName"):
        out["nodeName"] = pod["spec"]["nodeName"]
    return out


def test_ready_and_not_ready_pods():
    ready = make_pod("a", ip="10.244.1.2", node="w1")
    not_ready = make_pod("b", ip="10.244.2.2", node="w2", ready=False)
    assert compute_subsets(SERVICE, [not_ready, ready]) == [
        {
            "addresses": [address(ready)],
            "notReadyAddresses": [address(not_ready)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    ]


def test_publish_not_ready_addresses_lists_everyone_as_ready():
    svc = {**SERVICE, "spec": {**SERVICE["spec"], "publishNotReadyAddresses": True}}
    pods = [make_pod("a", ip="10.244.1.2"), make_pod("b", ip="10.244.1.3", ready=False)]
    assert [a["ip"] for a in compute_subsets(svc, pods)[0]["addresses"]] == ["10.244.1.2", "10.244.1.3"]
    assert "notReadyAddresses" not in compute_subsets(svc, pods)[0]


def test_pods_left_out():
    pods = [
        make_pod("no-ip", ip=None),
        make_pod("terminating", deleting=True),
        make_pod("other-labels", labels={"app": "db"}),
        make_pod("other-namespace", namespace="kube-system"),
        make_pod("finished", phase="Succeeded"),
    ]
    assert compute_subsets(SERVICE, pods) == []


def test_named_target_ports_split_subsets_by_resolution():
    svc = {**SERVICE, "spec": {**SERVICE["spec"], "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}

    def with_port(name, ip, number):
        return make_pod(name, ip=ip, containers=[{"name": "c", "ports": [{"name": "web", "containerPort": number}]}])

    a, b = with_port("a", "10.244.1.2", 8080), with_port("b", "10.244.1.3", 9090)
    missing = make_pod(
        "c", ip="10.244.1.4", containers=[{"name": "c", "ports": [{"name": "other", "containerPort": 1}]}]
    )
    subsets = compute_subsets(svc, [a, b, missing])
    assert subsets == [
        {"addresses": [address(a)], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
        {"addresses": [address(b)], "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]},
    ]


def test_hostname_only_when_subdomain_is_the_service():
    named = make_pod("a", ip="10.244.1.2", hostname="db-0", subdomain="web")
    elsewhere = make_pod("b", ip="10.244.1.3", hostname="db-1", subdomain="other")
    addresses = compute_subsets(SERVICE, [named, elsewhere])[0]["addresses"]
    assert [a.get("hostname") for a in addresses] == ["db-0", None]


def test_multiple_ports_and_default_target_port():
    svc = {
        **SERVICE,
        "spec": {
            **SERVICE["spec"],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
    }
    ports = compute_subsets(svc, [make_pod("a")])[0]["ports"]
    assert sorted((p["name"], p["port"], p["protocol"]) for p in ports) == [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]


def test_labels_follow_the_service_and_mark_headless():
    assert endpoints_labels(SERVICE) == {"team": "a"}
    headless = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": "None"}}
    assert endpoints_labels(headless) == {"team": "a", "service.kubernetes.io/headless": ""}


def test_difference_ignores_order_but_not_content():
    pods = [make_pod("a", ip="10.244.1.2"), make_pod("b", ip="10.244.1.3")]
    subsets = compute_subsets(SERVICE, pods)
    shuffled = [{**subsets[0], "addresses": list(reversed(subsets[0]["addresses"]))}]
    stored = {"metadata": {"labels": {"team": "a"}}, "subsets": shuffled}
    assert not endpoints_differ(stored, subsets, {"team": "a"})
    assert endpoints_differ(stored, subsets, {"team": "b"})
    assert endpoints_differ(stored, compute_subsets(SERVICE, pods[:1]), {"team": "a"})
