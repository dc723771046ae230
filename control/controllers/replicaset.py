"""ReplicaSet controller: keep `spec.replicas` live pods matching the selector.

`claim_pods`, `pods_to_delete`, `replicaset_status` and `pod_for` are the
decisions; `ReplicaSetController.sync` applies them.  Expectations stop the
controller from acting twice on one shortage while its own creations and
deletions have not reached the pod cache yet, as upstream's
ControllerExpectations do.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from control.api.errors import ApiError
from control.api.selectors import Selector, from_label_selector, matches
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.clock import Clock, RealClock
from control.events import NORMAL, EventRecorder
from control.controllers.base import (
    Controller,
    controller_ref,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    owner_reference,
)
from control.api.timestamps import parse_time

log = logging.getLogger(__name__)

# The alphabet Kubernetes uses for generated name suffixes: no vowels, no
# look-alike digits, so a suffix never spells a word.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
BURST = 500
EXPECTATIONS_TIMEOUT = 300.0


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(NAME_ALPHABET) for _ in range(length))


def selector_of(rs: Object) -> Selector:
    return from_label_selector((rs.get("spec") or {}).get("selector"))


def labels_of(obj: Object) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def pod_for(rs: Object, name: str) -> Object:
    """A pod from the template, named `<rs>-<suffix>`, controlled by the ReplicaSet."""
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    metadata = template.get("metadata") or {}
    metadata.pop("name", None)
    metadata.update(
        {
            "name": name,
            "generateName": f"{name_of(rs)}-",
            "namespace": namespace_of(rs),
            "ownerReferences": [owner_reference(rs, "apps/v1", "ReplicaSet")],
        }
    )
    return {"metadata": metadata, "spec": template.get("spec") or {}}


def claim_pods(rs: Object, pods: Iterable[Object]) -> tuple[list[Object], list[Object], list[Object]]:
    """(owned, to adopt, to release): the pods this ReplicaSet controls after claiming.

    Orphans that match the selector are adopted unless terminating; owned
    pods whose labels no longer match are released.
    """
    uid = rs["metadata"].get("uid")
    selector = selector_of(rs)
    owned: list[Object] = []
    adopt: list[Object] = []
    release: list[Object] = []
    for pod in pods:
        ref = controller_ref(pod)
        fits = matches(selector, labels_of(pod))
        if ref is None:
            if fits and not pod["metadata"].get("deletionTimestamp"):
                adopt.append(pod)
        elif ref.get("uid") == uid:
            (owned if fits else release).append(pod)
    return owned, adopt, release


def _phase_rank(pod: Object) -> int:
    return {"Pending": 0, "Unknown": 1, "Running": 2}.get((pod.get("status") or {}).get("phase", "Pending"), 3)


def _ready_since(pod: Object) -> float:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime"))
    return 0.0


def _restarts(pod: Object) -> int:
    return sum(int(s.get("restartCount", 0)) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def pods_to_delete(pods: list[Object], count: int) -> list[Object]:
    """The `count` pods to remove first, in upstream's preference order.

    Unscheduled before scheduled, Pending before Unknown before Running, not
    ready before ready, pods on crowded nodes (more of these pods) first,
    then ready for the shortest time, most restarts, newest.
    """
    per_node = Counter((p.get("spec") or {}).get("nodeName") for p in pods)

    def preference(pod: Object) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName")
        ready = is_pod_ready(pod)
        return (
            1 if node else 0,
            _phase_rank(pod),
            1 if ready else 0,
            -per_node[node] if node else 0,
            -_ready_since(pod) if ready else 0,
            -_restarts(pod),
            -parse_time(pod["metadata"].get("creationTimestamp")),
            name_of(pod),
        )

    return sorted(pods, key=preference)[: max(count, 0)]


def replicaset_status(rs: Object, owned: Iterable[Object], now: float) -> dict[str, Any]:
    """Counts over the active owned pods (now: wall-clock seconds, for minReadySeconds)."""
    active = [p for p in owned if is_pod_active(p)]
    template_labels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    status = dict(rs.get("status") or {})
    status.update(
        {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active if all(labels_of(p).get(k) == v for k, v in template_labels.items())
            ),
            "readyReplicas": sum(1 for p in active if is_pod_ready(p)),
            "availableReplicas": sum(1 for p in active if is_pod_available(p, min_ready, now)),
            "observedGeneration": rs["metadata"].get("generation", 0),
        }
    )
    return status


class Expectations:
    """Per-owner creations and deletions issued but not yet seen in the pod cache."""

    def __init__(self, clock: Clock, timeout: float = EXPECTATIONS_TIMEOUT):
        self.clock = clock
        self.timeout = timeout
        self._pending: dict[str, tuple[set[str], set[str], float]] = {}

    def expect(self, key: str, creates: Iterable[str] = (), deletes: Iterable[str] = ()) -> None:
        self._pending[key] = (set(creates), set(deletes), self.clock.now())

    def observed(self, key: str, pod_name: str) -> None:
        """The cache has caught up with a creation or deletion of this pod."""
        entry = self._pending.get(key)
        if entry:
            entry[0].discard(pod_name)
            entry[1].discard(pod_name)

    def lower(self, key: str, pod_name: str) -> None:
        """An issued write failed: do not wait for it."""
        self.observed(key, pod_name)

    def satisfied(self, key: str) -> bool:
        entry = self._pending.get(key)
        if entry is None:
            return True
        creates, deletes, since = entry
        if (not creates and not deletes) or self.clock.now() - since > self.timeout:
            del self._pending[key]
            return True
        return False

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


class ReplicaSetController(Controller):
    name = "replicaset"

    def __init__(
        self,
        client: Client,
        replicasets: Informer,
        pods: Informer,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ):
        super().__init__()
        self.client = client
        self.replicasets = replicasets
        self.pods = pods
        self.rng = rng or random.Random()
        self.expectations = Expectations(clock or RealClock())
        self.events = EventRecorder(client, "replicaset-controller")
        replicasets.add_handler(lambda _k, rs, _p: self.queue.add(key_of(rs)))
        pods.add_handler(self._on_pod)

    def all_keys(self) -> Iterable[str]:
        return [key_of(rs) for rs in self.replicasets.items()]

    def _on_pod(self, kind: str, pod: Object, prev: Object | None) -> None:
        for version in (pod, prev):
            if version is None:
                continue
            ref = controller_ref(version)
            if ref is not None and ref.get("kind") == "ReplicaSet":
                key = f"{namespace_of(version)}/{ref['name']}"
                if kind == "ADDED" or kind == "DELETED" or version["metadata"].get("deletionTimestamp"):
                    self.expectations.observed(key, name_of(version))
                self.queue.add(key)
            elif ref is None:
                for rs in self.replicasets.by_namespace(str(namespace_of(version))):
                    if matches(selector_of(rs), labels_of(version)):
                        self.queue.add(key_of(rs))

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        rs = self.replicasets.get(name, namespace)
        if rs is None:
            self.expectations.forget(key)
            return
        pods = list(self.pods.by_namespace(namespace))
        owned, adopt, release = claim_pods(rs, pods)
        if not rs["metadata"].get("deletionTimestamp"):
            owned += await self._adopt(rs, adopt)
        await self._release(release)
        active = [p for p in owned if is_pod_active(p)]
        if self.expectations.satisfied(key) and not rs["metadata"].get("deletionTimestamp"):
            await self._manage(key, rs, active)
        await self._write_status(key, rs, owned)

    async def _adopt(self, rs: Object, pods: list[Object]) -> list[Object]:
        adopted = []
        for pod in pods:
            refs = [*(pod["metadata"].get("ownerReferences") or []), owner_reference(rs, "apps/v1", "ReplicaSet")]
            patch = {"metadata": {"ownerReferences": refs, "resourceVersion": pod["metadata"].get("resourceVersion")}}
            try:
                adopted.append(await self.client.patch("pods", name_of(pod), patch, namespace_of(pod)))
            except ApiError as err:
                log.info("adopting pod %s: %s", key_of(pod), err)
        return adopted

    async def _release(self, pods: list[Object]) -> None:
        for pod in pods:
            ref = controller_ref(pod)
            refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r is not ref]
            try:
                await self.client.patch(
                    "pods", name_of(pod), {"metadata": {"ownerReferences": refs}}, namespace_of(pod)
                )
            except ApiError as err:
                log.info("releasing pod %s: %s", key_of(pod), err)

    async def _manage(self, key: str, rs: Object, active: list[Object]) -> None:
        desired = int((rs.get("spec") or {}).get("replicas", 1))
        diff = desired - len(active)
        if diff > 0:
            names = [f"{name_of(rs)}-{random_suffix(self.rng)}" for _ in range(min(diff, BURST))]
            self.expectations.expect(key, creates=names)
            await self._create_slow_start(key, rs, names)
        elif diff < 0:
            victims = pods_to_delete(active, -diff)
            self.expectations.expect(key, deletes=[name_of(p) for p in victims])
            await asyncio.gather(*(self._delete(key, rs, p) for p in victims))

    async def _create_slow_start(self, key: str, rs: Object, names: list[str]) -> None:
        """Create in batches of 1, 2, 4...; stop at the first failure so a doomed burst costs one request."""
        batch = 1
        while names:
            chunk, names = names[:batch], names[batch:]
            results = await asyncio.gather(*(self._create(key, rs, n) for n in chunk), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                for skipped in names:
                    self.expectations.lower(key, skipped)
                raise failures[0]
            batch *= 2

    async def _create(self, key: str, rs: Object, name: str) -> None:
        try:
            await self.client.create("pods", pod_for(rs, name), namespace_of(rs))
            await self.events.record("replicasets", rs, NORMAL, "SuccessfulCreate", f"Created pod: {name}")
        except ApiError as err:
            self.expectations.lower(key, name)
            if err.reason != "AlreadyExists":  # a name clash is retried with a fresh name on the next sync
                raise
            self.queue.add(key)

    async def _delete(self, key: str, rs: Object, pod: Object) -> None:
        try:
            await self.client.delete("pods", name_of(pod), namespace_of(pod))
            await self.events.record("replicasets", rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
        except ApiError as err:
            self.expectations.lower(key, name_of(pod))
            if err.code != 404:
                raise

    async def _write_status(self, key: str, rs: Object, owned: list[Object]) -> None:
        status = replicaset_status(rs, owned, time.time())
        if status != (rs.get("status") or {}):
            await self.client.patch(
                "replicasets", name_of(rs), {"status": status}, namespace_of(rs), subresource="status"
            )
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and status["readyReplicas"] != status["availableReplicas"]:
            self.queue.add_after(key, min_ready)
