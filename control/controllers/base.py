"""What every controller shares: a coalescing work queue, the worker loop, metrics and object helpers.

A controller turns informer events into keys on its queue; one worker
reconciles one key at a time, so a burst of events for one object costs a
single sync, and a key that changes while being synced is synced again
afterwards (client-go's workqueue semantics).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import prometheus_client

from control.api.timestamps import parse_time
from control.client import Object

log = logging.getLogger(__name__)

RECONCILES = prometheus_client.Counter(
    "pocket_controller_reconciles", "Reconciles by controller and result", ["controller", "result"]
)
QUEUE_DEPTH = prometheus_client.Gauge("pocket_controller_queue_depth", "Keys waiting per controller", ["controller"])

MAX_BACKOFF = 30.0


class WorkQueue:
    """Keys waiting to be reconciled, each at most once in the queue."""

    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._again: set[str] = set()
        self._nonempty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._order)

    def add(self, key: str) -> None:
        if key in self._processing:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._order.append(key)
            self._nonempty.set()

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def get(self) -> str:
        while not self._order:
            self._nonempty.clear()
            await self._nonempty.wait()
        key = self._order.popleft()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)


class Controller:
    """A reconcile loop: subclasses set `name` and implement `sync` and `all_keys`."""

    name = "controller"

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self._failures: dict[str, int] = {}

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    def all_keys(self) -> Iterable[str]:
        """Every key a periodic resync should revisit."""
        raise NotImplementedError

    async def run(self, resync_period: float = 30.0) -> None:
        resync = asyncio.create_task(self._resync(resync_period))
        try:
            while True:
                key = await self.queue.get()
                try:
                    await self.sync(key)
                    RECONCILES.labels(self.name, "ok").inc()
                    self._failures.pop(key, None)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    RECONCILES.labels(self.name, "error").inc()
                    failures = self._failures.get(key, 0) + 1
                    self._failures[key] = failures
                    delay = min(0.05 * 2**failures, MAX_BACKOFF)
                    log.info("%s: sync %s failed (%s); retrying in %.2fs", self.name, key, err, delay)
                    self.queue.add_after(key, delay)
                finally:
                    self.queue.done(key)
                    QUEUE_DEPTH.labels(self.name).set(len(self.queue))
        finally:
            resync.cancel()

    async def _resync(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            for key in self.all_keys():
                self.queue.add(key)


def controller_ref(obj: Object) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Object, api_version: str, kind: str) -> dict[str, Any]:
    """The controller reference a dependent carries (blocks the owner's foreground deletion)."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def condition(obj: Object, kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_pod_ready(pod: Object) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_pod_active(pod: Object) -> bool:
    """Counts toward replicas: not terminating and not finished."""
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def is_pod_available(pod: Object, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least minReadySeconds (wall-clock seconds since the epoch)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since > 0 and since + min_ready_seconds <= now


def set_condition(conditions: list[dict[str, Any]], new: dict[str, Any], stamp: str) -> list[dict[str, Any]]:
    """Replace the condition of new's type, keeping lastTransitionTime while the status is unchanged."""
    old = next((c for c in conditions if c.get("type") == new["type"]), None)
    merged = dict(new)
    if old and old.get("status") == new["status"]:
        merged["lastTransitionTime"] = old.get("lastTransitionTime", stamp)
        same_reason = (old.get("reason"), old.get("message")) == (new.get("reason"), new.get("message"))
        merged["lastUpdateTime"] = old.get("lastUpdateTime", stamp) if same_reason else stamp
    else:
        merged["lastTransitionTime"] = stamp
        merged["lastUpdateTime"] = stamp
    return [*(c for c in conditions if c.get("type") != new["type"]), merged]
