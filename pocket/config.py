"""The local cluster's address plan and file layout, in one value.

Everything `pocket up` creates is named from a `ClusterConfig`: the
namespace prefix and the state, run and log directories. The defaults are
the real cluster (`pk-`, /var/lib/pocketkube, /run/pocketkube); tests pass
their own prefix and directories so they never meet a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NODE_SUBNET = "192.168.56.0/24"
NODE_PREFIX_LEN = 24
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_CIDR_MASK_SIZE = 24
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CLIENT_IP = "192.168.56.1"
CONTROL_PLANE_IP = "192.168.56.10"
# Extra control planes of an HA cluster (`pocket up --control-planes 3`): control2 at .20, control3 at .21, ...,
# so the first control plane (.10) and the workers (.11 and up) keep their addresses. (Not "control-plane2":
# a node's bridge-side veth is "v-<node>", and interface names stop at 15 characters.)
EXTRA_CONTROL_PLANE_BASE = 18  # controlN is 192.168.56.(18 + N)
MAX_CONTROL_PLANES = 7  # an odd etcd quorum; addresses stay below .26
NODE_LOCAL_API_PORT = 6444  # HA: each node's API forwarder on 127.0.0.1, failing over between API servers

API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
REGISTRY_PORT = 5000
KUBELET_PORT = 10250
CONTROLLER_MANAGER_HEALTH_PORT = 10257
SCHEDULER_HEALTH_PORT = 10259
KPROXY_HEALTH_PORT = 10256
KDNS_HEALTH_PORT = 9153
DNS_PORT = 53

CONTROL_PLANE_ROLE = "control-plane"
WORKER_ROLE = "worker"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


@dataclass(frozen=True)
class NodeSpec:
    """One node of the cluster: its name, role and address on the node network."""

    name: str
    role: str
    ip: str


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("control-plane", CONTROL_PLANE_ROLE, CONTROL_PLANE_IP),
    NodeSpec("worker1", WORKER_ROLE, "192.168.56.11"),
    NodeSpec("worker2", WORKER_ROLE, "192.168.56.12"),
)


def plan_nodes(control_planes: int = 1) -> tuple[NodeSpec, ...]:
    """The default nodes plus control2..N; an even count is refused (etcd needs an odd quorum)."""
    if not 1 <= control_planes <= MAX_CONTROL_PLANES or control_planes % 2 == 0:
        raise ValueError(
            f"--control-planes must be an odd number from 1 to {MAX_CONTROL_PLANES} "
            f"(etcd keeps a majority only with an odd member count), got {control_planes}"
        )
    extra = tuple(
        NodeSpec(f"control{n}", CONTROL_PLANE_ROLE, f"192.168.56.{EXTRA_CONTROL_PLANE_BASE + n}")
        for n in range(2, control_planes + 1)
    )
    return (DEFAULT_NODES[0], *extra, *DEFAULT_NODES[1:])


@dataclass(frozen=True)
class ClusterConfig:
    """Names and paths of one local cluster; every other module derives from it."""

    prefix: str = "pk-"
    state_dir: Path = Path("/var/lib/pocketkube")
    run_dir: Path = Path("/run/pocketkube")
    kubeconfig: Path = field(default_factory=lambda: Path.home() / ".pocketkube" / "kubeconfig")
    api_port: int = API_PORT
    nodes: tuple[NodeSpec, ...] = DEFAULT_NODES
    bridge: str = "pkbr0"
    proxy_mode: str = "iptables"  # each kproxy's --mode: iptables or nftables

    # -- network namespaces ------------------------------------------------

    @property
    def bridge_netns(self) -> str:
        return f"{self.prefix}net"

    @property
    def client_netns(self) -> str:
        return f"{self.prefix}client"

    def node_netns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    def all_netns(self) -> list[str]:
        """Every namespace the cluster owns, the bridge's first."""
        return [self.bridge_netns, *(self.node_netns(n.name) for n in self.nodes), self.client_netns]

    def endpoints(self) -> list[tuple[str, str]]:
        """(namespace, address) of every host on the node network: the nodes, then the client."""
        return [(self.node_netns(n.name), n.ip) for n in self.nodes] + [(self.client_netns, CLIENT_IP)]

    # -- nodes -------------------------------------------------------------

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"no node named {name!r} (nodes: {known})")

    @property
    def control_plane(self) -> NodeSpec:
        """The first control plane: it alone runs the image registry and a kdns."""
        return next(n for n in self.nodes if n.role == CONTROL_PLANE_ROLE)

    @property
    def control_planes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role == CONTROL_PLANE_ROLE)

    @property
    def highly_available(self) -> bool:
        """More than one control plane: etcd members peer over TLS, agents reach the API through a forwarder."""
        return len(self.control_planes) > 1

    @property
    def api_server_url(self) -> str:
        """The API server as seen from inside the node network."""
        return f"http://{self.control_plane.ip}:{API_PORT}"

    @property
    def api_targets(self) -> list[str]:
        """Every API server as HOST:PORT, the first control plane's first (what forwarders fail over between)."""
        return [f"{n.ip}:{API_PORT}" for n in self.control_planes]

    @property
    def registry(self) -> str:
        return f"{self.control_plane.ip}:{REGISTRY_PORT}"

    # -- files -------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def etcd_dir(self) -> Path:
        """The first control plane's etcd data."""
        return self.state_dir / "etcd"

    def etcd_member_dir(self, node: str) -> Path:
        """A control plane's etcd data: etcd_dir for the first, <state>/etcd-<node> for the others (HA)."""
        return self.etcd_dir if node == self.control_plane.name else self.state_dir / f"etcd-{node}"

    @property
    def registry_dir(self) -> Path:
        return self.state_dir / "registry"

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def node_run_dir(self, node: str) -> Path:
        return self.run_dir / node

    def docker_socket(self, node: str) -> Path:
        return self.node_run_dir(node) / "docker.sock"

    def docker_host(self, node: str) -> str:
        return f"unix://{self.docker_socket(node)}"

    def resolv_conf(self, node: str) -> Path:
        return self.node_dir(node) / "resolv.conf"

    def log_file(self, node: str, component: str) -> Path:
        return self.log_dir / f"{node}-{component}.log"

    def pid_file(self, node: str, component: str) -> Path:
        return self.pid_dir / f"{node}-{component}.pid"
