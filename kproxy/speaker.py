"""Announcing LoadBalancer addresses on the node network, as MetalLB's layer-2 mode does.

Every node's rules already accept traffic for a Service's
`status.loadBalancer.ingress` address; what is missing is a machine on the
node network that answers ARP for it. For each such Service one node is
elected through a coordination.k8s.io Lease (`kube-system/kproxy-lb.<ns>.<name>`):
the holder renews it every `renew_interval` seconds, answers ARP requests
for the address with its own interface's MAC, and sends gratuitous ARP when
it takes over, so neighbours update their caches. When the holder dies its
Lease expires after `lease_seconds` and another node takes it. With
`externalTrafficPolicy: Local` only nodes with a local endpoint stand, and a
node labelled `node.kubernetes.io/exclude-from-external-load-balancers`
never does.

Everything happens on one interface (the node's `eth0`) in kproxy's own
network namespace; packets are built and parsed with scapy.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge
from pyroute2.netns import popns, pushns
from scapy.all import ETH_P_ARP, conf
from scapy.layers.l2 import ARP, Ether

from control.api.errors import ApiError
from control.client import Client, Object
from kproxy.model import SERVICE_NAME_LABEL

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
# Upstream's label for nodes that must not carry external load balancer traffic (kubeadm sets it on control planes).
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
BROADCAST = "ff:ff:ff:ff:ff:ff"
SIOCGIFHWADDR = 0x8927
ANNOUNCED = Gauge("kproxy_loadbalancer_addresses_announced", "LoadBalancer addresses this node answers ARP for")


def lease_name(service: Object) -> str:
    meta = service.get("metadata") or {}
    return f"kproxy-lb.{meta.get('namespace')}.{meta.get('name')}"


def load_balancer_ips(service: Object) -> list[str]:
    if (service.get("spec") or {}).get("type") != "LoadBalancer":
        return []
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if isinstance(i, dict) and i.get("ip")]


def has_local_endpoint(slices: Iterable[Object], node_name: str) -> bool:
    """True when one of a Service's EndpointSlices lists a ready endpoint on this node."""
    return any(
        endpoint.get("nodeName") == node_name and (endpoint.get("conditions") or {}).get("ready") is not False
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
    )


def micro_time(seconds: float) -> str:
    """A MicroTime, as Lease spec times are written."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def interface_mac(interface: str) -> str:
    """The interface's MAC in the current namespace (scapy's own lookup uses a cached, host-side list)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", interface.encode()[:15]))
    return ":".join(f"{b:02x}" for b in raw[18:24])


