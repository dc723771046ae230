"""Node lifecycle against the real API server: a node whose Lease stops is fenced and its pods go.

Runs the controller with a short grace period on the real clock; every wait
is bounded and no assertion is about how long anything took.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from control.api.errors import ApiError
from control.client import Client, Informer
from control.controllers.nodelifecycle import LEASE_NAMESPACE, UNKNOWN_MESSAGE, NodeLifecycleController
from tests.controllers.helpers import eventually, make_namespace, set_pod_running


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_silent_node_goes_unknown_then_loses_its_pods_and_recovers(apiserver):
    client = apiserver.client
    node_name = f"pkt-lc-{uuid.uuid4().hex[:6]}"
    namespace = await make_namespace(client)
    try:
        await client.create("namespaces", {"metadata": {"name": LEASE_NAMESPACE}})
    except ApiError as err:  # the server (or another test) made it already
        if err.reason != "AlreadyExists":
            raise
    node = await client.create("nodes", {"metadata": {"name": node_name}})
    await client.update_status(
        "nodes",
        {**node, "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": micro_now()}]}},
    )
    lease = {
        "metadata": {"name": node_name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }
    await client.create("leases", lease, LEASE_NAMESPACE)
    for name in ("plain", "patient"):
        tolerations = (
            [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
            if name == "patient"
            else []
        )
        body = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": node_name,
                "tolerations": tolerations,
                "containers": [{"name": "c", "image": "busybox"}],
            },
        }
        created = await client.create("pods", body, namespace)
        await set_pod_running(client, created, "10.244.9.2" if name == "plain" else "10.244.9.3")

    ctl_client = Client(apiserver.url)
    informers = [
        Informer(ctl_client, "nodes"),
        Informer(ctl_client, "leases", LEASE_NAMESPACE),
        Informer(ctl_client, "pods"),
    ]
    ctl = NodeLifecycleController(ctl_client, *informers, grace=1.0, eviction_timeout=1.0, monitor_period=0.2)
    tasks = [asyncio.create_task(i.run()) for i in informers] + [asyncio.create_task(ctl.run())]
    try:

        async def fenced():
            got = await client.get("nodes", node_name)
            ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
            keys = {(t["key"], t["effect"]) for t in (got.get("spec") or {}).get("taints") or []}
            return got if ready["status"] == "Unknown" and len(keys) == 2 else None

        got = await eventually(fenced, what="node Unknown and tainted")
        ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", UNKNOWN_MESSAGE)

        async def plain_evicted():
            pods = {p["metadata"]["name"]: p for p in (await client.list("pods", namespace))["items"]}
            return pods if pods["plain"]["metadata"].get("deletionTimestamp") else None

        pods = await eventually(plain_evicted, what="pod without toleration evicted")
        assert not pods["patient"]["metadata"].get("deletionTimestamp")
        patient_ready = next(c for c in pods["patient"]["status"]["conditions"] if c["type"] == "Ready")
        assert patient_ready["status"] == "False"

        stored = await client.get("leases", node_name, LEASE_NAMESPACE)
        await client.update("leases", {**stored, "spec": {**stored["spec"], "renewTime": micro_now()}})

        async def untainted():
            got = await client.get("nodes", node_name)
            return not (got.get("spec") or {}).get("taints")

        await eventually(untainted, what="taints removed once the lease is renewed")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctl_client.close()
        for name in ("plain", "patient"):
            await client.delete("pods", name, namespace, grace_period_seconds=0)
        await client.delete("leases", node_name, LEASE_NAMESPACE)
        await client.delete("nodes", node_name)
