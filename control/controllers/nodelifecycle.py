"""Node lifecycle: notice nodes that stopped heartbeating, fence them, move their pods away.

A node is healthy while its kubelet keeps renewing the Lease
`kube-node-lease/<node>` (or its Ready heartbeat).  Staleness is measured
on this process's own clock from the moment a renewal was last *observed*,
as upstream's nodeHealthMap does, so the kubelet's clock never matters.
After `grace` seconds without a renewal the node's conditions become
Unknown, it gets the unreachable taints, and its pods turn not-ready; after
the eviction timeout (or a pod's own tolerationSeconds) its pods are deleted
so their controllers recreate them elsewhere.  A node whose kubelet reports
Ready=False gets the same treatment with the `not-ready` taints.  When the
node is healthy again the taints go.  Any other NoExecute taint (`kubectl
taint node w1 k=v:NoExecute`) evicts the pods that do not tolerate it at
once, and those tolerating it with tolerationSeconds when that runs out.
Pods bound to a node object that no longer exists are force-deleted after
a quarantine, as upstream's pod GC does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from control.api.errors import ApiError
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.clock import Clock, RealClock
from control.api.timestamps import now_rfc3339
from control.controllers.base import condition
from control.events import NORMAL, EventRecorder
from control.scheduler.taints import tolerates

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
FENCE_KEYS = (UNREACHABLE, NOT_READY)
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
ORPHAN_QUARANTINE = 40.0  # seconds a pod's node must stay gone before the pod is force-deleted (upstream's value)

# Defaults chosen for issue 4's targets with kubelets renewing their Lease every 5 s: a crashed node is
# declared unreachable 8-9 s after its last renewal at worst (grace + one monitor period), so its pods
# leave endpoints within 10 s, and are evicted 10 s later, so replacements run within about 25 s.
# (Upstream: 40 s grace, 5 s period, 300 s tolerationSeconds.)
DEFAULT_GRACE = 8.0
DEFAULT_EVICTION_TIMEOUT = 10.0
DEFAULT_MONITOR_PERIOD = 1.0


@dataclass
class NodeHealth:
    """What this controller last saw of a node's heartbeats, in its own clock, and how it fenced the node."""

    probe_time: float
    lease_renew: str = ""
    heartbeat: str = ""
    fenced_with: str | None = None  # UNREACHABLE or NOT_READY while fenced
    fenced_since: float | None = None
    no_execute_seen: dict[tuple[str, str], float] = field(default_factory=dict)  # other NoExecute taints


def heartbeat_of(node: Object, lease: Object | None) -> tuple[str, str]:
    renew = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
    ready = condition(node, "Ready") or {}
    return renew, str(ready.get("lastHeartbeatTime") or "")


def observe(health: NodeHealth | None, node: Object, lease: Object | None, now: float) -> NodeHealth:
    """Record a heartbeat if either the lease or the Ready heartbeat moved since last time."""
    renew, heartbeat = heartbeat_of(node, lease)
    if health is None:
        return NodeHealth(probe_time=now, lease_renew=renew, heartbeat=heartbeat)
    if (renew, heartbeat) != (health.lease_renew, health.heartbeat):
        health.probe_time, health.lease_renew, health.heartbeat = now, renew, heartbeat
    return health


def is_stale(health: NodeHealth, now: float, grace: float) -> bool:
    return now - health.probe_time > grace


def fence_for(node: Object, health: NodeHealth, now: float, grace: float) -> str | None:
    """Which taint key the node should carry: unreachable when silent, not-ready when its kubelet says so."""
    if is_stale(health, now, grace):
        return UNREACHABLE
    if (condition(node, "Ready") or {}).get("status") == "False":
        return NOT_READY
    return None


def unknown_conditions(node: Object, stamp: str) -> list[dict[str, Any]]:
    """Every condition Unknown (NodeStatusUnknown), keeping the last heartbeat times."""
    conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    if not any(c.get("type") == "Ready" for c in conditions):
        conditions.append({"type": "Ready", "lastHeartbeatTime": None})
    for cond in conditions:
        if cond.get("status") != "Unknown":
            cond["lastTransitionTime"] = stamp
        cond.update({"status": "Unknown", "reason": UNKNOWN_REASON, "message": UNKNOWN_MESSAGE})
    return conditions


