"""The kubelet's API side against the real API server (etcd-backed): Node registration, heartbeat, pod status and
the graceful deletion contract.  The runtime and network here are the fakes; the Docker test covers the real ones."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from control.api.errors import ApiError
from control.client import Informer
from control.clock import FakeClock, RealClock
from kubelet.node import KUBELET_VERSION, NodeAgent, NodeIdentity, memory_ki, parse_labels, parse_taints
from kubelet.pods import NodeSettings, PodWorkers
from kubelet.runtime import FakeRuntime
from tests.kubelet.fakes import FakeNetwork

WAIT_SECONDS = 20.0


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll an async check until it returns something truthy; bounded by WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def agent(client: Any, name: str, ready: list[bool]) -> NodeAgent:
    identity = NodeIdentity(
        name, "192.168.56.19", 10250, parse_labels("tier=edge,zone=a"), parse_taints("dedicated=infra:NoSchedule")
    )
    return NodeAgent(client, identity, "docker://20.10.24", FakeClock(), 5, lambda: ready[0])


def conditions(node: dict) -> dict[str, dict]:
    return {c["type"]: c for c in node["status"]["conditions"]}


async def test_node_registration_heartbeat_and_reregistration(apiserver: Any) -> None:
    client, ready = apiserver.client, [False]
    kubelet = agent(client, "kl-node-a", ready)
    await kubelet.register()
    node = await client.get("nodes", "kl-node-a")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "kl-node-a" and labels["kubernetes.io/os"] == "linux"
    assert (labels["tier"], labels["zone"]) == ("edge", "a")
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    status = node["status"]
    assert status["capacity"] == {"cpu": str(os.cpu_count()), "memory": f"{memory_ki()}Ki", "pods": "110"}
    assert status["allocatable"] == status["capacity"]
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "192.168.56.19"},
        {"type": "Hostname", "address": "kl-node-a"},
    ]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    info = status["nodeInfo"]
    assert (info["kubeletVersion"], info["containerRuntimeVersion"]) == (KUBELET_VERSION, "docker://20.10.24")
    assert info["kernelVersion"] == os.uname().release and info["operatingSystem"] == "linux"
    assert conditions(node)["Ready"]["status"] == "False"  # no podCIDR / bridge yet

    ready[0] = True
    await kubelet.heartbeat()
    node = await client.get("nodes", "kl-node-a")
    assert conditions(node)["Ready"]["status"] == "True"
    assert conditions(node)["Ready"]["reason"] == "KubeletReady"
    lease = await client.get("leases", "kl-node-a", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "kl-node-a" and lease["spec"]["leaseDurationSeconds"] == 40
    first_renewal = lease["spec"]["renewTime"]
    await kubelet.heartbeat()
    lease = await client.get("leases", "kl-node-a", "kube-node-lease")
    assert lease["spec"]["renewTime"] > first_renewal

    # someone (the controller manager) assigns a podCIDR; a restarted kubelet re-registers without losing it
    await client.patch("nodes", "kl-node-a", {"spec": {"podCIDR": "10.244.5.0/24"}})
    await agent(client, "kl-node-a", ready).register()
    node = await client.get("nodes", "kl-node-a")
    assert node["spec"]["podCIDR"] == "10.244.5.0/24"
    assert node["metadata"]["labels"]["tier"] == "edge"


async def test_pod_status_and_graceful_deletion_through_the_api(apiserver: Any, tmp_path: Path) -> None:
    client = apiserver.client
    runtime, network = FakeRuntime(), FakeNetwork()
    settings = NodeSettings("kl-node-b", "192.168.56.20", tmp_path, ["10.96.0.10"], resync_period=0.2)
    workers = PodWorkers(client, runtime, network, settings, lambda: [], RealClock())
    pods = Informer(client, "pods", field_selector="spec.nodeName=kl-node-b")

    def feed(kind: str, pod: dict, _prev: dict | None) -> None:
        workers.remove(pod) if kind == "DELETED" else workers.update(pod)

    pods.add_handler(feed)
    informer = asyncio.create_task(pods.run())
    try:
        pod = {
            "metadata": {"name": "kl-web", "namespace": "default"},
            "spec": {
                "terminationGracePeriodSeconds": 12,
                "containers": [{"name": "app", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent"}],
            },
        }
        await client.create("pods", pod, "default")
        await client.bind("default", "kl-web", "kl-node-b")  # as the scheduler does; the informer must see it

        async def running() -> dict | None:
            stored = await client.get("pods", "kl-web", "default")
            return stored if stored.get("status", {}).get("phase") == "Running" else None

        stored = await eventually(running, "the pod to run")
        assert stored["status"]["podIP"] == network.ips[stored["metadata"]["uid"]]
        assert stored["status"]["hostIP"] == "192.168.56.20"
        assert stored["status"]["containerStatuses"][0]["containerID"] == f"docker://{runtime.find('app').id}"
        app_id = runtime.find("app").id

        # the node lifecycle controller marks the pod not ready; the kubelet, still running it, says otherwise
        not_ready = [c | {"status": "False"} if c["type"] == "Ready" else c for c in stored["status"]["conditions"]]
        await client.patch("pods", "kl-web", {"status": {"conditions": not_ready}}, "default", subresource="status")

        async def ready_again() -> bool:
            conditions = (await client.get("pods", "kl-web", "default"))["status"]["conditions"]
            return {c["type"]: c["status"] for c in conditions}["Ready"] == "True"

        await eventually(ready_again, "the kubelet to restore Ready=True")

        # any other change to the status by someone else is written over too, though nothing changed on the node
        await client.patch("pods", "kl-web", {"status": {"reason": "NodeLost"}}, "default", subresource="status")

        async def reason_gone() -> bool:
            return "reason" not in (await client.get("pods", "kl-web", "default"))["status"]

        await eventually(reason_gone, "the kubelet to write its own status back")
        events = (await client.list("events", "default"))["items"]
        told = {(e["reason"], e["involvedObject"]["name"]) for e in events if e["source"]["component"] == "kubelet"}
        assert {("Created", "kl-web"), ("Started", "kl-web")} <= told

        await client.delete("pods", "kl-web", "default")

        async def gone() -> bool:
            try:
                await client.get("pods", "kl-web", "default")
            except ApiError as err:
                return err.code == 404
            return False

        await eventually(gone, "the kubelet to finish the deletion")
        assert (app_id, 12) in runtime.stops  # SIGTERM with the pod's grace period
        assert runtime.containers == {} and network.ips == {}
    finally:
        informer.cancel()
        await asyncio.gather(informer, return_exceptions=True)
        await workers.close()


@pytest.mark.parametrize(
    "text, error",
    [("novalue", "not key=value"), ("=v", "not key=value")],
)
def test_bad_node_labels_are_named(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_labels(text)


def test_taint_parsing() -> None:
    assert parse_taints("a=b:NoSchedule,c:NoExecute") == [
        {"key": "a", "value": "b", "effect": "NoSchedule"},
        {"key": "c", "effect": "NoExecute"},
    ]
    with pytest.raises(ValueError, match="Sometimes"):
        parse_taints("a=b:Sometimes")
