"""The scheduler against a real API server on a real etcd: binding, FailedScheduling, retry on change."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from control.client import Client
from control.scheduler.scheduler import Scheduler
from tests.controllers.helpers import eventually, make_namespace

CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


async def add_node(client: Client, name: str, cpu: str, taints: list | None = None) -> None:
    """Register a Ready node the way a kubelet does: create, then post status."""
    created = await client.create("nodes", {"metadata": {"name": name}, "spec": {"taints": taints or []}})
    status = {
        "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }
    await client.update_status("nodes", {**created, "status": status})


@pytest.fixture
async def cluster(apiserver) -> AsyncIterator[tuple[Client, str, list[str]]]:
    """Three fresh Ready nodes (a tainted control plane and two 1-cpu workers), a namespace, a running scheduler."""
    client = apiserver.client
    suffix = uuid.uuid4().hex[:6]
    nodes = [f"pkt-sched-cp-{suffix}", f"pkt-sched-w1-{suffix}", f"pkt-sched-w2-{suffix}"]
    await add_node(client, nodes[0], "2", [CONTROL_PLANE_TAINT])
    await add_node(client, nodes[1], "1")
    await add_node(client, nodes[2], "1")
    namespace = await make_namespace(client)
    sched_client = Client(apiserver.url, user_agent="pkt-scheduler")
    scheduler = Scheduler(sched_client, retry_interval=30)
    task = asyncio.create_task(scheduler.run())
    try:
        yield client, namespace, nodes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sched_client.close()
        for pod in (await client.list("pods", namespace))["items"]:
            await client.delete("pods", pod["metadata"]["name"], namespace, grace_period_seconds=0)
        for node in (await client.list("nodes"))["items"]:
            if node["metadata"]["name"].endswith(suffix):
                await client.delete("nodes", node["metadata"]["name"])


def pod(name: str, namespace: str, cpu: str) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]},
    }


async def test_binds_a_pending_pod_to_the_ready_untainted_node(cluster):
    client, namespace, (_, *workers) = cluster
    await client.create("pods", pod("small", namespace, "500m"), namespace)

    async def bound():
        got = await client.get("pods", "small", namespace)
        return got if got["spec"].get("nodeName") else None

    got = await eventually(bound, what="pod bound")
    assert got["spec"]["nodeName"] in workers
    scheduled = [c for c in got["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    assert [c["status"] for c in scheduled] == ["True"]

    async def scheduled_events():
        return [e for e in (await client.list("events", namespace))["items"] if e["reason"] == "Scheduled"]

    events = await eventually(scheduled_events, what="Scheduled event")
    assert [e["message"] for e in events] == [f"Successfully assigned {namespace}/small to {got['spec']['nodeName']}"]


async def test_unschedulable_pod_stays_pending_with_event_then_fits_a_new_node(cluster):
    client, namespace, nodes = cluster
    await client.create("pods", pod("big", namespace, "1500m"), namespace)

    async def failed_event():
        events = (await client.list("events", namespace))["items"]
        return [e for e in events if e["involvedObject"]["name"] == "big" and e["reason"] == "FailedScheduling"]

    (event,) = await eventually(failed_event, what="FailedScheduling event")
    expected = (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod."
    )
    assert event["message"] == expected
    assert event["type"] == "Warning" and event["source"]["component"] == "default-scheduler"

    async def pending_with_condition():  # the event is written before the pod's condition
        got = await client.get("pods", "big", namespace)
        return got if any(c["type"] == "PodScheduled" for c in got["status"].get("conditions") or []) else None

    pending = await eventually(pending_with_condition, what="PodScheduled condition")
    assert not pending["spec"].get("nodeName")
    (cond,) = [c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", expected)

    roomy = nodes[1].replace("-w1-", "-roomy-")  # same suffix, so the fixture removes it
    await add_node(client, roomy, "4")

    async def bound():
        got = await client.get("pods", "big", namespace)
        return got["spec"].get("nodeName")

    assert await eventually(bound, what="pod bound after a node joined") == roomy


async def test_a_burst_of_one_owners_pods_spreads_over_nodes(cluster):
    """Pods created together are placed one by one, each seeing the earlier (not yet cached) bindings."""
    client, namespace, (_, first, second) = cluster
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": str(uuid.uuid4()), "controller": True}
    for i in range(4):
        body = pod(f"web-{i}", namespace, "100m")
        body["metadata"]["ownerReferences"] = [owner]
        await client.create("pods", body, namespace)

    async def all_bound():
        pods = (await client.list("pods", namespace))["items"]
        placed = [p["spec"].get("nodeName") for p in pods]
        return placed if len(placed) == 4 and all(placed) else None

    placed = await eventually(all_bound, what="4 pods bound")
    assert sorted(placed) == sorted([first, first, second, second])


async def test_a_malformed_pod_does_not_stop_scheduling(cluster):
    client, namespace, (_, *workers) = cluster
    await client.create("pods", pod("bad", namespace, "lots"), namespace)  # not a quantity
    await client.create("pods", pod("good", namespace, "100m"), namespace)

    async def good_bound():
        return (await client.get("pods", "good", namespace))["spec"].get("nodeName")

    assert await eventually(good_bound, what="the good pod bound") in workers
    assert not (await client.get("pods", "bad", namespace))["spec"].get("nodeName")


async def test_the_cache_follows_pods_bound_and_deleted_by_others(cluster):
    """Pods bound without this scheduler take room as the informer shows them, and give it back when deleted."""
    client, namespace, (_, first, second) = cluster
    for name, node in (("hog-1", first), ("hog-2", second)):
        body = pod(name, namespace, "900m")
        body["spec"]["nodeName"] = node  # bound at creation, as a static or externally placed pod
        await client.create("pods", body, namespace)
    await client.create("pods", pod("late", namespace, "500m"), namespace)

    async def failed_for_cpu():
        events = (await client.list("events", namespace))["items"]
        return [e for e in events if e["involvedObject"]["name"] == "late" and e["reason"] == "FailedScheduling"]

    (event,) = await eventually(failed_for_cpu, what="FailedScheduling event for the late pod")
    assert "2 Insufficient cpu" in event["message"]

    await client.delete("pods", "hog-2", namespace, grace_period_seconds=0)

    async def bound():
        return (await client.get("pods", "late", namespace))["spec"].get("nodeName")

    assert await eventually(bound, what="the late pod bound once room was freed") == second