def fence_taints(node: Object, key: str | None, stamp: str) -> list[dict[str, Any]]:
    """The node's taints with exactly the fence taints for key (NoSchedule and NoExecute), or none for None.

    Existing fence taints of that key keep their timeAdded; other taints are untouched.
    """
    taints = (node.get("spec") or {}).get("taints") or []
    kept = [t for t in taints if t.get("key") not in FENCE_KEYS]
    if key is None:
        return kept
    current = {t.get("effect"): t for t in taints if t.get("key") == key}
    fence = [
        current.get(effect) or {"key": key, "effect": effect, "timeAdded": stamp}
        for effect in ("NoSchedule", "NoExecute")
    ]
    return [*kept, *fence]


NoExecuteTaint = tuple[dict[str, Any], float]  # a NoExecute taint and when this controller first saw it


def eviction_time(pod: Object, taints: Iterable[NoExecuteTaint], default_timeout: float) -> float | None:
    """When a pod must leave a node with these NoExecute taints (None: it may stay).

    Per taint, as upstream's taint manager: no matching toleration means at
    once (after default_timeout for the unreachable/not-ready fence, standing
    in for DefaultTolerationSeconds); matching tolerations with
    tolerationSeconds bound the stay by the smallest; matching ones without
    it tolerate forever.  The earliest deadline over all taints wins.
    """
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadline: float | None = None
    for taint, since in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            due = since + (default_timeout if taint.get("key") in FENCE_KEYS else 0)
        else:
            bounded = [int(t["tolerationSeconds"]) for t in matching if t.get("tolerationSeconds") is not None]
            if not bounded:
                continue
            due = since + max(min(bounded), 0)
        deadline = due if deadline is None else min(deadline, due)
    return deadline


def pods_to_evict(
    pods: Iterable[Object], taints: list[NoExecuteTaint], now: float, default_timeout: float
) -> list[Object]:
    due = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        deadline = eviction_time(pod, taints, default_timeout)
        if deadline is not None and deadline <= now:
            due.append(pod)
    return due


def track_no_execute(seen: dict[tuple[str, str], float], node: Object, now: float) -> list[NoExecuteTaint]:
    """The node's NoExecute taints other than the fence, each with when it was first seen (updates seen)."""
    current = {
        (str(t.get("key")), str(t.get("value") or "")): t
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") == "NoExecute" and t.get("key") not in FENCE_KEYS
    }
    for gone in set(seen) - set(current):
        del seen[gone]
    return [(taint, seen.setdefault(ident, now)) for ident, taint in current.items()]


def orphaned_pods(
    pods: Iterable[Object], node_names: set[str], seen: dict[str, float], now: float, quarantine: float
) -> list[Object]:
    """Pods bound to a node that has been gone for `quarantine` seconds (updates seen).

    No kubelet will ever finish them, so they are force-deleted, as
    upstream's pod GC does; the quarantine covers a node object that is
    being re-registered.
    """
    due, missing = [], set()
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or node in node_names:
            continue
        key = key_of(pod)
        missing.add(key)
        if now - seen.setdefault(key, now) >= quarantine:
            due.append(pod)
    for key in set(seen) - missing:
        del seen[key]
    return due


