"""The Summary API (`/stats/summary`): CPU and memory of the node, its pods and their containers.

A subset of Kubernetes' `stats/v1alpha1` Summary in its shape and names, so
a metrics pipeline (metrics-server style, and then `kubectl top`) can read
it: cumulative `usageCoreNanoSeconds` and working-set memory are what it
needs; `usageNanoCores` is the rate since this kubelet's previous sample of
the same container (absent on the first).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubelet.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    LABEL_TYPE,
    TYPE_CONTAINER,
    ContainerRuntime,
    ContainerStats,
)

Object = dict[str, Any]
USER_HZ = os.sysconf("SC_CLK_TCK")


def _time(timestamp: float) -> str:
    """RFC 3339 with the sample's fraction of a second (as Go's RFC3339Nano prints it): consumers take
    CPU rates between two samples' times, which whole seconds would skew by up to a second."""
    text = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def node_cpu_ns(proc_stat: Path = Path("/proc/stat")) -> int:
    """CPU time the machine spent busy (not idle or iowait), in nanoseconds."""
    fields = proc_stat.read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) * 1_000_000_000 // USER_HZ


def node_memory(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    """(total, available) bytes."""
    values = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return values["MemTotal"], values["MemAvailable"]


class StatsProvider:
    """Samples the runtime for every running app container of the pods this kubelet runs."""

    def __init__(self, runtime: ContainerRuntime, pods: Callable[[], dict[str, Object]], node_name: str):
        self.runtime, self.pods, self.node_name = runtime, pods, node_name
        self._previous: dict[str, tuple[float, int]] = {}  # key -> (timestamp, cumulative cpu ns)
        self._started = time.time()

    def _cpu(self, key: str, timestamp: float, usage_ns: int) -> Object:
        cpu: Object = {"time": _time(timestamp), "usageCoreNanoSeconds": usage_ns}
        previous = self._previous.get(key)
        if previous is not None and timestamp > previous[0] and usage_ns >= previous[1]:
            cpu["usageNanoCores"] = int((usage_ns - previous[1]) / (timestamp - previous[0]))
        self._previous[key] = (timestamp, usage_ns)
        return cpu

    def _container(self, name: str, started: str, sample: ContainerStats, key: str) -> Object:
        return {
            "name": name,
            "startTime": started,
            "cpu": self._cpu(key, sample.timestamp, sample.cpu_usage_ns),
            "memory": {
                "time": _time(sample.timestamp),
                "usageBytes": sample.memory_usage_bytes,
                "workingSetBytes": sample.memory_working_set_bytes,
                "rssBytes": sample.memory_rss_bytes,
            },
        }

    async def summary(self) -> Object:
        """The Summary: node totals, then one entry per pod with its containers and their sums."""
        pods = self.pods()
        running = [
            c
            for c in await self.runtime.list_containers({LABEL_TYPE: TYPE_CONTAINER})
            if c.running and c.labels.get(LABEL_POD_UID) in pods
        ]
        samples = await asyncio.gather(*(self.runtime.container_stats(c.id) for c in running))
        by_pod: dict[str, list[Object]] = {}
        for state, sample in zip(running, samples, strict=True):
            if sample is None:
                continue
            uid, name = state.labels[LABEL_POD_UID], state.labels.get(LABEL_CONTAINER_NAME, "")
            by_pod.setdefault(uid, []).append(self._container(name, state.started_at, sample, f"{uid}/{name}"))
        now = time.time()
        pod_entries = []
        for uid, containers in sorted(by_pod.items()):
            meta = pods[uid]["metadata"]
            cpu_ns = sum(c["cpu"]["usageCoreNanoSeconds"] for c in containers)
            memory = {
                field: sum(c["memory"][field] for c in containers)
                for field in ("usageBytes", "workingSetBytes", "rssBytes")
            }
            pod_entries.append(
                {
                    "podRef": {"name": meta["name"], "namespace": meta.get("namespace", ""), "uid": uid},
                    "startTime": (pods[uid].get("status") or {}).get("startTime", ""),
                    "containers": sorted(containers, key=lambda c: str(c["name"])),
                    "cpu": self._cpu(f"pod/{uid}", now, cpu_ns),
                    "memory": {"time": _time(now), **memory},
                }
            )
        alive = {f"{c.labels[LABEL_POD_UID]}/{c.labels.get(LABEL_CONTAINER_NAME, '')}" for c in running}
        alive |= {f"pod/{uid}" for uid in by_pod} | {"node"}
        for key in set(self._previous) - alive:
            del self._previous[key]
        total, available = node_memory()
        return {
            "node": {
                "nodeName": self.node_name,
                "startTime": _time(int(self._started)),
                "cpu": self._cpu("node", now, node_cpu_ns()),
                "memory": {
                    "time": _time(now),
                    "availableBytes": available,
                    "usageBytes": total - available,
                    "workingSetBytes": total - available,
                },
            },
            "pods": pod_entries,
        }
