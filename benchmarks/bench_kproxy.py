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
import os
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
from pocket.commands import remembered_proxy_mode
from pocket.config import ClusterConfig
from pocket.netns import nsenter_argv

from kproxy.iptables.restore import IptablesPacketFilter, transaction
from kproxy.iptables.rules import build_ruleset, service_rules
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables.netlink import Batch, NetlinkNft
from kproxy.nftables.ruleset import (
    FullSync,
    Nft,
    NftablesProgrammer,
    build_nft,
    service_nft,
    static_declarations,
)

SIZES = (1000, 5000, 10000)
LATENCY_CHANGES = 20
# Each cell is the median of this many runs: the machine is shared and noisy, most of all against the small
# floors (~50 ms at 1,000 Services), where runs are cheap.
REPEATS = {1000: 11, 5000: 5, 10000: 3}
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


def kernel_full_floor(snap: ServiceSnapshot) -> float:
    """Seconds the kernel takes to commit a full sync's netlink batch, encoded beforehand, into a namespace whose
    table has only its declarations (what kproxy's own full sync sends before the batch)."""
    wanted = build_nft(snap.service_ports, snap.endpoints, NODE)
    with Namespace() as prefix:
        nft = Nft(prefix[-1])
        full = FullSync(wanted, *nft.list_names(static_declarations()))
        nft.declare(full.undeclared_spread_sets())
        batch = full.batch()
        return timed(lambda: nft.netlink.send(batch))


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
    full_floor: float | None  # nftables only: the kernel's own commit time for the full sync's batch
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
        full_floor = kernel_full_floor(snap)
        service_nft.cache_clear()
        with Namespace() as prefix:
            nft_programmer = NftablesProgrammer(Nft(prefix[-1]), NODE)
            full = timed(lambda: nft_programmer.sync(snap, full=True))
            change = one_change(nft_programmer, snap, count)
            change_floor = kernel_commit_floor(prefix[-1])
            service_nft.cache_clear()
            restart = timed(lambda: NftablesProgrammer(Nft(prefix[-1]), NODE).sync(snap, full=True))
        return Cell(floor, full, full_floor, change, change_floor, restart)
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
    return Cell(floor, full, None, change, None, restart)


# Per proxy mode: what shows a node's rules, and how an endpoint ip:80 appears in it.
RULE_LISTINGS = {
    "iptables": (["iptables-legacy-save", "-t", "nat"], "--to-destination {ip}:80"),
    "nftables": (["nft", "list", "map", "ip", "kproxy", "service-endpoints-tcp"], ": {ip} . 80"),
}


def _first_seen(netns: str, listing: list[str], needle: str, deadline: float, seen: dict[str, float]) -> None:
    """Poll one node's rules until `needle` appears (or the deadline passes); record when."""
    while time.monotonic() < deadline:
        saved = subprocess.run(nsenter_argv(netns, listing), capture_output=True, text=True, timeout=10).stdout
        if needle in saved:
            seen[netns] = time.monotonic()
            return


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


async def _programming_latencies(config: ClusterConfig) -> list[float]:
    """Seconds from an EndpointSlice update's API answer to its DNAT rule being in every node's rules."""
    listing, needle = RULE_LISTINGS[remembered_proxy_mode(config.state_dir)]
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
                    threading.Thread(target=_first_seen, args=(ns, listing, needle.format(ip=ip), deadline, seen))
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
    mode = remembered_proxy_mode(config.state_dir)
    listing = " ".join(RULE_LISTINGS[mode][0])
    return "\n".join(
        [
            f"Network programming latency on the local cluster in {mode} mode ({LATENCY_CHANGES} EndpointSlice",
            f"updates via the API, each timed from the API's answer until `{listing}` on every node shows the",
            "new endpoint, polled from the host; kube-proxy's minimum sync period alone is 1 s; goal: p99 under",
            "250 ms):",
            "",
            "| p50 ms | p99 ms | max ms |",
            "|---|---|---|",
            f"| {p50 * 1000:.0f} | {p99 * 1000:.0f} | {latencies[-1] * 1000:.0f} |",
        ]
    )


