"""The Node authorizer and NodeRestriction against a real API server process and etcd.

A node's credentials (`system:node:<n>` in `system:nodes`) drive the same
Client calls the kubelet and kproxy make (NodeAgent registration, heartbeats
and Lease, the informers, pod status, the final delete, Events, the
LoadBalancer speaker's Leases with a real ARP socket in a namespace this test
makes, `pkt-rbac-…`), and must not reach another node's Node, pods, Lease
or Secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from control.api.errors import ApiError
from control.client import Client, Informer
from control.clock import RealClock
from control.events import NORMAL, EventRecorder
from kproxy.speaker import ArpResponder, Speaker
from kubelet.node import NodeAgent, NodeIdentity
from tests.conftest import EtcdServer
from tests.control.authz_server import AuthzServer, Identity, start_authz_server

TAG = uuid.uuid4().hex[:6]
NODE_A, NODE_B = f"pkt-a-{TAG}", f"pkt-b-{TAG}"
WAIT_SECONDS = 10.0
IDENTITIES = {
    "admin": Identity("admin-token", "kubernetes-admin", ("system:masters",)),
    "a": Identity("node-a-token", f"system:node:{NODE_A}", ("system:nodes",)),
    "b": Identity("node-b-token", f"system:node:{NODE_B}", ("system:nodes",)),
    "impostor": Identity("impostor-token", f"system:node:{NODE_B}"),  # the name without the group
}


@pytest.fixture(scope="module")
def server(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthzServer]:
    yield from start_authz_server(etcd_server, tmp_path_factory.mktemp("pkt-nodeauthz"), IDENTITIES)


@dataclass
class World:
    """Two registered nodes and a namespace with one pod bound to each, each pod with its own Secret."""

    namespace: str
    admin: Client
    a: Client
    b: Client


def _pod(name: str, node: str, secret: str, configmap: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "app", "image": "busybox", "envFrom": [{"configMapRef": {"name": configmap}}]},
            ],
            "volumes": [{"name": "creds", "secret": {"secretName": secret}}],
        },
    }


def _agent(client: Client, node: str) -> NodeAgent:
    return NodeAgent(client, NodeIdentity(node, "192.0.2.10"), "docker://24.0", RealClock(), 2.0, lambda: True)


@pytest.fixture
async def world(server: AuthzServer) -> AsyncIterator[World]:
    ns = f"pkt-nodes-{secrets.token_hex(3)}"
    async with server.client("admin") as admin, server.client("a") as a, server.client("b") as b:
        await admin.create("namespaces", {"metadata": {"name": ns}})
        await admin.create("serviceaccounts", {"metadata": {"name": "default"}}, ns)
        for owner in ("a", "b"):
            await admin.create("secrets", {"metadata": {"name": f"{owner}-secret"}, "stringData": {"k": owner}}, ns)
            await admin.create("configmaps", {"metadata": {"name": f"{owner}-config"}, "data": {"k": owner}}, ns)
        await admin.create("secrets", {"metadata": {"name": "nobodys-secret"}, "stringData": {"k": "x"}}, ns)
        for client, node in ((a, NODE_A), (b, NODE_B)):
            with contextlib.suppress(ApiError):  # registered by an earlier test already: register() updates
                await admin.delete("nodes", node)
            await _agent(client, node).register()
        await admin.create("pods", _pod("pod-a", NODE_A, "a-secret", "a-config"), ns)
        await admin.create("pods", _pod("pod-b", NODE_B, "b-secret", "b-config"), ns)
        yield World(ns, admin, a, b)


async def _forbidden(call: Any) -> str:
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code == 403, caught.value.status
    return str(caught.value.status["message"])


async def test_kubelet_registers_heartbeats_and_watches_what_it_needs(world: World) -> None:
    agent = _agent(world.a, NODE_A)
    node = await agent.register()  # the second registration: 409, then get + update of its own Node
    assert node["metadata"]["name"] == NODE_A
    await agent.renew_lease()  # creates the Lease
    await agent.renew_lease()  # updates it
    lease = await world.admin.get("leases", NODE_A, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == NODE_A
    status = await agent.update_status()
    assert status["status"]["conditions"]
    informers = [
        Informer(world.a, "pods", field_selector=f"spec.nodeName={NODE_A}"),
        Informer(world.a, "nodes"),
        Informer(world.a, "services"),
        Informer(world.a, "endpoints"),
        Informer(world.a, "endpointslices"),
    ]
    tasks = [asyncio.create_task(informer.run()) for informer in informers]
    try:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), WAIT_SECONDS)
        assert [p["metadata"]["name"] for p in informers[0].by_namespace(world.namespace)] == ["pod-a"]
        assert {NODE_A, NODE_B} <= {n["metadata"]["name"] for n in informers[1].items()}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    review = {
        "spec": {
            "user": "jane",
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": world.namespace},
        }
    }
    answer = await world.a.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    assert answer["status"]["allowed"] is False  # the kubelet may ask about its callers
    rules = await world.a.request(
        "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", body={"spec": {"namespace": world.namespace}}
    )
    assert rules["status"]["incomplete"] is True  # the graph narrows the system:node rules
    assert {"verbs": ["update", "patch"], "apiGroups": [""], "resources": ["pods/status"]} in rules["status"][
        "resourceRules"
    ]


async def test_node_cannot_touch_another_node(world: World) -> None:
    other = await world.a.get("nodes", NODE_B)  # reading is allowed: kproxy and the kubelet list nodes
    other["metadata"]["labels"]["stolen"] = "yes"
    message = await _forbidden(world.a.update("nodes", other))
    assert message == f'nodes "{NODE_B}" is forbidden: node "{NODE_A}" is not allowed to modify node "{NODE_B}"'
    await _forbidden(world.a.update_status("nodes", other))
    await _forbidden(world.a.patch("nodes", NODE_B, {"spec": {"unschedulable": True}}))
    message = await _forbidden(world.a.create("nodes", {"metadata": {"name": f"pkt-c-{TAG}"}}))
    assert f'node "{NODE_A}" is not allowed to modify node "pkt-c-{TAG}"' in message
    message = await _forbidden(world.a.delete("nodes", NODE_A))
    assert message == (
        f'nodes "{NODE_A}" is forbidden: User "system:node:{NODE_A}" cannot delete resource "nodes" in API group "" '
        "at the cluster scope"
    )
    own = await world.a.get("nodes", NODE_A)
    own["metadata"]["labels"]["node-restriction.kubernetes.io/pool"] = "gold"
    message = await _forbidden(world.a.update("nodes", own))
    assert (
        message
        == f'nodes "{NODE_A}" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool'
    )
    taint = {"key": "dedicated", "value": "gold", "effect": "NoSchedule"}
    message = await _forbidden(world.a.patch("nodes", NODE_A, {"spec": {"taints": [taint]}}))
    assert message == f'nodes "{NODE_A}" is forbidden: node "{NODE_A}" is not allowed to modify taints'
    patched = await world.a.patch("nodes", NODE_A, {"metadata": {"labels": {"team": "a"}}})
    assert patched["metadata"]["labels"]["team"] == "a"
    admin_set = await world.admin.patch(
        "nodes", NODE_A, {"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "gold"}}}
    )
    assert admin_set["metadata"]["labels"]["node-restriction.kubernetes.io/pool"] == "gold"
    await _forbidden(
        world.a.patch("nodes", NODE_A, {"metadata": {"labels": {"node-restriction.kubernetes.io/pool": None}}})
    )


async def test_the_group_makes_the_node(server: AuthzServer, world: World) -> None:
    """The node's user name without the system:nodes group is an ordinary user with no rights."""
    async with server.client("impostor") as impostor:
        message = await _forbidden(impostor.get("nodes", NODE_B))
        assert message.startswith(f'nodes "{NODE_B}" is forbidden: User "system:node:{NODE_B}" cannot get')
        await _forbidden(impostor.get("secrets", "b-secret", world.namespace))


