"""kproxy rule programming at 1,000 / 5,000 / 10,000 Services x 3 endpoints, beside its floor.

Every figure is measured in a fresh `pkt-kproxy-bench-*` namespace made and
deleted here. Floor: a bare restore (`iptables-legacy-restore`,
`iptables-nft-restore` without `--noflush`, or `nft -f`) of the very
ruleset kproxy generates, into empty tables. kproxy: `Programmer.sync`
with `full=True` (rule building from a cold cache, `save`, restore, and the
`save` after it), then one Service's endpoints changed with `full=False`.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable

from kproxy.iptables.restore import IptablesPacketFilter, transaction
from kproxy.iptables.rules import build_ruleset, service_rules
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables.ruleset import Nft, NftablesProgrammer, build_nft, service_nft

SIZES = (1000, 5000, 10000)
NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
FLOOR_COMMANDS = {"iptables (legacy)": "iptables-legacy-restore", "iptables (nft)": "iptables-nft-restore"}


def synthetic(count: int, changed: int | None = None) -> ServiceSnapshot:
    """`count` ClusterIP services with 3 endpoints each; `changed` gets a different third endpoint."""
    snap = ServiceSnapshot()
    for i in range(count):
        key = ServicePortName("bench", f"svc{i}", "http", "TCP")
        snap.service_ports.append(ServicePort(key, f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}", 80))
        base = 3 * i
        ips = [f"10.244.{(base + j) // 256 % 256}.{(base + j) % 256}" for j in range(3)]
        if i == changed:
            ips[2] = "10.245.0.1"
        snap.endpoints[key] = tuple(Endpoint(ip, 8080) for ip in ips)
    return snap


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
    snap, changed = synthetic(count), synthetic(count, changed=count // 2)
    service_rules.cache_clear()
    service_nft.cache_clear()
    if mode == "nftables":
        script = build_nft(snap.service_ports, snap.endpoints, NODE).render()
        with Namespace() as prefix:
            floor = timed(lambda: bare(prefix, ["nft", "-f", "-"], script))
        service_nft.cache_clear()
        with Namespace() as prefix:
            nft_programmer = NftablesProgrammer(Nft(prefix), NODE)
            full = timed(lambda: nft_programmer.sync(snap, full=True))
            change = timed(lambda: nft_programmer.sync(changed, full=False))
            service_nft.cache_clear()
            restart = timed(lambda: NftablesProgrammer(Nft(prefix), NODE).sync(changed, full=True))
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


def run() -> str:
    rows = []
    for mode in ("iptables (legacy)", "iptables (nft)", "nftables"):
        for count in SIZES:
            floor, full, change, restart = measure(mode, count)
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
            "already in the kernel, `full=True`. Each cell is one run, in a fresh namespace.",
            "",
            "| mode | services | floor ms | kproxy full sync ms | ratio | one change ms | full sync after restart ms |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Command: `python -m benchmarks bench_kproxy` (part of `make bench`).",
        ]
    )