# -- HTTP throughput through a ClusterIP (wrk) ------------------------------

WRK_SECONDS = 2
WRK_REPEATS = 5  # short rounds, more of them: a burst of other work on the machine spoils fewer
WRK_CONNECTIONS = 16
SERVER_PORT = 8080


@dataclass(frozen=True)
class WrkPath:
    """One way wrk reaches nginx: from namespace role `client`, to `url`'s address, leaving from `source`."""

    client: str
    source: str
    destination: str
    port: int = SERVER_PORT


# Each client namespace has its own veth to the server and its own /24; inside a namespace the direct runs
# leave from a second address (a /32 route with `src`), so no two paths share a (source, server) address pair.
KPROXY_SUBNET, FLOOR_SUBNET, BARE_SUBNET, POD_SUBNET = "10.244.1", "10.244.3", "10.244.2", "10.244.5"
SERVER_HOST = 10
KPROXY_NODE_IP = f"{KPROXY_SUBNET}.1"
ONE_DNAT_VIP = "10.96.255.1"
PATHS = {
    "bare": WrkPath("bare", f"{BARE_SUBNET}.1", f"{BARE_SUBNET}.{SERVER_HOST}"),
    "floor": WrkPath("floor", f"{FLOOR_SUBNET}.2", f"{FLOOR_SUBNET}.{SERVER_HOST}"),
    "one DNAT": WrkPath("floor", f"{FLOOR_SUBNET}.1", ONE_DNAT_VIP, 80),
    "kproxy direct": WrkPath("kproxy", f"{KPROXY_SUBNET}.2", f"{KPROXY_SUBNET}.{SERVER_HOST}"),
    "pod direct": WrkPath("pod", f"{POD_SUBNET}.3", f"{KPROXY_SUBNET}.{SERVER_HOST}"),
}
SUBNETS = {"kproxy": KPROXY_SUBNET, "floor": FLOOR_SUBNET, "bare": BARE_SUBNET}
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


@dataclass(frozen=True)
class WrkRun:
    rps: float
    cpu_per_request: float  # seconds of wrk and nginx CPU time


