"""EndpointSlice controller: the discovery.k8s.io/v1 view of each Service's backends.

Upstream runs two controllers that write EndpointSlices; this one does both
jobs for a Service, keyed by the Service:
- a Service with a selector gets slices listing its pods, terminating ones
  included with their conditions (`ready`, `serving`, `terminating`), so
  that kproxy can drain to serving terminating pods as kube-proxy does;
- a Service without a selector gets its Endpoints object mirrored, as the
  EndpointSlice mirroring controller does for hand-written Endpoints.

`desired_slices` is the decision (a pure function); the controller then
pairs wanted slices with stored ones of the same ports and writes only what
differs. Unlike upstream it does not try to minimise churn when endpoints
move between full slices; with at most `max_endpoints_per_slice` per slice
an endpoint change rewrites the slices after it in order, which is fine at
this project's scale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from control.api.errors import ApiError
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.controllers.base import Controller, is_pod_ready
from control.controllers.endpoints import HEADLESS_LABEL, resolved_ports, selects

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MIRRORING_NAME = "endpointslicemirroring-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager's --max-endpoints-per-slice default
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

# A slice's ports as a hashable, order-free value: ((name, port, protocol), ...).
PortKey = tuple[tuple[str, int, str], ...]


@dataclass(frozen=True)
class WantedSlice:
    """One slice's content, before it is paired with a stored object."""

    ports: PortKey
    endpoints: tuple[Any, ...]  # endpoint dicts, sorted


def _ports_json(ports: PortKey) -> list[dict[str, Any]]:
    return [{"name": name, "port": number, "protocol": protocol} for name, number, protocol in ports]


