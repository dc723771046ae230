"""`pocket kdns` / `python -m kdns`: the cluster DNS on the control-plane node."""

from __future__ import annotations

import argparse
import ipaddress
import logging

import uvloop

from control.cli_support import Command
from control.client import Client
from control.observability import serve_health
from kdns.forward import Forwarder, read_resolv_conf
from kdns.records import MAX_TTL, reverse_zones
from kdns.server import DEFAULT_RECURSION_NETWORKS, DnsServer, parse_networks
from kdns.source import InformerSource

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-server", default="http://192.168.56.10:6443", help="API server URL")
    parser.add_argument("--listen", default="192.168.56.10", help="address to serve DNS on")
    parser.add_argument("--port", type=int, default=53, help="DNS port (UDP and TCP)")
    parser.add_argument("--cluster-domain", default="cluster.local", help="the cluster zone")
    parser.add_argument(
        "--resolv-conf",
        default="/var/lib/pocketkube/nodes/control-plane/resolv.conf",
        help="resolv.conf whose nameservers get the names outside the cluster",
    )
    parser.add_argument("--health-port", type=int, default=9153, help="port for /healthz and /metrics")
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


def _validate(args: argparse.Namespace) -> list[str]:
    """Every flag problem, each naming its flag."""
    problems = []
    if not 0 <= args.ttl <= MAX_TTL:
        problems.append(f"--ttl {args.ttl}: must be within 0..{MAX_TTL}")
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


async def serve(args: argparse.Namespace) -> None:
    upstreams = read_resolv_conf(args.resolv_conf)
    if not upstreams:
        log.warning("no nameserver in %s: names outside the cluster get SERVFAIL", args.resolv_conf)
    listen_ip = ipaddress.ip_address(args.listen)
    server_ips = [] if listen_ip.is_unspecified else [args.listen]
    async with Client(args.api_server, user_agent="pocketkube-kdns") as client:
        source = InformerSource(
            client,
            zone=args.cluster_domain,
            ttl=args.ttl,
            reverse_cidrs=[args.service_cluster_ip_range, args.cluster_cidr],
            server_ips=server_ips,
            server_port=args.port,
        )
        server = DnsServer(source, Forwarder(upstreams), recursion_networks=args.recursion_networks.split(","))
        try:
            await server.start(args.listen, args.port)
        except OSError as err:
            raise ValueError(f"cannot serve DNS on --listen {args.listen} --port {args.port}: {err.strerror}") from err
        try:
            health = await serve_health("0.0.0.0", args.health_port, {"dns": lambda: server.serving})
        except OSError as err:
            await server.stop()
            raise ValueError(f"cannot serve --health-port {args.health_port}: {err.strerror}") from err
        try:
            await source.run()
        finally:
            await server.stop()
            await health.cleanup()


def run(args: argparse.Namespace) -> int:
    problems = _validate(args)
    if problems:
        for problem in problems:
            log.error("%s", problem)
        return 2
    try:
        uvloop.run(serve(args))
    except ValueError as err:
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


COMMAND = Command(
    "kdns", "cluster DNS: Services and Endpoints as DNS records, other names forwarded", add_arguments, run
)
