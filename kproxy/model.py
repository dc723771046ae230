"""Typed views of exactly what the rule generator needs from Services and EndpointSlices.

The rules are a pure function of these values, so building them from the
API objects happens once, here, and bad objects fail with a message that
names the field instead of a KeyError deep inside rule generation.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Object = Mapping[str, Any]

DEFAULT_STICKY_SECONDS = 10800  # sessionAffinityConfig.clientIP.timeoutSeconds default
MASQUERADE_MARK = "0x4000"  # 1 << 14, kube-proxy's default --iptables-masquerade-bit
PROTOCOLS = ("TCP", "UDP", "SCTP")


class InvalidObject(ValueError):
    """A Service or EndpointSlice kproxy cannot turn into rules; the message names the field."""


@dataclass(frozen=True, order=True)
class ServicePortName:
    """One port of one Service, as kube-proxy keys it (`ServicePortName`)."""

    namespace: str
    name: str
    port_name: str
    protocol: str

    def __str__(self) -> str:
        """`ns/name:port`, or `ns/name` for an unnamed port (upstream's ServicePortName.String)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


@dataclass(frozen=True)
class ServicePort:
    """What the rules need to know about one Service port."""

    key: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    # None: no session affinity; otherwise ClientIP stickiness for this many seconds.
    sticky_seconds: int | None = None
    external_policy_local: bool = False
    internal_policy_local: bool = False

    @property
    def protocol(self) -> str:
        return self.key.protocol

    @property
    def externally_accessible(self) -> bool:
        """Reachable other than by cluster IP: a node port, external IPs or LB ingress IPs."""
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True)
class Endpoint:
    """One backend address of one Service port."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    is_local: bool = False

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class NodeConfig:
    """The node's own facts the rules depend on."""

    node_name: str
    node_ips: tuple[str, ...] = ()
    # Pod CIDR of the whole cluster: traffic from outside it to a cluster IP is masqueraded.
    cluster_cidr: str | None = None
    masquerade_mark: str = MASQUERADE_MARK

    def __post_init__(self) -> None:
        for ip in self.node_ips:
            _check_ip(ip, "node IP")
        if self.cluster_cidr is not None:
            try:
                ipaddress.ip_network(self.cluster_cidr)
            except ValueError as err:
                raise InvalidObject(f"cluster CIDR {self.cluster_cidr!r}: {err}") from None


@dataclass
class ServiceSnapshot:
    """All service ports and their endpoints at one moment: the input of one sync."""

    service_ports: list[ServicePort] = field(default_factory=list)
    endpoints: dict[ServicePortName, Sequence[Endpoint]] = field(default_factory=dict)