class ClientServer:
    """nginx in `pkt-kpw-<tag>-server`, reached over a veth pair each from three client namespaces; all
    removed on exit. `-kproxy` is the node: kproxy's rules go there, so both its direct and its ClusterIP
    runs pay conntrack; `-pod` hangs off it by its own veth pair, a pod whose traffic the node forwards
    (DNAT in prerouting rather than output). `-floor` has conntrack and the nat hook switched on by one
    hand-written DNAT rule (`ONE_DNAT_VIP` to the server) and nothing else: what any node with a NAT rule
    pays. `-bare` has no netfilter rules at all, so its connections are not tracked.

    Every path leaves from its own address: Linux offsets TCP timestamps per address pair, and conntrack
    keeps a connection's tuples for 120 s after it closes, so a direct run and a ClusterIP run from the same
    address would meet in the server's TIME_WAIT sockets (PAWS drops, 1 s SYN retransmits) and in conntrack
    (NAT remaps the source port of a direct connection whose reply tuple a DNATed one still holds).
    """

    def __enter__(self) -> ClientServer:
        tag = secrets.token_hex(3)
        self.namespaces = {role: f"pkt-kpw-{tag}-{role}" for role in (*SUBNETS, "pod", "server")}
        self.dir = tempfile.TemporaryDirectory(prefix="pkt-kpw-")
        self.nginx: subprocess.Popen[bytes] | None = None
        try:
            self._build(tag)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _ip(self, role: str, *args: str) -> None:
        subprocess.run(["ip", "-n", self.namespaces[role], *args], check=True)

    def _build(self, tag: str) -> None:
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for index, (role, subnet) in enumerate(SUBNETS.items()):
            veth, server_dev = f"kpw{tag}{index}", f"eth{index}"
            peer = ["peer", "name", server_dev, "netns", self.namespaces["server"]]
            self._ip(role, "link", "add", veth, "type", "veth", *peer)
            for where, dev, host in ((role, veth, 1), ("server", server_dev, SERVER_HOST)):
                self._ip(where, "addr", "add", f"{subnet}.{host}/24", "dev", dev)
                self._ip(where, "link", "set", dev, "up")
            self._ip(role, "route", "add", "10.96.0.0/12", "dev", veth, "src", f"{subnet}.1")
            if role != "bare":
                self._ip(role, "addr", "add", f"{subnet}.2/32", "dev", veth)
                self._ip(role, "route", "add", f"{subnet}.{SERVER_HOST}/32", "dev", veth, "src", f"{subnet}.2")
        self._ip(
            "pod",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            f"kpw{tag}pod",
            "netns",
            self.namespaces["kproxy"],
        )
        for where, dev, host in (("pod", "eth0", 2), ("kproxy", f"kpw{tag}pod", 1)):
            self._ip(where, "addr", "add", f"{POD_SUBNET}.{host}/24", "dev", dev)
            self._ip(where, "link", "set", dev, "up")
        self._ip("pod", "addr", "add", f"{POD_SUBNET}.3/32", "dev", "eth0")
        self._ip("pod", "route", "add", "default", "via", f"{POD_SUBNET}.1", "src", f"{POD_SUBNET}.2")
        self._ip(
            "pod",
            "route",
            "add",
            f"{KPROXY_SUBNET}.{SERVER_HOST}/32",
            "via",
            f"{POD_SUBNET}.1",
            "src",
            f"{POD_SUBNET}.3",
        )
        self._ip("server", "route", "add", f"{POD_SUBNET}.0/24", "via", KPROXY_NODE_IP)
        subprocess.run(
            ["ip", "netns", "exec", self.namespaces["kproxy"], "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True
        )
        one_rule = (
            f"table ip one-dnat {{ chain output {{ type nat hook output priority -100 ; "
            f"ip daddr {ONE_DNAT_VIP} tcp dport 80 dnat to {FLOOR_SUBNET}.{SERVER_HOST}:{SERVER_PORT} ; }} ; }}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.namespaces["floor"], "nft", "-f", "-"], input=one_rule, text=True, check=True
        )
        conf = Path(self.dir.name) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir.name, port=SERVER_PORT))
        self.nginx = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.namespaces["server"],
                "nginx",
                "-e",
                f"{self.dir.name}/error.log",
                "-c",
                str(conf),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while self.wrk(PATHS["bare"], close=False, seconds=1).rps == 0.0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx in {self.namespaces['server']} did not answer within 10 s")

    def wrk(self, path: WrkPath, close: bool, seconds: int = WRK_SECONDS) -> WrkRun:
        """Requests/s wrk got along `path` (0.0 when nothing answered), and the CPU time wrk and nginx spent
        per request (wrk's own rusage, nginx's from /proc): the cost of the path, which other work on the
        machine changes far less than it changes the rate."""
        header = ["-H", "Connection: close"] if close else []
        url = f"http://{path.destination}:{path.port}/"
        argv = ["ip", "netns", "exec", self.namespaces[path.client], "wrk", "-t1", f"-c{WRK_CONNECTIONS}"]
        nginx_before = self.nginx_cpu_seconds()
        # `ip netns exec` execs wrk in place, so wait4 on this pid gives wrk's own CPU time; wrk ends after -d
        wrk = subprocess.Popen(
            [*argv, f"-d{seconds}s", *header, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert wrk.stdout is not None
        with wrk.stdout:
            output = wrk.stdout.read()
        _, status, usage = os.wait4(wrk.pid, 0)
        wrk.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime + self.nginx_cpu_seconds() - nginx_before
        rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
        count = re.search(r"(\d+) requests in", output)
        if not rate or not count or "Non-2xx" in output or not int(count.group(1)):
            return WrkRun(0.0, 0.0)
        return WrkRun(float(rate.group(1)), cpu / int(count.group(1)))

    def nginx_cpu_seconds(self) -> float:
        """User and system CPU seconds of nginx's master and workers so far."""
        assert self.nginx is not None
        master = self.nginx.pid
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        ticks = 0
        for pid in (master, *map(int, workers)):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(timeout=10)
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self.dir.cleanup()


def kernel_counters(ns: str) -> dict[str, int]:
    """The namespace's TCP and conntrack trouble counters since it was made: SYNs sent again and PAWS
    rejects (a path meeting another's TIME_WAIT), conntrack inserts failed or dropped (a full table)."""
    counters: dict[str, int] = {}
    netstat = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/netstat"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for names, values in zip(netstat[::2], netstat[1::2], strict=True):
        prefix = names.split(":")[0]
        for name, value in zip(names.split()[1:], values.split()[1:], strict=True):
            counters[f"{prefix}{name}"] = int(value)
    stat = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/stat/nf_conntrack"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    columns = stat[0].split()
    for line in stat[1:]:
        for name, value in zip(columns, line.split(), strict=True):
            counters[f"conntrack_{name}"] = counters.get(f"conntrack_{name}", 0) + int(value, 16)
    return {
        "SYN retransmits": counters["TcpExtTCPSynRetrans"],
        "PAWS rejects": counters["TcpExtPAWSActive"] + counters["TcpExtPAWSEstab"],
        "conntrack insert failures": counters["conntrack_insert_failed"],
        "conntrack drops": counters["conntrack_drop"] + counters["conntrack_early_drop"],
    }


def conntrack_entries(ns: str) -> int:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


@dataclass(frozen=True)
class Throughput:
    """Requests/s per path and connection kind, and the trouble counters summed over the client namespaces."""

    runs: dict[tuple[str, bool], list[WrkRun]]  # (path name, Connection: close) -> each round's run
    trouble: dict[str, int]
    load: tuple[float, float]  # 1-minute load average before and after


def throughput(mode: str, count: int = 10000) -> Throughput:
    """wrk requests/s, keep-alive and `Connection: close`, along every path of `ClientServer` and through a
    ClusterIP of the `count` Services the real programmer loaded into the `-kproxy` namespace. The paths
    alternate run by run, so load from other work on the machine falls on all of them."""
    snap = synthetic(count)
    target = snap.service_ports[len(snap.service_ports) // 2]
    snap.endpoints[target.key] = (Endpoint(f"{KPROXY_SUBNET}.{SERVER_HOST}", SERVER_PORT),)
    node = NodeConfig("client", (KPROXY_NODE_IP,), "10.244.0.0/16")
    paths = {
        **PATHS,
        "ClusterIP": WrkPath("kproxy", KPROXY_NODE_IP, target.cluster_ip, target.port),
        "pod ClusterIP": WrkPath("pod", f"{POD_SUBNET}.2", target.cluster_ip, target.port),
    }
    runs: dict[tuple[str, bool], list[WrkRun]] = {}
    load_before = os.getloadavg()[0]
    with ClientServer() as pair:
        kproxy_ns = pair.namespaces["kproxy"]
        if mode == "nftables":
            NftablesProgrammer(Nft(kproxy_ns), node).sync(snap, full=True)
        else:
            IptablesProgrammer(IptablesPacketFilter("legacy", ["ip", "netns", "exec", kproxy_ns]), node).sync(
                snap, full=True
            )
        for close in (False, True):
            for _ in range(WRK_REPEATS):
                for name, path in paths.items():
                    outcome = pair.wrk(path, close)
                    if not outcome.rps:
                        raise RuntimeError(
                            f"wrk got no answers along {name} ({path}) in {pair.namespaces[path.client]}"
                        )
                    runs.setdefault((name, close), []).append(outcome)
        trouble: dict[str, int] = {}
        for role in (*SUBNETS, "pod"):
            for name, value in kernel_counters(pair.namespaces[role]).items():
                trouble[name] = trouble.get(name, 0) + value
            trouble[f"conntrack entries in {role}"] = conntrack_entries(pair.namespaces[role])
    trouble["nf_conntrack_max"] = int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    return Throughput(runs, trouble, (load_before, os.getloadavg()[0]))


COLUMNS = (
    ("bare", "no netfilter (old floor)"),
    ("floor", "direct, conntrack + 1 DNAT rule (floor)"),
    ("one DNAT", "through 1 DNAT rule"),
    ("kproxy direct", "direct, kproxy's rules loaded"),
    ("ClusterIP", "through ClusterIP"),
    ("pod direct", "pod to pod through the node"),
    ("pod ClusterIP", "pod to ClusterIP through the node"),
)


def paired_ratio(over: list[float], under: list[float]) -> str:
    """Median and range of `over`/`under` taken round by round: runs of one round are seconds apart, so a
    burst of other work on the machine moves both sides of a ratio more than it moves medians of each."""
    ratios = sorted(a / b for a, b in zip(over, under, strict=True))
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


RATIOS = (("ClusterIP", "floor"), ("one DNAT", "floor"), ("ClusterIP", "bare"), ("pod ClusterIP", "pod direct"))


THROUGHPUT_MODES = ("iptables (legacy)", "nftables")
FLOOR_WHAT = "direct to the pod from a namespace with conntrack and one DNAT rule, same run"


def throughput_figures(results: dict[str, Throughput]) -> list[Figure]:
    """Through a ClusterIP beside the floor: median requests/s, and requests per CPU-second of wrk and nginx."""
    figures = []
    for mode, measured in results.items():
        for close, label in ((False, "keep-alive"), (True, "Connection: close")):
            through, floor = measured.runs[("ClusterIP", close)], measured.runs[("floor", close)]
            name = f"{mode}, 10,000 Services: through a ClusterIP, {label}"
            rate, floor_rate = (statistics.median(run.rps for run in runs) for runs in (through, floor))
            figures.append(Figure(f"{name}: requests/s", rate, "req/s", Reference(floor_rate, FLOOR_WHAT)))
            per_cpu, floor_per_cpu = (
                1 / statistics.median(run.cpu_per_request for run in runs) for runs in (through, floor)
            )
            figures.append(
                Figure(f"{name}: requests per CPU-second", per_cpu, "req/CPU-s", Reference(floor_per_cpu, FLOOR_WHAT))
            )
    return figures


def throughput_section(results: dict[str, Throughput] | None = None) -> str:
    """The throughput tables and what they mean; measures both modes unless given their results."""
    results = results or {mode: throughput(mode) for mode in THROUGHPUT_MODES}
    rows, cpu_rows, notes = [], [], []
    for mode, measured in results.items():
        for close, label in ((False, "keep-alive"), (True, "Connection: close")):
            rates = {name: [run.rps for run in measured.runs[(name, close)]] for name, _ in COLUMNS}
            cells = " | ".join(f"{statistics.median(rates[name]):,.0f}" for name, _ in COLUMNS)
            ratios = " | ".join(paired_ratio(rates[over], rates[under]) for over, under in RATIOS)
            rows.append(f"| {mode} | {label} | {cells} | {ratios} |")
            costs = {name: [run.cpu_per_request for run in measured.runs[(name, close)]] for name, _ in COLUMNS}
            cells = " | ".join(f"{statistics.median(costs[name]) * 1e6:.1f}" for name, _ in COLUMNS)
            per_cpu = {name: [1 / cost for cost in costs[name]] for name, _ in COLUMNS}
            ratios = " | ".join(paired_ratio(per_cpu[over], per_cpu[under]) for over, under in RATIOS)
            cpu_rows.append(f"| {mode} | {label} | {cells} | {ratios} |")
        trouble = ", ".join(f"{name} {value:,}" for name, value in measured.trouble.items())
        notes.append(f"{mode}: load average {measured.load[0]:.1f} before, {measured.load[1]:.1f} after; {trouble}.")
    titles = " | ".join(title for _, title in COLUMNS)
    ratio_titles = " | ClusterIP / floor | 1 DNAT / floor | ClusterIP / no netfilter | pod: ClusterIP / direct |"
    rule = "|---|---|" + "---|" * (len(COLUMNS) + len(RATIOS))
    return "\n".join(
        [
            f"HTTP throughput with 10,000 Services loaded (`wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s`, nginx with",
            "one worker in a server namespace; each client namespace but the pod's has its own veth pair to it,",
            "and wrk runs in the client namespace itself, as a process on the node would). The paths, one column",
            "each:",
            "",
            "- *no netfilter*: from a namespace with no rules, so nothing is tracked: the floor this table used",
            "  before; it leaves out conntrack, which every node pays whatever its proxy.",
            "- *direct, conntrack + 1 DNAT rule (floor)*: straight to the pod from a namespace whose only rule is",
            "  one hand-written nft DNAT rule for another address, so conntrack and the nat hook are on, as on any",
            "  node. The ratios are against this.",
            "- *through 1 DNAT rule*: through that rule, from the same namespace: what NAT itself costs (the",
            "  issue measured 0.94x keep-alive, 0.87x new connections for it).",
            "- *direct, kproxy's rules loaded*: straight to the pod from the namespace holding kproxy's 10,000",
            "  Services: what kproxy costs traffic that is not for a Service (iptables mode walks KUBE-SERVICES",
            "  for every new connection, as kube-proxy's does).",
            "- *through ClusterIP*: from that namespace to the 5,001st Service's ClusterIP, DNATed to the pod.",
            "- *pod to pod / pod to ClusterIP through the node*: the same two from a client pod namespace the node",
            "  namespace forwards for (DNAT in prerouting, then forward), as a pod's traffic goes on a real node;",
            "  both pay conntrack and kproxy's rules, so their ratio is the ClusterIP's own cost for a pod client.",
            "",
            "Each path leaves from its own source address: a direct run from the ClusterIP runs' address met their",
            "TIME_WAIT sockets and conntrack entries (SYN retransmits, NAT-remapped ports) and ran at a third of the",
            "rate or less in a trial run. The five paths run one after another in a round, "
            f"{WRK_REPEATS} rounds per kind of",
            "connection; cells are medians over the rounds; ratios are taken within each round and shown as their",
            "median (lowest-highest). wrk, nginx and the kernel share the machine's 2 cores with other work, unpinned",
            "(pinning wrk and nginx to a core each made runs slower and noisier whenever other work landed on one).",
            "Goal in nftables mode: 0.9x keep-alive, 0.8x new connections.",
            "",
            "Requests/s:",
            "",
            f"| mode | connections | {titles}{ratio_titles}",
            rule,
            *rows,
            "",
            "CPU time of wrk and nginx per request, microseconds (wrk's rusage and nginx's /proc counters; the",
            "kernel work of a veth hop mostly runs as softirq in the sending process and is counted there). Other",
            "work on the machine moves this far less than it moves requests/s (see the load averages below: with",
            "more than 2 the requests/s ratios are mostly noise); the ratios are requests per CPU-second, so they",
            "read like the ones above:",
            "",
            f"| mode | connections | {titles}{ratio_titles}",
            rule,
            *cpu_rows,
            "",
            "Kernel counters summed over the client namespaces for the whole run (non-zero SYN retransmits or PAWS",
            "rejects mean runs met TIME_WAIT left by another path; conntrack failures or drops, a full table),",
            "and the conntrack entries left at the end (about one per client port in use or in TIME_WAIT) against",
            "nf_conntrack_max:",
            "",
            *(f"- {note}" for note in notes),
        ]
    )


def run(config: ClusterConfig | None = None) -> Section:
    rows = []
    full_sync: dict[str, list[tuple[float, float]]] = {}  # mode -> (Services, full sync ms)
    change_sync: dict[str, list[tuple[float, float]]] = {}
    figures: list[Figure] = []
    throughput_results = {mode: throughput(mode) for mode in THROUGHPUT_MODES}
    figures += throughput_figures(throughput_results)
    loads = []  # the sync wants both cores (building beside restore or the kernel), the floor one: load shows
    for mode in ("iptables (legacy)", "iptables (nft)", "nftables"):
        load_before = os.getloadavg()[0]
        for count in SIZES:
            runs = [measure(mode, count) for _ in range(REPEATS[count])]
            floor, full, change, restart = (
                statistics.median(getattr(r, name) for r in runs) for name in ("floor", "full", "change", "restart")
            )
            kernel_full, kernel_change = (
                f"{statistics.median(values) * 1000:.0f}" if values else "-"
                for values in (
                    [r.full_floor for r in runs if r.full_floor is not None],
                    [r.change_floor for r in runs if r.change_floor is not None],
                )
            )
            full_sync.setdefault(f"{mode}: kproxy full sync", []).append((count, full * 1000))
            full_sync.setdefault(f"{mode}: floor (bare restore)", []).append((count, floor * 1000))
            change_sync.setdefault(mode, []).append((count, change * 1000))
            if count == max(SIZES):
                figures.append(
                    Figure(
                        f"{mode}, {count:,} Services: full sync",
                        full * 1000,
                        "ms",
                        Reference(floor * 1000, "bare restore of the same rules, same run"),
                    )
                )
                figures.append(
                    Figure(
                        f"{mode}, {count:,} Services: one change",
                        change * 1000,
                        "ms",
                        Reference(full * 1000, "kproxy full sync at the same size, same run"),
                    )
                )
            rows.append(
                f"| {mode} | {count:,} | {floor * 1000:.0f} | {full * 1000:.0f} | {full / floor:.2f}x | {kernel_full} "
                f"| {change * 1000:.0f} | {kernel_change} | {restart * 1000:.0f} |"
            )
        loads.append(f"{mode} {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    markdown = "\n".join(
        [
            "## kproxy: rule programming (Services x 3 endpoints)",
            "",
            "Floor: bare `iptables-legacy-restore` / `iptables-nft-restore` (no `--noflush`) / `nft -f` of the same",
            "ruleset into empty tables. kproxy full sync: `Programmer.sync(snapshot, full=True)` from a cold rule",
            "cache (iptables: build, `save`, one restore; nftables: build, `nft -f` of the declarations, one",
            "netlink batch, so it can beat `nft -f`, which spends most of its time parsing). Kernel floor, full",
            "sync (nftables): the kernel alone committing that batch, encoded beforehand, into a table holding only",
            "its declarations. One change: one Service's endpoints changed, `full=False`, the",
            "snapshot sharing every other object as the proxier's SnapshotCache does",
            f"(median of {2 * CHANGES}; kube-proxy's nftables mode: about 141 ms at 10,000; goal: under 50 ms).",
            "Kernel floor, one change: the kernel alone committing one",
            "new chain with one DNAT rule into that table over netlink (nf_tables re-validates every chain reachable",
            "from its hooks on any such commit). After restart: a new programmer with cold caches and the rules",
            "already in the kernel, `full=True`. Each cell is the median of "
            + ", ".join(f"{runs} runs at {count:,}" for count, runs in REPEATS.items())
            + ", each in a fresh",
            "namespace; the machine is shared by other work, so single figures are noisy.",
            "",
            "| mode | services | floor ms | kproxy full sync ms | ratio | kernel floor, full sync ms | one change ms "
            "| kernel floor, one change ms | full sync after restart ms |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"1-minute load average on the {os.cpu_count()} cores: " + "; ".join(loads) + ".",
            "A full sync uses two cores (the rules built beside the restore or the kernel reading them) where the",
            "floor uses one, so other load",
            "raises the ratios. In the iptables modes kproxy starts two processes through `ip netns exec` (save,",
            "restore) where the floor starts one, about 1.2 ms more than kproxy pays in its own namespace.",
            "",
            throughput_section(throughput_results),
            "",
            programming_latency_section(config or ClusterConfig()),
            "",
            "Command: `python -m benchmarks bench_kproxy` (part of `make bench`).",
        ]
    )
    series = (
        Series(
            "sync time vs Services", "Services (3 endpoints each)", "ms", {k: tuple(v) for k, v in full_sync.items()}
        ),
        Series(
            "one-change sync vs Services",
            "Services (3 endpoints each)",
            "ms",
            {k: tuple(v) for k, v in change_sync.items()},
        ),
    )
    return Section(markdown, tuple(figures), series=series)
