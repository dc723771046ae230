"""The sync loop: Services and EndpointSlices in, one rule transaction out.

Every change marks the rules dirty; a single loop turns dirty into a sync,
never more often than `min_sync_interval`, so a burst of events becomes one
transaction (kube-proxy's BoundedFrequencyRunner). Every `resync_period` a
full sync checks the kernel and repairs anything changed behind kproxy's
back; in between, the programmer writes only what differs from its last
write. The wanted rules always come from the whole informer caches, so a
sync never depends on which events came before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from control.clock import Clock, RealClock
from kproxy.conntrack import ConntrackCleaner, UdpFlowFilter
from kproxy.iptables.restore import PacketFilterError
from kproxy.iptables.rules import usable_endpoints
from kproxy.iptables.sync import SyncReport
from kproxy.model import NodeConfig, ServicePort, ServicePortName, ServiceSnapshot, SnapshotCache

log = logging.getLogger(__name__)

Object = Mapping[str, Any]
Handler = Callable[[str, Any, Any], Awaitable[None] | None]

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

SYNC_DURATION = Histogram(
    "kubeproxy_sync_proxy_rules_duration_seconds",
    "How long one sync (build rules, save, restore) took",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAST_SYNC = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "Wall time of the last successful sync")
SYNC_ERRORS = Counter("kubeproxy_sync_proxy_rules_iptables_restore_failures", "Syncs whose save or restore failed")
RULES = Gauge("kubeproxy_sync_proxy_rules_iptables_total", "Rules kproxy wrote in its last sync", ["table"])
PROGRAMMING_LATENCY = Histogram(
    "kubeproxy_network_programming_duration_seconds",
    "From an endpoints change to the rules for it being applied",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)

# What was applied for each service port: the port and its usable (ip, port) endpoints.
AppliedState = dict[ServicePortName, tuple[ServicePort, frozenset[tuple[str, int]]]]


class RuleProgrammer(Protocol):
    """Puts a snapshot's rules into the kernel (iptables or nftables); raises PacketFilterError on failure."""

    def sync(self, snap: ServiceSnapshot, full: bool) -> SyncReport: ...

    def forget(self) -> None: ...


class ObjectCache(Protocol):
    """The part of `control.client.Informer` the proxier uses."""

    synced: asyncio.Event

    def items(self) -> list[Any]: ...

    def add_handler(self, handler: Handler) -> None: ...


def applied_state(snap: ServiceSnapshot) -> AppliedState:
    return {
        port.key: (port, frozenset((e.ip, e.port) for e in usable_endpoints(snap.endpoints.get(port.key, ()))))
        for port in snap.service_ports
    }


def _destinations(port: ServicePort, **reply: Any) -> list[UdpFlowFilter]:
    """Filters for every way a client can address this port: its VIPs and its node port."""
    flows = [UdpFlowFilter(port.port, vip, **reply) for vip in (port.cluster_ip, *port.external_ips)]
    flows += [UdpFlowFilter(port.port, vip, **reply) for vip in port.load_balancer_ips]
    if port.node_port:
        flows.append(UdpFlowFilter(port.node_port, "", **reply))
    return flows


def stale_udp_flows(before: AppliedState, after: AppliedState) -> list[UdpFlowFilter]:
    """UDP flows the new rules no longer serve.

    Flows answered by an endpoint that went away would keep going to it;
    flows to a port that had no endpoints met the REJECT and would keep
    being rejected until they expire. (kube-proxy <= 1.31's event-driven
    cleanup.)
    """
    flows: set[UdpFlowFilter] = set()
    for key, (port, endpoints) in before.items():
        if port.protocol != "UDP":
            continue
        remaining = after[key][1] if key in after else frozenset()
        for ip, number in endpoints - remaining:
            flows.update(_destinations(port, reply_src=ip, reply_sport=number))
    for key, (port, endpoints) in after.items():
        if port.protocol == "UDP" and endpoints and key in before and not before[key][1]:
            flows.update(_destinations(port))
    return sorted(flows)


def trigger_time(endpoint_slice: Object, arrived: float) -> float:
    """When the change behind an EndpointSlice event happened (wall seconds), by the controller's annotation."""
    annotations = (endpoint_slice.get("metadata") or {}).get("annotations") or {}
    stamp = annotations.get(TRIGGER_TIME_ANNOTATION)
    if stamp:
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            log.info("unparseable %s: %r", TRIGGER_TIME_ANNOTATION, stamp)
    return arrived


