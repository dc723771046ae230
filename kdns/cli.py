"""`pocket kdns` / `python -m kdns`: the cluster DNS on the control-plane node."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

import uvloop
from aiohttp import web

from control.cli_support import Command, add_api_arguments, api_client
from control.observability import health_app
from kdns import metrics
from kdns.forward import Forwarder, read_resolv_conf
from kdns.peers import keep_endpoints_honest
from kdns.ratelimit import DEFAULT_QPS, RateLimiter
from kdns.records import MAX_TTL, reverse_zones
from kdns.server import DEFAULT_RECURSION_NETWORKS, DnsServer, parse_networks
from kdns.source import InformerSource

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_arguments(parser, "http://192.168.56.10:6443")
    parser.add_argument("--listen", default="192.168.56.10", help="address to serve DNS on")
    parser.add_argument("--port", type=int, default=53, help="DNS port (UDP and TCP)")
    parser.add_argument("--cluster-domain", default="cluster.local", help="the cluster zone")
    parser.add_argument(
        "--resolv-conf",
        default="/var/lib/pocketkube/nodes/control-plane/resolv.conf",
        help="resolv.conf whose nameservers get the names outside the cluster",
    )
    parser.add_argument("--health-port", type=int, default=9153, help="port for /healthz, /ready and /metrics")
    parser.add_argument("--ttl", type=int, default=30, help=f"TTL of cluster records, 0..{MAX_TTL}")
    parser.add_argument(
        "--service-cluster-ip-range", default="10.96.0.0/12", help="service CIDR, served as a reverse zone"
    )
    parser.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod CIDR, served as a reverse zone")
    parser.add_argument(
        "--recursion-networks",
        default=",".join(DEFAULT_RECURSION_NETWORKS),
        help="comma-separated CIDRs allowed to resolve names outside the cluster",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=DEFAULT_QPS,
        help="UDP answers per second per client address; over it most queries are dropped and every "
        "second one answered truncated (TC=1) so real clients retry over TCP; 0 disables",
    )
    parser.add_argument(
        "--dns-service",
        default="kube-system/kube-dns",
        help="namespace/name of the Service in front of the kdns instances, whose Endpoints kdns keeps honest",
    )
    parser.add_argument(
        "--peer-check-interval",
        type=float,
        default=2.0,
        help="seconds between probes of the --dns-service addresses (silent ones made not ready); 0 disables",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the DNS port together (SO_REUSEPORT), each with its own informers; "
        "the first also serves the health port",
    )


def _validate(args: argparse.Namespace) -> list[str]:
    """Every flag problem, each naming its flag."""
    problems = []
    if not 0 <= args.ttl <= MAX_TTL:
        problems.append(f"--ttl {args.ttl}: must be within 0..{MAX_TTL}")
    if args.dns_service.count("/") != 1 or not all(args.dns_service.split("/")):
        problems.append(f"--dns-service {args.dns_service!r}: expected namespace/name")
    if args.peer_check_interval < 0:
        problems.append(f"--peer-check-interval {args.peer_check_interval}: must be 0 (off) or more")
    if args.rate_limit < 0:
        problems.append(f"--rate-limit {args.rate_limit:g}: must be 0 (off) or more queries per second")
    if not 1 <= args.workers <= 64:
        problems.append(f"--workers {args.workers}: must be within 1..64")
    for flag, port in (("--port", args.port), ("--health-port", args.health_port)):
        if not 0 < port < 65536:
            problems.append(f"{flag} {port}: not a port number")
    try:
        ipaddress.ip_address(args.listen)
    except ValueError:
        problems.append(f"--listen {args.listen!r}: not an IP address")
    for flag, value in (
        ("--service-cluster-ip-range", args.service_cluster_ip_range),
        ("--cluster-cidr", args.cluster_cidr),
    ):
        try:
            reverse_zones([value])
        except ValueError as err:
            problems.append(f"{flag}: {err}")
    try:
        parse_networks(args.recursion_networks.split(","))
    except ValueError as err:
        problems.append(f"--recursion-networks: {err}")
    return problems


async def serve_health_and_ready(port: int, serving: Callable[[], bool], ready: Callable[[], bool]) -> web.AppRunner:
    """/healthz and /metrics (from control.observability) plus /ready: 200 once the first full sync is in."""

    async def ready_handler(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready: the first sync from the API server is not complete\n")

    app = health_app({"dns": serving})
    app.router.add_get("/ready", ready_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


# As CoreDNS's kubernetes plugin: wait this long for the first sync before answering, so a restarted
# instance does not answer SERVFAIL for names it would know a moment later; then serve anyway.
FIRST_SYNC_WAIT = 5.0


async def wait_for_first_sync(synced: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    """True once `synced()` holds; False (logged) when `timeout` seconds pass first."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not synced():
        if asyncio.get_running_loop().time() >= deadline:
            log.warning("serving DNS before the first sync from the API server", extra={"waited": timeout})
            return False
        await asyncio.sleep(poll)
    return True