def service_ports_of(service: Object) -> list[ServicePort]:
    """The proxied ports of a Service; headless and ExternalName services have none."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    where = f"service {namespace}/{name}"
    service_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP") or ""
    if service_type == "ExternalName" or cluster_ip in ("", "None"):
        return []
    _check_ip(cluster_ip, f"{where}: spec.clusterIP")
    external_ips = tuple(_check_ip(ip, f"{where}: spec.externalIPs") for ip in spec.get("externalIPs") or [])
    ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    lb_ips = tuple(_check_ip(i["ip"], f"{where}: status.loadBalancer.ingress") for i in ingress if i.get("ip"))
    sticky: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        sticky = int(client_ip.get("timeoutSeconds") or DEFAULT_STICKY_SECONDS)
    # externalTrafficPolicy only means something for services reachable from outside.
    external_local = service_type in ("NodePort", "LoadBalancer") and spec.get("externalTrafficPolicy") == "Local"
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    ports = []
    for index, port in enumerate(spec.get("ports") or []):
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            raise InvalidObject(f"{where}: spec.ports[{index}].protocol {protocol!r} is not one of {PROTOCOLS}")
        number = _check_port(port.get("port"), f"{where}: spec.ports[{index}].port")
        node_port = port.get("nodePort") or 0
        if node_port:
            _check_port(node_port, f"{where}: spec.ports[{index}].nodePort")
        ports.append(
            ServicePort(
                key=ServicePortName(namespace, name, port.get("name") or "", protocol),
                cluster_ip=cluster_ip,
                port=number,
                node_port=node_port if service_type in ("NodePort", "LoadBalancer") else 0,
                external_ips=external_ips,
                load_balancer_ips=lb_ips if service_type == "LoadBalancer" else (),
                sticky_seconds=sticky,
                external_policy_local=external_local,
                internal_policy_local=internal_local,
            )
        )
    return ports


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpoints_of_slice(endpoint_slice: Object, node_name: str) -> dict[ServicePortName, list[Endpoint]]:
    """The backends one EndpointSlice gives each port of its Service, keyed like the service ports.

    The Service is named by the `kubernetes.io/service-name` label; slice
    ports match service ports by name and protocol, as kube-proxy does. A
    condition left out means what the API says it means: `ready` unknown is
    ready, `serving` unknown follows `ready`, `terminating` unknown is false.
    Slices of another address family, or of no Service, give nothing.
    """
    meta = endpoint_slice.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or endpoint_slice.get("addressType") != "IPv4":
        return {}
    where = f"endpointslice {namespace}/{meta.get('name') or ''}"
    backends = []
    for index, endpoint in enumerate(endpoint_slice.get("endpoints") or []):
        addresses = endpoint.get("addresses") or []
        if not addresses:
            raise InvalidObject(f"{where}: endpoints[{index}].addresses is empty")
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is not False
        serving = ready if conditions.get("serving") is None else bool(conditions["serving"])
        node = endpoint.get("nodeName") or ""
        ip = _check_ip(addresses[0], f"{where}: endpoints[{index}].addresses[0]")
        backends.append((ip, ready, serving, bool(conditions.get("terminating")), node))
    result: dict[ServicePortName, list[Endpoint]] = {}
    for index, port in enumerate(endpoint_slice.get("ports") or []):
        if port.get("port") is None:
            continue  # a slice port without a number means "all ports"; kube-proxy ignores it too
        key = ServicePortName(namespace, service, port.get("name") or "", port.get("protocol") or "TCP")
        number = _check_port(port["port"], f"{where}: ports[{index}].port")
        result[key] = [
            Endpoint(
                ip,
                number,
                ready=ready,
                serving=serving,
                terminating=terminating,
                node_name=node,
                is_local=node == node_name,
            )
            for ip, ready, serving, terminating, node in backends
        ]
    return result


def _merged(first: Sequence[Endpoint], more: Sequence[Endpoint]) -> list[Endpoint]:
    """Endpoints of two slices of one Service; an address in both counts once, ready first.

    Slices overlap briefly while a controller moves an endpoint between them.
    """
    into = list(first)
    position = {(e.ip, e.port): i for i, e in enumerate(into)}
    for endpoint in more:
        seen = position.get((endpoint.ip, endpoint.port))
        if seen is None:
            position[(endpoint.ip, endpoint.port)] = len(into)
            into.append(endpoint)
        elif endpoint.ready and not into[seen].ready:
            into[seen] = endpoint
    return into


def snapshot(services: Iterable[Object], slices: Iterable[Object], node_name: str) -> ServiceSnapshot:
    """Join Services and EndpointSlices into one sync's input.

    A bad object is logged and left out rather than failing the sync: one
    broken Service must not take every other Service's rules down with it.
    """
    return SnapshotCache(node_name).snapshot(services, slices)


class SnapshotCache:
    """Builds snapshots, parsing each Service and EndpointSlice object only once.

    Informers replace an object on every change, so an object seen before
    (the same dict, held here so its identity stays unique) parses the same;
    at ten thousand services a sync then parses only what changed.
    """

    def __init__(self, node_name: str):
        self.node_name = node_name
        self._services: dict[int, tuple[Object, list[ServicePort]]] = {}
        self._endpoints: dict[int, tuple[Object, dict[ServicePortName, tuple[Endpoint, ...]]]] = {}

    def snapshot(self, services: Iterable[Object], slices: Iterable[Object]) -> ServiceSnapshot:
        result = ServiceSnapshot()
        seen_services: dict[int, tuple[Object, list[ServicePort]]] = {}
        for service in services:
            cached = self._services.get(id(service))
            if cached is None or cached[0] is not service:
                cached = (service, _parsed_or_logged(service_ports_of, service, "service") or [])
            seen_services[id(service)] = cached
            result.service_ports.extend(cached[1])
        seen_endpoints: dict[int, tuple[Object, dict[ServicePortName, tuple[Endpoint, ...]]]] = {}
        merged: dict[ServicePortName, Sequence[Endpoint]] = {}
        for obj in slices:
            hit = self._endpoints.get(id(obj))
            if hit is None or hit[0] is not obj:
                parsed = _parsed_or_logged(lambda o: endpoints_of_slice(o, self.node_name), obj, "endpointslice") or {}
                hit = (obj, {key: tuple(eps) for key, eps in parsed.items()})
            seen_endpoints[id(obj)] = hit
            for key, eps in hit[1].items():
                earlier = merged.get(key)
                merged[key] = eps if earlier is None else _merged(earlier, eps)
        result.endpoints.update(merged)
        self._services, self._endpoints = seen_services, seen_endpoints
        return result


def _parsed_or_logged(parse: Any, obj: Object, what: str) -> Any:
    """`parse(obj)`, or None (logged) when the object is invalid."""
    try:
        return parse(obj)
    except InvalidObject as err:
        log.warning("skipping %s: %s", what, err)
        return None


def _check_ip(value: str, what: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidObject(f"{what}: {value!r} is not an IP address") from None
    return value


def _check_port(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise InvalidObject(f"{what}: {value!r} is not a port number")
    return value
