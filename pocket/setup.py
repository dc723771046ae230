"""`pocket node setup`: make this machine a node, with systemd units built from the node description.

The local cluster runs `pocket.node.node_components` inside network
namespaces; a VM (or any Debian machine booted with systemd) runs the very
same components, each as a `pocket-<name>.service` unit whose ExecStart is
the component's command line. Setup is idempotent: a file is written only if
its content differs, and only units whose unit file or configuration changed
are restarted, so re-running it on a working node changes nothing.

Security is the local cluster's (pocket/certs.py, pocket/node.py with a PKI): the control plane makes the
cluster PKI, runs etcd with client certificates, the API server HTTPS-only with Node,RBAC, NodeRestriction,
encryption at rest and service-account keys, and every control-plane component with its own kubeconfig.

Joining works as kubeadm's: the join token names a bootstrap token
(`<id>.<secret>`, derived from it), which the control plane stores as the
Secret `kube-system/bootstrap-token-<id>` and uses to sign the
`kube-public/cluster-info` ConfigMap (the cluster's kubeconfig: server and
CA) with a detached JWS under `jws-kubeconfig-<id>`, as kubeadm's bootstrap
signer does.  A worker fetches cluster-info (not yet trusting the server, as
kubeadm's token discovery) and checks the signature with its own token, so it
never joins a stale or foreign cluster and pins the CA it vouches for; the
verified CA and the token are its kubelet's `--bootstrap-kubeconfig`
(kubelet/bootstrap.py: a CSR for `system:node:<name>`, approved by the
controller manager), and kproxy uses the kubeconfig the kubelet writes.

What a worker cannot ask for by CSR, its kubelet serving certificate (the API
server verifies kubelets against the cluster CA) and, where kdns runs, kdns's
identity, the control plane makes and uploads encrypted, as `kubeadm init
--upload-certs` does: AES-GCM with a key derived from the join token (not
from the bootstrap token, which travels to the API server), in a Secret only
bootstrap tokens of the default node group may read.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control import pki as x509_pki
from control.api.errors import ApiError
from control.api.timestamps import parse_time
from control.apiserver.bootstraptokens import (
    GROUP as BOOTSTRAPPERS_GROUP,
    KUBEADM_GROUP,
    NAMESPACE as TOKEN_NAMESPACE,
    token_secret,
)
from control.client import Client, KubeconfigError, ssl_context_for
from pocket.cluster import (
    PREREQUISITES,
    choose_storage_driver,
    docker_client,
    docker_ok,
    ensure_kube_dns,
    http_ok,
)
from pocket.config import CONTROL_PLANE_ROLE, NODE_SUBNET, WORKER_ROLE, ClusterConfig, NodeSpec
from pocket.images import (
    BASE_IMAGES,
    BUSYBOX_BINARY,
    BUSYBOX_IMAGE,
    SANDBOX_IMAGE,
    PushError,
    import_images,
    push_images,
)
from pocket.certs import (
    ADMIN,
    KDNS as KDNS_IDENTITY,
    ClusterPKI,
    api_server_url,
    cluster_pki,
    ensure_cluster_pki,
    kubelet_serving,
    node_identity,
)
from pocket.kubeconfig import Credentials, kubeconfig as kubeconfig_document, write_kubeconfig
from pocket.node import APISERVER, DOCKERD, KUBELET, Component, dns_nodes, node_components

UNIT_DIR = Path("/etc/systemd/system")
# Tools `pocket up` needs on the host to build images; a node set up here pulls images, it builds none.
IMAGE_BUILD_TOOLS = ("debootstrap",)
SYSCTL_FILE = Path("/etc/sysctl.d/90-pocketkube.conf")
SYSCTL_TEXT = "# pocket node setup: pods are routed through this node\nnet.ipv4.ip_forward = 1\n"
# br_netfilter: the kubelet sets bridge-nf-call-iptables, so kproxy's rules see traffic between pods on cbr0.
KERNEL_MODULES = ("br_netfilter", "overlay")
MODULES_FILE = Path("/etc/modules-load.d/pocketkube.conf")
MODULES_TEXT = "# pocket node setup\n" + "".join(f"{module}\n" for module in KERNEL_MODULES)
# Distro services that would hold the ports and roles of the node's own units.
DISTRO_SERVICES = ("docker.socket", "docker.service", "etcd.service", "docker-registry.service")
CLUSTER_INFO = "cluster-info"
CLUSTER_INFO_NAMESPACE = "kube-public"
JWS_PREFIX = "jws-kubeconfig-"
# kubeadm's Role and RoleBinding that let joining nodes read cluster-info (kubeadm binds system:anonymous;
# here anonymous requests get 401, so joining nodes read it with their bootstrap token).
CLUSTER_INFO_READER = "kubeadm:bootstrap-signer-clusterinfo"
# The workers' CA-made files, encrypted with the join token's key (kubeadm's kubeadm-certs Secret and its Role).
NODE_FILES_SECRET = "pocket-node-certs"
NODE_FILES_READER = "pocket:node-certs-reader"
NODE_FILES_KEY_LABEL = b"pocketkube node certificates\0"
BOOTSTRAP_USER = "tls-bootstrap-token-user"
BOOTSTRAP_IDENTITY = "bootstrap-kubelet"  # <pki>/kubeconfigs/bootstrap-kubelet.conf, after kubeadm's file
PRIVATE_SUFFIXES = (".key", ".conf")  # private keys, and kubeconfigs embedding them or a token: 0600
BOOTSTRAP_TOKEN_TTL = 24 * 3600.0  # kubeadm's default; re-running setup on the control plane renews it
TOKEN_PATTERN = re.compile(r"[a-z0-9]{16,64}")
NODE_NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
HEALTH_TIMEOUT = 180.0  # software-emulated VMs start Python components slowly
# A joining kubelet serves only once its CSR is signed: the controller manager may still be starting.
BOOTSTRAP_TIMEOUT = 900.0
READY_TIMEOUT = 240.0
CONTROL_PLANE_TIMEOUT = 1800.0  # workers boot beside a control plane that is still being set up
POLL = 1.0


class SetupError(Exception):
    """Setup cannot continue; the message says what is wrong and where to look."""


@dataclass(frozen=True)
class Unit:
    """A systemd unit made from one component, and the files it reads."""

    component: Component
    text: str

    @property
    def name(self) -> str:
        return unit_name(self.component.name)


def unit_name(component: str) -> str:
    return f"pocket-{component}.service"


def parse_cluster_nodes(text: str) -> tuple[tuple[str, str], ...]:
    """`NAME=IP,NAME=IP,...` -> ((name, ip), ...), in the given order."""
    pairs = []
    for item in text.split(","):
        name, sep, ip = item.strip().partition("=")
        if not sep or not name or not ip:
            raise SetupError(f"--cluster-nodes wants NAME=IP,NAME=IP,..., got {item!r}")
        pairs.append((name, ip))
    return tuple(pairs)


def node_cluster(
    role: str, node_name: str, node_ip: str, control_plane_ip: str, cluster_nodes: tuple[tuple[str, str], ...] = ()
) -> tuple[ClusterConfig, NodeSpec]:
    """The cluster as this node sees it: every node of `cluster_nodes`, or else the control plane and itself.

    Knowing every node keeps per-cluster choices (which nodes run kdns, `pocket.node.dns_nodes`) the same
    on every VM as in the local cluster.
    """
    if role not in (CONTROL_PLANE_ROLE, WORKER_ROLE):
        raise SetupError(f"--role must be {CONTROL_PLANE_ROLE} or {WORKER_ROLE}, got {role!r}")
    try:
        ipaddress.IPv4Address(control_plane_ip)
    except ValueError:
        raise SetupError(f"--control-plane-ip must be an IPv4 address, got {control_plane_ip!r}") from None
    pairs = cluster_nodes or ((("control-plane", control_plane_ip),) if role == WORKER_ROLE else ()) + (
        (node_name, node_ip),)
    for name, ip in (*pairs, (node_name, node_ip)):
        if not NODE_NAME_PATTERN.fullmatch(name) or len(name) > 63:
            raise SetupError(f"node names must be DNS labels (lower-case letters, digits, '-'), got {name!r}")
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise SetupError(f"node addresses must be IPv4 addresses, got {ip!r} for {name}") from None
    if role == CONTROL_PLANE_ROLE and node_ip != control_plane_ip:
        raise SetupError(f"a control-plane node's --node-ip ({node_ip}) must equal --control-plane-ip "
                         f"({control_plane_ip})")
    if role == WORKER_ROLE and node_ip == control_plane_ip:
        raise SetupError(f"a worker's --node-ip must differ from --control-plane-ip ({control_plane_ip})")
    if (node_name, node_ip) not in pairs:
        raise SetupError(f"--cluster-nodes must list this node as {node_name}={node_ip}")
    if [ip for _, ip in pairs].count(control_plane_ip) != 1:
        raise SetupError(f"--cluster-nodes must list the control plane ({control_plane_ip}) once")
    if len({name for name, _ in pairs}) != len(pairs) or len({ip for _, ip in pairs}) != len(pairs):
        raise SetupError("--cluster-nodes lists a name or an address twice")
    nodes = tuple(NodeSpec(name, CONTROL_PLANE_ROLE if ip == control_plane_ip else WORKER_ROLE, ip)
                  for name, ip in pairs)
    return ClusterConfig(nodes=nodes), NodeSpec(node_name, role, node_ip)


def unit_text(component: Component, node: NodeSpec, cluster: ClusterConfig, after: tuple[str, ...]) -> str:
    """The unit file of one component: its command line, restarted when it exits, after what it needs."""
    ordering = " ".join(("network-online.target", *after))
    lines = [
        "# Written by `pocket node setup` from pocket/node.py; re-running setup rewrites it.",
        "[Unit]",
        f"Description=pocketkube {component.name} on {node.name}",
        f"After={ordering}",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if component.name == DOCKERD:
        # The socket lives on /run (empty after a reboot); containers outlive a dockerd restart.
        lines += [
            f"ExecStartPre=/bin/mkdir -p {cluster.node_run_dir(node.name)}",
            "Delegate=yes",
            "KillMode=process",
            "LimitNOFILE=1048576",
        ]
    lines += [
        f"ExecStart={shlex.join(component.argv)}",
        "Restart=always",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def bootstrap_kubeconfig_path(paths: ClusterPKI) -> Path:
    return paths.kubeconfig(BOOTSTRAP_IDENTITY)


def node_units(cluster: ClusterConfig, node: NodeSpec, storage_driver: str, python: str) -> list[Unit]:
    """Every component of the node as a unit, in start order; each unit is ordered after the ones before it.

    TLS throughout with the cluster PKI under `<state_dir>/pki`; a worker's kubelet joins by TLS bootstrap.
    """
    paths = cluster_pki(cluster)
    bootstrap = bootstrap_kubeconfig_path(paths) if node.role == WORKER_ROLE else None
    units = []
    before: tuple[str, ...] = ()
    for component in node_components(cluster, node, storage_driver, python, paths, bootstrap):
        units.append(Unit(component, unit_text(component, node, cluster, before)))
        before = (*before, unit_name(component.name))
    return units


def planned_files(units: list[Unit]) -> dict[Path, str]:
    """Every file setup writes (unit files, component configuration), path -> content."""
    files: dict[Path, str] = {SYSCTL_FILE: SYSCTL_TEXT, MODULES_FILE: MODULES_TEXT}
    for unit in units:
        files[UNIT_DIR / unit.name] = unit.text
        for path, content in unit.component.config_files:
            if files.get(path, content) != content:
                raise SetupError(f"two components want different contents in {path}")
            files[path] = content
    return files


def write_if_changed(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write `content` with `mode` unless the file already holds both; True if written.

    The mode is set before the content goes in, so a private key is never readable by others.
    """
    if path.exists() and path.read_text() == content and path.stat().st_mode & 0o777 == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=mode, exist_ok=True)
    path.chmod(mode)
    path.write_text(content)
    return True


