"""Endpoints controller: one Endpoints object per selector Service, listing its pods.

`compute_subsets` is the decision: which pod addresses serve which ports,
ready or not, packed into subsets the way upstream's RepackSubsets does
(addresses with the same resolved ports share a subset).  The controller
writes only when the stored object differs, compared ignoring order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from control.api.errors import ApiError
from control.api.selectors import labels_to_selector, matches
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.controllers.base import Controller, is_pod_ready

log = logging.getLogger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"


def resolve_target_port(service_port: dict[str, Any], pod: Object) -> int | None:
    """The port number a service port reaches on this pod (None if a named port is missing)."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == text and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def resolved_ports(service_ports: list[dict[str, Any]], pod: Object) -> tuple[tuple[str, int, str], ...] | None:
    """(name, number, protocol) of each service port on this pod, sorted; None when the pod has none of them."""
    ports = []
    for port in service_ports:
        number = resolve_target_port(port, pod)
        if number is not None:
            ports.append((port.get("name") or "", number, port.get("protocol") or "TCP"))
    if service_ports and not ports:
        return None
    return tuple(sorted(ports))


def _address(pod: Object, service: Object) -> dict[str, Any]:
    address: dict[str, Any] = {
        "ip": pod["status"]["podIP"],
        "targetRef": {
            "kind": "Pod",
            "namespace": namespace_of(pod),
            "name": name_of(pod),
            "uid": pod["metadata"].get("uid", ""),
        },
    }
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        address["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == name_of(service):
        address["hostname"] = spec["hostname"]
    return address


def selects(service: Object, pod: Object) -> bool:
    selector = (service.get("spec") or {}).get("selector")
    return (
        bool(selector)
        and namespace_of(pod) == namespace_of(service)
        and matches(labels_to_selector(selector), (pod.get("metadata") or {}).get("labels") or {})
    )


def compute_subsets(service: Object, pods: Iterable[Object]) -> list[dict[str, Any]]:
    """The Endpoints subsets for a service with a selector."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    groups: dict[tuple[tuple[str, int, str], ...], dict[str, list[dict[str, Any]]]] = {}
    for pod in pods:
        status = pod.get("status") or {}
        if (
            not selects(service, pod)
            or not status.get("podIP")
            or pod["metadata"].get("deletionTimestamp")
            or status.get("phase") in ("Succeeded", "Failed")
        ):
            continue
        ports = resolved_ports(service_ports, pod)
        if ports is None:
            continue
        group = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        ready = publish_not_ready or is_pod_ready(pod)
        group["addresses" if ready else "notReadyAddresses"].append(_address(pod, service))
    subsets = []
    for port_set, addresses in sorted(groups.items()):
        subset: dict[str, Any] = {}
        for field in ("addresses", "notReadyAddresses"):
            if addresses[field]:
                subset[field] = sorted(addresses[field], key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        if port_set:
            subset["ports"] = [_port(name, number, protocol) for name, number, protocol in port_set]
        subsets.append(subset)
    return subsets


def _port(name: str, number: int, protocol: str) -> dict[str, Any]:
    port: dict[str, Any] = {"port": number, "protocol": protocol}
    if name:
        port["name"] = name
    return port


def endpoints_labels(service: Object) -> dict[str, str]:
    """The service's labels, plus the headless marker for clusterIP None."""
    labels = dict((service.get("metadata") or {}).get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def _canonical(subsets: list[dict[str, Any]]) -> list[Any]:
    """Subsets as an order-free value, for comparing stored and computed objects."""

    def frozen(value: Any) -> Any:
        if isinstance(value, dict):
            return tuple(sorted((k, frozen(v)) for k, v in value.items()))
        if isinstance(value, list):
            return tuple(sorted((frozen(v) for v in value), key=repr))
        return value

    return sorted((frozen(s) for s in subsets or []), key=repr)


def endpoints_differ(stored: Object, subsets: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    return (
        _canonical(stored.get("subsets") or []) != _canonical(subsets)
        or ((stored.get("metadata") or {}).get("labels") or {}) != labels
    )


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, client: Client, services: Informer, pods: Informer, endpoints: Informer):
        super().__init__()
        self.client = client
        self.services = services
        self.pods = pods
        self.endpoints = endpoints
        self._deleted_services: set[str] = set()
        services.add_handler(self._on_service)
        endpoints.add_handler(self._on_endpoints)
        pods.add_handler(self._on_pod)

    def all_keys(self) -> Iterable[str]:
        return [key_of(s) for s in self.services.items()]

    def _on_service(self, kind: str, service: Object, _prev: Object | None) -> None:
        key = key_of(service)
        if kind == "DELETED":
            self._deleted_services.add(key)
        else:
            self._deleted_services.discard(key)
        self.queue.add(key)

    def _on_endpoints(self, _kind: str, endpoints: Object, _prev: Object | None) -> None:
        """Someone else changed an object we own: put it back."""
        if self.services.get(name_of(endpoints), namespace_of(endpoints)) is not None:
            self.queue.add(key_of(endpoints))

    def _on_pod(self, _kind: str, pod: Object, prev: Object | None) -> None:
        namespace = str(namespace_of(pod))
        for service in self.services.by_namespace(namespace):
            if selects(service, pod) or (prev is not None and selects(service, prev)):
                self.queue.add(key_of(service))

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        service = self.services.get(name, namespace)
        stored = self.endpoints.get(name, namespace)
        if service is None:
            if key in self._deleted_services:  # only a deletion we saw: others' Endpoints may precede their Service
                if stored is not None:
                    await self._delete(name, namespace)
                self._deleted_services.discard(key)
            return
        if not (service.get("spec") or {}).get("selector"):
            return  # endpoints of selector-less services belong to whoever made them
        subsets = compute_subsets(service, self.pods.by_namespace(namespace))
        labels = endpoints_labels(service)
        if stored is None:
            body = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "subsets": subsets}
            try:
                await self.client.create("endpoints", body, namespace)
            except ApiError as err:
                if err.reason != "AlreadyExists":
                    raise
                self.queue.add(key)  # the cache was behind; compare on the next pass
        elif endpoints_differ(stored, subsets, labels):
            metadata = {**stored["metadata"], "labels": labels}
            await self.client.update("endpoints", {**stored, "metadata": metadata, "subsets": subsets})

    async def _delete(self, name: str, namespace: str) -> None:
        try:
            await self.client.delete("endpoints", name, namespace)
        except ApiError as err:
            if err.code != 404:
                raise
