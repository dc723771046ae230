"""Scheduler throughput: 5,000 pods on 1,000 nodes registered through the API, no kubelets.

Everything runs as real processes on 127.0.0.1 with free ports, as the test
fixtures do: etcd (temporary data dir), `pocket apiserver`, and
`pocket scheduler --leader-elect=false`.  The nodes (Ready, 4 cpu / 16Gi /
110 pods each) and all pods (100m cpu / 128Mi requests, no
ownerReferences: see `pod`) are created before the scheduler
starts; a watch then timestamps every binding.  Throughput is bound pods per
second between the first and the last binding (the scheduler's own start-up
and first list are reported separately); the whole run is repeated ROUNDS
times and the median round reported, as the machine is shared and noisy.  kube-scheduler's CI floor for
this kind of test is 270 pods/s at 5,000 nodes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.client import Client
from benchmarks.report import Figure, Reference, Section
from benchmarks.support import free_port

NODES = 1000
PODS = 5000
PODS_PER_GROUP = 50  # pods sharing one app label
CONCURRENCY = 32  # requests in flight while creating objects
ROUNDS = 3  # full runs; the report is the median
TIMEOUT = 900.0  # seconds the scheduling phase may take before the run gives up
NAMESPACE = "default"


def wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f}s")


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def bounded(calls: Iterable[Callable[[], Awaitable[Any]]]) -> None:
    """Run the calls with at most CONCURRENCY in flight."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with limit:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


def node_name(i: int) -> str:
    return f"bench-node-{i:04d}"


async def register_node(client: Client, i: int) -> None:
    """As a kubelet registers: create the Node, then post a Ready status."""
    labels = {"kubernetes.io/hostname": node_name(i), "topology.kubernetes.io/zone": f"zone-{i % 3}"}
    created = await client.create("nodes", {"metadata": {"name": node_name(i), "labels": labels}})
    resources = {"cpu": "4", "memory": "16Gi", "pods": "110"}
    status = {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }
    await client.update_status("nodes", {**created, "status": status})


def pod(i: int) -> dict[str, Any]:
    """A small pod: this API server cannot list more than 4 MiB from etcd, and 5,000 pods with ownerReferences
    and their binding conditions are more than that."""
    return {
        "metadata": {"name": f"bench-pod-{i:05d}", "labels": {"app": f"bench-{i // PODS_PER_GROUP}"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
            ]
        },
    }


async def populate(api: str) -> tuple[float, float, str]:
    """Create the nodes and the pods; return the seconds each took and the resourceVersion after the last pod."""
    async with Client(api, user_agent="bench-scheduler") as client:
        started = time.monotonic()
        await bounded(lambda i=i: register_node(client, i) for i in range(NODES))  # type: ignore[misc]
        nodes_took = time.monotonic() - started
        started = time.monotonic()
        versions: list[int] = []

        async def create_pod(i: int) -> None:
            created = await client.create("pods", pod(i), NAMESPACE)
            versions.append(int(created["metadata"]["resourceVersion"]))

        await bounded(lambda i=i: create_pod(i) for i in range(PODS))  # type: ignore[misc]
        return nodes_took, time.monotonic() - started, str(max(versions))


async def time_bindings(
    api: str, version: str, scheduler: subprocess.Popen[bytes], scheduler_started: float
) -> tuple[list[float], dict[str, int]]:
    """Watch pods from `version` until every one is bound; return binding times (since scheduler start), pods per node.

    (A watch, not a list: see `pod` on the list size limit.)
    """
    bound: dict[str, float] = {}
    per_node: dict[str, int] = {}
    async with Client(api, user_agent="bench-watch") as client:
        deadline = time.monotonic() + TIMEOUT
        while len(bound) < PODS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(bound)} of {PODS} pods bound within {TIMEOUT:.0f}s")
            if scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler exited with {scheduler.returncode} after {len(bound)} bindings")
            async for event in client.watch("pods", NAMESPACE, resource_version=version, timeout_seconds=5):
                version = event.object.get("metadata", {}).get("resourceVersion") or version
                node = (event.object.get("spec") or {}).get("nodeName")
                name = event.object.get("metadata", {}).get("name", "")
                if event.type != "BOOKMARK" and node and name not in bound:
                    bound[name] = time.monotonic() - scheduler_started
                    per_node[node] = per_node.get(node, 0) + 1
                if len(bound) >= PODS or time.monotonic() > deadline:
                    break
    return sorted(bound.values()), per_node


