"""Pod networking on one node: the cbr0 bridge, a veth per pod, host-local IPAM and routes to other nodes.

All netlink and sysctl work happens on one dedicated thread.  In production
that thread is already in the node's network namespace (the kubelet is
started there); a test can hand a namespace path and the thread enters it
first, so nothing touches the namespace the test runs in.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import ipaddress
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
BRIDGE = "cbr0"
ROUTE_PROTOCOL = 201  # marks the node routes this kubelet owns, so stale ones can be found after a restart
HAIRPIN = 1  # IFLA_BRPORT_MODE: send frames back out the port they came from
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}

_libc = ctypes.CDLL(None, use_errno=True)


class NetworkError(Exception):
    """Pod networking could not be set up or torn down."""


def _setns(fd: int) -> None:
    """Move the calling thread (only) into the network namespace behind fd."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise NetworkError(f"setns: {os.strerror(ctypes.get_errno())}")


def _enter(path: str | None) -> None:
    if path is None:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _delete_link(ipr: IPRoute, index: int) -> None:
    """Delete a link; one already gone is fine (a stopped sandbox's namespace takes its veth pair with it)."""
    try:
        ipr.link("del", index=index)
    except NetlinkError as err:
        if err.code != errno.ENODEV:
            raise


class Ipam:
    """host-local IPAM: one file per allocated address, named by the IP, holding its pod's uid.

    Creating the file with O_EXCL is the allocation, so two pods never get one
    address, and the directory survives kubelet restarts.
    """

    def __init__(self, directory: Path, cidr: str):
        self.network = ipaddress.ip_network(cidr)
        self.gateway = next(self.network.hosts())
        self.directory = directory / str(self.network).replace("/", "_")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._last = self.directory / "last_reserved_ip"

    def allocations(self) -> dict[str, str]:
        """IP -> owner uid."""
        found = {}
        for entry in self.directory.iterdir():
            if entry.name != self._last.name:
                found[entry.name] = entry.read_text().strip()
        return found

    def lookup(self, owner: str) -> str | None:
        for ip, uid in self.allocations().items():
            if uid == owner:
                return ip
        return None

    def allocate(self, owner: str) -> str:
        """The owner's address, reserving the next free one (after the last handed out) if it has none."""
        existing = self.lookup(owner)
        if existing:
            return existing
        candidates = [ip for ip in self.network.hosts() if ip != self.gateway]
        start = 0
        if self._last.exists():
            last = ipaddress.ip_address(self._last.read_text().strip())
            start = next((i + 1 for i, ip in enumerate(candidates) if ip == last), 0)
        for ip in candidates[start:] + candidates[:start]:
            try:
                fd = os.open(self.directory / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            self._last.write_text(str(ip))
            return str(ip)
        raise NetworkError(f"no free address left in {self.network}")

    def release(self, owner: str) -> None:
        for ip, uid in self.allocations().items():
            if uid == owner:
                (self.directory / ip).unlink(missing_ok=True)


def veth_name(pod_uid: str) -> str:
    """The host end's name: stable per pod and within the 15-character limit."""
    return "veth" + hashlib.sha1(pod_uid.encode()).hexdigest()[:8]


class NodeNetwork:
    """The node's pod network: bridge, per-pod veths and addresses, routes to other nodes."""

    def __init__(self, root_dir: Path, netns_path: str | None = None, bridge: str = BRIDGE):
        self.root_dir = root_dir
        self.bridge = bridge
        self.ipam: Ipam | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="netlink", initializer=_enter, initargs=(netns_path,)
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- node --------------------------------------------------------------

    async def ensure_bridge(self, pod_cidr: str) -> None:
        """cbr0 up with .1 of the podCIDR, forwarding on; IPAM over the podCIDR."""
        network = ipaddress.ip_network(pod_cidr)
        self.ipam = Ipam(self.root_dir / "ipam", pod_cidr)
        await self._run(self._ensure_bridge, f"{self.ipam.gateway}", network.prefixlen)

    def _ensure_bridge(self, gateway: str, prefix: int) -> None:
        for key, value in SYSCTLS.items():
            Path("/proc/sys", key).write_text(value)
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.bridge):
                ipr.link("add", ifname=self.bridge, kind="bridge")
            index = ipr.link_lookup(ifname=self.bridge)[0]
            addresses = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
            if (gateway, prefix) not in addresses:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefix)
            ipr.link("set", index=index, state="up")

    # -- pods --------------------------------------------------------------

    def _need_ipam(self) -> Ipam:
        if self.ipam is None:
            raise NetworkError("the pod bridge is not set up yet (no podCIDR)")
        return self.ipam

    async def setup_pod(self, pod_uid: str, sandbox_pid: int) -> str:
        """Wire the sandbox whose process is `sandbox_pid` to cbr0; return the pod IP."""
        ipam = self._need_ipam()
        ip = ipam.allocate(pod_uid)
        try:
            await self._run(self._setup_pod, pod_uid, sandbox_pid, ip, ipam.network.prefixlen, str(ipam.gateway))
        except Exception:
            ipam.release(pod_uid)
            raise
        return ip

    def _setup_pod(self, pod_uid: str, pid: int, ip: str, prefix: int, gateway: str) -> None:
        host_end = veth_name(pod_uid)
        pod_end = "p" + host_end[1:]
        node_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        pod_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            with IPRoute() as ipr:
                for stale in ipr.link_lookup(ifname=host_end):
                    _delete_link(ipr, stale)
                ipr.link("add", ifname=host_end, kind="veth", peer=pod_end)
                host_index = ipr.link_lookup(ifname=host_end)[0]
                bridge_index = ipr.link_lookup(ifname=self.bridge)[0]
                ipr.link("set", index=host_index, master=bridge_index)
                ipr.brport("set", index=host_index, mode=HAIRPIN)
                ipr.link("set", index=host_index, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname=pod_end)[0], net_ns_fd=pod_fd)
            _setns(pod_fd)
            try:
                with IPRoute() as ipr:
                    index = ipr.link_lookup(ifname=pod_end)[0]
                    ipr.link("set", index=index, ifname="eth0")
                    ipr.addr("add", index=index, address=ip, prefixlen=prefix)
                    ipr.link("set", index=index, state="up")
                    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                    ipr.route("replace", dst="0.0.0.0/0", gateway=gateway)
            finally:
                _setns(node_fd)
        finally:
            os.close(pod_fd)
            os.close(node_fd)

    async def teardown_pod(self, pod_uid: str) -> None:
        """Remove the pod's veth (if its sandbox has not taken it along) and free its address."""
        await self._run(self._teardown_pod, pod_uid)
        if self.ipam is not None:
            self.ipam.release(pod_uid)

    def _teardown_pod(self, pod_uid: str) -> None:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=veth_name(pod_uid)):
                _delete_link(ipr, index)

    def pod_ip(self, pod_uid: str) -> str | None:
        return None if self.ipam is None else self.ipam.lookup(pod_uid)

    def allocated_pods(self) -> set[str]:
        return set() if self.ipam is None else set(self.ipam.allocations().values())

    # -- routes to other nodes ---------------------------------------------

    async def sync_routes(self, wanted: dict[str, str]) -> None:
        """Make the owned routes exactly `wanted` (podCIDR -> node InternalIP)."""
        await self._run(self._sync_routes, dict(wanted))

    def _sync_routes(self, wanted: dict[str, str]) -> None:
        with IPRoute() as ipr:
            for route in ipr.get_routes(family=2, proto=ROUTE_PROTOCOL):
                dst = f"{route.get('dst')}/{route['dst_len']}"
                if wanted.get(dst) != route.get("gateway"):
                    ipr.route("del", dst=dst, proto=ROUTE_PROTOCOL)
            for cidr, via in wanted.items():
                try:
                    ipr.route("replace", dst=cidr, gateway=via, proto=ROUTE_PROTOCOL)
                except Exception as err:  # a gateway not on any link yet; the next sync retries
                    log.warning("route %s via %s: %s", cidr, via, err)
