"""The Node object: registration, status and the heartbeat (Lease renewal + Ready condition)."""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.api.errors import ApiError
from control.clock import Clock
from control.api.quantity import milli_value, whole_value
from control.api.timestamps import now_micro, now_rfc3339

log = logging.getLogger(__name__)

Object = dict[str, Any]
KUBELET_VERSION = "v1.32.0-pocketkube"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
MAX_PODS = 110
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def parse_labels(text: str) -> dict[str, str]:
    """`--node-labels k=v,k2=v2`."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--node-labels: {item!r} is not key=value")
        labels[key] = value
    return labels


def parse_taints(text: str) -> list[Object]:
    """`--register-with-taints key=value:Effect,key2:Effect`."""
    taints = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key_value, sep, effect = item.rpartition(":")
        if not sep or effect not in TAINT_EFFECTS or not key_value:
            raise ValueError(f"--register-with-taints: {item!r} is not key[=value]:{'|'.join(TAINT_EFFECTS)}")
        key, _, value = key_value.partition("=")
        taint: Object = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints


RESERVABLE = ("cpu", "memory")


def parse_reserved(text: str) -> dict[str, str]:
    """`--system-reserved cpu=500m,memory=1Gi`: what the node keeps for itself, off allocatable."""
    reserved: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in RESERVABLE:
            raise ValueError(f"--system-reserved: {item!r} is not cpu=<quantity> or memory=<quantity>")
        try:
            amount = milli_value(value) if name == "cpu" else whole_value(value)
        except ValueError as err:
            raise ValueError(f"--system-reserved: {name}: {err}") from None
        if amount < 0:
            raise ValueError(f"--system-reserved: {name} must not be negative, got {value!r}")
        reserved[name] = value
    return reserved


def allocatable(capacity: dict[str, str], reserved: dict[str, str]) -> dict[str, str]:
    """Capacity minus the reservation (never below zero), in the units Kubernetes prints."""
    result = dict(capacity)
    if "cpu" in reserved:
        left = max(0, milli_value(capacity["cpu"]) - milli_value(reserved["cpu"]))
        result["cpu"] = str(left // 1000) if left % 1000 == 0 else f"{left}m"
    if "memory" in reserved:
        left = max(0, whole_value(capacity["memory"]) - whole_value(reserved["memory"]))
        result["memory"] = f"{left // 1024}Ki"
    return result


def memory_ki(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise ValueError(f"{meminfo} has no MemTotal line")


def machine_capacity() -> dict[str, str]:
    """The Node's capacity: this machine's CPUs and memory, and the pod limit."""
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_ki()}Ki", "pods": str(MAX_PODS)}


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@dataclass
class NodeIdentity:
    name: str
    ip: str
    kubelet_port: int = 10250
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Object] = field(default_factory=list)
    reserved: dict[str, str] = field(default_factory=dict)  # --system-reserved


class NodeAgent:
    """Registers this node and keeps its Lease and Ready condition fresh."""

    def __init__(
        self,
        api: Any,
        identity: NodeIdentity,
        runtime_version: str,
        clock: Clock,
        heartbeat_interval: float,
        network_ready: Callable[[], bool],
    ):
        self.api, self.identity, self.runtime_version = api, identity, runtime_version
        self.clock, self.heartbeat_interval, self.network_ready = clock, heartbeat_interval, network_ready

    def labels(self) -> dict[str, str]:
        arch = ARCHITECTURES.get(platform.machine(), platform.machine())
        return {
            "kubernetes.io/hostname": self.identity.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            **self.identity.labels,
        }

    def node_status(self, previous: Object | None = None) -> Object:
        """Capacity from this machine, addresses, nodeInfo and conditions with a fresh heartbeat."""
        capacity = machine_capacity()
        arch = ARCHITECTURES.get(platform.machine(), platform.machine())
        now = now_rfc3339()
        old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
        ready = self.network_ready()

        def condition(kind: str, status: str, reason: str, message: str) -> Object:
            since = old.get(kind, {})
            moved = since.get("status") != status or not since.get("lastTransitionTime")
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now if moved else since["lastTransitionTime"],
            }

        return {
            "capacity": capacity,
            "allocatable": allocatable(capacity, self.identity.reserved),
            "addresses": [
                {"type": "InternalIP", "address": self.identity.ip},
                {"type": "Hostname", "address": self.identity.name},
            ],
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
                if ready
                else condition("Ready", "False", "KubeletNotReady", "pod network not ready: no podCIDR assigned yet"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.identity.kubelet_port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": arch,
            },
        }

    def node_object(self) -> Object:
        spec: Object = {}
        if self.identity.taints:
            spec["taints"] = self.identity.taints
        return {"metadata": {"name": self.identity.name, "labels": self.labels()}, "spec": spec, "status": {}}

    async def register(self) -> Object:
        """Create the Node, or (after a restart) update its labels and status; returns the stored Node."""
        try:
            node = await self.api.create("nodes", self.node_object())
            log.info("registered node %s", self.identity.name)
        except ApiError as err:
            if err.code != 409:
                raise
            node = await self.api.get("nodes", self.identity.name)
            node["metadata"]["labels"] = {**(node["metadata"].get("labels") or {}), **self.labels()}
            node = await self.api.update("nodes", node)
            log.info("node %s already registered; updated it", self.identity.name)
        return await self.update_status(node)

    async def update_status(self, node: Object | None = None) -> Object:
        if node is None:
            node = await self.api.get("nodes", self.identity.name)
        node["status"] = {**(node.get("status") or {}), **self.node_status(node.get("status"))}
        return await self.api.update_status("nodes", node)

    async def renew_lease(self) -> None:
        name = self.identity.name
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now_micro(),
        }
        try:
            lease = await self.api.get("leases", name, LEASE_NAMESPACE)
        except ApiError as err:
            if err.code != 404:
                raise
            await self.api.create("leases", {"metadata": {"name": name, "namespace": LEASE_NAMESPACE}, "spec": spec})
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        await self.api.update("leases", lease)

    async def heartbeat(self) -> None:
        """One beat: renew the Lease and refresh the Node's conditions."""
        try:
            await self.renew_lease()
            await self.update_status()
            self.last_heartbeat_ok = True
        except ApiError as err:
            log.warning("heartbeat of node %s failed: %s", self.identity.name, err)

    async def run(self) -> None:
        while True:
            await self.heartbeat()
            await self.clock.sleep(self.heartbeat_interval)
