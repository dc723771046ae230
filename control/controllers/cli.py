"""`pocket controller-manager`: every controller in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from control.cli_support import Command, add_api_arguments, api_client
from control.client import Client
from control.controllers.leaderelection import (
    LeaderElectionConfig,
    add_leader_election_arguments,
    leader_election_config,
    run_elected,
)
from control.api.timestamps import parse_duration
from control.controllers.hpa import HpaSettings
from control.controllers.loadbalancer import DEFAULT_POOL, parse_pool
from control.controllers.certificates import DEFAULT_SIGNING_DURATION, ClusterSigner
from control.controllers.manager import ControllerManager, Settings
from control.controllers.nodeipam import parse_cluster_cidr
from control.observability import serve_health

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_arguments(parser, "http://127.0.0.1:6443")
    parser.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod network, split into per-node subnets")
    parser.add_argument("--node-cidr-mask-size", type=int, default=24, help="prefix length of each node's podCIDR")
    parser.add_argument("--health-port", type=int, default=10257, help="port for /healthz and /metrics (0.0.0.0)")
    defaults = Settings()
    parser.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=defaults.node_monitor_grace_period,
        help="seconds without a heartbeat before the node is Unknown and its pods not ready",
    )
    parser.add_argument(
        "--pod-eviction-timeout",
        type=float,
        default=defaults.pod_eviction_timeout,
        help="seconds on an unreachable or not-ready node before pods are evicted",
    )
    parser.add_argument(
        "--node-monitor-period",
        type=float,
        default=defaults.node_monitor_period,
        help="seconds between node health checks",
    )
    parser.add_argument("--resync-period", type=float, default=30.0, help="seconds between full reconciles")
    parser.add_argument(
        "--load-balancer-ip-pool",
        default=DEFAULT_POOL,
        help="addresses for LoadBalancer Services: comma-separated first-last ranges, CIDRs or IPs",
    )
    add_hpa_arguments(parser)
    add_certificate_arguments(parser)
    add_leader_election_arguments(parser, "kube-controller-manager")


def add_certificate_arguments(parser: argparse.ArgumentParser) -> None:
    """kube-controller-manager's CA flags: the root CA to publish, and the CA that signs CSRs."""
    parser.add_argument("--root-ca-file", default="", help="cluster CA bundle published as kube-root-ca.crt")
    parser.add_argument("--cluster-signing-cert-file", default="", help="CA certificate that signs approved CSRs")
    parser.add_argument("--cluster-signing-key-file", default="", help="key of --cluster-signing-cert-file")
    parser.add_argument(
        "--cluster-signing-duration",
        type=duration_seconds,
        default=DEFAULT_SIGNING_DURATION,
        help="longest validity of signed certificates (8760h0m0s)",
    )


def certificate_settings_from(args: argparse.Namespace) -> tuple[str, ClusterSigner | None]:
    """(root CA PEM, signer) from the flags; SystemExit names a file that is missing or wrong."""
    root_ca = ""
    if args.root_ca_file:
        try:
            root_ca = Path(args.root_ca_file).read_text()
        except OSError as err:
            raise SystemExit(f"--root-ca-file {args.root_ca_file}: {err.strerror or err}") from None
        if "BEGIN CERTIFICATE" not in root_ca:
            raise SystemExit(f"--root-ca-file {args.root_ca_file}: no PEM certificate")
    if bool(args.cluster_signing_cert_file) != bool(args.cluster_signing_key_file):
        raise SystemExit("--cluster-signing-cert-file and --cluster-signing-key-file must be given together")
    if not args.cluster_signing_cert_file:
        return root_ca, None
    try:
        signer = ClusterSigner.from_files(
            Path(args.cluster_signing_cert_file), Path(args.cluster_signing_key_file), args.cluster_signing_duration
        )
    except ValueError as err:
        raise SystemExit(str(err)) from None
    return root_ca, signer


