"""Deployment controller: roll a pod template out through ReplicaSets.

The arithmetic (template hash, maxSurge/maxUnavailable, how far to scale
the new and old ReplicaSets, status and conditions) is pure; the controller
creates, scales and prunes ReplicaSets to match.  Pods are the ReplicaSet
controller's business.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from collections.abc import Iterable
from typing import Any

from control.api.errors import ApiError
from control.api.selectors import from_label_selector, matches
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.events import NORMAL, EventRecorder
from control.api.timestamps import now_rfc3339, parse_time
from control.controllers.base import Controller, controller_ref, owner_reference, set_condition

log = logging.getLogger(__name__)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_HISTORY_LIMIT = 10

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes) -> int:
    value = _FNV32_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return value


def safe_encode(text: str) -> str:
    """Map each character into an alphabet without vowels, so a hash never spells a word."""
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in text)


def normalized(value: Any) -> Any:
    """Drop nulls and empty maps/lists, as Go's typed objects cannot tell them from absent fields.

    `kubectl rollout undo` sends the template back with
    `metadata.creationTimestamp: null`; it must still match its ReplicaSet.
    """
    if isinstance(value, dict):
        pairs = ((k, normalized(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def pod_template_hash(template: Object, collision_count: int | None = None) -> str:
    """FNV-32a of the normalized template's canonical JSON (plus the collision count), safely encoded."""
    data = json.dumps(normalized(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def template_without_hash(template: Object) -> Object:
    clean = copy.deepcopy(template or {})
    (clean.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return clean


def templates_equal(a: Object, b: Object) -> bool:
    """Semantically equal apart from the pod-template-hash label."""
    return normalized(template_without_hash(a)) == normalized(template_without_hash(b))


_PERCENT = re.compile(r"^(\d+)%$")


def scaled_value(value: int | str | None, total: int, round_up: bool, default: str) -> int:
    """An IntOrString against total: ints as is, "25%" of total rounded up or down."""
    if value is None:
        value = default
    if isinstance(value, bool):
        raise ValueError(f"invalid value {value!r}: must be an integer or a percentage")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    match = _PERCENT.match(text)
    if not match:
        raise ValueError(f"invalid value {text!r}: must be an integer or a percentage like 25%")
    exact = int(match.group(1)) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def surge_and_unavailable(deployment: Object) -> tuple[int, int]:
    """maxSurge rounds up, maxUnavailable down; both zero would deadlock, so unavailable becomes 1."""
    spec = deployment.get("spec") or {}
    desired = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge"), desired, True, "25%")
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def replicas_of(rs: Object) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def status_count(rs: Object, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


def new_replicaset_target(desired: int, max_surge: int, total_replicas: int, new_replicas: int) -> int:
    """How many replicas the new ReplicaSet may have now under maxSurge."""
    if new_replicas >= desired:
        return desired
    room = desired + max_surge - total_replicas
    if room <= 0:
        return new_replicas
    return new_replicas + min(room, desired - new_replicas)


def old_replicaset_targets(
    desired: int, max_unavailable: int, new_rs: Object | None, old: list[Object]
) -> dict[str, int]:
    """New replica counts for old ReplicaSets (only those that change).

    Never below desired - maxUnavailable available pods: first drop old
    pods that are not available anyway, then available ones, oldest
    ReplicaSet first.
    """
    old = sorted(old, key=lambda rs: (parse_time(rs["metadata"].get("creationTimestamp")), name_of(rs)))
    everything = [*old, *([new_rs] if new_rs else [])]
    total = sum(replicas_of(rs) for rs in everything)
    if sum(replicas_of(rs) for rs in old) == 0:
        return {}
    min_available = desired - max_unavailable
    new_unavailable = (replicas_of(new_rs) - status_count(new_rs, "availableReplicas")) if new_rs else 0
    budget = total - min_available - new_unavailable
    if budget <= 0:
        return {}
    targets: dict[str, int] = {}
    for rs in old:  # unhealthy replicas cost no availability
        current = replicas_of(rs)
        unhealthy = current - status_count(rs, "availableReplicas")
        cut = min(max(unhealthy, 0), budget)
        if cut > 0:
            targets[name_of(rs)] = current - cut
            budget -= cut
    available = sum(status_count(rs, "availableReplicas") for rs in everything)
    budget = available - min_available
    for rs in old:
        if budget <= 0:
            break
        current = targets.get(name_of(rs), replicas_of(rs))
        cut = min(current, budget)
        if cut > 0:
            targets[name_of(rs)] = current - cut
            budget -= cut
    return targets


def revision_of(rs: Object) -> int:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def replicaset_for(deployment: Object, template_hash: str, replicas: int, revision: int) -> Object:
    """The ReplicaSet `<deployment>-<hash>` for the current template."""
    spec = deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
    max_surge, _ = surge_and_unavailable(deployment)
    desired = int(spec.get("replicas", 1))
    return {
        "metadata": {
            "name": f"{name_of(deployment)}-{template_hash}",
            "namespace": namespace_of(deployment),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                REVISION: str(revision),
                DESIRED_REPLICAS: str(desired),
                MAX_REPLICAS: str(desired + max_surge),
            },
            "ownerReferences": [owner_reference(deployment, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }


def history_to_delete(old: Iterable[Object], limit: int) -> list[Object]:
    """Old, fully scaled-down ReplicaSets beyond revisionHistoryLimit, oldest revision first."""
    idle = [rs for rs in old if replicas_of(rs) == 0 and status_count(rs, "replicas") == 0]
    idle.sort(key=lambda rs: (revision_of(rs), parse_time(rs["metadata"].get("creationTimestamp"))))
    return idle[: max(len(idle) - max(limit, 0), 0)]


PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
_COUNTS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")


def deployment_status(
    deployment: Object,
    new_rs: Object | None,
    all_rs: list[Object],
    stamp: str,
    created_new: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    """Counts summed over the ReplicaSets, with Available and Progressing conditions.

    A rollout that makes no progress (no count changes) for
    progressDeadlineSeconds turns Progressing False/ProgressDeadlineExceeded
    (checked when `now`, wall-clock seconds, is given); progress turns it back.
    """
    spec = deployment.get("spec") or {}
    desired = int(spec.get("replicas", 1))
    _, max_unavailable = surge_and_unavailable(deployment)
    available = sum(status_count(rs, "availableReplicas") for rs in all_rs)
    total_spec = sum(replicas_of(rs) for rs in all_rs)
    old_status = deployment.get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": deployment["metadata"].get("generation", 0),
        "replicas": sum(status_count(rs, "replicas") for rs in all_rs),
        "updatedReplicas": status_count(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(status_count(rs, "readyReplicas") for rs in all_rs),
        "availableReplicas": available,
        "unavailableReplicas": max(total_spec - available, 0),
    }
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    conditions = list(old_status.get("conditions") or [])
    if available >= desired - max_unavailable:
        avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    conditions = set_condition(
        conditions, {"type": "Available", "status": avail[0], "reason": avail[1], "message": avail[2]}, stamp
    )
    if new_rs is not None:
        rs_name = name_of(new_rs)
        complete = (
            status["updatedReplicas"] == desired
            and status["replicas"] == desired
            and available == desired
            and replicas_of(new_rs) == desired
        )
        progressing = "True"
        if complete:
            reason, message = "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.'
        elif created_new:
            reason, message = "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
        else:
            reason, message = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
        old = next((c for c in conditions if c.get("type") == "Progressing"), None)
        progressed = any(status[k] != old_status.get(k) for k in _COUNTS)
        stuck_message = f'ReplicaSet "{rs_name}" has timed out progressing.'
        deadline = spec.get("progressDeadlineSeconds")
        if not complete and not created_new and not progressed and old is not None:
            if old.get("reason") == PROGRESS_DEADLINE_EXCEEDED and old.get("message") == stuck_message:
                progressing, reason, message = "False", PROGRESS_DEADLINE_EXCEEDED, stuck_message
            elif (
                now is not None
                and deadline is not None
                and old.get("message") == message
                and parse_time(old.get("lastUpdateTime")) + int(deadline) < now
            ):
                progressing, reason, message = "False", PROGRESS_DEADLINE_EXCEEDED, stuck_message
        conditions = set_condition(
            conditions, {"type": "Progressing", "status": progressing, "reason": reason, "message": message}, stamp
        )
        if progressed and progressing == "True":
            conditions = [{**c, "lastUpdateTime": stamp} if c["type"] == "Progressing" else c for c in conditions]
    status["conditions"] = sorted(conditions, key=lambda c: c["type"])
    return status


def _same_status(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal ignoring condition timestamps, so an unchanged world writes nothing."""

    def strip(status: dict[str, Any]) -> dict[str, Any]:
        conds = [
            {k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")}
            for c in status.get("conditions") or []
        ]
        return {**status, "conditions": sorted(conds, key=lambda c: c.get("type", ""))}

    return strip(a) == strip(b)


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, client: Client, deployments: Informer, replicasets: Informer):
        super().__init__()
        self.client = client
        self.deployments = deployments
        self.replicasets = replicasets
        self.events = EventRecorder(client, "deployment-controller")
        deployments.add_handler(lambda _k, d, _p: self.queue.add(key_of(d)))
        replicasets.add_handler(self._on_replicaset)

    def all_keys(self) -> Iterable[str]:
        return [key_of(d) for d in self.deployments.items()]

    def _on_replicaset(self, _kind: str, rs: Object, _prev: Object | None) -> None:
        ref = controller_ref(rs)
        if ref is not None and ref.get("kind") == "Deployment":
            self.queue.add(f"{namespace_of(rs)}/{ref['name']}")
        elif ref is None:
            for d in self.deployments.by_namespace(str(namespace_of(rs))):
                selector = from_label_selector((d.get("spec") or {}).get("selector"))
                if matches(selector, (rs.get("metadata") or {}).get("labels") or {}):
                    self.queue.add(key_of(d))

    def _owned_replicasets(self, deployment: Object) -> list[Object]:
        uid = deployment["metadata"].get("uid")
        return [
            rs
            for rs in self.replicasets.by_namespace(str(namespace_of(deployment)))
            if (controller_ref(rs) or {}).get("uid") == uid
        ]

    async def _adopt_orphans(self, deployment: Object) -> None:
        selector = from_label_selector((deployment.get("spec") or {}).get("selector"))
        for rs in self.replicasets.by_namespace(str(namespace_of(deployment))):
            if controller_ref(rs) is None and matches(selector, (rs.get("metadata") or {}).get("labels") or {}):
                refs = [
                    *(rs["metadata"].get("ownerReferences") or []),
                    owner_reference(deployment, "apps/v1", "Deployment"),
                ]
                await self.client.patch(
                    "replicasets", name_of(rs), {"metadata": {"ownerReferences": refs}}, namespace_of(rs)
                )

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        deployment = self.deployments.get(name, namespace)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return
        spec = deployment.get("spec") or {}
        await self._adopt_orphans(deployment)
        if spec.get("paused"):
            await self._sync_paused(deployment)
            return
        all_rs = self._owned_replicasets(deployment)
        template = spec.get("template") or {}
        matching = [rs for rs in all_rs if templates_equal((rs.get("spec") or {}).get("template") or {}, template)]
        new_rs = max(matching, key=lambda rs: rs["metadata"].get("creationTimestamp", ""), default=None)
        old = [rs for rs in all_rs if rs is not new_rs]
        max_old_revision = max((revision_of(rs) for rs in old), default=0)
        desired = int(spec.get("replicas", 1))
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        created = False
        if new_rs is None:
            if recreate:
                replicas = 0 if any(replicas_of(rs) or status_count(rs, "replicas") for rs in old) else desired
            else:
                surge, _ = surge_and_unavailable(deployment)
                replicas = new_replicaset_target(desired, surge, sum(replicas_of(rs) for rs in old), 0)
            new_rs = await self._create_replicaset(deployment, replicas, max_old_revision + 1)
            if new_rs is None:
                return
            created = True
            all_rs = [*old, new_rs]
        elif revision_of(new_rs) <= max_old_revision:
            new_rs = await self._annotate(new_rs, {REVISION: str(max_old_revision + 1)})
            all_rs = [*old, new_rs]
        if not created:
            if recreate:
                await self._recreate(deployment, new_rs, old, desired)
            else:
                await self._roll(deployment, new_rs, old, desired)
        for rs in history_to_delete(old, int(spec.get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT))):
            await self._delete_replicaset(rs)
        await self._write_status(deployment, new_rs, self._owned_replicasets(deployment) or all_rs, created)

    async def _sync_paused(self, deployment: Object) -> None:
        """Paused: no new ReplicaSet and no rollout, but scaling still applies and status stays current."""
        spec = deployment.get("spec") or {}
        all_rs = self._owned_replicasets(deployment)
        template = spec.get("template") or {}
        matching = [rs for rs in all_rs if templates_equal((rs.get("spec") or {}).get("template") or {}, template)]
        new_rs = max(matching, key=lambda rs: rs["metadata"].get("creationTimestamp", ""), default=None)
        running = [rs for rs in all_rs if replicas_of(rs) > 0]
        desired = int(spec.get("replicas", 1))
        if len(running) == 1 and replicas_of(running[0]) != desired:
            await self._scale(running[0], desired, deployment)
        status = deployment_status(deployment, new_rs, all_rs, now_rfc3339())
        paused = {
            "type": "Progressing",
            "status": "Unknown",
            "reason": "DeploymentPaused",
            "message": "Deployment is paused",
        }
        status["conditions"] = sorted(
            set_condition(status["conditions"], paused, now_rfc3339()), key=lambda c: c["type"]
        )
        if not _same_status(status, deployment.get("status") or {}):
            await self.client.patch(
                "deployments", name_of(deployment), {"status": status}, namespace_of(deployment), subresource="status"
            )

    async def _create_replicaset(self, deployment: Object, replicas: int, revision: int) -> Object | None:
        """Create `<name>-<hash>`; on a clash with a different template bump collisionCount and retry later."""
        status = deployment.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        template = (deployment.get("spec") or {}).get("template") or {}
        rs = replicaset_for(deployment, pod_template_hash(template, collisions), replicas, revision)
        try:
            created = await self.client.create("replicasets", rs, namespace_of(deployment))
            if replicas:
                message = f"Scaled up replica set {name_of(created)} to {replicas} from 0"
                await self.events.record("deployments", deployment, NORMAL, "ScalingReplicaSet", message)
            return created
        except ApiError as err:
            if err.reason != "AlreadyExists":
                raise
        existing = await self.client.get("replicasets", name_of(rs), namespace_of(deployment))
        ours = (controller_ref(existing) or {}).get("uid") == deployment["metadata"].get("uid")
        if ours and templates_equal((existing.get("spec") or {}).get("template") or {}, template):
            return existing  # the cache was behind
        bumped = {"status": {"collisionCount": collisions + 1}}
        await self.client.patch(
            "deployments", name_of(deployment), bumped, namespace_of(deployment), subresource="status"
        )
        return None

    async def _annotate(self, rs: Object, annotations: dict[str, str]) -> Object:
        return await self.client.patch(
            "replicasets", name_of(rs), {"metadata": {"annotations": annotations}}, namespace_of(rs)
        )

    async def _scale(self, rs: Object, replicas: int, deployment: Object) -> None:
        if replicas_of(rs) == replicas:
            return
        desired = int((deployment.get("spec") or {}).get("replicas", 1))
        surge, _ = surge_and_unavailable(deployment)
        patch = {
            "metadata": {"annotations": {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(desired + surge)}},
            "spec": {"replicas": replicas},
        }
        await self.client.patch("replicasets", name_of(rs), patch, namespace_of(rs))
        direction = "up" if replicas > replicas_of(rs) else "down"
        message = f"Scaled {direction} replica set {name_of(rs)} to {replicas} from {replicas_of(rs)}"
        await self.events.record("deployments", deployment, NORMAL, "ScalingReplicaSet", message)

    async def _roll(self, deployment: Object, new_rs: Object, old: list[Object], desired: int) -> None:
        surge, unavailable = surge_and_unavailable(deployment)
        total = sum(replicas_of(rs) for rs in [*old, new_rs])
        target = new_replicaset_target(desired, surge, total, replicas_of(new_rs))
        if target != replicas_of(new_rs):
            await self._scale(new_rs, target, deployment)
            if target > replicas_of(new_rs):
                return  # let the new pods appear before taking old ones away
        targets = old_replicaset_targets(desired, unavailable, new_rs, old)
        for rs in old:
            if name_of(rs) in targets:
                await self._scale(rs, targets[name_of(rs)], deployment)

    async def _recreate(self, deployment: Object, new_rs: Object, old: list[Object], desired: int) -> None:
        for rs in old:
            if replicas_of(rs):
                await self._scale(rs, 0, deployment)
        if any(replicas_of(rs) or status_count(rs, "replicas") for rs in old):
            return  # old pods must be gone before new ones start
        await self._scale(new_rs, desired, deployment)

    async def _delete_replicaset(self, rs: Object) -> None:
        try:
            await self.client.delete("replicasets", name_of(rs), namespace_of(rs))
        except ApiError as err:
            if err.code != 404:
                raise

    async def _write_status(self, deployment: Object, new_rs: Object, all_rs: list[Object], created: bool) -> None:
        now = time.time()
        status = deployment_status(deployment, new_rs, all_rs, now_rfc3339(), created, now)
        deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
        progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
        if deadline is not None and progressing["reason"] in ("ReplicaSetUpdated", "NewReplicaSetCreated"):
            due = parse_time(progressing.get("lastUpdateTime")) + int(deadline) - now
            self.queue.add_after(key_of(deployment), max(due, 0) + 1)  # look again when the deadline passes
        if not _same_status(status, deployment.get("status") or {}):
            await self.client.patch(
                "deployments", name_of(deployment), {"status": status}, namespace_of(deployment), subresource="status"
            )
        revision = str(revision_of(new_rs))
        if ((deployment["metadata"].get("annotations") or {}).get(REVISION)) != revision:
            await self.client.patch(
                "deployments",
                name_of(deployment),
                {"metadata": {"annotations": {REVISION: revision}}},
                namespace_of(deployment),
            )