async def serve(args: argparse.Namespace, workers: Workers) -> None:
    upstreams = read_resolv_conf(args.resolv_conf)
    if not upstreams:
        log.warning("no nameserver in %s: names outside the cluster get SERVFAIL", args.resolv_conf)
    listen_ip = ipaddress.ip_address(args.listen)
    server_ips = [] if listen_ip.is_unspecified else [args.listen]
    async with api_client(args, "pocketkube-kdns") as client:
        source = InformerSource(
            client,
            zone=args.cluster_domain,
            ttl=args.ttl,
            reverse_cidrs=[args.service_cluster_ip_range, args.cluster_cidr],
            server_ips=server_ips,
            server_port=args.port,
        )
        server = DnsServer(
            source,
            Forwarder(upstreams),
            recursion_networks=args.recursion_networks.split(","),
            rate_limiter=RateLimiter(args.rate_limit) if args.rate_limit else None,
        )
        source_task = asyncio.create_task(source.run())
        await wait_for_first_sync(source.synced, FIRST_SYNC_WAIT)
        try:
            await server.start(args.listen, args.port, reuse_port=args.workers > 1)
        except OSError as err:
            source_task.cancel()
            raise ValueError(f"cannot serve DNS on --listen {args.listen} --port {args.port}: {err.strerror}") from err
        health = None
        if workers.first:
            try:
                health = await serve_health_and_ready(args.health_port, lambda: server.serving, source.synced)
            except OSError as err:
                source_task.cancel()
                await server.stop()
                raise ValueError(f"cannot serve --health-port {args.health_port}: {err.strerror}") from err
        tasks = [source_task, *(metrics.WORKER_TOTALS.follow(fd) for fd in workers.reports)]
        if workers.report_fd is not None:
            tasks.append(metrics.report_to(workers.report_fd))
        if workers.first and args.peer_check_interval > 0:  # one keeper per instance, not per worker
            tasks.append(
                keep_endpoints_honest(
                    client, args.dns_service, args.listen, args.cluster_domain, args.peer_check_interval
                )
            )
        try:
            await asyncio.gather(*tasks)
        finally:
            await server.stop()
            if health is not None:
                await health.cleanup()


PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Workers:
    """This process's place among the `--workers`.

    The first process serves the health port and /metrics, reading each
    forked worker's metrics from its pipe (`reports`); a forked worker
    writes its own to `report_fd`.
    """

    first: bool
    children: tuple[int, ...] = ()
    reports: tuple[int, ...] = ()
    report_fd: int | None = None


def start_workers(count: int) -> Workers:
    """Fork `count - 1` extra workers, each with a pipe for its metrics back to the first process.

    A forked worker asks the kernel for SIGTERM when its parent dies, so
    killing the first process (even with SIGKILL) takes the port with it.
    """
    children: list[int] = []
    reports: list[int] = []
    for _ in range(count - 1):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            for fd in (*reports, read_fd):
                os.close(fd)  # only the first process reads the workers' pipes
            return Workers(first=False, report_fd=write_fd)
        os.close(write_fd)
        children.append(pid)
        reports.append(read_fd)
    return Workers(first=True, children=tuple(children), reports=tuple(reports))


def run(args: argparse.Namespace) -> int:
    problems = _validate(args)
    if problems:
        for problem in problems:
            log.error("%s", problem)
        return 2
    workers = start_workers(args.workers)
    try:
        uvloop.run(serve(args, workers))
    except ValueError as err:
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        for pid in workers.children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
    return 0


COMMAND = Command(
    "kdns", "cluster DNS: Services and Endpoints as DNS records, other names forwarded", add_arguments, run
)