class Proxier:
    """Keeps the node's Service rules equal to what the informer caches say."""

    def __init__(
        self,
        services: ObjectCache,
        slices: ObjectCache,
        node: NodeConfig,
        programmer: RuleProgrammer,
        conntrack: ConntrackCleaner,
        *,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        min_sync_interval: float = 0.1,
        resync_period: float = 30.0,
    ):
        if min_sync_interval < 0 or resync_period <= 0:
            raise ValueError(
                f"min sync interval {min_sync_interval} must be >= 0 and resync period {resync_period} > 0"
            )
        self.services = services
        self.slices = slices
        self.node = node
        self.programmer = programmer
        self._snapshots = SnapshotCache(node.node_name)
        self.conntrack = conntrack
        self.clock = clock or RealClock()
        self.wall_clock = wall_clock
        self.min_sync_interval = min_sync_interval
        self.resync_period = resync_period
        self.syncs = 0  # successful syncs, for logs and tests
        self._wake = asyncio.Event()
        self._pending = True  # nothing applied yet
        self._triggers: list[float] = []
        self._last_success = self.clock.now()
        self._last_sync_start: float | None = None
        self._last_full_sync: float | None = None  # None: the next sync must be full
        self._applied: AppliedState | None = None
        services.add_handler(self._on_service_event)
        slices.add_handler(self._on_slice_event)

    def _on_service_event(self, kind: str, obj: Object, prev: Object | None) -> None:
        self.request_sync()

    def _on_slice_event(self, kind: str, obj: Object, prev: Object | None) -> None:
        self._triggers.append(trigger_time(obj, self.wall_clock()))
        self.request_sync()

    def request_sync(self) -> None:
        self._pending = True
        self._wake.set()

    def healthy(self) -> bool:
        """False when changes have waited more than two resync periods for a successful sync."""
        return not self._pending or self.clock.now() - self._last_success <= 2 * self.resync_period

    async def run(self) -> None:
        """Sync once both caches have listed, then on every change (coalesced) and every resync period."""
        await self.services.synced.wait()
        await self.slices.synced.wait()
        while True:
            try:
                await self.sync()
            except Exception:  # a bug in one sync must not stop the loop for good
                SYNC_ERRORS.inc()
                self._pending = True
                log.exception("sync crashed")
            await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        until_full = self.resync_period
        if self._last_full_sync is not None:
            until_full = max(0.0, self._last_full_sync + self.resync_period - self.clock.now())
        timer = asyncio.ensure_future(self.clock.sleep(until_full))
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        if self._last_sync_start is not None:
            wait = self._last_sync_start + self.min_sync_interval - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)

    async def sync(self) -> bool:
        """Apply the rules for the caches as they are now; True when applied."""
        started = self.clock.now()
        self._last_sync_start = started
        self._pending = False
        self._wake.clear()
        triggers, self._triggers = self._triggers, []
        snap = self._snapshots.snapshot(self.services.items(), self.slices.items())
        full = self._last_full_sync is None or started - self._last_full_sync >= self.resync_period
        try:
            report = await asyncio.to_thread(self.programmer.sync, snap, full)
        except PacketFilterError as err:
            # Retried by the next resync (as kube-proxy does), or sooner by the next change.
            SYNC_ERRORS.inc()
            self._pending = True
            self._last_full_sync = None
            self.programmer.forget()
            self._triggers = triggers + self._triggers
            log.error("sync failed", extra={"error": str(err)})
            return False
        if report.full:
            self._last_full_sync = started
        self.syncs += 1
        self._last_success = self.clock.now()
        applied_at = self.wall_clock()
        SYNC_DURATION.observe(self._last_success - started)
        LAST_SYNC.set(applied_at)
        for table, count in report.rules.items():
            RULES.labels(table).set(count)
        for triggered in triggers:
            PROGRAMMING_LATENCY.observe(max(0.0, applied_at - triggered))
        state = applied_state(snap)
        if self._applied is not None:
            await self._clear_stale_flows(stale_udp_flows(self._applied, state))
        self._applied = state
        log.info(
            "synced",
            extra={
                "services": len(snap.service_ports),
                "sync": self.syncs,
                "full": report.full,
                "chains_written": report.chains_written,
            },
        )
        return True

    async def _clear_stale_flows(self, flows: Iterable[UdpFlowFilter]) -> None:
        flows = list(flows)
        if flows:
            log.info("deleting stale UDP conntrack flows", extra={"flows": [str(f) for f in flows]})
            await asyncio.to_thread(self.conntrack.delete, flows)