async def test_node_reads_only_secrets_and_configmaps_its_pods_use(world: World) -> None:
    ns = world.namespace
    assert (await world.a.get("secrets", "a-secret", ns))["data"]["k"]
    assert (await world.a.get("configmaps", "a-config", ns))["data"] == {"k": "a"}
    message = await _forbidden(world.a.get("secrets", "b-secret", ns))
    assert message == (
        f'secrets "b-secret" is forbidden: User "system:node:{NODE_A}" cannot get resource "secrets" in API group "" '
        f"in the namespace \"{ns}\": no relationship found between node '{NODE_A}' and this object"
    )
    await _forbidden(world.a.get("configmaps", "b-config", ns))
    await _forbidden(world.a.get("secrets", "nobodys-secret", ns))
    await _forbidden(world.a.list("secrets", namespace=ns))
    await _forbidden(world.a.list("secrets"))
    # a list pinned to one name (what a watch-based secret manager sends) counts as that object
    pinned = await world.a.list("secrets", namespace=ns, field_selector="metadata.name=a-secret")
    assert [s["metadata"]["name"] for s in pinned["items"]] == ["a-secret"]
    # the graph follows pods: bound to the node, the Secret is readable; gone, it is not
    await world.admin.create("pods", _pod("pod-late", NODE_A, "nobodys-secret", "a-config"), ns)
    assert (await world.a.get("secrets", "nobodys-secret", ns))["metadata"]["name"] == "nobodys-secret"
    await world.admin.delete("pods", "pod-late", ns, grace_period_seconds=0)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            await world.a.get("secrets", "nobodys-secret", ns)
        except ApiError as err:
            assert err.code == 403
            break
        assert time.monotonic() < deadline, "the Secret stayed readable after its pod was deleted"
        await asyncio.sleep(0.1)


