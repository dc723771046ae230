"""`pocket apiserver`: the API server on etcd."""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiohttp import web

from control.apiserver.allocator import ServiceIPRange
from control.apiserver import limits
from control.apiserver.app import ServerConfig, create_app
from control.apiserver.encryption import load_encryption_config
from control.apiserver.metrics_api import DEFAULT_RESOLUTION
from control.apiserver.storage import Storage, parse_endpoint
from control.cli_support import Command

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="etcd client URL")
    parser.add_argument("--bind-address", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=6443, help="port to listen on (plain HTTP)")
    parser.add_argument(
        "--advertise-address", default="192.168.56.10", help="address published in the `kubernetes` Endpoints"
    )
    parser.add_argument("--service-cluster-ip-range", default="10.96.0.0/12", help="CIDR Service ClusterIPs come from")
    parser.add_argument("--kubelet-port", type=int, default=10250, help="kubelet port when a Node does not say")
    parser.add_argument(
        "--metrics-resolution",
        type=float,
        default=DEFAULT_RESOLUTION,
        help="seconds between kubelet stats scrapes for metrics.k8s.io (metrics-server's --metric-resolution)",
    )
    parser.add_argument(
        "--encryption-provider-config",
        default="",
        help="EncryptionConfiguration file: which resources are encrypted in etcd, and with which keys",
    )
    limits.add_arguments(parser)


async def serve(args: argparse.Namespace, etcd_prefix: str = "") -> None:
    """Run until cancelled."""
    encryption = load_encryption_config(args.encryption_provider_config) if args.encryption_provider_config else None
    storage = Storage(args.etcd_servers, prefix=etcd_prefix, encryption=encryption)
    config = ServerConfig(
        advertise_address=args.advertise_address,
        port=args.port,
        kubelet_port=args.kubelet_port,
        metrics_resolution=args.metrics_resolution,
        limits=limits.from_args(args),
    )
    app = create_app(storage, ServiceIPRange(args.service_cluster_ip_range), config)
    # aiohttp closes a connection that has not sent a whole request by the keep-alive deadline (slowloris)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2, keepalive_timeout=args.request_header_timeout)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.port).start()
    log.info("apiserver listening", extra={"address": f"{args.bind_address}:{args.port}", "etcd": args.etcd_servers})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        ServiceIPRange(args.service_cluster_ip_range)
        parse_endpoint(args.etcd_servers)
        if args.encryption_provider_config:
            load_encryption_config(args.encryption_provider_config)
        if args.metrics_resolution <= 0:
            raise ValueError(f"--metrics-resolution must be positive seconds, not {args.metrics_resolution}")
    except ValueError as err:
        log.error("%s", err)
        return 2
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


COMMAND = Command("apiserver", "Kubernetes API server storing objects in etcd", add_arguments, run)
