"""Object builders shared by the controller unit tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from control.client import Client

T = TypeVar("T")


def make_pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
    uid: str | None = None,
    owner_uid: str | None = None,
    node: str | None = None,
    phase: str = "Running",
    ready: bool | None = True,
    ip: str | None = "10.244.1.5",
    created: str = "2026-01-01T00:00:00Z",
    ready_since: str = "2026-01-01T00:00:10Z",
    deleting: bool = False,
    restarts: int = 0,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid or f"uid-{name}",
        "labels": labels if labels is not None else {"app": "web"},
        "creationTimestamp": created,
    }
    if owner_uid:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": owner_uid, "controller": True}
        ]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T01:00:00Z"
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ip:
        status["podIP"] = ip
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_since}
        ]
    return {"metadata": meta, "spec": {**({"nodeName": node} if node else {}), **spec}, "status": status}


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll an async check until it returns something truthy; bounded, so a broken controller fails the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not hold within {timeout}s (last: {last!r})")


async def make_namespace(client: Client) -> str:
    name = f"pkt-ctl-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    return name


async def set_pod_running(client: Client, pod: dict[str, Any], ip: str, ready: bool = True) -> None:
    """Play the kubelet: phase Running, an IP, and the Ready condition, through pods/status."""
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    await client.patch(
        "pods", pod["metadata"]["name"], {"status": status}, pod["metadata"]["namespace"], subresource="status"
    )
