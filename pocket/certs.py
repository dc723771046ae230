"""The local cluster's PKI: which certificates `pocket up` makes, where they live, and a kubeconfig per identity.

Everything is under `<state_dir>/pki` (kubeadm's /etc/kubernetes/pki layout, by file name) and
`<state_dir>/pki/kubeconfigs/<identity>.conf`. `ensure_cluster_pki` is idempotent: files that
are still right are kept, so a second `pocket up` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from control import pki
from control.apiserver.encryption import write_encryption_config
from pocket.config import API_PORT, CLUSTER_DOMAIN, NODE_LOCAL_API_PORT, ClusterConfig
from pocket.kubeconfig import Credentials, write_kubeconfig

KUBERNETES_SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
APISERVER = "apiserver"
APISERVER_KUBELET_CLIENT = "apiserver-kubelet-client"
APISERVER_ETCD_CLIENT = "apiserver-etcd-client"
ETCD_SERVER = "etcd-server"
SERVICE_ACCOUNT = "sa"
ENCRYPTION_CONFIG = "encryption-config.yaml"

# kubeconfig identity -> the client certificate behind it (node identities are added per node)
ADMIN = "admin"
CONTROLLER_MANAGER = "controller-manager"
SCHEDULER = "scheduler"
KDNS = "kdns"
CLIENT_IDENTITIES = {
    ADMIN: pki.ADMIN,
    CONTROLLER_MANAGER: pki.CONTROLLER_MANAGER,
    SCHEDULER: pki.SCHEDULER,
    KDNS: pki.KUBE_DNS,
}


def node_identity(node: str) -> str:
    """The kubeconfig (and certificate) name of a node's kubelet and kproxy."""
    return f"node-{node}"


def kubelet_serving(node: str) -> str:
    return f"kubelet-{node}"


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of the cluster's certificates, keys and kubeconfigs (nothing is read or made here)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.cert(pki.CA_NAME)

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    @property
    def service_account_public(self) -> Path:
        return self.directory / f"{SERVICE_ACCOUNT}.pub"

    @property
    def service_account_private(self) -> Path:
        return self.directory / f"{SERVICE_ACCOUNT}.key"

    @property
    def encryption_config(self) -> Path:
        return self.directory / ENCRYPTION_CONFIG

    def kubeconfig(self, identity: str) -> Path:
        return self.directory / "kubeconfigs" / f"{identity}.conf"


def cluster_pki(cluster: ClusterConfig) -> ClusterPKI:
    return ClusterPKI(cluster.state_dir / "pki")


def api_server_url(cluster: ClusterConfig) -> str:
    """The API server over HTTPS, as seen from inside the node network.

    With several control planes: the node's own forwarder on 127.0.0.1, which fails over between them
    (the kubeconfigs are shared by all nodes, and every node runs one).
    """
    if cluster.highly_available:
        return f"https://127.0.0.1:{NODE_LOCAL_API_PORT}"
    return f"https://{cluster.control_plane.ip}:{API_PORT}"


def _snapshot(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} if directory.exists() else {}


def ensure_cluster_pki(cluster: ClusterConfig) -> bool:
    """CA, serving and client certificates, the service-account key pair, the encryption-at-rest key, and one
    kubeconfig per identity.

    Returns whether any file was made or replaced.
    """
    paths = cluster_pki(cluster)
    before = _snapshot(paths.directory)
    ca = pki.ensure_ca(paths.directory)
    control_plane_ips = tuple(n.ip for n in cluster.control_planes)
    serving = {
        APISERVER: pki.apiserver_serving(control_plane_ips, KUBERNETES_SERVICE_IP, CLUSTER_DOMAIN),
        ETCD_SERVER: pki.etcd_serving(*control_plane_ips),
        APISERVER_KUBELET_CLIENT: pki.APISERVER_KUBELET_CLIENT,
        APISERVER_ETCD_CLIENT: pki.APISERVER_ETCD_CLIENT,
        **{kubelet_serving(n.name): pki.kubelet_serving(n.name, n.ip) for n in cluster.nodes},
    }
    for name, spec in serving.items():
        pki.ensure_cert(paths.directory, ca, name, spec)
    pki.ensure_key_pair(paths.directory, SERVICE_ACCOUNT)
    write_encryption_config(paths.encryption_config)  # once: a new key would orphan every stored Secret
    clients = {**CLIENT_IDENTITIES, **{node_identity(n.name): pki.node_client(n.name) for n in cluster.nodes}}
    for identity, spec in clients.items():
        made = pki.ensure_cert(paths.directory, ca, identity, spec)
        write_kubeconfig(
            paths.kubeconfig(identity),
            api_server_url(cluster),
            Credentials.from_files(ca.paths.cert, made.cert, made.key),
            spec.common_name,
        )
    return _snapshot(paths.directory) != before


def write_user_kubeconfig(cluster: ClusterConfig) -> bool:
    """The user's kubeconfig: the host forwarder on 127.0.0.1, the cluster CA and the admin certificate."""
    paths = cluster_pki(cluster)
    return write_kubeconfig(
        cluster.kubeconfig,
        f"https://127.0.0.1:{cluster.api_port}",
        Credentials.from_files(paths.ca, paths.cert(ADMIN), paths.key(ADMIN)),
        pki.ADMIN.common_name,
    )
