"""`pocket kproxy` / `python -m kproxy`: Service VIPs on one node, run inside that node's network namespace."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging

import uvloop

from control.cli_support import Command, add_api_arguments, api_client
from control.client import Informer
from control.observability import serve_health
from kproxy.conntrack import NetlinkConntrack
from kproxy.iptables.restore import BACKENDS, IptablesPacketFilter
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import NodeConfig
from kproxy.nftables.ruleset import Nft, NftablesProgrammer
from kproxy.proxier import Proxier, RuleProgrammer
from kproxy.speaker import ArpResponder, Speaker
from kproxy.sysctl import add_arguments as add_conntrack_arguments
from kproxy.sysctl import apply as apply_conntrack_settings
from kproxy.sysctl import settings_from

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_arguments(parser, "http://192.168.56.10:6443")
    parser.add_argument("--node-name", required=True, help="this node's name (endpoints on it are local)")
    parser.add_argument("--node-ip", default="", help="this node's IP address(es), comma-separated")
    parser.add_argument(
        "--cluster-cidr", default="10.244.0.0/16", help="pod CIDR; traffic from outside it to a cluster IP is SNATed"
    )
    parser.add_argument("--health-port", type=int, default=10256, help="port for /healthz and /metrics")
    parser.add_argument(
        "--iptables",
        choices=sorted(BACKENDS),
        default="legacy",
        help="legacy: iptables-legacy-restore/-save; nft: iptables-restore/-save",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="iptables",
        help="iptables: kube-proxy's iptables layout via iptables-restore; nftables: native nft in table ip kproxy",
    )
    parser.add_argument(
        "--min-sync-period", type=float, default=0.1, help="seconds between syncs at least (changes are coalesced)"
    )
    parser.add_argument(
        "--announce-interface",
        default="eth0",
        help="interface on which this node answers ARP for the LoadBalancer addresses it is elected for ('' = never)",
    )
    parser.add_argument("--sync-period", type=float, default=30.0, help="seconds between full resyncs")
    add_conntrack_arguments(parser)


MODES = ("iptables", "nftables")
# With iptables-nft, a --noflush payload declaring more chains than this replaces the tables instead.
NFT_BACKEND_BULK_LIMIT = 500


def programmer_for(args: argparse.Namespace, node: NodeConfig) -> RuleProgrammer:
    """The rule programmer the flags ask for."""
    if args.mode == "nftables":
        return NftablesProgrammer(Nft(), node)
    bulk_limit = NFT_BACKEND_BULK_LIMIT if args.iptables == "nft" else None
    return IptablesProgrammer(IptablesPacketFilter(args.iptables), node, bulk_limit)


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The node's config from the flags; ValueError naming the flag when one is wrong."""
    node_ips = tuple(ip.strip() for ip in args.node_ip.split(",") if ip.strip())
    for ip in node_ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"--node-ip {ip!r}: not an IP address") from None
    try:
        ipaddress.ip_network(args.cluster_cidr)
    except ValueError as err:
        raise ValueError(f"--cluster-cidr {args.cluster_cidr!r}: {err}") from None
    if not 0 < args.health_port < 65536:
        raise ValueError(f"--health-port {args.health_port}: not a port number")
    if args.min_sync_period < 0:
        raise ValueError(f"--min-sync-period {args.min_sync_period}: must not be negative")
    if args.sync_period <= 0:
        raise ValueError(f"--sync-period {args.sync_period}: must be positive")
    return NodeConfig(args.node_name, node_ips, args.cluster_cidr)


async def serve(args: argparse.Namespace, node: NodeConfig) -> None:
    async with api_client(args, "pocketkube-kproxy") as client:
        services = Informer(client, "services")
        slices = Informer(client, "endpointslices")
        proxier = Proxier(
            services,
            slices,
            node,
            programmer_for(args, node),
            NetlinkConntrack(),
            min_sync_interval=args.min_sync_period,
            resync_period=args.sync_period,
        )
        jobs = [services.run(), slices.run(), proxier.run()]
        responder = None
        if args.announce_interface:
            try:
                responder = ArpResponder(args.announce_interface)
            except OSError as err:
                log.error(
                    "not announcing LoadBalancer addresses",
                    extra={"interface": args.announce_interface, "error": str(err)},
                )
        if responder is not None:
            jobs.append(Speaker(client, services, slices, node.node_name, responder).run())
        health = await serve_health("0.0.0.0", args.health_port, {"sync": proxier.healthy})
        tasks = [asyncio.create_task(t) for t in jobs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if responder is not None:
                responder.close()
            await health.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        node = node_config(args)
        conntrack = settings_from(args)
    except ValueError as err:
        print(f"kproxy: {err}")
        return 2
    try:
        apply_conntrack_settings(conntrack)
    except OSError as err:
        print(f"kproxy: cannot set conntrack sysctls: {err}")
        return 1
    try:
        uvloop.run(serve(args, node))
    except KeyboardInterrupt:
        pass
    except ValueError as err:  # --kubeconfig or --api-server unusable
        print(f"kproxy: {err}")
        return 2
    return 0


COMMAND = Command(
    "kproxy", "Service virtual IPs on this node (iptables or nftables) and LoadBalancer ARP", add_arguments, run
)
