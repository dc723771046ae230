"""Bring the local cluster up and down, phase by phase.

`up` runs nine phases; each checks what is already there, so a second run
changes nothing and a half-made cluster is completed. A component that
does not come up fails its phase with its name, its log and the log's last
lines. `down` removes everything `up` made, found by pid file, by network
namespace and by root directory, and is happy to find nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

from control.api.errors import ApiError, status_failure
from control.client import Client
from pocket import network, processes
from pocket.config import (
    CLUSTER_DNS_IP,
    CONTROL_PLANE_ROLE,
    DNS_PORT,
    ClusterConfig,
    NodeSpec,
)
from pocket.images import (
    BASE_IMAGES,
    BUSYBOX_BINARY,
    BUSYBOX_IMAGE,
    CACHE_DIR as IMAGE_CACHE_DIR,
    DEBIAN_IMAGES,
    SANDBOX_IMAGE,
    ImageBuildError,
    PushError,
    import_debian_images,
    import_images,
    push_images,
)
from pocket.certs import ADMIN, ClusterPKI, cluster_pki, ensure_cluster_pki, write_user_kubeconfig
from pocket.kubeconfig import write_kubeconfig
from pocket.netns import entered, netns_inode, nsenter_argv
from pocket.node import (
    API_FORWARD,
    APISERVER,
    CONTROL_PLANE_SERVICES,
    DOCKERD,
    ETCD,
    KDNS,
    KUBELET,
    NODE_AGENTS,
    REGISTRY,
    Component,
    dns_nodes,
    node_components,
)

EXAMPLE_MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "manifests" / "web.yaml"
FORWARDER = "forward"
HOST = "host"

# command -> Debian package that provides it (`make up` installs them all).
PREREQUISITES = {
    "etcd": "etcd-server",
    "dockerd": "docker.io",
    "containerd": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "iptables-legacy": "iptables",
    "sysctl": "procps",
    "mount": "mount",
    "debootstrap": "debootstrap",
}

ETCD_TIMEOUT = 20.0
REGISTRY_TIMEOUT = 15.0
DOCKERD_TIMEOUT = 40.0
HEALTH_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
FORWARDER_TIMEOUT = 10.0
POLL = 0.2


class BringUpError(Exception):
    """A phase failed; `details` are the lines that say what failed and what to do."""

    def __init__(self, summary: str, details: list[str] | None = None):
        super().__init__(summary)
        self.details = details or []


# A phase: its title, and the step that returns whether it changed anything (None: it only checked).
Phase = tuple[str, Callable[[], "bool | None"]]


def log_tail(path: Path, lines: int = 8) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ["(no log written)"]
    return [line[:300] for line in text.splitlines()[-lines:]]


def component_failed(what: str, log_file: Path, reason: str) -> BringUpError:
    return BringUpError(
        f"{what} {reason}",
        [f"log: {log_file} (last lines below)", *("  | " + line for line in log_tail(log_file))],
    )


# -- checks run inside the node network ------------------------------------------------


def security(cluster: ClusterConfig) -> ClusterPKI | None:
    """The cluster's PKI; None only for a cluster already running without TLS (made before pocket had TLS).

    Such a cluster keeps running as it is, so `pocket up` stays idempotent for it;
    `pocket down` and `pocket up` make it a TLS cluster.
    """
    pki = cluster_pki(cluster)
    legacy = processes.is_running(cluster.pid_file(cluster.control_plane.name, APISERVER)) and not pki.ca.exists()
    return None if legacy else pki


def cluster_ssl_context(cluster: ClusterConfig) -> ssl.SSLContext:
    """Trust the cluster CA (for the API server's public /healthz, which needs no credentials)."""
    return ssl.create_default_context(cafile=str(cluster_pki(cluster).ca))


def http_ok(url: str, timeout: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    """GET `url`; True on a 2xx answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return 200 <= resp.status < 300
    except (OSError, urllib.error.URLError):
        return False


def http_ok_in(netns: str, url: str, context: ssl.SSLContext | None = None) -> bool:
    """GET `url` from inside `netns`; True on a 2xx answer (False if the namespace is gone)."""
    try:
        with entered(netns):
            return http_ok(url, context=context)
    except OSError:
        return False


def docker_client(cluster: ClusterConfig, node: str, timeout: int = 60) -> docker.DockerClient:
    """A client for a node's dockerd (its unix socket is reachable from the host)."""
    return docker.DockerClient(base_url=cluster.docker_host(node), timeout=timeout)


def docker_ok(cluster: ClusterConfig, node: str) -> bool:
    if not cluster.docker_socket(node).exists():
        return False
    try:
        client = docker_client(cluster, node, timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to answer means "not up yet"
        return False


def api_call(cluster: ClusterConfig, call: Callable[[Client], Any], timeout: float = 5.0) -> Any:
    """Run one async API interaction from inside the control-plane namespace."""

    pki = security(cluster)
    kubeconfig = pki.kubeconfig(ADMIN) if pki else None
    if kubeconfig is not None and not kubeconfig.exists():
        raise ApiError(status_failure(503, "ServiceUnavailable", f"no admin kubeconfig at {kubeconfig} (pocket up)"))

    async def go() -> Any:
        if kubeconfig is None:
            client = Client(cluster.api_server_url, user_agent="pocket", timeout=timeout)
        else:
            client = Client.from_kubeconfig(kubeconfig, user_agent="pocket", timeout=timeout)
        async with client:
            return await call(client)

    with entered(cluster.node_netns(api_node(cluster).name)):
        return asyncio.run(go())


def api_node(cluster: ClusterConfig) -> NodeSpec:
    """Where `pocket` itself talks to the API from: the first control plane, or in HA the first whose
    API forwarder runs (the kubeconfigs point at it), so a stopped control plane does not stop `pocket`."""
    if cluster.highly_available:
        for node in cluster.control_planes:
            if processes.is_running(cluster.pid_file(node.name, API_FORWARD)):
                return node
    return cluster.control_plane


@dataclass(frozen=True)
class Readiness:
    """A Node's Ready condition: its status and when its kubelet last reported (epoch seconds)."""

    status: str
    heartbeat: float | None


def node_readiness(cluster: ClusterConfig) -> dict[str, Readiness]:
    """node name -> its Ready condition ("True", "False", "Unknown")."""

    async def list_nodes(client: Client) -> Any:
        return await client.list("nodes")

    nodes = api_call(cluster, list_nodes)
    ready = {}
    for node in nodes.get("items", []):
        conditions = node.get("status", {}).get("conditions", [])
        condition: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
        stamp = condition.get("lastHeartbeatTime")
        heartbeat = datetime.fromisoformat(stamp).timestamp() if stamp else None
        ready[node["metadata"]["name"]] = Readiness(condition.get("status", "Unknown"), heartbeat)
    return ready


# -- launching and waiting ---------------------------------------------------------------


@dataclass
class Waiting:
    """A launched (or already running) component and how to tell it serves."""

    node: str
    component: str
    pid_file: Path
    log_file: Path
    ready: Callable[[], bool]
    started: processes.Started | None = None

    @property
    def label(self) -> str:
        return f"{self.component} on {self.node}"


def launch(cluster: ClusterConfig, node: NodeSpec, component: Component) -> tuple[processes.Started | None, Path]:
    """Start the component in its node's namespace unless it already runs; (Started or None, pid file)."""
    pid_file = cluster.pid_file(node.name, component.name)
    if processes.is_running(pid_file):
        return None, pid_file
    for path, content in component.config_files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    for own_pid_file in component.own_pid_files:
        processes.clear_stale(own_pid_file)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = nsenter_argv(cluster.node_netns(node.name), list(component.argv))
    return processes.start(argv, cluster.log_file(node.name, component.name), pid_file, env=env), pid_file


def wait_all(waiting: list[Waiting], timeout: float) -> None:
    """Wait until every component is ready; fail at once, naming it, if one exits."""
    deadline = time.monotonic() + timeout
    pending = list(waiting)
    while pending:
        for item in list(pending):
            code = item.started.popen.poll() if item.started else None
            if code is not None:
                raise component_failed(item.label, item.log_file, f"exited with code {code}")
            if not processes.is_running(item.pid_file):
                raise component_failed(item.label, item.log_file, "is not running")
            if item.ready():
                pending.remove(item)
        if pending and time.monotonic() > deadline:
            item = pending[0]
            raise component_failed(item.label, item.log_file, f"did not become ready within {timeout:.0f}s")
        if pending:
            time.sleep(POLL)


def start_components(
    cluster: ClusterConfig, names: tuple[str, ...], nodes: list[NodeSpec], storage_driver: str
) -> tuple[list[Waiting], bool]:
    """Launch the named components on the given nodes; return what to wait for and whether anything started."""
    waiting: list[Waiting] = []
    changed = False
    pki = security(cluster)
    for node in nodes:
        for component in node_components(cluster, node, storage_driver, pki=pki):
            if component.name not in names:
                continue
            started, pid_file = launch(cluster, node, component)
            changed |= started is not None
            waiting.append(
                Waiting(
                    node.name,
                    component.name,
                    pid_file,
                    cluster.log_file(node.name, component.name),
                    _readiness(cluster, node, component),
                    started,
                )
            )
    return waiting, changed


def _readiness(cluster: ClusterConfig, node: NodeSpec, component: Component) -> Callable[[], bool]:
    if component.name == DOCKERD:
        return lambda: docker_ok(cluster, node.name)
    url = component.health_url
    if url is None:
        return lambda: True
    netns = cluster.node_netns(node.name)
    if url.startswith("https://"):
        context = cluster_ssl_context(cluster)
        return lambda: http_ok_in(netns, url, context)
    return lambda: http_ok_in(netns, url)


# -- storage driver ------------------------------------------------------------------------


def choose_storage_driver(cluster: ClusterConfig) -> str:
    """overlay2 if an overlay mount works under the state dir, else vfs; a node keeps its first choice."""
    existing = cluster.node_dir(cluster.control_plane.name) / "daemon.json"
    if existing.exists():
        return str(json.loads(existing.read_text()).get("storage-driver", "overlay2"))
    probe = cluster.state_dir / ".overlay-probe"
    dirs = {name: probe / name for name in ("lower", "upper", "work", "merged")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])],
                             capture_output=True).returncode == 0
    if mounted:
        subprocess.run(["umount", str(dirs["merged"])], check=True)
    shutil.rmtree(probe)
    return "overlay2" if mounted else "vfs"


