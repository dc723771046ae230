"""Pod startup latency on the local cluster beside bare `docker run` of the same image on the same nodes.

Pods: `busybox:latest` with imagePullPolicy IfNotPresent (the image is
present on every node), created through the API server; the latency of one
pod runs from just before its create call to the watch event that shows it
`Running` (what the Kubernetes pod startup SLO measures: p99 <= 5 s). Two
loads: 30 pods created at once (spread over the workers by the scheduler),
and 10 pods one after another. Floor: `docker run -d --network none
busybox:latest sleep 3600` against each worker's own dockerd, timed until
the command returns (the container runs), one after another and 15 per
worker at once, in the same run.

Needs the local cluster: brought up if it is not, and taken down again only
in that case.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.report import Distribution, Figure, Reference, Section
from control.client import Client
from pocket.cluster import is_up
from pocket.config import ClusterConfig

IMAGE = "busybox:latest"
BURST = 30
SEQUENTIAL = 10
BARE_PER_NODE = 15
LABEL = "bench=pod-startup"
NAMESPACE = "default"
TIMEOUT = 180.0  # seconds for any one phase
WORKERS = ("worker1", "worker2")
BARE_LABEL = "pocketkube.bench=pod-startup"


def percentile(samples: Iterable[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def pod_manifest(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"bench": "pod-startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}
            ],
        },
    }


async def start_pods(client: Client, names: list[str], at_once: bool) -> tuple[dict[str, float], dict[str, str]]:
    """Create the pods (all at once or one at a time); return name -> seconds to Running and name -> node."""
    listed = await client.request("GET", "/api/v1/namespaces/default/pods", params={"labelSelector": LABEL})
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    nodes: dict[str, str] = {}
    all_running = asyncio.Event()
    one_running: dict[str, asyncio.Event] = {name: asyncio.Event() for name in names}

    async def watch() -> None:
        version = listed["metadata"]["resourceVersion"]
        async for event in client.watch("pods", NAMESPACE, resource_version=version, label_selector=LABEL):
            pod = event.object
            name = pod.get("metadata", {}).get("name")
            if name in one_running and name not in running and pod.get("status", {}).get("phase") == "Running":
                running[name] = time.monotonic()
                nodes[name] = pod["spec"].get("nodeName", "")
                one_running[name].set()
                if len(running) == len(names):
                    all_running.set()
                    return

    async def create(name: str) -> None:
        created[name] = time.monotonic()
        await client.create("pods", pod_manifest(name), NAMESPACE)

    watcher = asyncio.create_task(watch())
    try:
        if at_once:
            await asyncio.gather(*(create(n) for n in names))
        else:
            for name in names:
                await create(name)
                await asyncio.wait_for(one_running[name].wait(), TIMEOUT)
        await asyncio.wait_for(all_running.wait(), TIMEOUT)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return {n: running[n] - created[n] for n in names}, nodes


async def delete_pods(client: Client, names: list[str]) -> None:
    await asyncio.gather(*(client.delete("pods", n, NAMESPACE) for n in names), return_exceptions=True)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        listed = await client.request("GET", "/api/v1/namespaces/default/pods", params={"labelSelector": LABEL})
        if not listed["items"]:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"benchmark pods still present after {TIMEOUT:.0f}s")


def docker_argv(cluster: ClusterConfig, node: str, *args: str) -> list[str]:
    return ["docker", "-H", cluster.docker_host(node), *args]


def bare_run(cluster: ClusterConfig, node: str) -> float:
    """One `docker run -d` on the node's dockerd, timed until it returns."""
    argv = docker_argv(cluster, node, "run", "-d", "--network", "none", "--label", BARE_LABEL, IMAGE, "sleep", "3600")
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=TIMEOUT)
    return time.monotonic() - started


