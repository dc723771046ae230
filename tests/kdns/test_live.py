"""`python -m kdns` against a real API server on a real etcd, all on 127.0.0.1.

This is the production path end to end: the CLI, uvloop, the informers and
the wire.  Objects are created through the API and must show up in DNS (and
disappear again) without restarting anything.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from control.client import Client
from kdns.cli import serve_health_and_ready
from kdns.peers import check_once
from kdns.server import DnsServer
from kdns.source import InformerSource
from tests.conftest import free_port
from tests.processes import stop

STARTUP_SECONDS = 30
CONVERGE_SECONDS = 15
NAMESPACE = "dns-live"
QUERIES_OVER_WORKERS = 40


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `ready` (bounded); fail with the process's log if it exits or never gets there."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {STARTUP_SECONDS}s:\n{log.read_text()[-3000:]}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Live:
    api: str
    dns_port: int
    health_port: int
    pid: int


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("kdns-live")
    etcd_port, peer_port, api_port, dns_port, health_port = (free_port() for _ in range(5))
    procs: list[subprocess.Popen[bytes]] = []

    def launch(name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = base / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc, log

    try:
        etcd, etcd_log = launch(
            "etcd",
            [
                "etcd",
                "--name", "kdns-live",
                "--data-dir", str(base / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"kdns-live=http://127.0.0.1:{peer_port}",
            ],
        )  # fmt: skip
        wait_until("etcd", lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), etcd, etcd_log)
        api = f"http://127.0.0.1:{api_port}"
        apiserver, api_log = launch(
            "apiserver",
            [
                sys.executable, "-m", "control.apiserver",
                "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
                "--bind-address", "127.0.0.1",
                "--port", str(api_port),
                "--advertise-address", "127.0.0.1",
                "--service-cluster-ip-range", "10.96.0.0/12",
            ],
        )  # fmt: skip
        wait_until("apiserver", lambda: http_ok(f"{api}/healthz"), apiserver, api_log)
        resolv = base / "resolv.conf"
        resolv.write_text("# no upstream: outside names get SERVFAIL\n")
        kdns, kdns_log = launch(
            "kdns",
            [
                sys.executable, "-m", "kdns",
                "--api-server", api,
                "--listen", "127.0.0.1",
                "--port", str(dns_port),
                "--cluster-domain", "cluster.local",
                "--resolv-conf", str(resolv),
                "--health-port", str(health_port),
                "--ttl", "7",
            ],
        )  # fmt: skip
        wait_until("kdns", lambda: http_ok(f"http://127.0.0.1:{health_port}/ready"), kdns, kdns_log)
        yield Live(api, dns_port, health_port, kdns.pid)
    finally:
        for proc in reversed(procs):
            stop(proc)


async def query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    request = DNSRecord.question(name, qtype)
    return DNSRecord.parse(await asyncio.to_thread(request.send, "127.0.0.1", port, False, 5))


async def converge(port: int, name: str, check: Callable[[DNSRecord], bool], qtype: str = "A") -> DNSRecord:
    """Ask until the answer passes `check` (bounded): watches take a moment to arrive."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while True:
        reply = await query(port, name, qtype)
        if check(reply) or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.2)


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