def file_mode(path: Path) -> int:
    """0600 for private keys and kubeconfigs (they embed keys or tokens), 0644 for the rest."""
    return 0o600 if path.suffix in PRIVATE_SUFFIXES else 0o644


def units_to_restart(units: list[Unit], changed: set[Path]) -> list[str]:
    """Units whose unit file or one of whose configuration files changed."""
    return [
        unit.name
        for unit in units
        if UNIT_DIR / unit.name in changed or any(path in changed for path, _ in unit.component.config_files)
    ]


# -- talking to the machine --------------------------------------------------------------------


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SetupError(f"`{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def install_missing_packages(say: Callable[[str], None]) -> bool:
    """apt-get install the Debian packages a node needs (none are missing on the pocketkube box)."""
    missing = sorted({pkg for cmd, pkg in PREREQUISITES.items()
                      if cmd not in IMAGE_BUILD_TOOLS and shutil.which(cmd) is None})
    if not BUSYBOX_BINARY.exists():
        missing.append("busybox-static")
    if apparmor_enabled() and shutil.which("apparmor_parser") is None:
        missing.append("apparmor")  # with AppArmor on, dockerd starts no container without it
    if not missing:
        return False
    say(f"installing Debian packages: {' '.join(missing)}")
    run(["apt-get", "update", "-qq"])
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing])
    return True


