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
import re
import secrets
import statistics
import subprocess
import threading
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import Figure, Reference, Section, Series
from control.client import Client
from pocket.cluster import is_up
from pocket.config import ClusterConfig
from pocket.netns import nsenter_argv

from kproxy.iptables.restore import IptablesPacketFilter, transaction
from kproxy.iptables.rules import build_ruleset, service_rules
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables.netlink import Batch, NetlinkNft
from kproxy.nftables.ruleset import Nft, NftablesProgrammer, build_nft, service_nft

SIZES = (1000, 5000, 10000)
LATENCY_CHANGES = 20
REPEATS = 3  # each cell is the median of this many runs: the machine is shared and noisy
CHANGES = 3  # one-change syncs per run (each there and back)
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


def one_change(programmer: IptablesProgrammer | NftablesProgrammer, snap: ServiceSnapshot, count: int) -> float:
    """Median seconds of CHANGES partial syncs, each changing one Service's endpoints (there and back)."""
    changed = with_change(snap, count // 2)
    times = []
    for target in [changed, snap] * CHANGES:
        started = time.perf_counter()
        programmer.sync(target, full=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def kernel_commit_floor(netns: str) -> float:
    """Median seconds the kernel takes to commit the smallest rule change (one new chain with one DNAT rule)
    into the table as it is: nf_tables validates every chain reachable from the hooks on such a commit."""
    netlink = NetlinkNft(netns)
    times = []
    for index in range(2 * CHANGES):
        batch = Batch.for_table("kproxy")
        batch.add_chain(f"floor-{index}")
        batch.add_rule(f"floor-{index}", "meta l4proto tcp dnat to 10.245.0.1:8080")
        started = time.perf_counter()
        netlink.send(batch)
        times.append(time.perf_counter() - started)
    netlink.close()
    return statistics.median(times)


@dataclass(frozen=True)
class Cell:
    """Seconds for one mode and size; the restart is a new programmer with cold caches and the rules in place."""

    floor: float
    full: float
    change: float
    change_floor: float | None  # nftables only: the kernel's own commit time for a rule change
    restart: float


def measure(mode: str, count: int) -> Cell:
    snap = synthetic(count)
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
            change = one_change(nft_programmer, snap, count)
            change_floor = kernel_commit_floor(prefix[-1])
            service_nft.cache_clear()
            restart = timed(lambda: NftablesProgrammer(Nft(prefix[-1]), NODE).sync(snap, full=True))
        return Cell(floor, full, change, change_floor, restart)
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
        change = one_change(programmer, snap, count)
        service_rules.cache_clear()
        restarted = IptablesProgrammer(programmer.packet_filter, NODE, bulk_limit=programmer.bulk_limit)
        restart = timed(lambda: restarted.sync(snap, full=True))
    return Cell(floor, full, change, None, restart)


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


# -- HTTP throughput through a ClusterIP (wrk) ------------------------------

WRK_SECONDS = 3
WRK_CONNECTIONS = 16
CLIENT_IP, SERVER_IP, SERVER_PORT = "10.244.1.1", "10.244.1.10", 8080
BARE_CLIENT_IP, BARE_SERVER_IP = "10.244.2.1", "10.244.2.10"  # the floor's own link, no rules on its way
NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{ listen {port}; location / {{ return 200 "hello\\n"; }} }}
}}
"""


class ClientServer:
    """nginx in `pkt-kpw-<tag>-server`, reached over its own veth pair from `-client` (where the rules
    go) and from `-bare` (no rules: the floor); all removed on exit.

    Separate clients also keep the two kinds of runs from meeting in the server's TIME_WAIT sockets:
    Linux offsets TCP timestamps per address pair, so a SYN to the VIP reusing a port a direct run
    used would be dropped there by PAWS and retried a second later.
    """

    def __enter__(self) -> ClientServer:
        tag = secrets.token_hex(3)
        self.client, self.bare, self.server = (f"pkt-kpw-{tag}-{role}" for role in ("client", "bare", "server"))
        self.dir = tempfile.TemporaryDirectory(prefix="pkt-kpw-")
        self.nginx: subprocess.Popen[bytes] | None = None
        try:
            self._build(tag)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self, tag: str) -> None:
        for ns in (self.client, self.bare, self.server):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        links = ((self.client, CLIENT_IP, "eth0", SERVER_IP), (self.bare, BARE_CLIENT_IP, "eth1", BARE_SERVER_IP))
        for index, (ns, ip, server_dev, server_ip) in enumerate(links):
            veth = f"kpw{tag}{index}"
            peer = ["peer", "name", server_dev, "netns", self.server]
            subprocess.run(["ip", "-n", ns, "link", "add", veth, "type", "veth", *peer], check=True)
            for where, dev, address in ((ns, veth, ip), (self.server, server_dev, server_ip)):
                subprocess.run(["ip", "-n", where, "addr", "add", f"{address}/24", "dev", dev], check=True)
                subprocess.run(["ip", "-n", where, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "-n", self.client, "route", "add", "10.96.0.0/12", "dev", f"kpw{tag}0"], check=True)
        conf = Path(self.dir.name) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir.name, port=SERVER_PORT))
        self.nginx = subprocess.Popen(
            ["ip", "netns", "exec", self.server, "nginx", "-e", f"{self.dir.name}/error.log", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while self.wrk(self.bare, f"http://{BARE_SERVER_IP}:{SERVER_PORT}/", close=False, seconds=1) == 0.0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx in {self.server} did not answer within 10 s")

    @staticmethod
    def wrk(ns: str, url: str, close: bool, seconds: int = WRK_SECONDS) -> float:
        """Requests per second wrk got from `url` in namespace `ns` (0.0 when nothing answered)."""
        header = ["-H", "Connection: close"] if close else []
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", *header, url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        found = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
        return float(found.group(1)) if found and "Non-2xx" not in done.stdout else 0.0

    def __exit__(self, *exc: object) -> None:
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(timeout=10)
        for ns in (self.client, self.bare, self.server):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self.dir.cleanup()


def throughput(mode: str, count: int = 10000) -> dict[str, list[float]]:
    """wrk requests/s, keep-alive and `Connection: close`: through a ClusterIP from the client namespace,
    where the real programmer loaded `count` Services, and straight to the pod from the bare one. The
    two alternate, so load from other work on the machine falls on both."""
    snap = synthetic(count)
    target = snap.service_ports[len(snap.service_ports) // 2]
    snap.endpoints[target.key] = (Endpoint(SERVER_IP, SERVER_PORT),)
    node = NodeConfig("client", (CLIENT_IP,), "10.244.0.0/16")
    figures: dict[str, list[float]] = {}
    with ClientServer() as pair:
        if mode == "nftables":
            NftablesProgrammer(Nft(pair.client), node).sync(snap, full=True)
        else:
            packet_filter = IptablesPacketFilter("legacy", ["ip", "netns", "exec", pair.client])
            IptablesProgrammer(packet_filter, node).sync(snap, full=True)
        direct, vip = f"http://{BARE_SERVER_IP}:{SERVER_PORT}/", f"http://{target.cluster_ip}:{target.port}/"
        for close in (False, True):
            for _ in range(REPEATS):
                figures.setdefault(f"direct {close}", []).append(pair.wrk(pair.bare, direct, close))
                figures.setdefault(f"vip {close}", []).append(pair.wrk(pair.client, vip, close))
    return figures


def throughput_section() -> str:
    rows = []
    for mode in ("iptables (legacy)", "nftables"):
        median = {k: statistics.median(v) for k, v in throughput(mode).items()}
        for close, label in ((False, "keep-alive"), (True, "Connection: close")):
            floor, through = median[f"direct {close}"], median[f"vip {close}"]
            ratio = f"{through / floor:.2f}x" if floor else "-"
            rows.append(f"| {mode} | {label} | {floor:,.0f} | {through:,.0f} | {ratio} |")
    return "\n".join(
        [
            f"HTTP throughput with 10,000 Services loaded (`wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s` in a client",
            "namespace, nginx with one worker in a server namespace, a veth pair between; the rules programmed in the",
            "client namespace by the real programmer (the target Service is the 5,001st). Floor: the same wrk straight",
            "to the pod from a second client namespace with its own veth and no rules; direct and ClusterIP runs",
            f"alternate, {REPEATS} each, medians shown. wrk, nginx and",
            "the kernel share the machine's 2 cores with other work. Goal in nftables mode: 0.9x keep-alive, 0.8x",
            "new connections.",
            "",
            "| mode | connections | direct to pod req/s | through ClusterIP req/s | ratio |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


def run(config: ClusterConfig | None = None) -> Section:
    rows = []
    full_sync: dict[str, list[tuple[float, float]]] = {}  # mode -> (Services, full sync ms)
    change_sync: dict[str, list[tuple[float, float]]] = {}
    figures: list[Figure] = []
    for mode in ("iptables (legacy)", "iptables (nft)", "nftables"):
        for count in SIZES:
            runs = [measure(mode, count) for _ in range(REPEATS)]
            floor, full, change, restart = (
                statistics.median(getattr(r, name) for r in runs) for name in ("floor", "full", "change", "restart")
            )
            floors = [r.change_floor for r in runs if r.change_floor is not None]
            kernel = f"{statistics.median(floors) * 1000:.0f}" if floors else "-"
            full_sync.setdefault(f"{mode}: kproxy full sync", []).append((count, full * 1000))
            full_sync.setdefault(f"{mode}: floor (bare restore)", []).append((count, floor * 1000))
            change_sync.setdefault(mode, []).append((count, change * 1000))
            if count == max(SIZES):
                figures.append(Figure(f"{mode}, {count:,} Services: full sync", full * 1000, "ms",
                                      Reference(floor * 1000, "bare restore of the same rules, same run")))
                figures.append(Figure(f"{mode}, {count:,} Services: one change", change * 1000, "ms",
                                      Reference(full * 1000, "kproxy full sync at the same size, same run")))
            rows.append(
                f"| {mode} | {count:,} | {floor * 1000:.0f} | {full * 1000:.0f} | {full / floor:.2f}x "
                f"| {change * 1000:.0f} | {kernel} | {restart * 1000:.0f} |"
            )
    markdown = "\n".join(
        [
            "## kproxy: rule programming (Services x 3 endpoints)",
            "",
            "Floor: bare `iptables-legacy-restore` / `iptables-nft-restore` (no `--noflush`) / `nft -f` of the same",
            "ruleset into empty tables. kproxy full sync: `Programmer.sync(snapshot, full=True)` from a cold rule",
            "cache (build, `save`, one restore). One change: one Service's endpoints changed, `full=False`, the",
            "snapshot sharing every other object as the proxier's SnapshotCache does",
            f"(median of {2 * CHANGES}; kube-proxy's nftables mode: about 141 ms at 10,000; goal: under 50 ms).",
            "Kernel floor: the kernel alone committing one",
            "new chain with one DNAT rule into that table over netlink (nf_tables re-validates every chain reachable",
            "from its hooks on any such commit). After restart: a new programmer with cold caches and the rules",
            f"already in the kernel, `full=True`. Each cell is the median of {REPEATS} runs, each in a fresh",
            "namespace; the machine is shared by other work, so single figures are noisy.",
            "",
            "| mode | services | floor ms | kproxy full sync ms | ratio | one change ms | kernel floor ms "
            "| full sync after restart ms |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            throughput_section(),
            "",
            programming_latency_section(config or ClusterConfig()),
            "",
            "Command: `python -m benchmarks bench_kproxy` (part of `make bench`).",
        ]
    )
    series = (
        Series("sync time vs Services", "Services (3 endpoints each)", "ms",
               {k: tuple(v) for k, v in full_sync.items()}),
        Series("one-change sync vs Services", "Services (3 endpoints each)", "ms",
               {k: tuple(v) for k, v in change_sync.items()}),
    )
    return Section(markdown, tuple(figures), series=series)
