"""LoadBalancer controller: gives each `type: LoadBalancer` Service an address from a pool.

The address goes into `status.loadBalancer.ingress` (through the status
subresource), where kproxy picks it up: its rules accept traffic to it and
one elected kproxy per Service announces it on the node network with ARP,
as MetalLB's layer-2 mode does. An address stays with its Service until the
Service is deleted or stops being a LoadBalancer; `spec.loadBalancerIP` is
honoured when it lies in the pool and is free.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from control.api.errors import ApiError
from control.client import Client, Informer, Object, key_of

from control.controllers.base import Controller

log = logging.getLogger(__name__)

DEFAULT_POOL = "192.168.56.240-192.168.56.250"


def parse_pool(text: str) -> list[str]:
    """Addresses of a pool given as comma-separated `first-last` ranges, CIDRs or single IPv4 addresses."""
    addresses: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (ipaddress.IPv4Address(x.strip()) for x in part.split("-", 1))
                if last < first:
                    raise ValueError(f"{last} comes before {first}")
                addresses += [str(ipaddress.IPv4Address(n)) for n in range(int(first), int(last) + 1)]
            elif "/" in part:
                addresses += [str(ip) for ip in ipaddress.IPv4Network(part).hosts()]
            else:
                addresses.append(str(ipaddress.IPv4Address(part)))
        except ValueError as err:
            raise ValueError(f"load balancer pool {part!r}: {err}") from None
    if not addresses:
        raise ValueError(f"load balancer pool {text!r}: no addresses")
    return list(dict.fromkeys(addresses))


def ingress_ips(service: Object) -> list[str]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if isinstance(i, dict) and i.get("ip")]


def is_load_balancer(service: Object) -> bool:
    return (service.get("spec") or {}).get("type") == "LoadBalancer"


class LoadBalancerController(Controller):
    name = "loadbalancer"

    def __init__(self, client: Client, services: Informer, pool: list[str]):
        super().__init__()
        self.client = client
        self.services = services
        self.pool = pool
        self._pool_set = set(pool)
        # Addresses this controller handed out, by service key: the informer may not show them yet.
        self.assigned: dict[str, str] = {}
        services.add_handler(self._on_service)

    def _on_service(self, kind: str, obj: Object, prev: Object | None) -> None:
        if kind == "DELETED":
            self.assigned.pop(key_of(obj), None)
            return
        self.queue.add(key_of(obj))

    def all_keys(self) -> Iterable[str]:
        return [key_of(s) for s in self.services.items()]

    def in_use(self, except_key: str) -> set[str]:
        """Pool addresses held by any other Service (as the cache shows it, or as this controller assigned)."""
        used = {ip for key, ip in self.assigned.items() if key != except_key}
        for service in self.services.items():
            if key_of(service) != except_key and is_load_balancer(service):
                used.update(ip for ip in ingress_ips(service) if ip in self._pool_set)
        return used

    def choose(self, service: Object, key: str) -> str | None:
        """The address this Service should have: its current one if still valid, else the requested or lowest free."""
        used = self.in_use(key)
        current = [ip for ip in ingress_ips(service) if ip in self._pool_set and ip not in used]
        if current:
            return current[0]
        requested = (service.get("spec") or {}).get("loadBalancerIP")
        if requested:
            if requested in self._pool_set and requested not in used:
                return str(requested)
            log.warning("loadBalancerIP %s of %s is not free in the pool", requested, key)
            return None
        return next((ip for ip in self.pool if ip not in used), None)

    async def sync(self, key: str) -> None:
        namespace, _, name = key.rpartition("/")
        service = self.services.get(name, namespace or None)
        if service is None:
            self.assigned.pop(key, None)
            return
        if not is_load_balancer(service):
            self.assigned.pop(key, None)
            if any(ip in self._pool_set for ip in ingress_ips(service)):
                await self._write(service, [])
            return
        address = self.choose(service, key)
        if address is None:
            self.assigned.pop(key, None)
            log.warning("no free load balancer address for %s (pool of %d)", key, len(self.pool))
            return
        self.assigned[key] = address
        if ingress_ips(service) != [address]:
            await self._write(service, [{"ip": address, "ipMode": "VIP"}])
            log.info("assigned load balancer address", extra={"service": key, "ip": address})

    async def _write(self, service: Object, ingress: list[dict[str, Any]]) -> None:
        updated = dict(service)
        updated["status"] = {**(service.get("status") or {}), "loadBalancer": {"ingress": ingress} if ingress else {}}
        try:
            await self.client.update_status("services", updated)
        except ApiError as err:
            if err.code == 404:
                return
            raise
