"""What runs on a node: for a role and a node, its components' command lines.

This is the one description of a node, independent of how it is run: the
local cluster launches each command inside the node's network namespace
(`nsenter --net`), and a VM bring-up can turn the same list into systemd
units. Nothing here starts a process or touches the machine.

Given the cluster's PKI (`pocket.certs.ClusterPKI`), every connection is TLS:
etcd requires client certificates, the API server serves HTTPS only, each
component authenticates with its own kubeconfig, kubelets serve HTTPS to the
API server alone. A node that joins with a bootstrap token (`pocket node setup`
on a worker VM) also gets `--bootstrap-kubeconfig`: its kubelet asks for its own
client certificate and writes the node kubeconfig its kproxy then uses. Without
a PKI (in-process tests only) the API is plain HTTP.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pocket.config import (
    API_PORT,
    CLIENT_IP,
    CLUSTER_CIDR,
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    CONTROL_PLANE_LABEL,
    CONTROL_PLANE_ROLE,
    CONTROLLER_MANAGER_HEALTH_PORT,
    DNS_PORT,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    KDNS_HEALTH_PORT,
    KPROXY_HEALTH_PORT,
    KUBELET_PORT,
    NODE_CIDR_MASK_SIZE,
    NODE_LOCAL_API_PORT,
    REGISTRY_PORT,
    SCHEDULER_HEALTH_PORT,
    SERVICE_CIDR,
    ClusterConfig,
    NodeSpec,
)
from pocket.certs import (
    APISERVER_ETCD_CLIENT,
    APISERVER_KUBELET_CLIENT,
    CONTROLLER_MANAGER as CONTROLLER_MANAGER_IDENTITY,
    ETCD_SERVER,
    KDNS as KDNS_IDENTITY,
    SCHEDULER as SCHEDULER_IDENTITY,
    ClusterPKI,
    kubelet_serving,
    node_identity,
)
from pocket.images import SANDBOX_IMAGE
from control.pki import CA_NAME

ETCD = "etcd"
REGISTRY = "registry"
DOCKERD = "dockerd"
APISERVER = "apiserver"
CONTROLLER_MANAGER = "controller-manager"
SCHEDULER = "scheduler"
KDNS = "kdns"
KUBELET = "kubelet"
KPROXY = "kproxy"
API_FORWARD = "api-forward"  # HA only: the node's forwarder to the API servers (see api_forward)

CONTROL_PLANE_SERVICES = (APISERVER, CONTROLLER_MANAGER, SCHEDULER, KDNS)
NODE_AGENTS = (KUBELET, KPROXY)
ETCD_METRICS_PORT = 2381  # plain /health on 127.0.0.1 (kubeadm's --listen-metrics-urls), for readiness checks
KUBELET_HEALTHZ_PORT = 10248  # the kubelet's plain /healthz on 127.0.0.1; its API port needs a certificate
# Who may do what: nodes by the Node authorizer (+ NodeRestriction), everyone else by RBAC roles.
AUTHORIZATION = ("--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction")


@dataclass(frozen=True)
class Component:
    """One long-running process of a node.

    `health_url` is an HTTP URL reachable from inside the node network that
    answers 200 once the process serves (None: no HTTP health, e.g. dockerd,
    checked through its socket). `config_files` are (path, content) pairs the
    process reads, to be written before it starts. `own_pid_files` are pid
    files the program (or its helper) writes itself and trusts on the next
    start (dockerd, its containerd), to be cleared if a crash left them behind.
    """

    name: str
    argv: tuple[str, ...]
    health_url: str | None = None
    config_files: tuple[tuple[Path, str], ...] = field(default=())
    own_pid_files: tuple[Path, ...] = field(default=())


def pocket_argv(python: str, component: str, *args: str) -> tuple[str, ...]:
    """How a pocketkube component is run: `<python> -m pocket.cli <component> ...`."""
    return (python, "-m", "pocket.cli", component, *args)


def daemon_json(cluster: ClusterConfig, storage_driver: str) -> dict[str, object]:
    """dockerd's config: Docker Hub names resolve through the control plane's registry."""
    return {
        "registry-mirrors": [f"http://{cluster.registry}"],
        "insecure-registries": [cluster.registry],
        "storage-driver": storage_driver,
    }


def registry_config(cluster: ClusterConfig, node: NodeSpec) -> str:
    """docker-registry's config.yml: filesystem storage, plain HTTP on the control-plane IP."""
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: warn\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {cluster.registry_dir / 'data'}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: {node.ip}:{REGISTRY_PORT}\n"
    )