def remove_bare(cluster: ClusterConfig, node: str) -> None:
    ids = subprocess.run(
        docker_argv(cluster, node, "ps", "-aq", "--filter", f"label={BARE_LABEL}"),
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout.split()
    if ids:
        subprocess.run(docker_argv(cluster, node, "rm", "-f", *ids), check=True, capture_output=True, timeout=TIMEOUT)


def bare_runs(cluster: ClusterConfig, at_once: bool) -> list[float]:
    try:
        if not at_once:
            return [bare_run(cluster, node) for node in WORKERS for _ in range(BARE_PER_NODE)]
        with ThreadPoolExecutor(max_workers=BARE_PER_NODE * len(WORKERS)) as pool:
            futures = [pool.submit(bare_run, cluster, node) for node in WORKERS for _ in range(BARE_PER_NODE)]
            return [f.result() for f in futures]
    finally:
        for node in WORKERS:
            remove_bare(cluster, node)


async def measure(cluster: ClusterConfig) -> dict[str, tuple[list[float], str]]:
    """Every row's samples and how they were spread over nodes."""
    rows: dict[str, tuple[list[float], str]] = {}
    async with Client.from_kubeconfig(cluster.kubeconfig, user_agent="bench-pod-startup") as client:
        for label, count, at_once in (
            ("pods, 30 created at once", BURST, True),
            ("pods, one at a time", SEQUENTIAL, False),
        ):
            names = [f"bench-startup-{i}" for i in range(count)]
            try:
                latencies, nodes = await start_pods(client, names, at_once)
            finally:
                await delete_pods(client, names)
            spread = ", ".join(f"{node}: {list(nodes.values()).count(node)}" for node in sorted(set(nodes.values())))
            rows[label] = (list(latencies.values()), spread)
    per_node = f"{', '.join(f'{n}: {BARE_PER_NODE}' for n in WORKERS)}"
    rows["bare `docker run`, one at a time"] = (bare_runs(cluster, at_once=False), per_node)
    rows[f"bare `docker run`, {BARE_PER_NODE} per worker at once"] = (bare_runs(cluster, at_once=True), per_node)
    return rows


def pocket(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pocket.cli", *args], check=True, capture_output=True, timeout=600)


STARTUP_SLO = Reference(
    5.0, "Kubernetes pod startup latency SLO, p99 <= 5 s "
         "(https://github.com/kubernetes/community/blob/master/sig-scalability/slos/pod_startup_latency.md)"
)


def run() -> Section:
    cluster = ClusterConfig()
    brought_up = not is_up(cluster)
    if brought_up:
        pocket("up")
    try:
        rows = asyncio.run(measure(cluster))
    finally:
        if brought_up:
            pocket("down")
    lines = [
        "## Pod startup latency (local cluster)",
        "",
        f"Apply (API create) to `Running` seen through a watch, {IMAGE} present on the nodes "
        "(imagePullPolicy IfNotPresent), beside bare `docker run` of the same image on the same workers, "
        "measured in the same run. Kubernetes' SLO: p99 <= 5 s.",
        "",
        "| what | n | nodes | p50 (s) | p99 (s) | mean (s) | max (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, (samples, spread) in rows.items():
        lines.append(
            f"| {label} | {len(samples)} | {spread} | {percentile(samples, 50):.3f} | {percentile(samples, 99):.3f} "
            f"| {statistics.mean(samples):.3f} | {max(samples):.3f} |"
        )
    burst_p99 = percentile(rows["pods, 30 created at once"][0], 99)
    bare_p99 = percentile(rows[f"bare `docker run`, {BARE_PER_NODE} per worker at once"][0], 99)
    one_p50 = percentile(rows["pods, one at a time"][0], 50)
    bare_one_p50 = percentile(rows["bare `docker run`, one at a time"][0], 50)
    lines += [
        "",
        f"Burst p99 / bare concurrent p99: {burst_p99 / bare_p99:.1f}x; "
        f"one-at-a-time p50 / bare one-at-a-time p50: {one_p50 / bare_one_p50:.1f}x.",
        "",
        "Commands: `python -m benchmarks bench_pod_startup` (pods: `POST /api/v1/namespaces/default/pods` "
        f"of `{IMAGE}` running `sleep 3600`, watched with `labelSelector={LABEL}`); floor: "
        "`docker -H unix:///run/pocketkube/<worker>/docker.sock run -d --network none "
        f"{IMAGE} sleep 3600`.",
        "",
    ]
    bare_burst = f"bare `docker run`, {BARE_PER_NODE} per worker at once"
    figures = (
        Figure(f"pods, {BURST} at once, p99", burst_p99, "s", STARTUP_SLO),
        Figure(f"pods, {BURST} at once, p99 (vs bare docker run)", burst_p99, "s",
               Reference(bare_p99, f"{bare_burst}, p99, same run")),
        Figure("pods one at a time, p50", one_p50, "s",
               Reference(bare_one_p50, "bare `docker run` one at a time, p50, same run")),
    )
    distributions = tuple(Distribution(label, "s", tuple(samples)) for label, (samples, _) in rows.items())
    return Section("\n".join(lines), figures, distributions)