async def test_node_writes_status_and_deletes_only_its_own_pods(world: World) -> None:
    ns = world.namespace
    mine = await world.a.get("pods", "pod-a", ns)
    written = await world.a.update_status("pods", {**mine, "status": {**mine["status"], "phase": "Running"}})
    assert written["status"]["phase"] == "Running"
    theirs = await world.a.get("pods", "pod-b", ns)  # reading any pod is allowed, as upstream
    message = await _forbidden(world.a.update_status("pods", {**theirs, "status": {"phase": "Failed"}}))
    assert message == (
        f'pods "pod-b" is forbidden: node "{NODE_A}" '
        "can only update pod status for pods with spec.nodeName set to itself"
    )
    message = await _forbidden(world.a.delete("pods", "pod-b", ns, grace_period_seconds=0))
    assert message.endswith(f'node "{NODE_A}" can only delete pods with spec.nodeName set to itself')
    await _forbidden(world.a.update("pods", {**mine, "metadata": {**mine["metadata"], "labels": {"x": "y"}}}))
    await _forbidden(world.a.create("pods", _pod("sneaky", NODE_A, "b-secret", "b-config"), ns))
    events = EventRecorder(world.a, "kubelet", host=NODE_A)
    await events.record("pods", mine, NORMAL, "Started", "Started container app")
    listed = await world.admin.list("events", namespace=ns)
    assert [e["reason"] for e in listed["items"] if e["involvedObject"]["name"] == "pod-a"] == ["Started"]
    await world.a.delete("pods", "pod-a", ns, grace_period_seconds=0)  # the kubelet's final delete
    assert "pod-a" not in {p["metadata"]["name"] for p in (await world.admin.list("pods", namespace=ns))["items"]}