def resolv_conf() -> str:
    """A node's upstream resolver: the client address, where nothing listens, so lookups fail fast."""
    return f"nameserver {CLIENT_IP}\n"


def etcd_peer_url(cluster: ClusterConfig, node: NodeSpec, pki: ClusterPKI | None) -> str:
    """Where a member's peers reach it: loopback for a lone member, its node IP (TLS with a PKI) in HA."""
    if not cluster.highly_available:
        return f"http://127.0.0.1:{ETCD_PEER_PORT}"
    return f"{'https' if pki else 'http'}://{node.ip}:{ETCD_PEER_PORT}"


def etcd(cluster: ClusterConfig, node: NodeSpec, pki: ClusterPKI | None = None) -> Component:
    """etcd on the control plane's addresses only; with the PKI, TLS and client certificates required.

    With several control planes each runs a member of one etcd cluster; members authenticate each other
    with certificates of the cluster CA (etcd-server is valid for every member's IP, as server and client).
    """
    peer = etcd_peer_url(cluster, node, pki)
    scheme = "https" if pki else "http"
    tls: tuple[str, ...] = ()
    if pki:
        tls = (
            "--client-cert-auth",
            "--trusted-ca-file", str(pki.ca),
            "--cert-file", str(pki.cert(ETCD_SERVER)),
            "--key-file", str(pki.key(ETCD_SERVER)),
            "--listen-metrics-urls", f"http://127.0.0.1:{ETCD_METRICS_PORT}",
        )
        if cluster.highly_available:
            tls += (
                "--peer-client-cert-auth",
                "--peer-trusted-ca-file", str(pki.ca),
                "--peer-cert-file", str(pki.cert(ETCD_SERVER)),
                "--peer-key-file", str(pki.key(ETCD_SERVER)),
            )
    members = ",".join(f"{member.name}={etcd_peer_url(cluster, member, pki)}" for member in cluster.control_planes)
    return Component(
        ETCD,
        (
            "etcd",
            "--name", node.name,
            "--data-dir", str(cluster.etcd_member_dir(node.name)),
            "--listen-client-urls", f"{scheme}://{node.ip}:{ETCD_CLIENT_PORT},{scheme}://127.0.0.1:{ETCD_CLIENT_PORT}",
            "--advertise-client-urls", f"{scheme}://{node.ip}:{ETCD_CLIENT_PORT}",
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", members,
            "--initial-cluster-state", "new",
            *tls,
        ),
        health_url=f"http://127.0.0.1:{ETCD_METRICS_PORT}/health" if pki else f"http://{node.ip}:{ETCD_CLIENT_PORT}/health",
    )


def registry(cluster: ClusterConfig, node: NodeSpec) -> Component:
    config_path = cluster.registry_dir / "config.yml"
    return Component(
        REGISTRY,
        ("/usr/bin/docker-registry", "serve", str(config_path)),
        health_url=f"http://{node.ip}:{REGISTRY_PORT}/v2/",
        config_files=((config_path, registry_config(cluster, node)),),
    )


def dockerd(cluster: ClusterConfig, node: NodeSpec, storage_driver: str) -> Component:
    run = cluster.node_run_dir(node.name)
    config_path = cluster.node_dir(node.name) / "daemon.json"
    return Component(
        DOCKERD,
        (
            "dockerd",
            "--data-root", str(cluster.node_dir(node.name) / "docker"),
            "--exec-root", str(run / "docker"),
            "-H", cluster.docker_host(node.name),
            "--pidfile", str(run / "docker.pid"),
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--config-file", str(config_path),
        ),
        config_files=((config_path, json.dumps(daemon_json(cluster, storage_driver), indent=2) + "\n"),),
        own_pid_files=(run / "docker.pid", run / "docker" / "containerd" / "containerd.pid"),
    )


def api_forward(cluster: ClusterConfig, node: NodeSpec, python: str) -> Component:
    """HA: a TCP forwarder on the node's 127.0.0.1 to the first API server that answers, failing over.

    Every component of the node reaches the API through it (the shared kubeconfigs say
    https://127.0.0.1:<NODE_LOCAL_API_PORT>), as kubespray's per-node localhost load balancer does:
    the `kubernetes` ClusterIP cannot serve here, since kproxy itself needs the API to program it.
    """
    listen = f"127.0.0.1:{NODE_LOCAL_API_PORT}"
    return Component(
        API_FORWARD,
        pocket_argv(
            python, "forward",
            "--listen", listen,
            "--netns", cluster.node_netns(node.name),
            "--target", ",".join(cluster.api_targets),
        ),
        health_url=f"https://{listen}/healthz",
    )