async def test_services_appear_change_and_vanish(live: Live) -> None:
    async with Client(live.api) as client:
        await client.create("namespaces", {"metadata": {"name": NAMESPACE}})
        created = await client.create(
            "services",
            {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
            NAMESPACE,
        )
        cluster_ip = created["spec"]["clusterIP"]
        name = f"web.{NAMESPACE}.svc.cluster.local"
        reply = await converge(live.dns_port, name, lambda r: bool(r.rr))
        assert addresses(reply) == [cluster_ip]
        assert reply.rr[0].ttl == 7
        srv = await query(live.dns_port, f"_http._tcp.{name}", "SRV")
        assert [str(rr.rdata) for rr in srv.rr] == [f"0 100 80 {name}."]
        # The namespace exists, so its subtree is an empty non-terminal.
        nodata = await query(live.dns_port, f"{NAMESPACE}.svc.cluster.local")
        assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []

        await client.create(
            "services",
            {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
            NAMESPACE,
        )
        await client.create(
            "endpoints",
            {
                "metadata": {"name": "db"},
                "subsets": [
                    {
                        "addresses": [{"ip": "10.244.1.10", "hostname": "db-0"}],
                        "notReadyAddresses": [{"ip": "10.244.1.11", "hostname": "db-1"}],
                        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                    }
                ],
            },
            NAMESPACE,
        )
        db = f"db.{NAMESPACE}.svc.cluster.local"
        reply = await converge(live.dns_port, f"db-0.{db}", lambda r: bool(r.rr))
        assert addresses(reply) == ["10.244.1.10"]
        assert addresses(await query(live.dns_port, db)) == ["10.244.1.10"]

        await client.delete("services", "web", NAMESPACE)
        gone = await converge(live.dns_port, name, lambda r: r.header.rcode == RCODE.NXDOMAIN)
        assert gone.header.rcode == RCODE.NXDOMAIN
        assert [rr.rtype for rr in gone.auth] == [QTYPE.SOA]


async def test_built_in_records_and_servfail_without_upstream(live: Live) -> None:
    version = await query(live.dns_port, "dns-version.cluster.local", "TXT")
    assert [str(rr.rdata) for rr in version.rr] == ['"1.1.0"']
    outside = await query(live.dns_port, "www.example.com")
    assert outside.header.rcode == RCODE.SERVFAIL
    metrics = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{live.health_port}/metrics", timeout=5).read().decode()
    )
    assert 'kdns_dns_requests_total{proto="udp",type="TXT"}' in metrics


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def udp_inodes_on_port(port: int) -> set[str]:
    """Inodes of the UDP sockets bound to `port` (from /proc/net/udp: local address, then inode at field 9)."""
    rows = [line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:]]
    return {row[9] for row in rows if int(row[1].rsplit(":", 1)[1], 16) == port}


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_two_workers_each_hold_a_socket_on_the_dns_port_and_metrics_count_both(live: Live, tmp_path: Path) -> None:
    dns_port, health_port = free_port(), free_port()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("")
    log = tmp_path / "kdns.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdns", "--api-server", live.api, "--listen", "127.0.0.1"]
            + ["--port", str(dns_port), "--resolv-conf", str(resolv), "--health-port", str(health_port)]
            + ["--workers", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until("kdns --workers 2", lambda: http_ok(f"http://127.0.0.1:{health_port}/ready"), proc, log)
        children = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(children) == 1
        on_port = udp_inodes_on_port(dns_port)
        assert socket_inodes(proc.pid) & on_port
        assert socket_inodes(children[0]) & on_port
        # Each query from its own socket, so the kernel spreads them over both workers;
        # /metrics (the first process's) must count them all.
        for _ in range(QUERIES_OVER_WORKERS):
            request = DNSRecord.question("dns-version.cluster.local", "TXT")
            assert DNSRecord.parse(request.send("127.0.0.1", dns_port, False, 5)).header.rcode == RCODE.NOERROR
        counted = f'kdns_dns_requests_total{{proto="udp",type="TXT"}} {QUERIES_OVER_WORKERS:.1f}'
        metrics_url = f"http://127.0.0.1:{health_port}/metrics"
        wait_until("all workers' queries in /metrics", lambda: counted in fetch_text(metrics_url), proc, log)
    finally:
        proc.kill()  # SIGKILL: the worker must go too, by its parent-death signal
        proc.wait()
    deadline = time.monotonic() + STARTUP_SECONDS
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not udp_inodes_on_port(dns_port)


def test_ready_after_the_first_sync(live: Live) -> None:
    assert http_ok(f"http://127.0.0.1:{live.health_port}/ready")


async def test_unreachable_api_server_means_servfail_not_nxdomain() -> None:
    """Informers that never listed: kdns must not deny names it cannot know yet."""
    async with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        source = InformerSource(
            client, zone="cluster.local", ttl=30, reverse_cidrs=["10.96.0.0/12"], server_ips=[], server_port=53
        )
        informers = asyncio.ensure_future(source.run())
        server = DnsServer(source, None)
        _, port = await server.start("127.0.0.1", 0)
        try:
            reply = await query(port, "kubernetes.default.svc.cluster.local")
            assert reply.header.rcode == RCODE.SERVFAIL
            assert not source.synced()
            version = await query(port, "dns-version.cluster.local", "TXT")
            assert [str(rr.rdata) for rr in version.rr] == ['"1.1.0"']
            health_port = free_port()
            health = await serve_health_and_ready(health_port, lambda: server.serving, source.synced)
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{health_port}/ready") as resp:
                        assert resp.status == 503
                    async with session.get(f"http://127.0.0.1:{health_port}/healthz") as resp:
                        assert resp.status == 200
            finally:
                await health.cleanup()
        finally:
            informers.cancel()
            await asyncio.gather(informers, return_exceptions=True)
            await server.stop()


async def test_silent_instances_leave_the_dns_endpoints_and_answering_ones_return(live: Live) -> None:
    """127.0.0.1:<dns port> is the live kdns; nothing listens on 127.0.0.2 (probed, never bound)."""
    alive, silent = "127.0.0.1", "127.0.0.2"
    ports = [{"name": "dns", "port": live.dns_port, "protocol": "UDP"}]
    async with Client(live.api) as client:
        await client.create("namespaces", {"metadata": {"name": "peers"}})
        await client.create(
            "endpoints",
            {
                "metadata": {"name": "kube-dns", "namespace": "peers"},
                "subsets": [{"addresses": [{"ip": silent}], "notReadyAddresses": [{"ip": alive}], "ports": ports}],
            },
            "peers",
        )
        assert await check_once(client, "peers", "kube-dns", own_ip="10.0.0.1", zone="cluster.local")
        (subset,) = (await client.get("endpoints", "kube-dns", "peers"))["subsets"]
        assert [a["ip"] for a in subset["addresses"]] == [alive]
        assert [a["ip"] for a in subset["notReadyAddresses"]] == [silent]
        # Nothing changes when nothing did; and an instance never marks itself down.
        assert not await check_once(client, "peers", "kube-dns", own_ip="10.0.0.1", zone="cluster.local")
        assert await check_once(client, "peers", "kube-dns", own_ip=silent, zone="cluster.local")
        (subset,) = (await client.get("endpoints", "kube-dns", "peers"))["subsets"]
        assert sorted(a["ip"] for a in subset["addresses"]) == [alive, silent]
        assert not await check_once(client, "peers", "kube-dns-missing", own_ip=alive, zone="cluster.local")
