"""kproxy rule programming at 1,000 / 5,000 / 10,000 Services x 3 endpoints, beside its floor.

Every figure is measured in a fresh `pkt-kproxy-bench-*` namespace made and
deleted here. Floor: a bare restore (`iptables-legacy-restore`,
`iptables-nft-restore` without `--noflush`, or `nft -f`) of the very
ruleset kproxy generates, into empty tables. kproxy: `Programmer.sync`
with `full=True` (rule building from a cold cache, `save`, restore, and the
`save` after it), then one Service's endpoints changed with `full=False`.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

from control.client import Client
from pocket.cluster import is_up
from pocket.config import ClusterConfig
from pocket.netns import nsenter_argv

from kproxy.iptables.restore import IptablesPacketFilter, transaction
from kproxy.iptables.rules import build_ruleset, service_rules
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables.ruleset import Nft, NftablesProgrammer, build_nft, service_nft

SIZES = (1000, 5000, 10000)
LATENCY_CHANGES = 20
REPEATS = 3  # each cell is the best of this many runs: the machine is shared, noise only adds
NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
FLOOR_COMMANDS = {"iptables (legacy)": "iptables-legacy-restore", "iptables (nft)": "iptables-nft-restore"}


def synthetic(count: int) -> ServiceSnapshot:
    """`count` ClusterIP services with 3 endpoints each."""
    snap = ServiceSnapshot()
    for i in range(count):
        key = ServicePortName("bench", f"svc{i}", "http", "TCP")
        snap.service_ports.append(ServicePort(key, f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}", 80))
        base = 3 * i
        ips = [f"10.244.{(base + j) // 256 % 256}.{(base + j) % 256}" for j in range(3)]
        snap.endpoints[key] = tuple(Endpoint(ip, 8080) for ip in ips)
    return snap


def with_change(snap: ServiceSnapshot, index: int) -> ServiceSnapshot:
    """The snapshot with service `index`'s third endpoint replaced; every other object is shared, as the
    proxier's SnapshotCache hands over unchanged Services and EndpointSlices."""
    key = snap.service_ports[index].key
    endpoints = dict(snap.endpoints)
    endpoints[key] = (*endpoints[key][:2], Endpoint("10.245.0.1", 8080))
    return ServiceSnapshot(list(snap.service_ports), endpoints)


class Namespace:
    """A fresh network namespace, deleted on exit."""

    def __enter__(self) -> list[str]:
        self.name = f"pkt-kproxy-bench-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        return ["ip", "netns", "exec", self.name]

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bare(prefix: list[str], command: list[str], text: str) -> None:
    subprocess.run(prefix + command, input=text, text=True, check=True, capture_output=True, timeout=300)