def api_access(cluster: ClusterConfig, pki: ClusterPKI | None, identity: str) -> tuple[str, ...]:
    """How a component reaches the API server: its own kubeconfig (HTTPS), or the plain URL without a PKI."""
    if pki:
        return ("--kubeconfig", str(pki.kubeconfig(identity)))
    return ("--api-server", cluster.api_server_url)


def apiserver_security(pki: ClusterPKI | None) -> tuple[str, ...]:
    """etcd over TLS, HTTPS with client certificates, kubelets over HTTPS, Secrets encrypted at rest."""
    if not pki:
        return ("--etcd-servers", f"http://127.0.0.1:{ETCD_CLIENT_PORT}")
    return (
        "--etcd-servers", f"https://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--etcd-cafile", str(pki.ca),
        "--etcd-certfile", str(pki.cert(APISERVER_ETCD_CLIENT)),
        "--etcd-keyfile", str(pki.key(APISERVER_ETCD_CLIENT)),
        "--tls-cert-file", str(pki.cert(APISERVER)),
        "--tls-private-key-file", str(pki.key(APISERVER)),
        "--client-ca-file", str(pki.ca),
        "--kubelet-client-certificate", str(pki.cert(APISERVER_KUBELET_CLIENT)),
        "--kubelet-client-key", str(pki.key(APISERVER_KUBELET_CLIENT)),
        "--kubelet-certificate-authority", str(pki.ca),
        "--encryption-provider-config", str(pki.encryption_config),
        "--service-account-key-file", str(pki.service_account_public),
        "--service-account-signing-key-file", str(pki.service_account_private),
        *AUTHORIZATION,
    )


def controller_manager_certificates(pki: ClusterPKI | None) -> tuple[str, ...]:
    """The CA the controller manager publishes (kube-root-ca.crt) and signs approved CSRs with."""
    if not pki:
        return ()
    return (
        "--root-ca-file", str(pki.ca),
        "--cluster-signing-cert-file", str(pki.ca),
        "--cluster-signing-key-file", str(pki.key(CA_NAME)),
    )


def control_plane_services(
    cluster: ClusterConfig, node: NodeSpec, python: str, pki: ClusterPKI | None = None
) -> list[Component]:
    services = [
        Component(
            APISERVER,
            pocket_argv(
                python, APISERVER,
                *apiserver_security(pki),
                "--bind-address", "0.0.0.0",
                "--port", str(API_PORT),
                "--advertise-address", node.ip,
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--kubelet-port", str(KUBELET_PORT),
            ),
            health_url=f"{'https' if pki else 'http'}://{node.ip}:{API_PORT}/healthz",
        ),
        Component(
            CONTROLLER_MANAGER,
            pocket_argv(
                python, CONTROLLER_MANAGER,
                *api_access(cluster, pki, CONTROLLER_MANAGER_IDENTITY),
                "--cluster-cidr", CLUSTER_CIDR,
                "--node-cidr-mask-size", str(NODE_CIDR_MASK_SIZE),
                "--health-port", str(CONTROLLER_MANAGER_HEALTH_PORT),
                *controller_manager_certificates(pki),
            ),
            health_url=f"http://{node.ip}:{CONTROLLER_MANAGER_HEALTH_PORT}/healthz",
        ),
        Component(
            SCHEDULER,
            pocket_argv(
                python, SCHEDULER,
                *api_access(cluster, pki, SCHEDULER_IDENTITY),
                "--health-port", str(SCHEDULER_HEALTH_PORT),
            ),
            health_url=f"http://{node.ip}:{SCHEDULER_HEALTH_PORT}/healthz",
        ),
    ]
    if node in dns_nodes(cluster):
        services.append(kdns(cluster, node, python, pki))
    return services


def dns_nodes(cluster: ClusterConfig) -> tuple[NodeSpec, ...]:
    """Where kdns runs: the control plane and the first worker, both behind kube-dns, so either can die."""
    workers = [n for n in cluster.nodes if n.role != CONTROL_PLANE_ROLE]
    return (cluster.control_plane, *workers[:1])