# -- the phases of `pocket up` ---------------------------------------------------------------


@dataclass
class BringUp:
    """State shared by the phases of one `pocket up` run."""

    cluster: ClusterConfig
    storage_driver: str = "overlay2"

    @property
    def control_plane(self) -> NodeSpec:
        return self.cluster.control_plane

    def phases(self) -> list[Phase]:
        n = len(self.cluster.nodes)
        return [
            ("checking prerequisites", self.check_prerequisites),
            ("creating the cluster CA, certificates and kubeconfigs", self.create_pki),
            (f"creating the node network ({n} nodes + client)", self.create_network),
            ("starting etcd", lambda: self.start_and_wait((ETCD,), list(self.cluster.control_planes), ETCD_TIMEOUT)),
            ("starting the image registry", lambda: self.start_and_wait((REGISTRY,), [self.control_plane],
                                                                       REGISTRY_TIMEOUT)),
            (f"starting dockerd on {n} nodes", self.start_dockerd),
            ("seeding images (busybox, pause) into the registry", self.seed_images),
            ("seeding debian, python and nginx images (the first run builds them, about a minute)",
             self.seed_debian_images),
            ("starting the control plane", self.start_control_plane),
            (f"starting kubelet and kproxy on {n} nodes, waiting for Ready", self.start_node_agents),
            (f"starting the host forwarder on 127.0.0.1:{self.cluster.api_port}", self.start_forwarder),
        ]

    def start_and_wait(self, names: tuple[str, ...], nodes: list[NodeSpec], timeout: float) -> bool:
        waiting, changed = start_components(self.cluster, names, nodes, self.storage_driver)
        wait_all(waiting, timeout)
        return changed

    def check_prerequisites(self) -> None:
        problems = []
        if os.geteuid() != 0:
            problems.append("pocket up needs root (network namespaces, dockerd): run it with sudo")
        missing = sorted({pkg for cmd, pkg in PREREQUISITES.items() if shutil.which(cmd) is None})
        if not BUSYBOX_BINARY.exists():
            missing.append("busybox-static")
        if missing:
            problems.append(f"missing Debian packages: {' '.join(missing)}; install them with "
                            f"`apt-get install -y {' '.join(missing)}` (or run `make up`)")
        if problems:
            raise BringUpError("prerequisites are missing", problems)

    def create_pki(self) -> bool | None:
        if security(self.cluster) is None:
            print("(this cluster runs without TLS; `pocket down` and `pocket up` make it HTTPS only)", end=" ")
            return None
        return ensure_cluster_pki(self.cluster)

    def create_network(self) -> bool:
        try:
            return network.ensure_network(self.cluster)
        except network.NetworkError as err:
            raise BringUpError("could not build the node network", [str(err), "run `pocket down` to reset"]) from err

    def start_dockerd(self) -> bool:
        self.storage_driver = choose_storage_driver(self.cluster)
        for node in self.cluster.nodes:
            self.cluster.node_run_dir(node.name).mkdir(parents=True, exist_ok=True)
        return self.start_and_wait((DOCKERD,), list(self.cluster.nodes), DOCKERD_TIMEOUT)

    def _in_registry(self, repository: str, tag: str) -> bool:
        url = f"http://{self.cluster.registry}/v2/{repository}/manifests/{tag}"
        request = urllib.request.Request(
            url, method="HEAD", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        )
        try:
            with entered(self.cluster.node_netns(self.control_plane.name)):
                with urllib.request.urlopen(request, timeout=2) as resp:
                    return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _push_to_registry(self, images: list[tuple[str, str, str]], load: Callable[[Any], object]) -> bool:
        """Push (local name, registry repository, tag) images the registry lacks, after `load` imports them."""
        missing = [(image, repo, tag) for image, repo, tag in images if not self._in_registry(repo, tag)]
        if not missing:
            return False
        client = docker_client(self.cluster, self.control_plane.name)
        try:
            load(client)
            push_images(client, self.cluster.registry, missing)
        except PushError as err:
            registry_log = self.cluster.log_file(self.control_plane.name, REGISTRY)
            raise BringUpError(str(err), [f"registry log: {registry_log}"]) from err
        finally:
            client.close()
        return True

    def seed_debian_images(self) -> bool:
        """debian, python and nginx built from Debian's packages (cached) into the registry; pulled on demand."""
        wanted = [(image.name, image.registry_repository, image.tag) for image in DEBIAN_IMAGES]
        try:
            return self._push_to_registry(wanted, import_debian_images)
        except ImageBuildError as err:
            raise BringUpError(f"building the Debian-based images failed: {err}",
                               [f"image cache: {IMAGE_CACHE_DIR} (remove it to rebuild from scratch)"]) from err

    def seed_images(self) -> bool:
        """busybox and the sandbox image into the registry, then pulled by every node through its mirror."""
        changed = self._push_to_registry(list(BASE_IMAGES), import_images)
        for node in self.cluster.nodes:
            client = docker_client(self.cluster, node.name)
            try:
                for image in (BUSYBOX_IMAGE, SANDBOX_IMAGE):
                    repo, tag = image.split(":")
                    try:
                        client.images.get(image)
                        continue
                    except docker.errors.ImageNotFound:
                        pass
                    try:
                        client.images.pull(repo, tag=tag)
                    except docker.errors.APIError as err:
                        raise component_failed(f"dockerd on {node.name}",
                                               self.cluster.log_file(node.name, DOCKERD),
                                               f"cannot pull {image} through the registry mirror: {err}") from err
                    changed = True
            finally:
                client.close()
        return changed

    def start_control_plane(self) -> bool:
        """API servers, then (HA) every node's API forwarder, then the leader-elected controller managers and
        schedulers, the kube-dns Service and kdns."""
        cp = list(self.cluster.control_planes)
        changed = self.start_and_wait((APISERVER,), cp, HEALTH_TIMEOUT)
        if self.cluster.highly_available:
            changed |= self.start_and_wait((API_FORWARD,), list(self.cluster.nodes), HEALTH_TIMEOUT)
        waiting, started = start_components(self.cluster, CONTROL_PLANE_SERVICES[1:3], cp, self.storage_driver)
        changed |= started
        try:
            changed |= api_call(self.cluster, lambda client: ensure_kube_dns(client, self.cluster))
        except ApiError as err:
            raise component_failed(f"{APISERVER} on {self.control_plane.name}",
                                   self.cluster.log_file(self.control_plane.name, APISERVER),
                                   f"refused the kube-dns Service/Endpoints: {err}") from err
        kdns_waiting, started = start_components(self.cluster, (KDNS,), cp, self.storage_driver)
        changed |= started
        wait_all(waiting + kdns_waiting, HEALTH_TIMEOUT)
        return changed

    def start_node_agents(self) -> bool:
        since = time.time()
        # kdns on the workers that run one (see dns_nodes); the control plane's started with the control plane.
        waiting, changed = start_components(
            self.cluster, (*NODE_AGENTS, KDNS), list(self.cluster.nodes), self.storage_driver
        )
        wait_all(waiting, HEALTH_TIMEOUT)
        wait_ready(self.cluster, [n.name for n in self.cluster.nodes], waiting, since)
        return changed

    def start_forwarder(self) -> bool:
        changed = ensure_forwarder(self.cluster)
        if security(self.cluster) is None:
            changed |= write_kubeconfig(self.cluster.kubeconfig, f"http://127.0.0.1:{self.cluster.api_port}")
        else:
            changed |= write_user_kubeconfig(self.cluster)
        return changed


