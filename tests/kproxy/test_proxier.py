"""The sync loop with hand-fed caches, a fake clock and recording packet filter and conntrack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, UTC
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from control.clock import FakeClock
from control.observability import health_app
from kproxy.conntrack import RecordingConntrack, UdpFlowFilter
from kproxy.iptables.restore import RecordingPacketFilter, transaction
from kproxy.iptables.rules import build_ruleset, endpoint_chain, service_chain
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName
from kproxy.proxier import TRIGGER_TIME_ANNOTATION, Proxier

NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")


class FakeCache:
    """An informer cache the test fills by hand, calling handlers as the Informer does."""

    def __init__(self) -> None:
        self.synced = asyncio.Event()
        self.synced.set()
        self._objects: dict[str, dict[str, Any]] = {}
        self._handlers: list[Callable[..., Any]] = []

    def items(self) -> list[dict[str, Any]]:
        return list(self._objects.values())

    def add_handler(self, handler: Callable[..., Any]) -> None:
        self._handlers.append(handler)

    def put(self, obj: dict[str, Any]) -> None:
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        prev = self._objects.get(key)
        self._objects[key] = obj
        for handler in self._handlers:
            handler("MODIFIED" if prev else "ADDED", obj, prev)

    def delete(self, namespace: str, name: str) -> None:
        obj = self._objects.pop(f"{namespace}/{name}")
        for handler in self._handlers:
            handler("DELETED", obj, obj)


def service(name: str, ip: str, protocol: str = "TCP") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "clusterIP": ip,
            "ports": [{"name": "p", "port": 53 if protocol == "UDP" else 80, "protocol": protocol}],
        },
    }


def endpoint_slice(name: str, ips: list[str], protocol: str = "TCP", annotations: dict[str, str] | None = None) -> dict:
    """The one EndpointSlice of Service `name` (named like it, so a put replaces it)."""
    return {
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": {"kubernetes.io/service-name": name},
            "annotations": annotations or {},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "p", "port": 5353, "protocol": protocol}] if ips else [],
    }


class Harness:
    def __init__(self, packet_filter: RecordingPacketFilter | None = None, wall: float = 1_800_000_000.0) -> None:
        self.services, self.slices = FakeCache(), FakeCache()
        self.clock = FakeClock()
        self.wall = wall
        self.packet_filter = packet_filter or RecordingPacketFilter()
        self.conntrack = RecordingConntrack()
        self.proxier = Proxier(
            self.services,
            self.slices,
            NODE,
            IptablesProgrammer(self.packet_filter, NODE),
            self.conntrack,
            clock=self.clock,
            wall_clock=lambda: self.wall,
            min_sync_interval=0.1,
            resync_period=30.0,
        )


async def settle(done: Callable[[], bool] = lambda: False, rounds: int = 200) -> None:
    """Let the loop (and its worker threads) run until `done`, a bounded number of times."""
    for _ in range(rounds):
        if done():
            return
        await asyncio.sleep(0.005)


@pytest.fixture
async def running() -> AsyncIterator[Harness]:
    harness = Harness()
    task = asyncio.create_task(harness.proxier.run())
    await settle(lambda: len(harness.packet_filter.payloads) == 1)
    try:
        yield harness
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_first_sync_happens_once_caches_are_synced(running: Harness) -> None:
    (payload,) = running.packet_filter.payloads
    assert "*nat" in payload and ":KUBE-SERVICES - [0:0]" in payload and "DNAT" not in payload


async def test_burst_of_changes_becomes_one_sync_after_the_min_interval(running: Harness) -> None:
    payloads = running.packet_filter.payloads
    running.services.put(service("web", "10.96.0.50"))
    running.slices.put(endpoint_slice("web", ["10.244.1.5"]))
    running.slices.put(endpoint_slice("web", ["10.244.1.6"]))
    await settle(rounds=20)
    assert len(payloads) == 1  # held back: the last sync started less than min_sync_interval ago
    await running.clock.advance(0.1)
    await settle(lambda: len(payloads) == 2)
    await settle(rounds=20)
    assert len(payloads) == 2
    web = ServicePortName("default", "web", "p", "TCP")
    svc, sep = service_chain("KUBE-SVC-", web), endpoint_chain(web, Endpoint("10.244.1.6", 5353))
    # Between full syncs only what changed is written: the new service's chains and the shared chain it joins.
    declared = {line[1:].split()[0] for line in payloads[1].splitlines() if line.startswith(":")}
    assert declared == {"KUBE-SERVICES", svc, sep}
    assert running.packet_filter.flushing == [False, False]
    assert running.proxier.syncs == 2


async def test_periodic_resync_rewrites_what_the_kernel_lost(running: Harness) -> None:
    payloads = running.packet_filter.payloads
    running.services.put(service("web", "10.96.0.50"))
    running.slices.put(endpoint_slice("web", ["10.244.1.5"]))
    await running.clock.advance(0.1)
    await settle(lambda: len(payloads) == 2)
    # The recording filter's save shows an empty kernel: the full resync must put every chain back.
    await running.clock.advance(30)
    await settle(lambda: len(payloads) == 3)
    web = ServicePortName("default", "web", "p", "TCP")
    full = build_ruleset([ServicePort(web, "10.96.0.50", 80)], {web: [Endpoint("10.244.1.5", 5353)]}, NODE)
    assert payloads[2] == transaction(full, "")


async def test_unchanged_partial_sync_writes_nothing(running: Harness) -> None:
    running.services.put(service("web", "10.96.0.50"))
    await running.clock.advance(0.1)
    await settle(lambda: len(running.packet_filter.payloads) == 2)
    syncs = running.proxier.syncs
    running.proxier.request_sync()
    await running.clock.advance(0.1)
    await settle(lambda: running.proxier.syncs == syncs + 1)
    assert running.proxier.syncs == syncs + 1 and len(running.packet_filter.payloads) == 2


async def test_failed_sync_counts_an_error_and_turns_unhealthy_while_changes_wait() -> None:
    harness = Harness(RecordingPacketFilter(fail_with="iptables-legacy-restore exited 1: line 3 failed"))
    errors = REGISTRY.get_sample_value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total") or 0.0
    assert not await harness.proxier.sync()
    assert REGISTRY.get_sample_value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total") == errors + 1
    assert harness.proxier.healthy()
    await harness.clock.advance(61)
    assert not harness.proxier.healthy()
    app = health_app({"sync": harness.proxier.healthy})
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/healthz")
        assert response.status == 503 and "sync" in await response.text()
    harness.packet_filter.fail_with = None
    assert await harness.proxier.sync()
    assert harness.proxier.healthy()


async def test_idle_proxier_stays_healthy_long_after_its_last_sync() -> None:
    harness = Harness()
    assert await harness.proxier.sync()
    await harness.clock.advance(600)
    assert harness.proxier.healthy()


async def test_removed_udp_endpoint_gets_its_conntrack_flows_deleted() -> None:
    harness = Harness()
    harness.services.put(service("dns", "10.96.0.10", "UDP"))
    harness.slices.put(endpoint_slice("dns", [], "UDP"))
    assert await harness.proxier.sync()
    harness.slices.put(endpoint_slice("dns", ["10.244.0.3", "10.244.0.4"], "UDP"))
    assert await harness.proxier.sync()
    # From none to some: flows that met the REJECT go, whoever answered them.
    assert harness.conntrack.deleted == [UdpFlowFilter(53, "10.96.0.10")]
    harness.slices.put(endpoint_slice("dns", ["10.244.0.4"], "UDP"))
    assert await harness.proxier.sync()
    assert harness.conntrack.deleted[1:] == [UdpFlowFilter(53, "10.96.0.10", "10.244.0.3", 5353)]


async def test_tcp_endpoint_changes_leave_conntrack_alone() -> None:
    harness = Harness()
    harness.services.put(service("web", "10.96.0.50"))
    harness.slices.put(endpoint_slice("web", ["10.244.1.5"]))
    assert await harness.proxier.sync()
    harness.slices.delete("default", "web")
    assert await harness.proxier.sync()
    assert harness.conntrack.deleted == []


async def test_network_programming_latency_from_the_trigger_time_annotation() -> None:
    harness = Harness()
    before_count = REGISTRY.get_sample_value("kubeproxy_network_programming_duration_seconds_count") or 0.0
    before_sum = REGISTRY.get_sample_value("kubeproxy_network_programming_duration_seconds_sum") or 0.0
    changed = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC)
    harness.wall = changed.timestamp() + 2.5
    stamp = changed.strftime("%Y-%m-%dT%H:%M:%SZ")
    harness.services.put(service("web", "10.96.0.50"))
    harness.slices.put(endpoint_slice("web", ["10.244.1.5"], annotations={TRIGGER_TIME_ANNOTATION: stamp}))
    assert await harness.proxier.sync()
    assert REGISTRY.get_sample_value("kubeproxy_network_programming_duration_seconds_count") == before_count + 1
    after_sum = REGISTRY.get_sample_value("kubeproxy_network_programming_duration_seconds_sum")
    assert after_sum is not None and after_sum - before_sum == pytest.approx(2.5)
    nat_rules = REGISTRY.get_sample_value("kubeproxy_sync_proxy_rules_iptables_total", {"table": "nat"})
    assert nat_rules is not None and nat_rules > 0
    assert REGISTRY.get_sample_value("kubeproxy_sync_proxy_rules_last_timestamp_seconds") == harness.wall