def kdns(cluster: ClusterConfig, node: NodeSpec, python: str, pki: ClusterPKI | None = None) -> Component:
    """kdns on a node's own IP, ready (/ready) once it has synced from the API server."""
    return Component(
        KDNS,
        pocket_argv(
            python, KDNS,
            *api_access(cluster, pki, KDNS_IDENTITY),
            "--listen", node.ip,
            "--port", str(DNS_PORT),
            "--cluster-domain", CLUSTER_DOMAIN,
            "--resolv-conf", str(cluster.resolv_conf(node.name)),
            "--health-port", str(KDNS_HEALTH_PORT),
            "--ttl", "30",
        ),
        health_url=f"http://{node.ip}:{KDNS_HEALTH_PORT}/ready",
        config_files=((cluster.resolv_conf(node.name), resolv_conf()),),
    )


def node_agents(
    cluster: ClusterConfig,
    node: NodeSpec,
    python: str,
    pki: ClusterPKI | None = None,
    bootstrap_kubeconfig: Path | None = None,
) -> list[Component]:
    """kubelet and kproxy, both with the node's identity (system:node:<name>).

    With `bootstrap_kubeconfig` the kubelet gets that identity itself (TLS bootstrap) and writes the node's
    kubeconfig, which kproxy reads: one identity per node, as for nodes whose certificate the bring-up made.
    """
    kubelet_args = [
        *api_access(cluster, pki, node_identity(node.name)),
        *(("--bootstrap-kubeconfig", str(bootstrap_kubeconfig)) if bootstrap_kubeconfig else ()),
        "--node-name", node.name,
        "--node-ip", node.ip,
        "--docker-host", cluster.docker_host(node.name),
        "--root-dir", str(cluster.node_dir(node.name) / "kubelet"),
        "--cluster-dns", CLUSTER_DNS_IP,
        "--cluster-domain", CLUSTER_DOMAIN,
        "--resolv-conf", str(cluster.resolv_conf(node.name)),
        "--pod-infra-image", SANDBOX_IMAGE,
        "--port", str(KUBELET_PORT),
        # Frequent enough that the controller manager's 8 s grace period tolerates three late renewals.
        "--heartbeat-interval", "2",
    ]
    health_url = f"http://{node.ip}:{KUBELET_PORT}/healthz"
    if pki:
        kubelet_args += [
            "--tls-cert-file", str(pki.cert(kubelet_serving(node.name))),
            "--tls-private-key-file", str(pki.key(kubelet_serving(node.name))),
            "--client-ca-file", str(pki.ca),
            "--healthz-port", str(KUBELET_HEALTHZ_PORT),
        ]
        health_url = f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz"
    if node.role == CONTROL_PLANE_ROLE:
        kubelet_args += [
            "--node-labels", f"{CONTROL_PLANE_LABEL}=",
            "--register-with-taints", f"{CONTROL_PLANE_LABEL}:NoSchedule",
        ]
    return [
        Component(
            KUBELET,
            pocket_argv(python, KUBELET, *kubelet_args),
            health_url=health_url,
            config_files=((cluster.resolv_conf(node.name), resolv_conf()),),
        ),
        Component(
            KPROXY,
            pocket_argv(
                python, KPROXY,
                *api_access(cluster, pki, node_identity(node.name)),
                "--node-name", node.name,
                "--node-ip", node.ip,
                "--cluster-cidr", CLUSTER_CIDR,
                "--health-port", str(KPROXY_HEALTH_PORT),
                "--iptables", "legacy",
                "--mode", cluster.proxy_mode,
            ),
            health_url=f"http://{node.ip}:{KPROXY_HEALTH_PORT}/healthz",
        ),
    ]


def node_components(
    cluster: ClusterConfig,
    node: NodeSpec,
    storage_driver: str = "overlay2",
    python: str = sys.executable,
    pki: ClusterPKI | None = None,
    bootstrap_kubeconfig: Path | None = None,
) -> list[Component]:
    """Every component of a node, in start order (each may need the ones before it); TLS throughout with `pki`.

    `bootstrap_kubeconfig`: the node joins with a bootstrap token (see `node_agents`).
    """
    components: list[Component] = []
    if node.role == CONTROL_PLANE_ROLE:
        components.append(etcd(cluster, node, pki))
    if node == cluster.control_plane:
        components.append(registry(cluster, node))
    components.append(dockerd(cluster, node, storage_driver))
    if node.role == CONTROL_PLANE_ROLE:
        components += control_plane_services(cluster, node, python, pki)
    if cluster.highly_available:
        components.append(api_forward(cluster, node, python))
    components += node_agents(cluster, node, python, pki, bootstrap_kubeconfig)
    if node.role != CONTROL_PLANE_ROLE and node in dns_nodes(cluster):
        components.append(kdns(cluster, node, python, pki))
    return components