def wait_ready(
    cluster: ClusterConfig, names: list[str], agents: list[Waiting], since: float, timeout: float = READY_TIMEOUT
) -> None:
    """Wait until the named Nodes report Ready=True; fail naming the kubelet if one exits or stays not Ready.

    A kubelet started in this run must also have reported after `since` (wall clock), so a Ready
    left over from before a crash does not count.
    """
    restarted = {item.node for item in agents if item.started is not None and item.component == KUBELET}
    deadline = time.monotonic() + timeout
    readiness: dict[str, Readiness] = {}

    def is_ready(name: str) -> bool:
        state = readiness.get(name)
        if state is None or state.status != "True":
            return False
        return name not in restarted or (state.heartbeat is not None and state.heartbeat >= since - 1)

    while True:
        for item in agents:
            if not processes.is_running(item.pid_file):
                raise component_failed(item.label, item.log_file, "exited while waiting for nodes to be Ready")
        try:
            readiness = node_readiness(cluster)
        except ApiError:
            readiness = {}
        not_ready = [name for name in names if not is_ready(name)]
        if not not_ready:
            return
        if time.monotonic() > deadline:
            name = not_ready[0]
            state = readiness[name].status if name in readiness else "not registered"
            raise component_failed(f"kubelet on {name}", cluster.log_file(name, "kubelet"),
                                   f"left node {name} not Ready ({state}) after {timeout:.0f}s")
        time.sleep(0.5)


