"""Kubernetes Events from any component (`kubectl describe` shows them).

Repeats of one (object, reason, message) bump `count` and `lastTimestamp`
on the existing Event instead of creating another, as client-go's event
correlator does.  Recording never fails the caller: an API error is logged.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections import OrderedDict
from typing import Any, Protocol

from control.api.errors import ApiError
from control.api.resources import resource
from control.api.timestamps import now_rfc3339
from control.client import Object, name_of, namespace_of

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


def involved_object(plural: str, obj: Object) -> dict[str, Any]:
    res = resource(plural)
    meta = obj.get("metadata") or {}
    ref = {"apiVersion": res.api_version, "kind": res.kind, "name": meta.get("name", ""), "uid": meta.get("uid", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    return ref


class EventApi(Protocol):
    """What recording needs of a client (control.client.Client, or a test double)."""

    async def create(self, plural: str, obj: Object, namespace: str | None = None) -> Object: ...

    async def patch(self, plural: str, name: str, patch: Any, namespace: str | None = None) -> Object: ...


class EventRecorder:
    """Writes core/v1 Events on behalf of one component (on one node: `host`, as the kubelet's carry)."""

    def __init__(self, client: EventApi, component: str, host: str | None = None, remember: int = 4096):
        self.client = client
        self.component = component
        self.host = host
        self.instance = host or f"{component}-{socket.gethostname()}"
        self.remember = remember
        self._recent: OrderedDict[tuple[str, str, str], tuple[str, str, int]] = OrderedDict()

    async def record(self, plural: str, obj: Object, event_type: str, reason: str, message: str) -> None:
        namespace = namespace_of(obj) or "default"
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        key = (uid, reason, message)
        stamp = now_rfc3339()
        try:
            previous = self._recent.get(key)
            if previous is not None:
                name, event_namespace, count = previous
                try:
                    await self.client.patch(
                        "events", name, {"count": count + 1, "lastTimestamp": stamp}, event_namespace
                    )
                    self._remember(key, (name, event_namespace, count + 1))
                    return
                except ApiError as err:
                    if err.code != 404:
                        raise
            name = f"{name_of(obj)}.{uuid.uuid4().hex[:16]}"
            event = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved_object(plural, obj),
                "reason": reason,
                "message": message,
                "type": event_type,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "reportingComponent": self.component,
                "reportingInstance": self.instance,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            await self.client.create("events", event, namespace)
            self._remember(key, (name, namespace, 1))
        except ApiError as err:
            log.info("recording event %s on %s/%s: %s", reason, namespace, name_of(obj), err)

    def _remember(self, key: tuple[str, str, str], value: tuple[str, str, int]) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > self.remember:
            self._recent.popitem(last=False)