def _port_key(ports: Iterable[Object]) -> PortKey:
    return tuple(
        sorted((p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP") for p in ports or [])
    )


def pod_endpoint(pod: Object, service: Object) -> dict[str, Any]:
    """One pod as a slice endpoint, with upstream's conditions.

    `serving` is the pod's readiness whatever its deletion state; `ready` is
    serving and not terminating; `publishNotReadyAddresses` makes both true.
    """
    spec = pod.get("spec") or {}
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    terminating = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    serving = publish_not_ready or is_pod_ready(pod)
    endpoint: dict[str, Any] = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {
            "ready": publish_not_ready or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": namespace_of(pod),
            "name": name_of(pod),
            "uid": pod["metadata"].get("uid", ""),
        },
    }
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == name_of(service):
        endpoint["hostname"] = spec["hostname"]
    return endpoint


def _chunked(ports: PortKey, endpoints: list[dict[str, Any]], size: int) -> list[WantedSlice]:
    endpoints.sort(key=lambda e: (e["addresses"][0], (e.get("targetRef") or {}).get("uid", "")))
    return [WantedSlice(ports, tuple(endpoints[i : i + size])) for i in range(0, len(endpoints), size)]


def slices_for_pods(service: Object, pods: Iterable[Object], max_per_slice: int) -> list[WantedSlice]:
    """Slices for a selector Service: its pods with an IP, grouped by the ports they resolve."""
    service_ports = (service.get("spec") or {}).get("ports") or []
    groups: dict[PortKey, list[dict[str, Any]]] = {}
    for pod in pods:
        status = pod.get("status") or {}
        if not selects(service, pod) or not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = resolved_ports(service_ports, pod)
        if ports is not None:
            groups.setdefault(ports, []).append(pod_endpoint(pod, service))
    return [s for ports, eps in sorted(groups.items()) for s in _chunked(ports, eps, max_per_slice)]


def slices_for_endpoints(endpoints: Object, max_per_slice: int) -> list[WantedSlice]:
    """Slices mirroring a hand-written Endpoints object: one group per subset."""
    wanted = []
    for subset in endpoints.get("subsets") or []:
        ports = _port_key(subset.get("ports") or [])
        eps = []
        for address, ready in [(a, True) for a in subset.get("addresses") or []] + [
            (a, False) for a in subset.get("notReadyAddresses") or []
        ]:
            endpoint: dict[str, Any] = {
                "addresses": [address.get("ip", "")],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
            }
            for field in ("nodeName", "hostname", "targetRef"):
                if address.get(field):
                    endpoint[field] = address[field]
            eps.append(endpoint)
        wanted += _chunked(ports, eps, max_per_slice)
    return wanted


def desired_slices(
    service: Object, pods: Iterable[Object], endpoints: Object | None, max_per_slice: int = MAX_ENDPOINTS_PER_SLICE
) -> tuple[str, list[WantedSlice]] | None:
    """(managed-by name, slices) for a Service, or None when no controller of ours manages its slices."""
    if (service.get("spec") or {}).get("type") == "ExternalName":
        return None
    if (service.get("spec") or {}).get("selector"):
        wanted = slices_for_pods(service, pods, max_per_slice)
        managed_by = CONTROLLER_NAME
    elif endpoints is not None and not _labels(endpoints).get(SKIP_MIRROR_LABEL) == "true":
        wanted = slices_for_endpoints(endpoints, max_per_slice)
        managed_by = MIRRORING_NAME
    else:
        return None
    # A Service with no endpoints still has one slice, empty, as upstream's placeholder.
    return managed_by, wanted or [WantedSlice((), ())]


def _labels(obj: Object) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def slice_labels(service: Object, managed_by: str) -> dict[str, str]:
    """The Service's own labels plus the two that tie a slice to it (and the headless marker)."""
    labels = _labels(service)
    labels[SERVICE_NAME_LABEL] = name_of(service)
    labels[MANAGED_BY_LABEL] = managed_by
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def _same(stored: Object, wanted: WantedSlice, labels: dict[str, str]) -> bool:
    return (
        _port_key(stored.get("ports") or []) == wanted.ports
        and list(stored.get("endpoints") or []) == list(wanted.endpoints)
        and _labels(stored) == labels
    )


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(
        self,
        client: Client,
        services: Informer,
        pods: Informer,
        endpoints: Informer,
        slices: Informer,
        max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
        wall_clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        if max_endpoints_per_slice < 1:
            raise ValueError(f"max endpoints per slice must be at least 1, not {max_endpoints_per_slice}")
        self.client = client
        self.services = services
        self.pods = pods
        self.endpoints = endpoints
        self.slices = slices
        self.max_per_slice = max_endpoints_per_slice
        self.wall_clock = wall_clock
        # Service key -> wall time of the first change not yet written (kproxy's programming latency starts here).
        self._triggered: dict[str, float] = {}
        services.add_handler(self._on_service)
        pods.add_handler(self._on_pod)
        endpoints.add_handler(self._on_owned)
        slices.add_handler(self._on_slice)

    def all_keys(self) -> Iterable[str]:
        return [key_of(s) for s in self.services.items()]

    def _changed(self, key: str) -> None:
        self._triggered.setdefault(key, self.wall_clock())
        self.queue.add(key)

    def _on_service(self, _kind: str, service: Object, _prev: Object | None) -> None:
        self._changed(key_of(service))

    def _on_owned(self, _kind: str, obj: Object, _prev: Object | None) -> None:
        self._changed(key_of(obj))

    def _on_slice(self, _kind: str, obj: Object, _prev: Object | None) -> None:
        """Someone changed a slice of ours (or it went): put it back as wanted."""
        labels = _labels(obj)
        if labels.get(MANAGED_BY_LABEL) in (CONTROLLER_NAME, MIRRORING_NAME) and labels.get(SERVICE_NAME_LABEL):
            self.queue.add(f"{namespace_of(obj)}/{labels[SERVICE_NAME_LABEL]}")

    def _on_pod(self, _kind: str, pod: Object, prev: Object | None) -> None:
        for service in self.services.by_namespace(str(namespace_of(pod))):
            if selects(service, pod) or (prev is not None and selects(service, prev)):
                self._changed(key_of(service))

    def _stored(self, namespace: str, service_name: str) -> list[Object]:
        return sorted(
            (
                s
                for s in self.slices.by_namespace(namespace)
                if _labels(s).get(SERVICE_NAME_LABEL) == service_name
                and _labels(s).get(MANAGED_BY_LABEL) in (CONTROLLER_NAME, MIRRORING_NAME)
            ),
            key=name_of,
        )

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        triggered = self._triggered.pop(key, None)
        service = self.services.get(name, namespace)
        stored = self._stored(namespace, name)
        plan = None
        if service is not None:
            plan = desired_slices(
                service, self.pods.by_namespace(namespace), self.endpoints.get(name, namespace), self.max_per_slice
            )
        if plan is None:
            for obj in stored:
                await self._delete(obj)
            return
        assert service is not None
        managed_by, wanted = plan
        labels = slice_labels(service, managed_by)
        annotations = {}
        if triggered is not None:
            stamp = datetime.fromtimestamp(triggered, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            annotations[TRIGGER_TIME_ANNOTATION] = stamp
        # Pair each wanted slice with a stored one of the same ports, then reuse leftovers for the rest.
        leftovers = list(stored)
        unpaired = []
        pairs: list[tuple[WantedSlice, Object]] = []
        for want in wanted:
            match = next((s for s in leftovers if _port_key(s.get("ports") or []) == want.ports), None)
            if match is None:
                unpaired.append(want)
            else:
                leftovers.remove(match)
                pairs.append((want, match))
        for want in unpaired:
            if leftovers:
                pairs.append((want, leftovers.pop(0)))
            else:
                await self.client.create("endpointslices", self._body(service, want, labels, annotations), namespace)
        for want, obj in pairs:
            if not _same(obj, want, labels):
                body = self._body(service, want, labels, annotations)
                old_annotations = obj["metadata"].get("annotations") or {}
                body["metadata"] = {
                    **obj["metadata"],
                    "labels": labels,
                    "annotations": {**old_annotations, **annotations},
                }
                await self.client.update("endpointslices", body)
        for obj in leftovers:
            await self._delete(obj)

    @staticmethod
    def _body(
        service: Object, want: WantedSlice, labels: dict[str, str], annotations: dict[str, str]
    ) -> dict[str, Any]:
        meta = service["metadata"]
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": meta["name"],
                        "uid": meta.get("uid", ""),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            "endpoints": list(want.endpoints),
            "ports": _ports_json(want.ports),
        }

    async def _delete(self, obj: Object) -> None:
        try:
            await self.client.delete("endpointslices", name_of(obj), namespace_of(obj))
        except ApiError as err:
            if err.code != 404:
                raise