class NodeLifecycleController:
    """Checks every node each monitor period; not key-driven, since silence is what it watches for."""

    name = "nodelifecycle"

    def __init__(
        self,
        client: Client,
        nodes: Informer,
        leases: Informer,
        pods: Informer,
        *,
        grace: float = DEFAULT_GRACE,
        eviction_timeout: float = DEFAULT_EVICTION_TIMEOUT,
        monitor_period: float = DEFAULT_MONITOR_PERIOD,
        clock: Clock | None = None,
    ):
        self.client = client
        self.nodes = nodes
        self.leases = leases
        self.pods = pods
        self.grace = grace
        self.eviction_timeout = eviction_timeout
        self.monitor_period = monitor_period
        self.clock = clock or RealClock()
        self.health: dict[str, NodeHealth] = {}
        self.orphans_seen: dict[str, float] = {}  # pod key -> when its node was first seen missing
        self.events = EventRecorder(client, "node-controller")

    async def run(self) -> None:
        for informer in (self.nodes, self.leases, self.pods):
            await informer.synced.wait()
        while True:
            try:
                await self.monitor_once()
            except ApiError as err:
                log.info("node monitor: %s", err)
            except Exception:  # a bad object must not end node monitoring
                log.exception("node monitor failed; retrying next period")
            await self.clock.sleep(self.monitor_period)

    async def monitor_once(self) -> None:
        now = self.clock.now()
        names = set()
        for node in self.nodes.items():
            name = name_of(node)
            names.add(name)
            health = observe(self.health.get(name), node, self.leases.get(name, LEASE_NAMESPACE), now)
            self.health[name] = health
            await self._reconcile(node, health, fence_for(node, health, now, self.grace), now)
        for gone in set(self.health) - names:
            del self.health[gone]
        for pod in orphaned_pods(self.pods.items(), names, self.orphans_seen, now, ORPHAN_QUARANTINE):
            log.warning("deleting pod %s: its node %s no longer exists", key_of(pod), pod["spec"]["nodeName"])
            try:
                await self.client.delete("pods", name_of(pod), namespace_of(pod), grace_period_seconds=0)
            except ApiError as err:
                if err.code != 404:
                    raise

    def _pods_on(self, node_name: str) -> list[Object]:
        return [p for p in self.pods.items() if (p.get("spec") or {}).get("nodeName") == node_name]

    async def _reconcile(self, node: Object, health: NodeHealth, fence: str | None, now: float) -> None:
        name = name_of(node)
        stamp = now_rfc3339()
        if fence == UNREACHABLE and (condition(node, "Ready") or {}).get("status") != "Unknown":
            log.warning("node %s stopped heartbeating; marking it Unknown", name)
            status = {**(node.get("status") or {}), "conditions": unknown_conditions(node, stamp)}
            await self.client.update_status("nodes", {**node, "status": status})
            await self.events.record("nodes", node, NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        if fence != health.fenced_with:
            if fence is None:
                log.warning("node %s is healthy again", name)
            else:
                await asyncio.gather(*(self._mark_not_ready(p, stamp) for p in self._pods_on(name)))
            health.fenced_with, health.fenced_since = fence, (now if fence else None)
        taints = fence_taints(node, fence, stamp)
        if taints != ((node.get("spec") or {}).get("taints") or []):
            await self.client.patch("nodes", name, {"spec": {"taints": taints}})
        no_execute = track_no_execute(health.no_execute_seen, node, now)
        if fence is not None and health.fenced_since is not None:
            no_execute.append(({"key": fence, "effect": "NoExecute"}, health.fenced_since))
        for pod in pods_to_evict(self._pods_on(name), no_execute, now, self.eviction_timeout):
            log.warning("evicting pod %s from node %s: NoExecute taint not tolerated", key_of(pod), name)
            await self.events.record(
                "pods", pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {key_of(pod)}"
            )
            try:
                await self.client.delete("pods", name_of(pod), namespace_of(pod))
            except ApiError as err:
                if err.code != 404:
                    raise

    async def _mark_not_ready(self, pod: Object, stamp: str) -> None:
        conditions = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
        changed = False
        for cond in conditions:
            if cond.get("type") == "Ready" and cond.get("status") != "False":
                cond.update({"status": "False", "lastTransitionTime": stamp})
                changed = True
        if not changed:
            return
        try:
            await self.client.patch(
                "pods", name_of(pod), {"status": {"conditions": conditions}}, namespace_of(pod), subresource="status"
            )
        except ApiError as err:
            if err.code != 404:
                raise