def kube_dns_objects(cluster: ClusterConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The selector-less kube-dns Service and the Endpoints that point it at kdns."""
    meta = {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": dict(meta),
        "spec": {
            "clusterIP": CLUSTER_DNS_IP,
            "ports": [
                {"name": "dns", "port": DNS_PORT, "protocol": "UDP", "targetPort": DNS_PORT},
                {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP", "targetPort": DNS_PORT},
            ],
        },
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": dict(meta),
        "subsets": [
            {
                "addresses": [{"ip": node.ip, "nodeName": node.name} for node in dns_nodes(cluster)],
                "ports": [
                    {"name": "dns", "port": DNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP"},
                ],
            }
        ],
    }
    return service, endpoints


async def _create_if_missing(client: Client, plural: str, obj: dict[str, Any], namespace: str | None) -> bool:
    try:
        await client.create(plural, obj, namespace)
        return True
    except ApiError as err:
        if err.code == 409:
            return False
        raise


async def ensure_kube_dns(client: Client, cluster: ClusterConfig) -> bool:
    """kube-system, the kube-dns Service and its Endpoints, each created only if missing."""
    service, endpoints = kube_dns_objects(cluster)
    changed = await _create_if_missing(
        client, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}, None
    )
    changed |= await _create_if_missing(client, "services", service, "kube-system")
    if not await _create_if_missing(client, "endpoints", endpoints, "kube-system"):
        current = await client.get("endpoints", "kube-dns", "kube-system")
        listed = {a.get("ip") for s in current.get("subsets") or [] for a in s.get("addresses") or []}
        listed |= {a.get("ip") for s in current.get("subsets") or [] for a in s.get("notReadyAddresses") or []}
        if listed != {node.ip for node in dns_nodes(cluster)}:  # e.g. made before kdns ran on two nodes
            current["subsets"] = endpoints["subsets"]
            await client.update("endpoints", current)
            changed = True
    return changed


# -- the forwarder ----------------------------------------------------------------------------


def forwarder_pid_file(cluster: ClusterConfig) -> Path:
    return cluster.pid_file(HOST, FORWARDER)


def forwarder_ok(cluster: ClusterConfig) -> bool:
    """The API server's /healthz over HTTPS, answered through the forwarder on 127.0.0.1:<api port>."""
    tls = security(cluster) is not None
    url = f"{'https' if tls else 'http'}://127.0.0.1:{cluster.api_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2, context=cluster_ssl_context(cluster) if tls else None) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def ensure_forwarder(cluster: ClusterConfig) -> bool:
    """A forwarder answering on the configured port (a stale one on another port is replaced)."""
    pid_file = forwarder_pid_file(cluster)
    if processes.is_running(pid_file):
        if forwarder_ok(cluster):
            return False
        processes.stop(pid_file)
    # HA: from the client namespace, which reaches every control plane and dies with none of them.
    netns = cluster.client_netns if cluster.highly_available else cluster.node_netns(cluster.control_plane.name)
    argv = [
        sys.executable, "-m", "pocket.cli", FORWARDER,
        "--listen", f"127.0.0.1:{cluster.api_port}",
        "--netns", netns,
        "--target", ",".join(cluster.api_targets),
    ]
    log_file = cluster.log_file(HOST, FORWARDER)
    started = processes.start(argv, log_file, pid_file, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_all([Waiting(HOST, FORWARDER, pid_file, log_file, lambda: forwarder_ok(cluster), started)],
             FORWARDER_TIMEOUT)
    return True


# -- one changing command at a time ------------------------------------------------------


@contextmanager
def exclusive(cluster: ClusterConfig, out: Callable[[str], None]) -> Iterator[None]:
    """Hold a lock so two `pocket up`/`down`/`node stop|start` never interleave (two test sessions at once).

    The lock is flock on the run dir's parent directory (/run), so it leaves no file behind.
    """
    cluster.run_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(cluster.run_dir.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            out("waiting for another pocket command on this cluster to finish ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- running `up` -------------------------------------------------------------------------------


# What a phase may fail with; anything else is a bug and gets a traceback.
PHASE_ERRORS = (BringUpError, network.NetworkError, ApiError, docker.errors.DockerException, OSError)


def run_phases(phases: Sequence[Phase], out: Callable[[str], None], hint: str) -> bool | None:
    """Run phases with a `[i/n] title ... outcome (seconds)` line each.

    A phase returns whether it changed anything (None: it only checked). Returns whether
    anything changed, or None after printing what failed and `hint`.
    """
    changed_any = False
    for index, (title, run) in enumerate(phases, 1):
        print(f"[{index}/{len(phases)}] {title} ...", end=" ", flush=True)
        started = time.monotonic()
        try:
            changed = run()
        except PHASE_ERRORS as err:
            print(f"FAILED ({time.monotonic() - started:.1f}s)", flush=True)
            out(f"error: {err}")
            for line in getattr(err, "details", []):
                out(f"  {line}")
            out(hint)
            return None
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            out(hint)
            return None
        changed_any |= bool(changed)
        outcome = "ok" if changed is None else "done" if changed else "already done"
        print(f"{outcome} ({time.monotonic() - started:.1f}s)", flush=True)
    return changed_any


def up(cluster: ClusterConfig, out: Callable[[str], None]) -> int:
    """Run every phase; 0 on success, 1 (with what failed and what to do) on failure."""
    total_start = time.monotonic()
    changed = run_phases(
        BringUp(cluster).phases(),
        out,
        "Fix the cause and run `pocket up` again (it continues where it stopped), "
        "or `pocket down` to remove everything and start over.",
    )
    if changed is None:
        return 1
    elapsed = time.monotonic() - total_start
    if changed:
        out(f"\npocketkube is up ({elapsed:.0f}s).")
    else:
        out(f"\npocketkube was already up; nothing changed ({elapsed:.1f}s).")
    out(next_steps(cluster))
    return 0


def next_steps(cluster: ClusterConfig) -> str:
    kubeconfig = str(cluster.kubeconfig).replace(str(Path.home()), "~", 1)
    return (
        "Next:\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        "  kubectl get nodes\n"
        f"  kubectl apply -f {EXAMPLE_MANIFEST}\n"
        "  kubectl get pods -o wide\n"
        "  pocket node exec worker1 -- ip addr\n"
        "  pocket client exec -- busybox ping -c1 192.168.56.11\n"
        "  pocket status\n"
        "  pocket down"
    )


# -- `pocket down` --------------------------------------------------------------------------------


def _ancestors() -> set[int]:
    """This process and its parents: never to be killed, even when run from inside a node."""
    found = set()
    pid = os.getpid()
    while pid > 1:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            break
    return found


def container_ids(cluster: ClusterConfig, nodes: list[str]) -> set[str]:
    """Ids of every container the nodes' dockerds know (their directories under the data root)."""
    ids = set()
    for node in nodes:
        containers = cluster.node_dir(node) / "docker" / "containers"
        if containers.is_dir():
            ids |= {entry.name for entry in containers.iterdir()}
    return ids


def cluster_processes(cluster: ClusterConfig, netns_names: list[str], nodes: list[str]) -> set[int]:
    """Processes in the given namespaces or in the nodes' containers, with all their descendants."""
    inodes = {inode for name in netns_names if (inode := netns_inode(name)) is not None}
    found = processes.in_netns(inodes) | processes.in_containers(container_ids(cluster, nodes))
    return processes.with_descendants(found) - _ancestors()


def recorded_processes(cluster: ClusterConfig) -> set[int]:
    if not cluster.pid_dir.exists():
        return set()
    return {pid for f in cluster.pid_dir.glob("*.pid") if (pid := processes.read_pid(f)) is not None}


def kill_until_gone(collect: Callable[[], set[int]], rounds: int = 5) -> set[int]:
    """SIGKILL what `collect` finds until it finds nothing (a dying parent may leave orphans behind)."""
    left: set[int] = set()
    for _ in range(rounds):
        pids = collect()
        if not pids:
            return set()
        left = processes.kill(pids)
    return left | collect()


CGROUP_ROOT = Path("/sys/fs/cgroup")


def container_cgroups(ids: set[str]) -> list[Path]:
    """The cgroup directories Docker made for these containers, in every hierarchy (v1 and the v2 mount)."""
    return sorted(path for container in ids for path in CGROUP_ROOT.glob(f"*/docker/{container}"))


def remove_cgroups(ids: set[str]) -> list[Path]:
    """rmdir the containers' (now empty) cgroups, which a killed dockerd leaves; return those that stay."""
    for path in container_cgroups(ids):
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            continue
    return container_cgroups(ids)


def mounts_under(*directories: Path) -> list[str]:
    """Mount points under the directories, deepest first (/proc/mounts escapes spaces as \\040)."""
    prefixes = [str(d).rstrip("/") + "/" for d in directories]
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if any(point.startswith(p) or point + "/" == p for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(*directories: Path) -> list[str]:
    """Unmount everything under the directories (lazily if busy); return what would not go."""
    for point in mounts_under(*directories):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts_under(*directories)


def down(cluster: ClusterConfig, out: Callable[[str], None], keep: bool = False) -> int:
    """Remove every process, mount, namespace and file `pocket up` made; fine if there is nothing.

    With `keep`, the state dir (etcd data, PKI, each node's Docker data root and kubelet dir,
    the registry) and the kubeconfig stay, as a power cut would leave them: the next `pocket up`
    restarts the same cluster, whose kubelets find their containers dead and start them again.
    The run dir (pid files, sockets, dockerd's exec root) goes, as /run does on a reboot.
    """
    problems: list[str] = []
    node_names = [node.name for node in cluster.nodes]
    containers = container_ids(cluster, node_names)

    def stop_forwarder() -> str:
        return "stopped" if processes.stop(forwarder_pid_file(cluster), timeout=3) else "not running"

    def kill_processes() -> str:
        netns_names = cluster.all_netns()
        killed = recorded_processes(cluster) | cluster_processes(cluster, netns_names, node_names)
        left = kill_until_gone(
            lambda: recorded_processes(cluster) | cluster_processes(cluster, netns_names, node_names)
        )
        if left:
            problems.append(f"processes that would not die: {sorted(left)}")
        return f"{len(killed)} killed" if killed else "none running"

    def unmount() -> str:
        before = len(mounts_under(cluster.state_dir, cluster.run_dir))
        left = unmount_all(cluster.state_dir, cluster.run_dir)
        if left:
            problems.append(f"mounts still present: {left}")
        return f"{before} unmounted" if before else "none"

    def remove_container_cgroups() -> str:
        before = len(container_cgroups(containers))
        left = remove_cgroups(containers)
        if left:
            problems.append(f"container cgroups still present: {[str(p) for p in left]}")
        return f"{before} removed" if before else "none"

    def remove_network() -> str:
        removed = network.delete_network(cluster)
        return ", ".join(removed) if removed else "none"

    def remove_files() -> str:
        removed = []
        for path in (cluster.run_dir,) if keep else (cluster.state_dir, cluster.run_dir):
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
                if path.exists():
                    problems.append(f"could not remove {path}")
                removed.append(str(path))
        if cluster.kubeconfig.exists() and not keep:
            cluster.kubeconfig.unlink()
            removed.append(str(cluster.kubeconfig))
            if cluster.kubeconfig.parent.exists() and not any(cluster.kubeconfig.parent.iterdir()):
                cluster.kubeconfig.parent.rmdir()
        return ", ".join(removed) if removed else "none"

    steps = [
        ("stopping the host forwarder", stop_forwarder),
        ("killing cluster processes (components, dockerd, containerd, containers)", kill_processes),
        ("unmounting docker's mounts", unmount),
        ("removing container cgroups", remove_container_cgroups),
        ("deleting network namespaces", remove_network),
        ("removing pid files and sockets (keeping the state and the kubeconfig)" if keep
         else "removing state, pid files and the kubeconfig", remove_files),
    ]
    for index, (title, run) in enumerate(steps, 1):
        print(f"[{index}/{len(steps)}] {title} ...", end=" ", flush=True)
        started = time.monotonic()
        try:
            result = run()
        except (network.NetworkError, OSError) as err:
            problems.append(f"{title}: {err}")
            result = "FAILED"
        print(f"{result} ({time.monotonic() - started:.1f}s)", flush=True)
    if problems:
        for problem in problems:
            out(f"error: {problem}")
        out("Run `pocket down` again; if it persists, see docs/local-cluster.md (troubleshooting).")
        return 1
    if keep:
        out(f"pocketkube is down; its state stays in {cluster.state_dir}: `pocket up` brings the same cluster back.")
        return 0
    out("pocketkube is down; nothing of it is left.")
    return 0


# -- `pocket status` ------------------------------------------------------------------------------


def status(cluster: ClusterConfig, out: Callable[[str], None]) -> int:
    """Per node: its namespace, each component's pid (up/down) and its Ready condition. 0 if all run."""
    existing = set(network.list_netns())
    try:
        readiness: dict[str, Readiness] | None = node_readiness(cluster) if cluster.node_netns(
            cluster.control_plane.name) in existing else None
    except ApiError:
        readiness = None
    all_up = True
    for node in cluster.nodes:
        netns = cluster.node_netns(node.name)
        if readiness is None:
            ready = "API unreachable"
        else:
            ready = readiness[node.name].status if node.name in readiness else "not registered"
        present = "present" if netns in existing else "MISSING"
        out(f"{node.name} ({node.ip}, netns {netns} {present}) Ready={ready}")
        for component in node_components(cluster, node):
            pid = processes.read_pid(cluster.pid_file(node.name, component.name))
            all_up &= pid is not None
            state = f"up   pid {pid}" if pid else "down"
            out(f"  {component.name:<20} {state}")
    pid = processes.read_pid(forwarder_pid_file(cluster))
    all_up &= pid is not None
    out(f"host forwarder 127.0.0.1:{cluster.api_port}: {f'up   pid {pid}' if pid else 'down'}")
    out(f"kubeconfig: {cluster.kubeconfig} ({'present' if cluster.kubeconfig.exists() else 'missing'})")
    return 0 if all_up else 3


def is_up(cluster: ClusterConfig) -> bool:
    """Every component and the forwarder run (what `pocket up` leaves behind)."""
    pid_files = [cluster.pid_file(n.name, c.name) for n in cluster.nodes for c in node_components(cluster, n)]
    return all(processes.is_running(f) for f in [*pid_files, forwarder_pid_file(cluster)])


# -- `pocket node stop|start` ---------------------------------------------------------------------


def node_stop(cluster: ClusterConfig, name: str, out: Callable[[str], None]) -> int:
    """Crash a node: SIGKILL everything in its namespace (and its containers), then take eth0 down."""
    node = cluster.node(name)
    netns = cluster.node_netns(node.name)
    forwarder = processes.read_pid(forwarder_pid_file(cluster))
    collect = lambda: cluster_processes(cluster, [netns], [node.name]) - {forwarder}  # noqa: E731
    killed = collect()
    left = kill_until_gone(collect)
    network.set_link(netns, "eth0", up=False)
    out(f"node {name}: killed {len(killed)} processes, eth0 down")
    if left:
        out(f"error: processes that would not die: {sorted(left)}")
        return 1
    return 0


def node_start(cluster: ClusterConfig, name: str, out: Callable[[str], None]) -> int:
    """Bring a stopped node back: eth0 up, dockerd, (control-plane services), kubelet, kproxy, (kdns); wait Ready."""
    node = cluster.node(name)
    bring_up = BringUp(cluster)
    netns = cluster.node_netns(node.name)
    steps: list[Phase] = [
        ("bringing eth0 up, restoring its routes", lambda: network.ensure_host_link(cluster, netns, node.ip)
         | network.ensure_node_routing(netns)),
        ("starting dockerd", lambda: bring_up.start_and_wait((DOCKERD,), [node], DOCKERD_TIMEOUT)),
    ]
    if node.role == CONTROL_PLANE_ROLE:
        steps += [
            ("starting etcd and the registry", lambda: bring_up.start_and_wait((ETCD, REGISTRY), [node], ETCD_TIMEOUT)),
            ("starting the control plane", bring_up.start_control_plane),
        ]

    def agents() -> bool:
        since = time.time()
        waiting, changed = start_components(cluster, (API_FORWARD, *NODE_AGENTS, KDNS), [node],
                                            bring_up.storage_driver)
        wait_all(waiting, HEALTH_TIMEOUT)
        wait_ready(cluster, [node.name], waiting, since)
        return changed

    steps.append(("starting kubelet and kproxy, waiting for Ready", agents))
    bring_up.storage_driver = choose_storage_driver(cluster)
    phases: list[Phase] = [(f"{name}: {title}", run) for title, run in steps]
    hint = f"Fix the cause and run `pocket node start {name}` again, or `pocket up` to complete the whole cluster."
    return 0 if run_phases(phases, out, hint) is not None else 1


# -- `pocket restart NODE COMPONENT` --------------------------------------------------------------


def restart_component(cluster: ClusterConfig, name: str, component: str, out: Callable[[str], None]) -> int:
    """Stop one component of a node (SIGTERM, SIGKILL after 10 s) and start it again; wait until it serves.

    The fault suite restarts components one at a time this way while traffic flows.
    """
    node = cluster.node(name)
    known = [c.name for c in node_components(cluster, node)]
    if component not in known:
        out(f"pocket: node {name} runs no component {component!r}; it runs: {', '.join(known)}")
        return 2
    pid = processes.stop(cluster.pid_file(node.name, component))
    storage_driver = choose_storage_driver(cluster)
    waiting, _ = start_components(cluster, (component,), [node], storage_driver)
    try:
        wait_all(waiting, HEALTH_TIMEOUT)
    except BringUpError as err:
        for line in [f"error: {err}", *err.details]:
            out(line)
        return 1
    new_pid = processes.read_pid(cluster.pid_file(node.name, component))
    out(f"node {name}: {component} restarted (pid {pid or 'none'} -> {new_pid})")
    return 0
