"""API server latency under a steady write load, watch fan-out to 1,000 watchers, and etcd's own floor.

A private etcd (temp dir, 127.0.0.1, free ports) and `python -m control.apiserver` as its own process;
the load comes from this process with aiohttp.  Every phase is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import aetcd
import aiohttp
from benchmarks.report import Distribution, Figure, Reference, Section
from benchmarks.support import free_port

WRITE_RATE = 100  # writes per second (creates and updates alternate)
WRITE_SECONDS = 10
READ_RATE = 20  # gets per second and lists per second, alongside the writes
WATCHERS = 1000
WATCH_EVENTS = 50
WATCH_EVENT_INTERVAL = 0.1
START_TIMEOUT = 60
NAMESPACE = "bench"


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def p99(self) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def row(self, what: str) -> str:
        median = statistics.median(self.values)
        return f"| {what} | {len(self.values)} | {median * 1000:.2f} | {self.p99() * 1000:.2f} |"

    def distribution(self, what: str) -> Distribution:
        return Distribution(what, "ms", tuple(v * 1000 for v in self.values))


# Kubernetes' API call latency SLO (sig-scalability), p99 per cluster-day: 1 s for single objects (mutating calls,
# and reads of one object), 30 s for namespace- and cluster-scoped lists.
SLO_SOURCE = "https://github.com/kubernetes/community/blob/master/sig-scalability/slos/api_call_latency.md"
OBJECT_SLO = Reference(1000.0, f"Kubernetes API call latency SLO, p99 <= 1 s ({SLO_SOURCE})")
LIST_SLO = Reference(30000.0, f"Kubernetes API call latency SLO for lists, p99 <= 30 s ({SLO_SOURCE})")


Operation = Callable[[int], Coroutine[Any, Any, float]]


async def _paced(rate: float, seconds: float, operation: Operation, into: Samples) -> None:
    """Start `operation(i)` at a fixed rate (not waiting for the previous one), like independent clients."""
    tasks: list[asyncio.Task[float]] = []
    started = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(operation(i)))
    into.values += await asyncio.gather(*tasks)


class Cluster:
    """etcd plus one API server process, torn down completely."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="pkt-apisrv-bench-"))
        self.etcd_port, peer, self.api_port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self._peer = peer

    def start(self) -> None:
        log = open(self.workdir / "etcd.log", "wb")  # noqa: SIM115 - open for the process's life
        self.processes.append(
            subprocess.Popen(
                ["etcd", "--data-dir", str(self.workdir / "etcd"), "--listen-client-urls", self.etcd_url,
                 "--advertise-client-urls", self.etcd_url, "--listen-peer-urls", f"http://127.0.0.1:{self._peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{self._peer}",
                 "--initial-cluster", f"default=http://127.0.0.1:{self._peer}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        api_log = open(self.workdir / "apiserver.log", "wb")  # noqa: SIM115
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "control.apiserver", "--etcd-servers", self.etcd_url,
                 "--bind-address", "127.0.0.1", "--port", str(self.api_port), "--advertise-address", "127.0.0.1",
                 # WATCHERS streams from one address: the per-client watch limit (1000) would be the bench's ceiling
                 "--max-watches-per-client", "0"],
                stdout=api_log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{self.api_url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"API server not ready in {START_TIMEOUT}s; see {self.workdir}/apiserver.log")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


async def etcd_floor(url: str) -> Samples:
    """etcd put latency at the same rate, from the same process: what no API server can beat."""
    host, port = url.removeprefix("http://").split(":")
    client = aetcd.Client(host=host, port=int(port))
    await client.connect()
    samples = Samples()

    async def put(i: int) -> float:
        started = time.perf_counter()
        await client.put(f"/floor/{i}".encode(), b'{"kind":"ConfigMap","data":{"k":"v"}}')
        return time.perf_counter() - started

    try:
        await _paced(WRITE_RATE, WRITE_SECONDS, put, samples)
    finally:
        await client.close()
    return samples


async def crud(session: aiohttp.ClientSession, api: str) -> dict[str, Samples]:
    """Creates and updates at WRITE_RATE in total, with gets and lists at READ_RATE each alongside."""
    base = f"{api}/api/v1/namespaces/{NAMESPACE}/configmaps"
    results = {verb: Samples() for verb in ("create", "update", "get", "list")}
    created: list[str] = []

    async def timed(method: str, url: str, **kwargs: object) -> float:
        started = time.perf_counter()
        async with session.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
            await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{method} {url}: {resp.status}")
        return time.perf_counter() - started

    async def write(i: int) -> float:
        if i % 2 == 0 or not created:
            name = f"cm-{i}"
            took = await timed("POST", base, json={"metadata": {"name": name}, "data": {"i": str(i)}})
            created.append(name)
            results["create"].values.append(took)
            return took
        name = created[(i // 2) % len(created)]
        patch = {"data": {"i": str(i)}}
        headers = {"Content-Type": "application/merge-patch+json"}
        took = await timed("PATCH", f"{base}/{name}", json=patch, headers=headers)
        results["update"].values.append(took)
        return took

    async def get(i: int) -> float:
        return await timed("GET", f"{base}/{created[i % len(created)]}") if created else 0.0

    async def list_(_: int) -> float:
        return await timed("GET", base)

    sink = Samples()
    await asyncio.gather(
        _paced(WRITE_RATE, WRITE_SECONDS, write, sink),
        _paced(READ_RATE, WRITE_SECONDS, get, results["get"]),
        _paced(READ_RATE, WRITE_SECONDS, list_, results["list"]),
    )
    results["get"].values = [v for v in results["get"].values if v > 0]
    results["list"].values = [v for v in results["list"].values if v > 0]
    return results


async def watch_fanout(api: str) -> tuple[Samples, Samples]:
    """WATCHERS streams on one namespace; per event, delivery latency to each watcher and to the last one."""
    base = f"{api}/api/v1/namespaces/{NAMESPACE}-watch/configmaps"
    connector = aiohttp.TCPConnector(limit=0)
    sent: dict[str, float] = {}
    received: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        async with session.get(f"{api}/api/v1/namespaces/{NAMESPACE}-watch/configmaps") as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]

        async def watcher(ready: asyncio.Event) -> None:
            params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "120"}
            async with session.get(base, params=params) as stream:
                ready.set()
                seen = 0
                async for line in stream.content:
                    if not line.strip():
                        continue
                    now = time.perf_counter()
                    event = json.loads(line)
                    if event["type"] != "ADDED":
                        raise RuntimeError(f"unexpected watch event {event['type']}: {event['object']}")
                    name = event["object"]["metadata"]["name"]
                    received.setdefault(name, []).append(now)
                    seen += 1
                    if seen == WATCH_EVENTS:
                        return

        readies = [asyncio.Event() for _ in range(WATCHERS)]
        tasks = [asyncio.create_task(watcher(r)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
        await asyncio.sleep(1.0)  # every stream is registered server-side
        for i in range(WATCH_EVENTS):
            name = f"w-{i}"
            sent[name] = time.perf_counter()
            async with session.post(base, json={"metadata": {"name": name}}) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"create {name}: {resp.status}")
            await asyncio.sleep(WATCH_EVENT_INTERVAL)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    every, last = Samples(), Samples()
    for name, when in sent.items():
        arrivals = received.get(name, [])
        if len(arrivals) != WATCHERS:
            raise RuntimeError(f"{name} reached {len(arrivals)} of {WATCHERS} watchers")
        every.values += [t - when for t in arrivals]
        last.values.append(max(arrivals) - when)
    return every, last


async def measure() -> Section:
    cluster = Cluster()
    cluster.start()
    try:
        await cluster.wait_ready()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for ns in (NAMESPACE, f"{NAMESPACE}-watch"):
                async with session.post(f"{cluster.api_url}/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"namespace {ns}: {r.status}")
            floor = await etcd_floor(cluster.etcd_url)
            results = await crud(session, cluster.api_url)
        every, last = await watch_fanout(cluster.api_url)
    finally:
        cluster.stop()
    lines = [
        "## API server",
        "",
        f"`python -m benchmarks bench_apiserver`: a private etcd 3.4 and `python -m control.apiserver` (one process)"
        f" on 127.0.0.1; load from one asyncio client process. {WRITE_RATE} writes/s (creates and merge-patch"
        f" updates of ConfigMaps alternating) for {WRITE_SECONDS} s, with {READ_RATE} gets/s and {READ_RATE}"
        f" lists/s of the same namespace (which grows to {WRITE_RATE * WRITE_SECONDS // 2} objects) alongside."
        f" The floor is etcd's own put latency at the same rate from the same client process.",
        "",
        "| operation | samples | p50 ms | p99 ms |",
        "|---|---|---|---|",
        floor.row("etcd put (floor)"),
        results["create"].row("create (POST)"),
        results["update"].row("update (PATCH merge)"),
        results["get"].row("get"),
        results["list"].row("list (from the watch cache)"),
        "",
        f"Watch fan-out: {WATCHERS} concurrent watch streams on one namespace, {WATCH_EVENTS} creates"
        f" {WATCH_EVENT_INTERVAL * 1000:.0f} ms apart; latency from sending the POST to each watcher reading the"
        " event (the watchers' own parsing shares the client process).",
        "",
        "| delivery | samples | p50 ms | p99 ms |",
        "|---|---|---|---|",
        every.row("to each watcher"),
        last.row("to the last of the 1,000"),
        "",
    ]
    floor_p50 = Reference(statistics.median(floor.values) * 1000, "etcd put p50 (floor), same run")
    figures = (
        Figure("create p50", statistics.median(results["create"].values) * 1000, "ms", floor_p50),
        Figure("create p99", results["create"].p99() * 1000, "ms", OBJECT_SLO),
        Figure("update (PATCH merge) p99", results["update"].p99() * 1000, "ms", OBJECT_SLO),
        Figure("get p99", results["get"].p99() * 1000, "ms", OBJECT_SLO),
        Figure("list p99 (namespace, watch cache)", results["list"].p99() * 1000, "ms", LIST_SLO),
        Figure(f"watch delivery to the last of {WATCHERS} watchers, p99", last.p99() * 1000, "ms"),
    )
    distributions = (
        floor.distribution("etcd put (floor)"),
        results["create"].distribution("create"),
        results["update"].distribution("update"),
        results["get"].distribution("get"),
        results["list"].distribution("list"),
        every.distribution(f"watch delivery (each of {WATCHERS})"),
    )
    return Section("\n".join(lines), figures, distributions)


def run() -> Section:
    if shutil.which("etcd") is None:
        raise RuntimeError("etcd is not installed")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(measure())