@dataclass(frozen=True)
class Round:
    """One full run: fresh etcd and API server, populate, then schedule everything."""

    nodes_took: float
    pods_took: float
    first: float  # scheduler start to first binding
    last: float  # scheduler start to last binding
    bound: int
    spread: str  # pods per node, min-max
    load: float  # the machine's 1-minute load average when the scheduler started

    @property
    def throughput(self) -> float:
        """Bound pods per second between the first and the last binding."""
        return (self.bound - 1) / (self.last - self.first) if self.last > self.first else float("inf")


def one_round() -> Round:
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    workdir = Path(tempfile.mkdtemp(prefix="pkt-bench-scheduler-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        client_url, peer_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        etcd_argv = [etcd, "--name", "pkt-bench", "--data-dir", str(workdir / "etcd")]
        etcd_argv += ["--listen-client-urls", client_url, "--advertise-client-urls", client_url]
        etcd_argv += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
        etcd_argv += ["--initial-cluster", f"pkt-bench={peer_url}", "--quota-backend-bytes", str(4 << 30)]
        processes.append(start(etcd_argv, workdir / "etcd.log"))
        wait_http(f"{client_url}/health", processes[-1], "etcd")
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        api_argv = [sys.executable, "-m", "pocket.cli", "apiserver", "--etcd-servers", client_url]
        api_argv += ["--bind-address", "127.0.0.1", "--port", str(port), "--advertise-address", "127.0.0.1"]
        processes.append(start(api_argv, workdir / "apiserver.log"))
        wait_http(f"{api}/healthz", processes[-1], "apiserver")
        nodes_took, pods_took, version = asyncio.run(populate(api))

        health = free_port()
        scheduler_argv = [sys.executable, "-m", "pocket.cli", "scheduler", "--api-server", api]
        scheduler_argv += ["--health-port", str(health), "--leader-elect=false"]
        scheduler_started = time.monotonic()
        load = os.getloadavg()[0]
        processes.append(start(scheduler_argv, workdir / "scheduler.log"))
        times, per_node = asyncio.run(time_bindings(api, version, processes[-1], scheduler_started))
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
    spread = f"{min(per_node.values())}-{max(per_node.values())}" if per_node else "n/a"
    return Round(nodes_took, pods_took, times[0], times[-1], len(times), spread, load)


# kube-scheduler's performance CI (test/integration/scheduler_perf, SchedulingBasic at 5,000 nodes) fails a run
# below this many pods/s.
UPSTREAM_FLOOR = Reference(
    270.0, "kube-scheduler CI floor at 5,000 nodes "
           "(https://github.com/kubernetes/kubernetes/tree/master/test/integration/scheduler_perf)"
)


def run() -> Section:
    """ROUNDS rounds (the machine is shared and noisy); the table is the median round by throughput."""
    rounds = sorted((one_round() for _ in range(ROUNDS)), key=lambda r: r.throughput)
    median = rounds[len(rounds) // 2]
    figures = (
        Figure(f"throughput, {PODS} pods on {NODES} nodes, median of {ROUNDS}", median.throughput, "pods/s",
               UPSTREAM_FLOOR),
    )
    return Section(markdown(rounds, median), figures)


def markdown(rounds: list[Round], median: Round) -> str:
    each = ", ".join(f"{r.throughput:.0f} (load {r.load:.1f})" for r in rounds)
    return f"""## Scheduler throughput

{PODS} pods (100m cpu, 128Mi, no owners) on {NODES} Ready nodes registered
through the API without kubelets; etcd, `pocket apiserver` and `pocket scheduler --leader-elect=false` as
processes on 127.0.0.1; all pods created before the scheduler starts; bindings timestamped through a watch.
{ROUNDS} rounds, each from a fresh etcd; the table is the median round.

| measure | value |
|---|---|
| nodes registered (create + status) | {median.nodes_took:.1f} s |
| pods created | {median.pods_took:.1f} s ({PODS / median.pods_took:.0f} pods/s through the API) |
| scheduler start to first binding | {median.first:.1f} s |
| first to last binding | {median.last - median.first:.1f} s |
| **throughput (first to last binding), median of {ROUNDS}** | **{median.throughput:.0f} pods/s** |
| throughput of each round, sorted (1-minute load average at its start, on {os.cpu_count()} cores) | {each} pods/s |
| throughput including start-up | {median.bound / median.last:.0f} pods/s |
| pods per node (min-max) | {median.spread} |

kube-scheduler's CI floor for this kind of test: 270 pods/s at 5,000 nodes.

Command: `python -m benchmarks bench_scheduler` (or `make bench`).
"""
