"""`pocket kubelet`: the node agent's flags and its main loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

from control.api.errors import ApiError
from control.cli_support import Command, add_api_arguments, api_client, bool_flag, duration_flag
from control.client import Client, Informer, Object
from control.clock import RealClock
from control.observability import serve_health
from kubelet.network import NodeNetwork
from kubelet.node import (
    NodeAgent,
    NodeIdentity,
    allocatable,
    machine_capacity,
    parse_labels,
    parse_reserved,
    parse_taints,
)
from kubelet.bootstrap import CLIENT_FILE, BootstrapError, bootstrap_client_certificate, rotate_forever
from kubelet.pods import NodeSettings, PodWorkers
from kubelet.runtime import DockerRuntime, RuntimeFailure
from kubelet.auth import AUTHORIZATION_MODES, AuthSettings, KubeletAuth
from kubelet.server import KubeletServer, serving_context

log = logging.getLogger("kubelet")
REGISTER_RETRY_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_arguments(parser)
    parser.add_argument("--node-name", required=True)
    parser.add_argument(
        "--bootstrap-kubeconfig",
        default="",
        help="kubeconfig with a bootstrap token: used to get this node's client certificate when --kubeconfig "
        "does not exist yet (or its certificate expired); --kubeconfig is then written",
    )
    parser.add_argument(
        "--cert-dir", type=Path, default=None, help="where the bootstrapped client certificate goes (<root-dir>/pki)"
    )
    parser.add_argument("--node-ip", required=True, help="this node's InternalIP; the HTTP server listens here")
    parser.add_argument(
        "--docker-host", required=True, help="this node's dockerd, e.g. unix:///run/pocketkube/w1/docker.sock"
    )
    parser.add_argument("--root-dir", required=True, type=Path, help="kubelet state: IPAM, per-pod resolv.conf/hosts")
    parser.add_argument("--cluster-dns", default="10.96.0.10", help="comma-separated cluster DNS server IPs")
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf", help="the node's resolv.conf ('' for none)")
    parser.add_argument("--pod-infra-image", default="pocketkube/pause:latest")
    parser.add_argument("--port", type=int, default=10250)
    parser.add_argument("--tls-cert-file", default="", help="serving certificate: HTTPS on --port (else plain HTTP)")
    parser.add_argument("--tls-private-key-file", default="", help="key of --tls-cert-file")
    parser.add_argument(
        "--client-ca-file", default="", help="CA that signs callers' client certificates (CN user, O groups)"
    )
    defaults = AuthSettings()
    parser.add_argument(
        "--anonymous-auth",
        type=bool_flag,
        nargs="?",
        const=True,
        default=defaults.anonymous,
        help="serve callers without credentials as system:anonymous (default false: 401)",
    )
    parser.add_argument(
        "--authentication-token-webhook",
        type=bool_flag,
        nargs="?",
        const=True,
        default=defaults.token_webhook,
        help="check bearer tokens with a TokenReview to the API server (default true)",
    )
    parser.add_argument(
        "--authentication-token-webhook-cache-ttl",
        type=duration_flag,
        default=defaults.token_cache_ttl,
        help="how long TokenReview answers are kept (2m0s)",
    )
    parser.add_argument(
        "--authorization-mode",
        choices=AUTHORIZATION_MODES,
        default=defaults.authorization_mode,
        help="Webhook: a SubjectAccessReview per caller and action (default); AlwaysAllow: every authenticated caller",
    )
    parser.add_argument(
        "--authorization-webhook-cache-authorized-ttl",
        type=duration_flag,
        default=defaults.authorized_ttl,
        help="how long an allowed SubjectAccessReview is kept (5m0s)",
    )
    parser.add_argument(
        "--authorization-webhook-cache-unauthorized-ttl",
        type=duration_flag,
        default=defaults.unauthorized_ttl,
        help="how long a denied SubjectAccessReview is kept (30s)",
    )
    parser.add_argument("--healthz-port", type=int, default=10248, help="plain-HTTP /healthz port (0: none)")
    parser.add_argument("--healthz-bind-address", default="127.0.0.1", help="address of the /healthz server")
    parser.add_argument("--node-labels", default="", help="extra Node labels: k=v,k2=v2")
    parser.add_argument("--register-with-taints", default="", help="Node taints at registration: key=value:Effect,...")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds between Lease renewals")
    parser.add_argument(
        "--system-reserved", default="", help="resources kept off allocatable for the node itself: cpu=500m,memory=1Gi"
    )
    parser.add_argument("--backoff-initial", type=float, default=10.0, help="first CrashLoopBackOff delay (seconds)")
    parser.add_argument("--backoff-max", type=float, default=300.0, help="CrashLoopBackOff cap (seconds)")


def _node_routes(nodes: list[Object], own: str) -> dict[str, str]:
    """podCIDR -> InternalIP of every other node that has both."""
    routes = {}
    for node in nodes:
        if node["metadata"]["name"] == own:
            continue
        cidr = node.get("spec", {}).get("podCIDR")
        ip = next(
            (a["address"] for a in node.get("status", {}).get("addresses") or [] if a["type"] == "InternalIP"), None
        )
        if cidr and ip:
            routes[cidr] = ip
    return routes


async def _existing_node(client: Client, name: str) -> Object | None:
    try:
        return await client.get("nodes", name)
    except ApiError as err:
        if err.code == 404:
            return None
        raise


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM (or cancellation); the pods' containers keep running for the next kubelet to adopt."""
    main = asyncio.current_task()
    if main is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    identity = NodeIdentity(
        args.node_name,
        args.node_ip,
        args.port,
        parse_labels(args.node_labels),
        parse_taints(args.register_with_taints),
        parse_reserved(args.system_reserved),
    )
    node_resolv = Path(args.resolv_conf).read_text() if args.resolv_conf else None
    tls = _serving_tls(args)
    cert_dir = args.cert_dir or args.root_dir / "pki"
    if args.bootstrap_kubeconfig:
        if not args.kubeconfig:
            raise ValueError("--bootstrap-kubeconfig needs --kubeconfig: the path the node's own kubeconfig goes to")
        bootstrap = Path(args.bootstrap_kubeconfig)
        await bootstrap_client_certificate(args.node_name, bootstrap, Path(args.kubeconfig), cert_dir)
    runtime = DockerRuntime(args.docker_host)
    client = api_client(args, f"kubelet/{args.node_name}")
    network = NodeNetwork(args.root_dir)
    # a bootstrapped client certificate is the kubelet's own to renew, as upstream's --rotate-certificates
    rotation = (
        asyncio.create_task(rotate_forever(client, args.node_name, cert_dir / CLIENT_FILE))
        if args.bootstrap_kubeconfig
        else None
    )
    try:
        await _run_agent(args, identity, node_resolv, client, runtime, network, tls)
    finally:
        if rotation is not None:
            rotation.cancel()
            await asyncio.gather(rotation, return_exceptions=True)
        await network.close()
        await runtime.close()
        await client.close()


