"""EndpointSlices: conditions, grouping by ports, chunking, mirroring, and the controller on a real API server."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime


from control.client import Client
from control.controllers.endpointslice import (
    CONTROLLER_NAME,
    MANAGED_BY_LABEL,
    MIRRORING_NAME,
    SERVICE_NAME_LABEL,
    TRIGGER_TIME_ANNOTATION,
    desired_slices,
    pod_endpoint,
)
from tests.controllers.helpers import eventually, make_pod, set_pod_running

SERVICE = {
    "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
    "spec": {
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.20",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    },
}


def named_port_pod(name: str, ip: str, container_port: int, **kw) -> dict:
    pod = make_pod(name, ip=ip, **kw)
    pod["spec"]["containers"] = [{"name": "c", "ports": [{"name": "http", "containerPort": container_port}]}]
    return pod


def conditions(endpoint: dict) -> tuple[bool, bool, bool]:
    c = endpoint["conditions"]
    return c["ready"], c["serving"], c["terminating"]


def test_conditions_follow_readiness_and_deletion():
    service = SERVICE
    assert conditions(pod_endpoint(make_pod("a"), service)) == (True, True, False)
    assert conditions(pod_endpoint(make_pod("b", ready=False), service)) == (False, False, False)
    # A terminating pod that still passes readiness is serving but not ready: kproxy may drain to it.
    assert conditions(pod_endpoint(make_pod("c", deleting=True), service)) == (False, True, True)
    assert conditions(pod_endpoint(make_pod("d", deleting=True, ready=False), service)) == (False, False, True)
    publish = {**service, "spec": {**service["spec"], "publishNotReadyAddresses": True}}
    assert conditions(pod_endpoint(make_pod("e", ready=False), publish)) == (True, True, False)


def test_pods_grouped_by_resolved_port_and_sorted():
    pods = [
        named_port_pod("b", "10.244.1.3", 8080, node="w1"),
        named_port_pod("a", "10.244.1.2", 8080, node="w2"),
        named_port_pod("c", "10.244.2.2", 9090),
        named_port_pod("finished", "10.244.2.9", 8080, phase="Failed"),
        named_port_pod("other", "10.244.2.8", 8080, labels={"app": "db"}),
        named_port_pod("no-ip", None, 8080),
    ]
    managed_by, wanted = desired_slices(SERVICE, pods, None)
    assert managed_by == CONTROLLER_NAME
    assert [(w.ports, [e["addresses"][0] for e in w.endpoints]) for w in wanted] == [
        ((("http", 8080, "TCP"),), ["10.244.1.2", "10.244.1.3"]),
        ((("http", 9090, "TCP"),), ["10.244.2.2"]),
    ]
    assert wanted[0].endpoints[0]["nodeName"] == "w2"
    assert wanted[0].endpoints[0]["targetRef"]["name"] == "a"


def test_slices_hold_at_most_the_maximum():
    pods = [named_port_pod(f"p{i}", f"10.244.1.{i + 1}", 8080) for i in range(7)]
    _, wanted = desired_slices(SERVICE, pods, None, max_per_slice=3)
    assert [len(w.endpoints) for w in wanted] == [3, 3, 1]


def test_no_pods_gives_one_empty_slice_and_external_name_none():
    assert desired_slices(SERVICE, [], None)[1][0].endpoints == ()
    external = {"metadata": SERVICE["metadata"], "spec": {"type": "ExternalName", "externalName": "example.org"}}
    assert desired_slices(external, [], None) is None


def test_selectorless_service_mirrors_its_endpoints():
    service = {"metadata": SERVICE["metadata"], "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 443}]}}
    endpoints = {
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": "192.168.56.10"}],
                "notReadyAddresses": [{"ip": "192.168.56.11"}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            }
        ],
    }
    managed_by, wanted = desired_slices(service, [], endpoints)
    assert managed_by == MIRRORING_NAME
    assert [(e["addresses"], conditions(e)) for e in wanted[0].endpoints] == [
        (["192.168.56.10"], (True, True, False)),
        (["192.168.56.11"], (False, False, False)),
    ]
    skip = {"endpointslice.kubernetes.io/skip-mirror": "true"}
    skipped = {**endpoints, "metadata": {**endpoints["metadata"], "labels": skip}}
    assert desired_slices(service, [], skipped) is None
    assert desired_slices(service, [], None) is None


async def slices_of(client: Client, namespace: str, service: str) -> list[dict]:
    return (await client.list("endpointslices", namespace, label_selector=f"{SERVICE_NAME_LABEL}={service}"))["items"]


async def test_controller_keeps_slices_matching_pods(apiserver, manager, namespace):
    client = apiserver.client
    started = time.time()
    await client.create(
        "services",
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        namespace,
    )
    pods = []
    for i in range(2):
        pod = await client.create(
            "pods",
            {
                "metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
                "spec": {"nodeName": "w1", "containers": [{"name": "c", "image": "busybox"}]},
            },
            namespace,
        )
        await set_pod_running(client, pod, f"10.244.1.{i + 10}")
        pods.append(pod)

    async def addresses() -> list[str] | None:
        found = await slices_of(client, namespace, "web")
        ips = sorted(e["addresses"][0] for s in found for e in s["endpoints"] if e["conditions"]["ready"])
        return ips if ips == ["10.244.1.10", "10.244.1.11"] else None

    await eventually(addresses, what="both pods ready in the slice")
    (stored,) = await slices_of(client, namespace, "web")
    assert stored["metadata"]["labels"][MANAGED_BY_LABEL] == CONTROLLER_NAME
    assert stored["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert stored["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert stored["addressType"] == "IPv4"
    # When the change was seen, for kproxy's network programming latency.
    stamp = datetime.fromisoformat(stored["metadata"]["annotations"][TRIGGER_TIME_ANNOTATION])
    assert started - 1 <= stamp.timestamp() <= time.time()

    # Deleting a bound pod only marks it terminating: it stays, serving but not ready.
    await client.delete("pods", "web-0", namespace)

    async def terminating() -> dict | None:
        (s,) = await slices_of(client, namespace, "web")
        by_ip = {e["addresses"][0]: e["conditions"] for e in s["endpoints"]}
        gone = by_ip.get("10.244.1.10")
        return by_ip if gone and gone["terminating"] and gone["serving"] and not gone["ready"] else None

    await eventually(terminating, what="the deleted pod marked terminating")

    # A hand edit is put back; a stable slice is not rewritten (no write loop).
    (s,) = await slices_of(client, namespace, "web")
    await client.update("endpointslices", {**s, "endpoints": []})

    async def restored() -> dict | None:
        (again,) = await slices_of(client, namespace, "web")
        return again if len(again["endpoints"]) == 2 else None

    settled = await eventually(restored, what="the edited slice restored")
    await asyncio.sleep(1.0)
    (later,) = await slices_of(client, namespace, "web")
    assert later["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]

    await client.delete("services", "web", namespace)

    async def none_left() -> bool:
        return not await slices_of(client, namespace, "web")

    await eventually(none_left, what="slices removed with their Service")


async def test_selectorless_service_endpoints_are_mirrored(apiserver, manager, namespace):
    client = apiserver.client
    await client.create("services", {"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 443}]}}, namespace)
    await client.create(
        "endpoints",
        {
            "metadata": {"name": "ext"},
            "subsets": [{"addresses": [{"ip": "192.168.56.30"}], "ports": [{"port": 8443, "protocol": "TCP"}]}],
        },
        namespace,
    )

    async def mirrored() -> dict | None:
        found = await slices_of(client, namespace, "ext")
        return found[0] if found and found[0]["endpoints"] else None

    stored = await eventually(mirrored, what="the Endpoints mirrored into a slice")
    assert stored["metadata"]["labels"][MANAGED_BY_LABEL] == MIRRORING_NAME
    assert stored["endpoints"][0]["addresses"] == ["192.168.56.30"]
    assert stored["ports"] == [{"name": "", "port": 8443, "protocol": "TCP"}]