def disable_distro_services() -> bool:
    """Stop and disable the distro's docker, etcd and registry services: the node's own units replace them."""
    changed = False
    for service in DISTRO_SERVICES:
        enabled = run(["systemctl", "is-enabled", service], check=False).stdout.strip()
        active = run(["systemctl", "is-active", service], check=False).stdout.strip()
        if enabled == "enabled" or active in ("active", "activating"):
            run(["systemctl", "disable", "--now", service])
            changed = True
    return changed


def load_kernel_modules() -> bool:
    """Load the modules the node needs now (MODULES_FILE loads them at boot)."""
    missing = [module for module in KERNEL_MODULES if not Path("/sys/module", module).exists()]
    for module in missing:
        run(["modprobe", module])
    return bool(missing)


def enable_forwarding() -> bool:
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1":
        return False
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    return True


def unit_active(name: str) -> bool:
    return run(["systemctl", "is-active", name], check=False).stdout.strip() == "active"


def journal_tail(name: str, lines: int = 15) -> str:
    return run(["journalctl", "-u", name, "-n", str(lines), "--no-pager"], check=False).stdout


def wait_serving(unit: Unit, cluster: ClusterConfig, node: NodeSpec, timeout: float = HEALTH_TIMEOUT) -> None:
    """Wait until the unit's component answers its health check; fail with its journal otherwise.

    An https health URL (the API server's /healthz) is checked against the cluster CA.
    """
    component = unit.component
    url = component.health_url
    context = (ssl.create_default_context(cafile=str(cluster_pki(cluster).ca))
               if url is not None and url.startswith("https://") else None)
    ready: Callable[[], bool] = (
        (lambda: docker_ok(cluster, node.name)) if component.name == DOCKERD
        else (lambda: http_ok(url, 2, context)) if url is not None
        else (lambda: unit_active(unit.name))
    )
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SetupError(f"{unit.name} did not become ready within {timeout:.0f}s; its journal:\n"
                             f"{journal_tail(unit.name)}")
        time.sleep(POLL)


