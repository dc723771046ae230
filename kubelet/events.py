"""Kubernetes Events about pods (`kubectl describe pod` shows them): Created, Started, Killing, BackOff, Failed.

Same wire format as the control plane's Events; a repeat of one (pod, reason,
message) bumps `count` and `lastTimestamp` instead of adding an Event, as
client-go's correlator does.  Recording never fails the caller.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from typing import Any, Protocol

from control.api.errors import ApiError
from kubelet.timestamps import now_rfc3339

log = logging.getLogger(__name__)

Object = dict[str, Any]
NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "kubelet"


class EventApi(Protocol):
    async def create(self, plural: str, obj: Object, namespace: str | None = None) -> Object: ...

    async def patch(self, plural: str, name: str, patch: Any, namespace: str | None = None) -> Object: ...


class PodEvents:
    """Writes Events whose involvedObject is a pod, from this node's kubelet."""

    def __init__(self, api: EventApi, node_name: str, remember: int = 2048):
        self.api, self.node_name, self.remember = api, node_name, remember
        self._recent: OrderedDict[tuple[str, str, str], tuple[str, int]] = OrderedDict()

    async def record(self, pod: Object, event_type: str, reason: str, message: str) -> None:
        meta = pod.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message)
        stamp = now_rfc3339()
        try:
            seen = self._recent.get(key)
            if seen is not None:
                name, count = seen
                await self.api.patch("events", name, {"count": count + 1, "lastTimestamp": stamp}, namespace)
                self._keep(key, (name, count + 1))
                return
            name = f"{meta.get('name', '')}.{uuid.uuid4().hex[:16]}"
            event = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.get("name", ""),
                    "namespace": namespace,
                    "uid": meta.get("uid", ""),
                },
                "reason": reason,
                "message": message,
                "type": event_type,
                "source": {"component": COMPONENT, "host": self.node_name},
                "reportingComponent": COMPONENT,
                "reportingInstance": self.node_name,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            await self.api.create("events", event, namespace)
            self._keep(key, (name, 1))
        except ApiError as err:
            log.info("recording event %s on pod %s/%s: %s", reason, namespace, meta.get("name"), err)

    def _keep(self, key: tuple[str, str, str], value: tuple[str, int]) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > self.remember:
            self._recent.popitem(last=False)
