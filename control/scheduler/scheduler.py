"""The scheduler loop: watch pending pods and nodes, bind or explain why not.

Decisions come from `control.scheduler.predicates`; this module only keeps
the queue, the in-flight ("assumed") bindings that the pod cache has not
caught up with yet, and the API writes (binding, PodScheduled condition,
FailedScheduling event).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import prometheus_client

from control.api.errors import ApiError
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.api.timestamps import now_rfc3339
from control.events import NORMAL, WARNING, EventRecorder
from control.scheduler.nodeinfo import NodeInfo, PodFacts, is_terminated
from control.scheduler.predicates import schedule

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
BINDINGS_IN_FLIGHT = 16
EVENTS_QUEUED = 10_000  # events waiting to be written before new ones are dropped (client-go queues 1,000)

ATTEMPTS = prometheus_client.Counter("pocket_scheduler_schedule_attempts", "Scheduling attempts by result", ["result"])
ATTEMPT_DURATION = prometheus_client.Histogram(
    "pocket_scheduler_scheduling_attempt_duration_seconds",
    "Time to decide (and bind) one pod",
    ["result"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
EVENTS_DROPPED = prometheus_client.Counter(
    "pocket_scheduler_events_dropped", "Events not written because the event queue was full"
)
PENDING = prometheus_client.Gauge("pocket_scheduler_pending_pods", "Pods waiting to be scheduled", ["queue"])


def is_ours(pod: Object, scheduler_name: str) -> bool:
    """An unbound, live pod that names this scheduler (or none)."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == scheduler_name
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )


def scheduling_properties(node: Object) -> tuple[Any, ...]:
    """What of a node can turn a pod's "no" into "yes" (upstream's nodeSchedulingPropertiesChange).

    A heartbeat only moves timestamps, so it does not send every unschedulable pod round again.
    """
    spec, status = node.get("spec") or {}, node.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return (
        spec.get("unschedulable"),
        spec.get("taints"),
        (node.get("metadata") or {}).get("labels"),
        status.get("allocatable"),
        ready,
    )