def duration_seconds(text: str) -> float:
    """A kube-controller-manager duration flag: Go form ("15s", "5m0s") or plain seconds ("15")."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_hpa_arguments(parser: argparse.ArgumentParser) -> None:
    """kube-controller-manager's HPA flags, with its defaults."""
    hpa = HpaSettings()
    parser.add_argument(
        "--horizontal-pod-autoscaler-sync-period",
        type=duration_seconds,
        default=hpa.sync_period,
        help="how often each HPA is reconciled (15s)",
    )
    parser.add_argument(
        "--horizontal-pod-autoscaler-tolerance",
        type=float,
        default=hpa.tolerance,
        help="minimum change of the usage/target ratio, either way, before the HPA scales (0.1)",
    )
    parser.add_argument(
        "--horizontal-pod-autoscaler-downscale-stabilization",
        type=duration_seconds,
        default=hpa.downscale_stabilization,
        help="scale-down stabilisation window for HPAs whose behavior sets none (5m0s)",
    )
    parser.add_argument(
        "--horizontal-pod-autoscaler-cpu-initialization-period",
        type=duration_seconds,
        default=hpa.cpu_initialization_period,
        help="after a pod starts, how long its cpu samples count only once it has been Ready for a window (5m0s)",
    )
    parser.add_argument(
        "--horizontal-pod-autoscaler-initial-readiness-delay",
        type=duration_seconds,
        default=hpa.initial_readiness_delay,
        help="after a pod starts, how long its readiness may flap without it counting as never ready (30s)",
    )


def hpa_settings_from(args: argparse.Namespace) -> HpaSettings:
    """Validate the HPA flags; SystemExit names the one that is wrong."""
    period = args.horizontal_pod_autoscaler_sync_period
    if period <= 0:
        raise SystemExit(f"--horizontal-pod-autoscaler-sync-period must be positive, got {period}")
    for flag in (
        "horizontal_pod_autoscaler_tolerance",
        "horizontal_pod_autoscaler_downscale_stabilization",
        "horizontal_pod_autoscaler_cpu_initialization_period",
        "horizontal_pod_autoscaler_initial_readiness_delay",
    ):
        if getattr(args, flag) < 0:
            raise SystemExit(f"--{flag.replace('_', '-')} must not be negative, got {getattr(args, flag)}")
    return HpaSettings(
        sync_period=args.horizontal_pod_autoscaler_sync_period,
        tolerance=args.horizontal_pod_autoscaler_tolerance,
        downscale_stabilization=args.horizontal_pod_autoscaler_downscale_stabilization,
        cpu_initialization_period=args.horizontal_pod_autoscaler_cpu_initialization_period,
        initial_readiness_delay=args.horizontal_pod_autoscaler_initial_readiness_delay,
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Validate the flags; SystemExit names the one that is wrong."""
    try:
        parse_cluster_cidr(args.cluster_cidr, args.node_cidr_mask_size)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    try:
        parse_pool(args.load_balancer_ip_pool)
    except ValueError as err:
        raise SystemExit(f"--load-balancer-ip-pool: {err}") from None
    for flag in ("node_monitor_grace_period", "pod_eviction_timeout", "node_monitor_period", "resync_period"):
        if getattr(args, flag) <= 0:
            raise SystemExit(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    root_ca, signer = certificate_settings_from(args)
    return Settings(
        cluster_cidr=args.cluster_cidr,
        node_cidr_mask_size=args.node_cidr_mask_size,
        node_monitor_grace_period=args.node_monitor_grace_period,
        pod_eviction_timeout=args.pod_eviction_timeout,
        node_monitor_period=args.node_monitor_period,
        resync_period=args.resync_period,
        load_balancer_pool=args.load_balancer_ip_pool,
        hpa=hpa_settings_from(args),
        root_ca=root_ca,
        signer=signer,
    )


async def _main(settings: Settings, election: LeaderElectionConfig | None, client: Client, health_port: int) -> int:
    async with client:
        current: list[ControllerManager] = []  # the manager of the current leadership term, if leading

        async def lead() -> None:
            manager = ControllerManager(client, settings)
            current[:] = [manager]
            try:
                await manager.run()
            finally:
                current.clear()

        task = asyncio.create_task(run_elected(client, election, lead))
        runner = await serve_health(
            "0.0.0.0",
            health_port,
            {"controllers": lambda: not task.done() and all(not m.tasks or m.healthy() for m in current)},
        )
        # SIGTERM (pocket down, systemd stop) ends the task cleanly, so the leader hands its Lease back.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            return 0
        finally:
            await runner.cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    election = leader_election_config(args)
    try:
        client = api_client(args, "pocket-controller-manager")
    except ValueError as err:
        log.error("%s", err)
        return 2
    try:
        return asyncio.run(_main(settings, election, client, args.health_port))
    except KeyboardInterrupt:
        return 0


COMMAND = Command(
    "controller-manager", "Run the ReplicaSet, Deployment, Endpoints, node, GC and HPA controllers", add_arguments, run
)
