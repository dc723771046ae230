"""The node network: namespaces, the bridge, veths, addresses, routes, sysctls.

Everything is made with `ip -n <ns>` (and `sysctl` through nsenter) inside
the cluster's own namespaces; the host namespace is never changed. Each
`ensure_*` step checks first and returns whether it changed anything, so
running it on a finished network is a no-op and on a half-made one
completes it.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pocket.config import NODE_PREFIX_LEN, SERVICE_CIDR, ClusterConfig
from pocket.netns import netns_path, nsenter_argv

MAX_IFNAME = 15


class NetworkError(RuntimeError):
    """An `ip`/`sysctl` command failed; the message carries the command and its stderr."""


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _ip_json(netns: str, *args: str) -> list[dict[str, Any]]:
    out = _run(["ip", "-n", netns, "-j", *args])
    return json.loads(out) if out.strip() else []


def list_netns() -> list[str]:
    """Names of all named network namespaces on the machine."""
    out = _run(["ip", "-j", "netns", "list"])
    return [entry["name"] for entry in (json.loads(out) if out.strip() else [])]


def peer_name(netns: str, cluster: ClusterConfig) -> str:
    """The bridge-side end of a host's veth (interface names are at most 15 characters)."""
    return ("v-" + netns.removeprefix(cluster.prefix))[:MAX_IFNAME]


def _link(netns: str, name: str) -> dict[str, Any] | None:
    links = [link for link in _ip_json(netns, "link", "show") if link.get("ifname") == name]
    return links[0] if links else None


def _ensure_up(netns: str, name: str) -> bool:
    link = _link(netns, name)
    if link is None:
        raise NetworkError(f"{name} is missing in {netns}")
    if "UP" in link.get("flags", []):
        return False
    _run(["ip", "-n", netns, "link", "set", name, "up"])
    return True


def ensure_netns(name: str) -> bool:
    if netns_path(name).exists():
        return False
    _run(["ip", "netns", "add", name])
    return True


def ensure_bridge(cluster: ClusterConfig) -> bool:
    netns = cluster.bridge_netns
    changed = False
    if _link(netns, cluster.bridge) is None:
        _run(["ip", "-n", netns, "link", "add", cluster.bridge, "type", "bridge"])
        changed = True
    changed |= _ensure_up(netns, cluster.bridge)
    changed |= _ensure_up(netns, "lo")
    return changed


def ensure_host_link(cluster: ClusterConfig, netns: str, address: str) -> bool:
    """`eth0` in `netns` with `address`, its peer on the bridge, both up, and `lo` up."""
    changed = False
    peer = peer_name(netns, cluster)
    if _link(netns, "eth0") is None:
        if _link(cluster.bridge_netns, peer) is not None:
            _run(["ip", "-n", cluster.bridge_netns, "link", "del", peer])
        _run(["ip", "-n", cluster.bridge_netns, "link", "add", peer, "type", "veth", "peer", "name", "eth0",
              "netns", netns])
        changed = True
    peer_link = _link(cluster.bridge_netns, peer)
    if peer_link is None or peer_link.get("master") != cluster.bridge:
        _run(["ip", "-n", cluster.bridge_netns, "link", "set", peer, "master", cluster.bridge])
        changed = True
    changed |= _ensure_up(cluster.bridge_netns, peer)
    addrs = _ip_json(netns, "addr", "show", "dev", "eth0")
    have = {
        (a["local"], a["prefixlen"]) for entry in addrs for a in entry.get("addr_info", []) if a.get("family") == "inet"
    }
    if (address, NODE_PREFIX_LEN) not in have:
        _run(["ip", "-n", netns, "addr", "add", f"{address}/{NODE_PREFIX_LEN}", "dev", "eth0"])
        changed = True
    changed |= _ensure_up(netns, "eth0")
    changed |= _ensure_up(netns, "lo")
    return changed


def ensure_node_routing(netns: str) -> bool:
    """IP forwarding on, and the service range routed out of eth0 (there is no default route)."""
    changed = False
    forward = _run(nsenter_argv(netns, ["sysctl", "-n", "net.ipv4.ip_forward"])).strip()
    if forward != "1":
        _run(nsenter_argv(netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))
        changed = True
    routes = _ip_json(netns, "route", "show", SERVICE_CIDR)
    if not any(r.get("dev") == "eth0" for r in routes):
        _run(["ip", "-n", netns, "route", "replace", SERVICE_CIDR, "dev", "eth0"])
        changed = True
    return changed


def ensure_network(cluster: ClusterConfig) -> bool:
    """Build (or complete) the whole node network; True if anything changed."""
    changed = False
    for name in cluster.all_netns():
        changed |= ensure_netns(name)
    changed |= ensure_bridge(cluster)
    for netns, address in cluster.endpoints():
        changed |= ensure_host_link(cluster, netns, address)
    for node in cluster.nodes:
        changed |= ensure_node_routing(cluster.node_netns(node.name))
    if changed:
        # A re-created eth0 has a new MAC; drop neighbour entries that still point at the old one
        # (or sit FAILED from lookups made while it was missing).
        for netns, _ in cluster.endpoints():
            _run(["ip", "-n", netns, "neigh", "flush", "all"])
    return changed


def set_link(netns: str, name: str, up: bool) -> None:
    _run(["ip", "-n", netns, "link", "set", name, "up" if up else "down"])


def delete_network(cluster: ClusterConfig) -> list[str]:
    """Delete the cluster's namespaces that exist (their interfaces go with them); return their names."""
    existing = set(list_netns())
    removed = []
    for name in cluster.all_netns():
        if name in existing:
            _run(["ip", "netns", "del", name])
            removed.append(name)
    return removed