class Scheduler:
    """Schedules pods one at a time from an active queue; parks unschedulable ones until the cluster changes."""

    def __init__(
        self,
        client: Client,
        *,
        scheduler_name: str = DEFAULT_SCHEDULER_NAME,
        rng: random.Random | None = None,
        retry_interval: float = 15.0,
    ):
        self.client = client
        self.scheduler_name = scheduler_name
        self.rng = rng
        self.retry_interval = retry_interval
        self.pods = Informer(client, "pods")
        self.nodes = Informer(client, "nodes")
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self._active: set[str] = set()
        self._unschedulable: set[str] = set()
        # The cache: a NodeInfo per node name, kept current from informer events and assumed bindings.
        self._infos: dict[str, NodeInfo] = {}
        self._node_list: list[NodeInfo] | None = None  # the Ready-or-not nodes in name order; None: rebuild
        self._counted_on: dict[str, str] = {}  # pod key -> the node it is counted on
        self._assumed: set[str] = set()  # pods bound by us that the pod informer has not shown bound yet
        # Bindings run in the background, as kube-scheduler's binding cycle does, so deciding the next pod
        # does not wait for the API server; the semaphore bounds how many are in flight.
        self._binding_slots = asyncio.Semaphore(BINDINGS_IN_FLIGHT)
        self._bindings: set[asyncio.Task[None]] = set()
        self._next_start = 0  # where the next attempt starts looking (upstream's nextStartNodeIndex)
        self.events = EventRecorder(client, scheduler_name)
        # Events are written by one background writer, as client-go's event broadcaster does, so a burst of
        # bindings is not slowed by an event write per pod; the queue is bounded and drops when full.
        self._event_queue: asyncio.Queue[tuple[Object, str, str, str]] = asyncio.Queue(EVENTS_QUEUED)
        self._wake = asyncio.Event()

    # -- cache events --------------------------------------------------------

    def _on_pod(self, kind: str, pod: Object, _prev: Object | None) -> None:
        key = key_of(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if kind == "DELETED" or is_terminated(pod):
            self._assumed.discard(key)
            self._forget(key)
        elif node:
            self._assumed.discard(key)
            try:
                self._count(PodFacts.of(pod), str(node))
            except ValueError as err:  # e.g. a quantity that does not parse: the node's sums leave it out
                self._forget(key)
                log.warning("not counting %s on %s: %s", key, node, err)
        if kind != "DELETED" and is_ours(pod, self.scheduler_name):
            if key not in self._unschedulable and key not in self._assumed:
                self._activate({key})
            return
        self._active.discard(key)
        self._unschedulable.discard(key)
        if kind == "DELETED" or is_terminated(pod):
            self._retry_unschedulable()  # resources were freed

    def _on_node(self, kind: str, node: Object, prev: Object | None) -> None:
        name = str(node["metadata"]["name"])
        if kind == "DELETED":
            # Its pods stay counted under the name, as upstream keeps them, should it come back before they go.
            info = self._infos.get(name)
            if info is not None and not info.pods:
                del self._infos[name]
            self._node_list = None
        elif name in self._infos:
            self._infos[name].set_node(node)
            if kind == "ADDED" or prev is None:
                self._node_list = None
        else:
            self._infos[name] = NodeInfo(node)
            self._node_list = None
        if kind != "MODIFIED" or prev is None or scheduling_properties(node) != scheduling_properties(prev):
            self._retry_unschedulable()

    def _count(self, facts: PodFacts, node: str) -> None:
        """Count a pod on a node (moving it if it was counted elsewhere); a node not seen yet gets a placeholder."""
        previous = self._counted_on.get(facts.key)
        if previous is not None and previous != node:
            self._forget(facts.key)
        info = self._infos.get(node)
        if info is None:
            info = self._infos[node] = NodeInfo({"metadata": {"name": node}})
        info.add(facts)
        self._counted_on[facts.key] = node

    def _forget(self, key: str) -> None:
        node = self._counted_on.pop(key, None)
        info = self._infos.get(node) if node is not None else None
        if info is not None:
            info.remove(key)
            if not info.pods and self.nodes.get(info.name) is None:  # a placeholder or a deleted node: done
                del self._infos[info.name]

    def node_infos(self) -> list[NodeInfo]:
        """The nodes the informer knows, in name order, with their pods (bound and assumed) counted."""
        if self._node_list is None:
            names = sorted(n["metadata"]["name"] for n in self.nodes.items())
            self._node_list = [self._infos[name] for name in names if name in self._infos]
        return self._node_list

    def _activate(self, keys: set[str]) -> None:
        self._active |= keys
        self._wake.set()

    def _retry_unschedulable(self) -> None:
        if self._unschedulable:
            keys, self._unschedulable = self._unschedulable, set()
            self._activate(keys)

    # -- the loop ------------------------------------------------------------

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self.pods.run()),
            asyncio.create_task(self.nodes.run()),
            asyncio.create_task(self._write_events()),
        ]
        try:
            await self.pods.synced.wait()
            await self.nodes.synced.wait()
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.retry_interval)
                except TimeoutError:
                    self._retry_unschedulable()
                self._wake.clear()
                await self.schedule_pending()
        finally:
            for task in [*tasks, *self._bindings]:
                task.cancel()
            await asyncio.gather(*tasks, *self._bindings, return_exceptions=True)

    async def schedule_pending(self) -> None:
        """Try every active pod once, oldest first, against the cache (which counts each pod as it is assumed)."""
        keys, self._active = self._active, set()
        pods = [p for p in (self._cached_pod(k) for k in keys) if p is not None]
        pods.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), key_of(p)))
        for pod in pods:
            try:
                await self.schedule_one(pod, self.node_infos(), PodFacts.of(pod))
            except Exception as err:  # one malformed pod must not stop scheduling for everyone
                log.warning("scheduling %s failed: %s; will retry", key_of(pod), err)
                ATTEMPTS.labels("error").inc()
                self._unschedulable.add(key_of(pod))
        PENDING.labels("active").set(len(self._active))
        PENDING.labels("unschedulable").set(len(self._unschedulable))

    def _cached_pod(self, key: str) -> Object | None:
        namespace, _, name = key.partition("/")
        pod = self.pods.get(name, namespace)
        return pod if pod is not None and is_ours(pod, self.scheduler_name) and key not in self._assumed else None

    async def schedule_one(self, pod: Object, infos: list[NodeInfo], facts: PodFacts | None = None) -> str | None:
        """Decide one pod; when it fits, assume it on the chosen node (returned) and bind it in the background."""
        key = key_of(pod)
        started = time.perf_counter()
        facts = facts or PodFacts.of(pod)
        result = schedule(pod, infos, self.rng, self._next_start, facts)
        self._next_start = (self._next_start + result.processed) % max(len(infos), 1)
        if result.node is None:
            self._unschedulable.add(key)
            await self._record_failure(pod, result.message())
            ATTEMPTS.labels("unschedulable").inc()
            ATTEMPT_DURATION.labels("unschedulable").observe(time.perf_counter() - started)
            return None
        self._assumed.add(key)
        self._count(facts, result.node)
        await self._binding_slots.acquire()
        task = asyncio.create_task(self._bind(pod, result.node, started))
        self._bindings.add(task)
        task.add_done_callback(self._bindings.discard)
        return result.node

    async def _bind(self, pod: Object, node: str, started: float) -> None:
        key = key_of(pod)
        try:
            await self.client.bind(str(namespace_of(pod)), name_of(pod), node)
        except ApiError as err:
            if key in self._assumed:  # not shown bound meanwhile: take the assumption back
                self._assumed.discard(key)
                self._forget(key)
            if err.code in (404, 409):  # gone or bound by someone else: the cache will tell
                log.info("binding %s to %s: %s", key, node, err)
            else:
                log.warning("binding %s to %s failed: %s; will retry", key, node, err)
                self._unschedulable.add(key)
            ATTEMPTS.labels("error").inc()
            return
        finally:
            self._binding_slots.release()
        log.info("bound %s to %s", key, node)
        ATTEMPTS.labels("scheduled").inc()
        ATTEMPT_DURATION.labels("scheduled").observe(time.perf_counter() - started)
        self._record_event(pod, NORMAL, "Scheduled", f"Successfully assigned {key} to {node}")

    def _record_event(self, pod: Object, event_type: str, reason: str, message: str) -> None:
        try:
            self._event_queue.put_nowait((pod, event_type, reason, message))
        except asyncio.QueueFull:
            EVENTS_DROPPED.inc()
            log.info("event queue full, dropping %s event of %s", reason, key_of(pod))

    async def _write_events(self) -> None:
        while True:
            pod, event_type, reason, message = await self._event_queue.get()
            try:
                await self.events.record("pods", pod, event_type, reason, message)  # logs API errors itself
            except Exception as err:  # one bad event must not stop the writer
                log.warning("writing %s event of %s failed: %s", reason, key_of(pod), err)

    async def _record_failure(self, pod: Object, message: str) -> None:
        """PodScheduled=False/Unschedulable on the pod and a FailedScheduling event (deduplicated)."""
        self._record_event(pod, WARNING, "FailedScheduling", message)
        try:
            await self._set_unschedulable_condition(pod, message)
        except ApiError as err:
            log.info("recording scheduling failure of %s: %s", key_of(pod), err)

    async def _set_unschedulable_condition(self, pod: Object, message: str) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current and (current.get("status"), current.get("reason"), current.get("message")) == (
            "False",
            "Unschedulable",
            message,
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": (
                current["lastTransitionTime"]
                if current and current.get("status") == "False" and current.get("lastTransitionTime")
                else now_rfc3339()
            ),
        }
        others = [c for c in conditions if c.get("type") != "PodScheduled"]
        await self.client.patch(
            "pods",
            name_of(pod),
            {"status": {"conditions": [*others, condition]}},
            namespace_of(pod),
            subresource="status",
        )