async def test_node_leases_own_only(world: World) -> None:
    await _agent(world.b, NODE_B).renew_lease()
    await _forbidden(world.a.get("leases", NODE_B, "kube-node-lease"))
    foreign = await world.admin.get("leases", NODE_B, "kube-node-lease")
    message = await _forbidden(world.a.update("leases", {**foreign, "spec": {"holderIdentity": NODE_A}}))
    assert "can only access node lease with the same name as the requesting node" in message
    body = {"metadata": {"name": f"pkt-x-{TAG}", "namespace": "kube-node-lease"}, "spec": {}}
    message = await _forbidden(world.a.create("leases", body, "kube-node-lease"))
    assert "can only access node lease with the same name as the requesting node" in message
    await _forbidden(world.a.create("leases", {"metadata": {"name": "kube-scheduler"}, "spec": {}}, "kube-system"))
    await _forbidden(world.a.delete("leases", "kube-controller-manager", "kube-system"))


async def test_service_account_tokens_only_for_pods_on_the_node(world: World) -> None:
    ns = world.namespace
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/default/token"

    def request(pod: str) -> dict[str, Any]:
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod},
            },
        }

    with pytest.raises(ApiError) as caught:
        await world.a.request("POST", path, body=request("pod-b"))
    assert caught.value.code == 403
    assert caught.value.status["message"].endswith("node requested token bound to a pod scheduled on a different node")
    await world.admin.create("serviceaccounts", {"metadata": {"name": "unused"}}, ns)
    with pytest.raises(ApiError) as caught:
        await world.a.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/unused/token", body=request("pod-a"))
    assert caught.value.code == 403
    assert "no relationship found" in caught.value.status["message"]
    # the node may ask for its pods' account (the Node authorizer's graph), as SelfSubjectAccessReview shows
    review = {
        "spec": {
            "resourceAttributes": {
                "verb": "create",
                "resource": "serviceaccounts",
                "subresource": "token",
                "namespace": ns,
                "name": "default",
            }
        }
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    assert (await world.a.request("POST", path, body=review))["status"]["allowed"] is True
    review["spec"]["resourceAttributes"]["name"] = "unused"
    answer = await world.a.request("POST", path, body=review)
    assert answer["status"] == {
        "allowed": False,
        "reason": f"no relationship found between node '{NODE_A}' and this object",
    }


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


@pytest.fixture
def arp_namespace() -> Iterator[str]:
    """A namespace of our own with a veth pair (eth0, eth1) for the speaker's ARP socket; nothing leaves it."""
    name = f"pkt-rbac-{secrets.token_hex(3)}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "netns", "exec", name, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        for link in ("eth0", "eth1"):
            _run("ip", "netns", "exec", name, "ip", "link", "set", link, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=20)


@pytest.mark.root
async def test_load_balancer_speaker_leases(world: World, arp_namespace: str) -> None:
    ns = world.namespace
    svc = await world.admin.create(
        "services", {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}, ns
    )
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.240", "ipMode": "VIP"}]}}
    await world.admin.update_status("services", svc)
    services, slices = Informer(world.a, "services", ns), Informer(world.a, "endpointslices", ns)
    tasks = [asyncio.create_task(services.run()), asyncio.create_task(slices.run())]
    responder = ArpResponder("eth0", arp_namespace)
    speaker = Speaker(world.a, services, slices, NODE_A, responder, lease_seconds=30)
    lease_name = f"kproxy-lb.{ns}.lb"
    try:
        await asyncio.wait_for(asyncio.gather(services.synced.wait(), slices.synced.wait()), WAIT_SECONDS)
        await speaker.reconcile()  # creates the Lease and holds it
        lease = await world.admin.get("leases", lease_name, "kube-system")
        assert lease["spec"]["holderIdentity"] == NODE_A
        assert responder.addresses == frozenset({"192.0.2.240"})
        await speaker.reconcile()  # renews it
        message = await _forbidden(
            world.a.update("leases", {**lease, "spec": {**lease["spec"], "holderIdentity": NODE_B}})
        )
        assert f'cannot make "{NODE_B}" the holder of lease {lease_name}' in message
        await speaker.release_all()  # a clean stop hands it back
        assert (await world.admin.get("leases", lease_name, "kube-system"))["spec"]["holderIdentity"] == ""
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        responder.close()