class ArpResponder:
    """Answers ARP requests for a changing set of addresses on one interface, and sends gratuitous ARP.

    A raw ARP-only packet socket read by one daemon thread; `close` stops it.
    `netns` names the namespace to open it in (tests); kproxy runs inside
    its node's namespace and leaves it None. OSError when the interface is
    missing.
    """

    def __init__(self, interface: str, netns: str | None = None):
        self.interface = interface
        if netns:
            pushns(netns)
        try:
            self.mac = interface_mac(interface)
            # Not promiscuous: ARP requests are broadcast, and scapy resolves promisc by its own interface list.
            self._socket = conf.L2socket(iface=interface, type=ETH_P_ARP, promisc=False)
        finally:
            if netns:
                popns()
        self._addresses: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"arp-{interface}", daemon=True)
        self._thread.start()

    @property
    def addresses(self) -> frozenset[str]:
        return self._addresses

    def set_addresses(self, addresses: Iterable[str]) -> None:
        self._addresses = frozenset(addresses)
        ANNOUNCED.set(len(self._addresses))

    def announce(self, ip: str) -> None:
        """Gratuitous ARP for `ip`: a broadcast reply and request naming this interface's MAC."""
        for op in (2, 1):
            frame = Ether(src=self.mac, dst=BROADCAST) / ARP(
                op=op, hwsrc=self.mac, psrc=ip, hwdst=BROADCAST if op == 2 else "00:00:00:00:00:00", pdst=ip
            )
            self._socket.send(frame)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._socket], [], [], 0.5)
            if not ready:
                continue
            try:
                frame = self._socket.recv()
            except OSError as err:
                log.warning("ARP socket read failed", extra={"error": str(err)})
                continue
            if frame is None or ARP not in frame:
                continue
            arp = frame[ARP]
            if arp.op != 1 or arp.pdst not in self._addresses or arp.hwsrc == self.mac:
                continue
            reply = Ether(src=self.mac, dst=arp.hwsrc) / ARP(
                op=2, hwsrc=self.mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc
            )
            self._socket.send(reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


class Speaker:
    """Elects one node per LoadBalancer Service through Leases and announces the addresses it holds."""

    def __init__(
        self,
        client: Client,
        services: Any,
        slices: Any,
        node_name: str,
        responder: ArpResponder,
        *,
        lease_seconds: int = 6,
        renew_interval: float = 2.0,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.services = services
        self.slices = slices
        self.node_name = node_name
        self.responder = responder
        self.lease_seconds = lease_seconds
        self.renew_interval = renew_interval
        self.wall_clock = wall_clock
        self.held: dict[str, list[str]] = {}  # lease name -> addresses announced under it

    async def run(self) -> None:
        await self.services.synced.wait()
        await self.slices.synced.wait()
        try:
            while True:
                try:
                    await self.reconcile()
                except (ApiError, OSError) as err:
                    log.warning("speaker round failed", extra={"error": str(err)})
                await asyncio.sleep(self.renew_interval)
        finally:
            await self.release_all()

    async def reconcile(self) -> None:
        """One round: take, renew or give up each Service's Lease; announce what this node now holds."""
        excluded = await self._node_excluded()
        wanted: dict[str, tuple[Object, list[str]]] = {}
        for service in self.services.items():
            ips = load_balancer_ips(service)
            if ips:
                wanted[lease_name(service)] = (service, ips)
        held: dict[str, list[str]] = {}
        for name, (service, ips) in wanted.items():
            if await self._stand(name, service, excluded):
                held[name] = ips
        for name in set(self.held) - set(wanted):
            await self._delete(name)
        newly = [ip for name, ips in held.items() for ip in ips if ips != self.held.get(name)]
        self.held = held
        self.responder.set_addresses(ip for ips in held.values() for ip in ips)
        for ip in newly:
            log.info("announcing load balancer address", extra={"ip": ip, "node": self.node_name})
            await asyncio.to_thread(self.responder.announce, ip)

    async def _node_excluded(self) -> bool:
        """Whether this node carries the exclude-from-external-load-balancers label (a missing Node is not)."""
        try:
            node = await self.client.get("nodes", self.node_name)
        except ApiError as err:
            if err.code == 404:
                return False
            raise
        return EXCLUDE_LABEL in ((node.get("metadata") or {}).get("labels") or {})

    def _eligible(self, service: Object) -> bool:
        spec = service.get("spec") or {}
        if spec.get("externalTrafficPolicy") != "Local":
            return True
        meta = service.get("metadata") or {}
        slices = (
            s
            for s in self.slices.by_namespace(meta.get("namespace"))
            if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == meta.get("name")
        )
        return has_local_endpoint(slices, self.node_name)

    async def _stand(self, name: str, service: Object, excluded: bool) -> bool:
        """True when this node holds the Lease after this round."""
        now = self.wall_clock()
        eligible = not excluded and self._eligible(service)
        try:
            lease = await self.client.get("leases", name, LEASE_NAMESPACE)
        except ApiError as err:
            if err.code != 404:
                raise
            lease = None
        try:
            if lease is None:
                if not eligible:
                    return False
                await self.client.create("leases", self._lease(name, now, transitions=0), LEASE_NAMESPACE)
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            expired = parse_micro_time(spec.get("renewTime")) + (spec.get("leaseDurationSeconds") or 0) < now
            if holder == self.node_name:
                if not eligible:
                    lease["spec"] = {**spec, "holderIdentity": ""}
                    await self.client.update("leases", lease)
                    return False
                lease["spec"] = {**spec, "renewTime": micro_time(now)}
                await self.client.update("leases", lease)
                return True
            if eligible and (expired or not holder):
                transitions = int(spec.get("leaseTransitions") or 0) + 1
                lease["spec"] = self._lease(name, now, transitions)["spec"]
                await self.client.update("leases", lease)
                log.info("took over load balancer lease", extra={"lease": name, "from": holder})
                return True
        except ApiError as err:
            if err.code in (404, 409):  # someone else moved first; next round decides again
                return False
            raise
        return False

    def _lease(self, name: str, now: float, transitions: int) -> dict[str, Any]:
        stamp = micro_time(now)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }

    async def _delete(self, name: str) -> None:
        try:
            await self.client.delete("leases", name, LEASE_NAMESPACE)
        except ApiError as err:
            if err.code != 404:
                raise

    async def release_all(self) -> None:
        """On a clean stop, give the Leases back so another node takes over at once."""
        for name in list(self.held):
            try:
                lease = await self.client.get("leases", name, LEASE_NAMESPACE)
                if (lease.get("spec") or {}).get("holderIdentity") == self.node_name:
                    lease["spec"] = {**lease["spec"], "holderIdentity": ""}
                    await self.client.update("leases", lease)
            except (ApiError, OSError) as err:  # the Lease then expires on its own
                log.info("could not release lease", extra={"lease": name, "error": str(err)})
        self.held = {}
        self.responder.set_addresses(())