def api(kubeconfig: Path, call: Callable[[Client], Any]) -> Any:
    """One API interaction with the identity of `kubeconfig` (the admin's on the control plane, else the node's)."""
    async def go() -> Any:
        async with Client.from_kubeconfig(kubeconfig, user_agent="pocket-setup", timeout=10) as client:
            return await call(client)

    return asyncio.run(go())


def bootstrap_token_for(join_token: str) -> str:
    """The kubeadm-format bootstrap token (`<6>.<16>` of [a-z0-9]) a join token stands for, on every machine alike."""
    digest = hashlib.sha256(b"pocketkube bootstrap token\0" + join_token.encode()).hexdigest()
    return f"{digest[:6]}.{digest[6:22]}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_jws(content: str, token: str) -> str:
    """kubeadm's signature of cluster-info: HS256 keyed by the token secret, `<header>..<signature>`."""
    token_id, secret = token.split(".")
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64url(content.encode())}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{_b64url(signature)}"


def cluster_info_kubeconfig(server: str, ca_pem: bytes | None) -> str:
    """The kubeconfig cluster-info publishes: no users, no secrets; the CA when the API is HTTPS."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": cluster}],
              "contexts": None, "current-context": "", "preferences": {}, "users": None}
    return yaml.safe_dump(config, sort_keys=True)


async def record_join_token(client: Client, token: str, server: str, ca_pem: bytes | None = None) -> bool:
    """Control plane: the bootstrap-token Secret and cluster-info signed with it; a different token is an error."""
    bootstrap = bootstrap_token_for(token)
    token_id = bootstrap.split(".")[0]
    content = cluster_info_kubeconfig(server, ca_pem)
    data = {"kubeconfig": content, JWS_PREFIX + token_id: detached_jws(content, bootstrap)}
    changed = False
    try:
        existing = await client.get("configmaps", CLUSTER_INFO, CLUSTER_INFO_NAMESPACE)
    except ApiError as err:
        if err.code != 404:
            raise
        await client.create("configmaps", {"metadata": {"name": CLUSTER_INFO}, "data": data}, CLUSTER_INFO_NAMESPACE)
        changed = True
    else:
        if any(key.startswith(JWS_PREFIX) and key != JWS_PREFIX + token_id for key in existing.get("data") or {}):
            raise SetupError("this control plane already holds a different join token; pass that one (or start "
                             "from a fresh control plane)")
        if existing.get("data") != data:
            await client.update("configmaps", {**existing, "data": data})
            changed = True
    secret = token_secret(bootstrap, ttl_seconds=BOOTSTRAP_TOKEN_TTL, description="pocket node setup: joins workers")
    name = secret["metadata"]["name"]
    try:
        current = await client.get("secrets", name, TOKEN_NAMESPACE)
    except ApiError as err:
        if err.code != 404:
            raise
        await client.create("secrets", secret, TOKEN_NAMESPACE)
        return True
    expires = base64.b64decode((current.get("data") or {}).get("expiration", "")).decode()
    if not expires or time.time() > parse_time(expires) - BOOTSTRAP_TOKEN_TTL / 2:
        await client.update("secrets", {**secret, "metadata": current["metadata"]})
        changed = True
    return changed


async def discover_cluster(client: Client, token: str) -> dict[str, Any] | None:
    """Worker: cluster-info's cluster entry (server, CA) once its signature by our token checks out; None while it
    is not published yet. A signature by another token is an error."""
    try:
        info = await client.get("configmaps", CLUSTER_INFO, CLUSTER_INFO_NAMESPACE)
    except ApiError as err:
        if err.code == 404:
            return None
        raise
    return verified_cluster_info(info, token, client.server)


def verified_cluster_info(info: dict[str, Any], token: str, server: str) -> dict[str, Any]:
    """The cluster entry of cluster-info once its signature by our token checks out (kubeadm join's discovery)."""
    bootstrap = bootstrap_token_for(token)
    data = info.get("data") or {}
    content, signature = data.get("kubeconfig", ""), data.get(JWS_PREFIX + bootstrap.split(".")[0])
    if signature is None or not hmac.compare_digest(signature, detached_jws(content, bootstrap)):
        raise SetupError(f"--join-token does not match the control plane at {server}: "
                         "this worker would join another cluster")
    try:
        return dict(yaml.safe_load(content)["clusters"][0]["cluster"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        raise SetupError(f"cluster-info at {server} holds no usable kubeconfig") from None


def _rbac_reader(name: str, namespace: str, plural: str, object_name: str, group: str) -> list[tuple[str, Any]]:
    """A Role allowing `get` of one named object, and its RoleBinding to `group`."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": [plural], "resourceNames": [object_name], "verbs": ["get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]}
    return [("roles", role), ("rolebindings", binding)]


def bootstrap_readers() -> list[tuple[str, Any]]:
    """What joining nodes may read with a bootstrap token: cluster-info, and the Secret with their CA-made files."""
    return [
        *_rbac_reader(CLUSTER_INFO_READER, CLUSTER_INFO_NAMESPACE, "configmaps", CLUSTER_INFO, BOOTSTRAPPERS_GROUP),
        *_rbac_reader(NODE_FILES_READER, TOKEN_NAMESPACE, "secrets", NODE_FILES_SECRET, KUBEADM_GROUP),
    ]


async def ensure_objects(client: Client, objects: list[tuple[str, Any]]) -> bool:
    """Create each object, or update it where its rules, roleRef or subjects differ; True if any was written."""
    changed = False
    for plural, wanted in objects:
        meta = wanted["metadata"]
        try:
            current = await client.get(plural, meta["name"], meta.get("namespace"))
        except ApiError as err:
            if err.code != 404:
                raise
            await client.create(plural, wanted, meta.get("namespace"))
            changed = True
            continue
        if any(current.get(field) != wanted[field] for field in wanted if field not in ("metadata", "kind",
                                                                                         "apiVersion")):
            await client.update(plural, {**wanted, "metadata": current["metadata"]})
            changed = True
    return changed


def node_files_key(join_token: str) -> bytes:
    """The AES-256 key of the uploaded node files: from the join token, under another label than the bootstrap
    token (which every join sends to the API server), so holding the bootstrap token does not open them."""
    return hashlib.sha256(NODE_FILES_KEY_LABEL + join_token.encode()).digest()


def seal_node_files(join_token: str, node: str, files: dict[str, str]) -> str:
    """One node's files (path under the PKI directory -> content), AES-GCM sealed, bound to the node's name."""
    nonce = os.urandom(12)
    sealed = AESGCM(node_files_key(join_token)).encrypt(
        nonce, json.dumps(files, sort_keys=True).encode(), f"{NODE_FILES_SECRET}/{node}".encode())
    return base64.b64encode(nonce + sealed).decode()


def open_node_files(join_token: str, node: str, value: str) -> dict[str, str]:
    """The files `seal_node_files` sealed for `node`; SetupError if the join token or the node does not match."""
    try:
        raw = base64.b64decode(value, validate=True)
        plain = AESGCM(node_files_key(join_token)).decrypt(raw[:12], raw[12:], f"{NODE_FILES_SECRET}/{node}".encode())
        files = json.loads(plain)
    except (ValueError, InvalidTag):
        raise SetupError(f"the certificates the control plane uploaded for {node} do not open with this "
                         "--join-token: is it the control plane's?") from None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise SetupError(f"the certificates the control plane uploaded for {node} are not a file map")
    return files


def worker_files(cluster: ClusterConfig, paths: ClusterPKI) -> dict[str, dict[str, str]]:
    """For each worker, the files only the control plane can make: its kubelet serving certificate and key and,
    where kdns runs, kdns's kubeconfig (paths relative to the PKI directory)."""
    runs_kdns = dns_nodes(cluster)
    files = {}
    for worker in cluster.nodes:
        if worker.role != WORKER_ROLE:
            continue
        wanted = [paths.cert(kubelet_serving(worker.name)), paths.key(kubelet_serving(worker.name))]
        if worker in runs_kdns:
            wanted.append(paths.kubeconfig(KDNS_IDENTITY))
        files[worker.name] = {str(path.relative_to(paths.directory)): path.read_text() for path in wanted}
    return files


async def upload_node_files(client: Client, join_token: str, files: dict[str, dict[str, str]]) -> bool:
    """Control plane: the Secret with every worker's sealed files; entries that still open to the same files stay."""
    try:
        current = await client.get("secrets", NODE_FILES_SECRET, TOKEN_NAMESPACE)
    except ApiError as err:
        if err.code != 404:
            raise
        current = None
    stored = dict((current or {}).get("data") or {})
    data = {}
    for node, node_files in files.items():
        try:
            unchanged = node in stored and open_node_files(join_token, node,
                                                           base64.b64decode(stored[node]).decode()) == node_files
        except SetupError:
            unchanged = False  # sealed with an earlier token: seal again
        data[node] = stored[node] if unchanged else base64.b64encode(
            seal_node_files(join_token, node, node_files).encode()).decode()
    if current is None:
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": NODE_FILES_SECRET, "namespace": TOKEN_NAMESPACE}, "data": data}
        await client.create("secrets", secret, TOKEN_NAMESPACE)
        return True
    if data == stored:
        return False
    await client.update("secrets", {**current, "data": data})
    return True


async def download_node_files(client: Client, join_token: str, node: str) -> dict[str, str]:
    """Worker: its own files from the uploaded Secret (read with the bootstrap token)."""
    secret = await client.get("secrets", NODE_FILES_SECRET, TOKEN_NAMESPACE)
    value = (secret.get("data") or {}).get(node)
    if value is None:
        raise SetupError(f"the control plane uploaded no certificates for {node}: is it in the control plane's "
                         "--cluster-nodes?")
    return open_node_files(join_token, node, base64.b64decode(value).decode())


def ensure_control_plane_pki(cluster: ClusterConfig) -> bool:
    """The local cluster's PKI (pocket/certs.py) for the control planes, plus each worker's kubelet serving
    certificate. Workers' client certificates are not made here: their kubelets ask for them by CSR."""
    paths = cluster_pki(cluster)
    changed = ensure_cluster_pki(replace(cluster, nodes=cluster.control_planes))
    ca = x509_pki.ensure_ca(paths.directory)
    for worker in cluster.nodes:
        if worker.role == WORKER_ROLE:
            before = _fingerprint(paths, kubelet_serving(worker.name))
            x509_pki.ensure_cert(paths.directory, ca, kubelet_serving(worker.name),
                                 x509_pki.kubelet_serving(worker.name, worker.ip))
            changed |= _fingerprint(paths, kubelet_serving(worker.name)) != before
    return changed


def _fingerprint(paths: ClusterPKI, name: str) -> bytes | None:
    return paths.cert(name).read_bytes() if paths.cert(name).exists() else None


def write_admin_kubeconfig(path: Path, cluster: ClusterConfig) -> bool:
    """The kubeconfig handed to the host's user: the API server over HTTPS, the cluster CA, the admin certificate."""
    paths = cluster_pki(cluster)
    return write_kubeconfig(path, api_server_url(cluster),
                            Credentials.from_files(paths.ca, paths.cert(ADMIN), paths.key(ADMIN)),
                            x509_pki.ADMIN.common_name)


async def publish_for_joining(client: Client, cluster: ClusterConfig, join_token: str, server: str) -> bool:
    """Control plane: what joining workers read with their bootstrap token, cluster-info (naming `server`) last."""
    paths = cluster_pki(cluster)
    changed = await ensure_objects(client, bootstrap_readers())
    changed |= await upload_node_files(client, join_token, worker_files(cluster, paths))
    changed |= await record_join_token(client, join_token, server, paths.ca.read_bytes())
    return changed


async def join_once(server: str, join_token: str, paths: ClusterPKI, node: str) -> dict[str, str] | None:
    """One discovery attempt: None while the control plane has not published cluster-info; else, with the CA it
    vouches for pinned, every file the worker needs (path under the PKI directory -> content)."""
    unverified = ssl_context_for(None, None, None, insecure=True)  # no CA yet: the token's signature vouches
    bootstrap = bootstrap_token_for(join_token)
    async with Client(server, token=bootstrap, ssl_context=unverified, user_agent="pocket-setup", timeout=10) as c:
        entry = await discover_cluster(c, join_token)
    if entry is None:
        return None
    try:
        ca_pem = base64.b64decode(entry["certificate-authority-data"], validate=True)
    except (KeyError, ValueError):
        raise SetupError(f"cluster-info at {server} carries no CA: the control plane does not serve HTTPS") from None
    bootstrap_config = yaml.safe_dump(
        kubeconfig_document(server, Credentials(ca=ca_pem, token=bootstrap), BOOTSTRAP_USER), sort_keys=False)
    verified = ssl_context_for(ca_pem, None, None)
    async with Client(server, token=bootstrap, ssl_context=verified, user_agent="pocket-setup", timeout=10) as c:
        files = await download_node_files(c, join_token, node)
    return {
        **files,
        str(paths.ca.relative_to(paths.directory)): ca_pem.decode(),
        str(bootstrap_kubeconfig_path(paths).relative_to(paths.directory)): bootstrap_config,
    }


def join_cluster(paths: ClusterPKI, server: str, node: str, join_token: str,
                 timeout: float = CONTROL_PLANE_TIMEOUT) -> bool:
    """Worker: wait for the control plane at `server` to publish cluster-info, then write the CA, the bootstrap
    kubeconfig and this node's CA-made files under `paths` (only where they differ); True if any was written."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            files = asyncio.run(join_once(server, join_token, paths, node))
            waiting = "cluster-info is not published yet"
        except ApiError as err:  # not up yet (503), token not recorded yet (401), roles not made yet (403)
            files, waiting = None, f"{err.code} {err}"
        except TimeoutError:  # a control plane still starting under emulation can be slow to answer
            files, waiting = None, "no answer in time"
        if files is not None:
            break
        if time.monotonic() > deadline:
            raise SetupError(f"the control plane at {server} did not let this node join within {timeout:.0f}s "
                             f"({waiting}); is it set up with this --join-token, and is this node on its network?")
        time.sleep(POLL * 5)
    changed = False
    for name, content in sorted(files.items()):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise SetupError(f"the control plane sent a file outside {paths.directory}: {name}")
        path = paths.directory / name
        changed |= write_if_changed(path, content, file_mode(path))
    return changed


def seed_registry(cluster: ClusterConfig, node: NodeSpec) -> bool:
    """busybox and the sandbox image, built from busybox-static, pushed into the control plane's registry."""
    if all(http_ok(f"http://{cluster.registry}/v2/{repo}/tags/list") for _, repo, _ in BASE_IMAGES):
        return False
    client = docker_client(cluster, node.name, timeout=120)
    try:
        import_images(client)
        push_images(client, cluster.registry, BASE_IMAGES)
    except PushError as err:
        raise SetupError(f"{err}; see `journalctl -u {unit_name('registry')}`") from err
    finally:
        client.close()
    return True


def pull_images(cluster: ClusterConfig, node: NodeSpec) -> bool:
    """Pull busybox and the sandbox image through the registry mirror (fails early if the mirror is broken)."""
    client = docker_client(cluster, node.name, timeout=300)
    changed = False
    try:
        for image in (BUSYBOX_IMAGE, SANDBOX_IMAGE):
            try:
                client.images.get(image)
                continue
            except docker.errors.ImageNotFound:
                pass
            repo, tag = image.split(":")
            try:
                client.images.pull(repo, tag=tag)
            except docker.errors.APIError as err:
                raise SetupError(f"cannot pull {image} through the mirror {cluster.registry}: {err}") from err
            changed = True
    finally:
        client.close()
    return changed


def node_ready(kubeconfig: Path, name: str) -> bool:
    async def get(client: Client) -> Any:
        return await client.get("nodes", name)

    try:
        conditions = api(kubeconfig, get).get("status", {}).get("conditions", [])
    except (ApiError, OSError, KubeconfigError):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# -- the whole setup ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupRequest:
    role: str
    node_name: str
    node_ip: str
    control_plane_ip: str
    join_token: str | None
    kubeconfig: Path | None
    cluster_nodes: tuple[tuple[str, str], ...] = ()
    python: str = sys.executable


def setup(request: SetupRequest, say: Callable[[str], None]) -> int:
    """Make this machine the requested node; 0 when its Node is Ready."""
    cluster, node = node_cluster(request.role, request.node_name, request.node_ip, request.control_plane_ip,
                                 request.cluster_nodes)
    if request.join_token is not None and not TOKEN_PATTERN.fullmatch(request.join_token):
        raise SetupError("--join-token must be 16-64 lower-case letters or digits")
    if request.role == WORKER_ROLE and request.join_token is None:
        raise SetupError("a worker needs --join-token (the one given to the control plane)")
    if request.kubeconfig is not None and request.role != CONTROL_PLANE_ROLE:
        raise SetupError("--kubeconfig is written by the control plane only")
    if ipaddress.IPv4Address(node.ip) not in ipaddress.IPv4Network(NODE_SUBNET):
        say(f"note: {node.ip} is outside {NODE_SUBNET}, the node network the docs assume")

    changed = install_missing_packages(say)
    changed |= disable_distro_services()
    changed |= load_kernel_modules()
    changed |= enable_forwarding()
    paths = cluster_pki(cluster)
    join_token = request.join_token or ""
    if request.role == WORKER_ROLE:
        pki_changed = join_cluster(paths, api_server_url(cluster), node.name, join_token)
        kubeconfig = paths.kubeconfig(node_identity(node.name))  # the kubelet writes it once its CSR is signed
    else:
        pki_changed = ensure_control_plane_pki(cluster)
        kubeconfig = paths.kubeconfig(ADMIN)
        if request.kubeconfig is not None:
            changed |= write_admin_kubeconfig(request.kubeconfig, cluster)
    changed |= pki_changed

    units = node_units(cluster, node, choose_storage_driver(cluster), request.python)
    written = {path for path, content in planned_files(units).items() if write_if_changed(path, content)}
    changed |= bool(written)
    if any(path.parent == UNIT_DIR for path in written):
        run(["systemctl", "daemon-reload"])
    restart = set(units_to_restart(units, written))
    if pki_changed:  # a remade certificate is read only at start
        restart |= {unit.name for unit in units if any(str(paths.directory) in arg for arg in unit.component.argv)}
    for unit in units:
        if unit.name in restart and unit_active(unit.name):
            say(f"restarting {unit.name} (its unit or configuration changed)")
            run(["systemctl", "restart", unit.name])
            changed = True
        elif not unit_active(unit.name):
            say(f"starting {unit.name}")
            run(["systemctl", "enable", "--now", unit.name])
            changed = True
        else:
            run(["systemctl", "enable", "--quiet", unit.name])
        joining = unit.component.name == KUBELET and node.role == WORKER_ROLE
        wait_serving(unit, cluster, node, BOOTSTRAP_TIMEOUT if joining else HEALTH_TIMEOUT)
        if unit.component.name == DOCKERD:
            if request.role == CONTROL_PLANE_ROLE:
                changed |= seed_registry(cluster, node)
            changed |= pull_images(cluster, node)
        if unit.component.name == APISERVER:
            changed |= api(kubeconfig, lambda client: ensure_kube_dns(client, cluster))
            if request.join_token is not None:
                changed |= api(kubeconfig, lambda client: publish_for_joining(
                    client, cluster, join_token, api_server_url(cluster)))

    deadline = time.monotonic() + READY_TIMEOUT
    while not node_ready(kubeconfig, node.name):
        if time.monotonic() > deadline:
            raise SetupError(f"node {node.name} is not Ready after {READY_TIMEOUT:.0f}s; "
                             f"see `journalctl -u {unit_name(KUBELET)}`:\n{journal_tail(unit_name(KUBELET))}")
        time.sleep(POLL)
    say(f"node {node.name} ({request.role}, {node.ip}) is Ready; "
        f"{'changed' if changed else 'nothing changed'}")
    return 0


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=(CONTROL_PLANE_ROLE, WORKER_ROLE),
                        help="what this machine becomes")
    parser.add_argument("--node-name", required=True, help="the Node's name (control-plane, worker1, ...)")
    parser.add_argument("--node-ip", required=True,
                        help="this machine's address on the node network (never a NAT address)")
    parser.add_argument("--control-plane-ip", required=True, help="the control plane's address on the node network")
    parser.add_argument("--join-token", help="shared by the control plane and its workers (required on workers)")
    parser.add_argument("--kubeconfig", type=Path,
                        help="control plane only: also write the admin kubeconfig (HTTPS, the cluster CA, the admin "
                             "certificate) here")
    parser.add_argument("--cluster-nodes", default="",
                        help="every node as NAME=IP,NAME=IP,... (default: the control plane and this node); "
                             "decides per-cluster placement such as which nodes run kdns")


def run_setup(argv: list[str], say: Callable[[str], None]) -> int:
    """`pocket node setup ARGS`: parse the setup flags, set the node up, report errors in one line each."""
    parser = argparse.ArgumentParser(prog="pocket node setup",
                                     description="make this machine a pocketkube node (systemd units)")
    add_setup_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cluster_nodes = parse_cluster_nodes(args.cluster_nodes) if args.cluster_nodes else ()
        request = SetupRequest(args.role, args.node_name, args.node_ip, args.control_plane_ip, args.join_token,
                               args.kubeconfig, cluster_nodes)
        return setup(request, say)
    except SetupError as err:
        say(f"pocket node setup: {err}")
        return 1
    except ApiError as err:
        say(f"pocket node setup: the API server refused a request: {err}")
        return 1