def measure(mode: str, count: int) -> tuple[float, float, float, float]:
    """(floor, full sync, one-service change, full sync after a restart) seconds for one mode and size.

    The restart is a new programmer with cold caches finding the rules already in the kernel.
    """
    snap = synthetic(count)
    changed = with_change(snap, count // 2)
    service_rules.cache_clear()
    service_nft.cache_clear()
    if mode == "nftables":
        script = build_nft(snap.service_ports, snap.endpoints, NODE).render()
        with Namespace() as prefix:
            floor = timed(lambda: bare(prefix, ["nft", "-f", "-"], script))
        service_nft.cache_clear()
        with Namespace() as prefix:
            nft_programmer = NftablesProgrammer(Nft(prefix[-1]), NODE)
            full = timed(lambda: nft_programmer.sync(snap, full=True))
            change = timed(lambda: nft_programmer.sync(changed, full=False))
            service_nft.cache_clear()
            restart = timed(lambda: NftablesProgrammer(Nft(prefix[-1]), NODE).sync(changed, full=True))
        return floor, full, change, restart
    backend = "legacy" if mode == "iptables (legacy)" else "nft"
    ruleset = transaction(build_ruleset(snap.service_ports, snap.endpoints, NODE), "")
    with Namespace() as prefix:
        floor = timed(lambda: bare(prefix, [FLOOR_COMMANDS[mode]], ruleset))
    service_rules.cache_clear()
    with Namespace() as prefix:
        programmer = IptablesProgrammer(
            IptablesPacketFilter(backend, prefix), NODE, bulk_limit=500 if backend == "nft" else None
        )
        full = timed(lambda: programmer.sync(snap, full=True))
        change = timed(lambda: programmer.sync(changed, full=False))
        service_rules.cache_clear()
        restarted = IptablesProgrammer(programmer.packet_filter, NODE, bulk_limit=programmer.bulk_limit)
        restart = timed(lambda: restarted.sync(changed, full=True))
    return floor, full, change, restart


def _first_seen(netns: str, needle: str, deadline: float, seen: dict[str, float]) -> None:
    """Poll one node's nat table until `needle` appears (or the deadline passes); record when."""
    while time.monotonic() < deadline:
        saved = subprocess.run(
            nsenter_argv(netns, ["iptables-legacy-save", "-t", "nat"]), capture_output=True, text=True, timeout=10
        ).stdout
        if needle in saved:
            seen[netns] = time.monotonic()
            return


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


async def _programming_latencies(config: ClusterConfig) -> list[float]:
    """Seconds from an EndpointSlice update's API answer to its DNAT rule being in every node's nat table."""
    namespace = f"bench-kproxy-{secrets.token_hex(3)}"
    node_namespaces = [config.node_netns(n.name) for n in config.nodes]
    latencies = []
    async with Client.from_kubeconfig(config.kubeconfig, user_agent="bench-kproxy") as client:
        await client.create("namespaces", {"metadata": {"name": namespace}})
        try:
            await client.create("services", {"metadata": {"name": "lat"}, "spec": {"ports": [{"port": 80}]}}, namespace)
            for change in range(LATENCY_CHANGES):
                ip = f"10.244.250.{change + 1}"
                labels = {"kubernetes.io/service-name": "lat"}
                addresses = {
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
                    "ports": [{"port": 80, "protocol": "TCP"}],
                }
                seen: dict[str, float] = {}
                deadline = time.monotonic() + 10
                if change == 0:
                    await client.create(
                        "endpointslices", {"metadata": {"name": "lat", "labels": labels}, **addresses}, namespace
                    )
                else:
                    current = await client.get("endpointslices", "lat", namespace)
                    await client.update("endpointslices", {**current, **addresses})
                written = time.monotonic()
                pollers = [
                    threading.Thread(target=_first_seen, args=(ns, f"--to-destination {ip}:80", deadline, seen))
                    for ns in node_namespaces
                ]
                for poller in pollers:
                    poller.start()
                await asyncio.to_thread(_join_all, pollers)
                if len(seen) < len(node_namespaces):
                    raise RuntimeError(f"endpoint {ip} not programmed on every node within 10 s")
                latencies.append(max(seen.values()) - written)
        finally:
            await client.delete("namespaces", namespace)
    return latencies


def programming_latency_section(config: ClusterConfig) -> str:
    """p50/p99 network programming latency on the local cluster, or why it was not measured."""
    if not is_up(config):
        return "Network programming latency: not measured (the local cluster is not up; `make up` first)."
    latencies = sorted(asyncio.run(_programming_latencies(config)))
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return "\n".join(
        [
            f"Network programming latency on the local cluster ({LATENCY_CHANGES} EndpointSlice updates via the API,",
            "each timed from the API's answer until `iptables-legacy-save -t nat` on every node shows the new DNAT,",
            "polled from the host; kube-proxy's minimum sync period alone is 1 s; goal: p99 under 250 ms):",
            "",
            "| p50 ms | p99 ms | max ms |",
            "|---|---|---|",
            f"| {p50 * 1000:.0f} | {p99 * 1000:.0f} | {latencies[-1] * 1000:.0f} |",
        ]
    )


def run(config: ClusterConfig | None = None) -> str:
    rows = []
    for mode in ("iptables (legacy)", "iptables (nft)", "nftables"):
        for count in SIZES:
            runs = [measure(mode, count) for _ in range(REPEATS)]
            floor, full, change, restart = (min(column) for column in zip(*runs, strict=True))
            rows.append(
                f"| {mode} | {count:,} | {floor * 1000:.0f} | {full * 1000:.0f} | {full / floor:.2f}x "
                f"| {change * 1000:.0f} | {restart * 1000:.0f} |"
            )
    return "\n".join(
        [
            "## kproxy: rule programming (Services x 3 endpoints)",
            "",
            "Floor: bare `iptables-legacy-restore` / `iptables-nft-restore` (no `--noflush`) / `nft -f` of the same",
            "ruleset into empty tables. kproxy full sync: `Programmer.sync(snapshot, full=True)` from a cold rule",
            "cache (build, `save`, one restore). Change: one Service's endpoints changed, `full=False` (kube-proxy's",
            "nftables mode: about 141 ms at 10,000). After restart: a new programmer with cold caches and the rules",
            f"already in the kernel, `full=True`. Each cell is the best of {REPEATS} runs, each in a fresh namespace.",
            "",
            "| mode | services | floor ms | kproxy full sync ms | ratio | one change ms | full sync after restart ms |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            programming_latency_section(config or ClusterConfig()),
            "",
            "Command: `python -m benchmarks bench_kproxy` (part of `make bench`).",
        ]
    )
