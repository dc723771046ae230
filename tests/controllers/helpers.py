"""Object builders shared by the controller unit tests."""

from __future__ import annotations

from typing import Any


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