async def _run_agent(
    args: argparse.Namespace,
    identity: NodeIdentity,
    node_resolv: str | None,
    client: Client,
    runtime: DockerRuntime,
    network: NodeNetwork,
    tls: ssl.SSLContext | None,
) -> None:
    """Register, bring the pod network up once the podCIDR is known, then run the pods."""
    clock = RealClock()
    settings = NodeSettings(
        node_name=args.node_name,
        node_ip=args.node_ip,
        root_dir=args.root_dir,
        cluster_dns=[s for s in args.cluster_dns.split(",") if s],
        cluster_domain=args.cluster_domain,
        node_resolv_conf=node_resolv,
        infra_image=args.pod_infra_image,
        backoff_initial=args.backoff_initial,
        backoff_max=args.backoff_max,
        allocatable=allocatable(machine_capacity(), identity.reserved),
    )
    services = Informer(client, "services")
    nodes = Informer(client, "nodes")
    pods = Informer(client, "pods", field_selector=f"spec.nodeName={args.node_name}")
    workers = PodWorkers(client, runtime, network, settings, services.items, clock)
    network_up = asyncio.Event()
    agent = NodeAgent(
        client,
        identity,
        await runtime.version(),
        clock,
        args.heartbeat_interval,
        network_up.is_set,
    )
    tasks: list[asyncio.Task[Any]] = []
    checks = {"loops": lambda: not any(t.done() for t in tasks)}
    auth = KubeletAuth(client, args.node_name, clock, auth_settings(args)) if tls is not None else None
    server = KubeletServer(runtime, workers.known_pods, args.node_name, checks, tls, auth)

    async def bring_network_up(own: Object | None) -> None:
        cidr = (own or {}).get("spec", {}).get("podCIDR")
        if cidr and not network_up.is_set():
            await network.ensure_bridge(cidr)
            network_up.set()
            log.info("pod network up on %s", cidr)

    async def on_nodes(_kind: str, _obj: Object, _prev: Object | None) -> None:
        await bring_network_up(nodes.get(args.node_name))
        await network.sync_routes(_node_routes(nodes.items(), args.node_name))

    def on_pods(kind: str, pod: Object, _prev: Object | None) -> None:
        if kind == "DELETED":
            workers.remove(pod)
        else:
            workers.update(pod)

    nodes.add_handler(on_nodes)
    pods.add_handler(on_pods)
    await server.start(args.node_ip, args.port)
    health = await serve_health(args.healthz_bind_address, args.healthz_port, checks) if args.healthz_port else None
    try:
        while True:
            try:
                # A restarted kubelet's Node has its podCIDR already: with the network up before the first
                # status, the Node never turns NotReady (which would take its pods out of Endpoints).
                await bring_network_up(await _existing_node(client, args.node_name))
                await agent.register()
                break
            except ApiError as err:
                log.warning("cannot register node %s yet: %s", args.node_name, err)
                await asyncio.sleep(REGISTER_RETRY_SECONDS)
        tasks += [asyncio.create_task(t.run()) for t in (services, nodes, agent)]
        await network_up.wait()
        await services.synced.wait()
        tasks.append(asyncio.create_task(pods.run()))
        tasks.append(asyncio.create_task(workers.housekeeping(pods.synced)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await workers.close()
        await server.stop()
        if health is not None:
            await health.cleanup()


def _serving_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """HTTPS for the kubelet API when the three TLS flags are given; ValueError names what is missing."""
    given = {
        f: getattr(args, f.lstrip("-").replace("-", "_"))
        for f in ("--tls-cert-file", "--tls-private-key-file", "--client-ca-file")
    }
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} missing: HTTPS needs --tls-cert-file, --tls-private-key-file and --client-ca-file"
        )
    try:
        return serving_context(args.tls_cert_file, args.tls_private_key_file, args.client_ca_file)
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"kubelet TLS files do not load: {err}") from None


def auth_settings(args: argparse.Namespace) -> AuthSettings:
    """Who may call the kubelet API (HTTPS only): the authentication and authorization flags."""
    return AuthSettings(
        anonymous=args.anonymous_auth,
        token_webhook=args.authentication_token_webhook,
        token_cache_ttl=args.authentication_token_webhook_cache_ttl,
        authorization_mode=args.authorization_mode,
        authorized_ttl=args.authorization_webhook_cache_authorized_ttl,
        unauthorized_ttl=args.authorization_webhook_cache_unauthorized_ttl,
    )


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(serve(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except (ValueError, OSError, RuntimeFailure, BootstrapError) as err:
        log.error("kubelet: %s", err)
        return 2
    return 0


COMMAND = Command("kubelet", "Node agent: runs the pods bound to this node on its dockerd", add_arguments, run)
