"""Node IPAM: give every node its own pod subnet (`spec.podCIDR`) out of the cluster CIDR.

`next_free_subnet` is the decision.  The used set is rebuilt from all nodes
before the first allocation and grows with every allocation, so two nodes
never get the same subnet even before the cache shows the first write.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from control.client import Client, Informer, Object, name_of
from control.controllers.base import Controller

log = logging.getLogger(__name__)


def parse_cluster_cidr(cidr: str, mask_size: int) -> ipaddress.IPv4Network:
    """Validate --cluster-cidr against --node-cidr-mask-size; ValueError says which is wrong."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as err:
        raise ValueError(f"--cluster-cidr {cidr!r} is not a network address: {err}") from err
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"--cluster-cidr {cidr!r}: only IPv4 is supported")
    if not network.prefixlen <= mask_size <= 32:
        raise ValueError(f"--node-cidr-mask-size {mask_size} must be between {network.prefixlen} and 32 for {cidr}")
    return network


def next_free_subnet(cluster: ipaddress.IPv4Network, mask_size: int, used: Iterable[str]) -> str | None:
    """The lowest /mask_size subnet of cluster overlapping nothing in used (None when full)."""
    taken = []
    for cidr in used:
        try:
            taken.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    for subnet in cluster.subnets(new_prefix=mask_size):
        if not any(subnet.overlaps(t) for t in taken):
            return str(subnet)
    return None


def node_cidrs(node: Object) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and spec["podCIDR"] not in cidrs:
        cidrs.append(spec["podCIDR"])
    return cidrs


class NodeIpamController(Controller):
    name = "nodeipam"

    def __init__(self, client: Client, nodes: Informer, cluster_cidr: str, mask_size: int):
        super().__init__()
        self.client = client
        self.nodes = nodes
        self.cluster = parse_cluster_cidr(cluster_cidr, mask_size)
        self.mask_size = mask_size
        self._allocated: dict[str, str] = {}  # node -> subnet we assigned, until the cache shows it
        nodes.add_handler(self._on_node)

    def all_keys(self) -> Iterable[str]:
        return [name_of(n) for n in self.nodes.items()]

    def _on_node(self, kind: str, node: Object, _prev: Object | None) -> None:
        if kind == "DELETED":
            self._allocated.pop(name_of(node), None)
        elif not (node.get("spec") or {}).get("podCIDR"):
            self.queue.add(name_of(node))

    def used(self) -> set[str]:
        used = {cidr for node in self.nodes.items() for cidr in node_cidrs(node)}
        return used | set(self._allocated.values())

    async def sync(self, key: str) -> None:
        await self.nodes.synced.wait()
        node = self.nodes.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            return
        subnet = self._allocated.get(key) or next_free_subnet(self.cluster, self.mask_size, self.used())
        if subnet is None:
            raise RuntimeError(f"no free /{self.mask_size} left in {self.cluster} for node {key}")
        self._allocated[key] = subnet
        await self.client.patch("nodes", key, {"spec": {"podCIDR": subnet, "podCIDRs": [subnet]}})
        log.info("node %s: podCIDR %s", key, subnet)
