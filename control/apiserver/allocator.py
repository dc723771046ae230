"""Service ClusterIP allocation from `--service-cluster-ip-range`.

Each allocated IP is one etcd key, `/registry/ipallocations/<ip>`, written
in the same transaction as the Service that holds it (with a "key must not
exist" compare), so two Services can never get the same IP, and an
allocation is released in the same transaction that deletes its Service.
State therefore survives restarts with nothing to rebuild.

As Kubernetes does (KEP-3070), dynamic allocation draws from the upper part
of the range and leaves the low "static band" (min(max(16, size/16), 256)
addresses) for explicitly requested IPs such as 10.96.0.10 for kube-dns;
only when the upper part is exhausted does it fall back to the band.
"""

from __future__ import annotations

import ipaddress
import random

ALLOCATION_PREFIX = "/registry/ipallocations/"


class RangeFull(Exception):
    """No free address is left in the service range."""


class ServiceIPRange:
    """The usable addresses of the range (network and broadcast excluded)."""

    def __init__(self, cidr: str, rng: random.Random | None = None):
        try:
            self.network = ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as err:
            raise ValueError(f"invalid --service-cluster-ip-range {cidr!r}: {err}") from None
        if self.network.num_addresses < 8:
            raise ValueError(f"--service-cluster-ip-range {cidr!r} is too small (need at least a /29)")
        self.size = self.network.num_addresses - 2
        self.static_band = min(max(16, self.size // 16), 256)
        self._rng = rng or random.Random()

    def first(self) -> str:
        """The address of the `kubernetes` Service (first usable)."""
        return str(self.network.network_address + 1)

    def contains(self, ip: str) -> bool:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return addr in self.network and addr not in (self.network.network_address, self.network.broadcast_address)

    def key(self, ip: str) -> str:
        return ALLOCATION_PREFIX + ip

    def candidates(self, taken: set[str], count: int) -> list[str]:
        """Up to `count` random free addresses, upper part first, then the static band."""
        picks: list[str] = []
        band_end = min(self.static_band, self.size)
        for low, high in ((band_end, self.size - 1), (0, band_end - 1)):
            free = (high - low + 1) - sum(1 for ip in taken if low <= self._offset(ip) <= high)
            if free <= 0:
                continue
            tries = 0
            while len(picks) < count and tries < count * 20:
                tries += 1
                ip = str(self.network.network_address + 1 + self._rng.randint(low, high))
                if ip not in taken and ip not in picks:
                    picks.append(ip)
            if len(picks) < count and free <= count * 20:
                for offset in range(low, high + 1):
                    ip = str(self.network.network_address + 1 + offset)
                    if ip not in taken and ip not in picks:
                        picks.append(ip)
                    if len(picks) >= count:
                        break
            if picks:
                return picks
        raise RangeFull(f"range {self.network} is full")

    def _offset(self, ip: str) -> int:
        return int(ipaddress.IPv4Address(ip)) - int(self.network.network_address) - 1


NODE_PORT_PREFIX = "/registry/nodeportallocations/"
NODE_PORTS = range(30000, 32768)  # Kubernetes' default --service-node-port-range


def node_port_key(port: int) -> str:
    return f"{NODE_PORT_PREFIX}{port}"


def pick_node_port(taken: set[int], rng: random.Random) -> int:
    """A random free port of NODE_PORTS; RangeFull when there is none."""
    for _ in range(64):
        port = rng.randint(NODE_PORTS.start, NODE_PORTS.stop - 1)
        if port not in taken:
            return port
    free = [p for p in NODE_PORTS if p not in taken]
    if not free:
        raise RangeFull(f"node port range {NODE_PORTS.start}-{NODE_PORTS.stop - 1} is full")
    return rng.choice(free)
