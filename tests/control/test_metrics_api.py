"""metrics.k8s.io/v1beta1: rates from two kubelet scrapes, the API's objects and errors, kubectl top.

The integration tests run a real API server on etcd that scrapes stub
kubelets (real HTTP servers on 127.0.0.1) serving fixed Summaries: first
one sample, then a later one, so the expected nanocores are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from control.apiserver import cli as apiserver_cli
from control.apiserver.allocator import ServiceIPRange
from control.apiserver.app import ServerConfig, create_app
from control.apiserver.metrics_api import (
    NodeStore,
    Point,
    PodStore,
    format_cpu,
    format_duration,
    format_memory,
    parse_time,
    points_from_summary,
    usage_between,
)
from control.apiserver.storage import Storage
from control.client import Client
from kubelet.runtime import ContainerStats
from kubelet.stats import StatsProvider
from tests.conftest import KUBECTL, EtcdServer, free_port
from tests.kubelet.harness import Harness, c, make_pod

Object = dict[str, Any]
MiB = 2**20
METRICS = "/apis/metrics.k8s.io/v1beta1"
WAIT = 20.0  # seconds to wait for the scraper to have two points


# -- formats -------------------------------------------------------------------


def test_cpu_is_printed_as_metrics_server_prints_nanocores() -> None:
    assert format_cpu(0) == "0"
    assert format_cpu(493_827_156) == "493827156n"
    assert format_cpu(250_000_000) == "250m"
    assert format_cpu(1_500_000) == "1500u"  # Quantity's canonical form: exponent a multiple of 3
    assert format_cpu(2_000_000_000) == "2"
    assert format_cpu(40) == "40n"


def test_memory_is_printed_as_binary_si() -> None:
    assert format_memory(10 * MiB) == "10Mi"
    assert format_memory(1_610_616_832) == "1572868Ki"
    assert format_memory(1000) == "1000"
    assert format_memory(1_000_001) == "1000001"  # not a multiple of 1024: plain bytes
    assert format_memory(3 * 2**30) == "3Gi"


def test_window_is_a_go_duration() -> None:
    assert format_duration(15.0) == "15s"
    assert format_duration(2.5) == "2.5s"
    assert format_duration(60.5) == "1m0.5s"
    assert format_duration(0.5) == "500ms"
    assert format_duration(3725.0) == "1h2m5s"
    assert format_duration(0) == "0s"


def test_times_parse_with_and_without_fractions() -> None:
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20.25Z") == 1_700_000_000.25
    assert parse_time("2023-11-14T22:13:20.123456789Z") == pytest.approx(1_700_000_000.123456)
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    assert parse_time("yesterday") is None and parse_time(None) is None and parse_time("") is None


# -- points and stores ---------------------------------------------------------


def test_rate_is_cpu_difference_over_time_difference() -> None:
    usage = usage_between(Point(0, 102.5, 3_000_000_000, 5 * MiB), Point(0, 100.0, 2_000_000_000, 4 * MiB))
    assert usage is not None
    assert (usage.nanocores, usage.memory_bytes, usage.timestamp, usage.window) == (400_000_000, 5 * MiB, 102.5, 2.5)
    assert usage_between(Point(0, 102, 1, 1), Point(0, 100, 2, 1)) is None  # counter went backwards
    assert usage_between(Point(0, 100, 2, 1), Point(0, 100, 1, 1)) is None  # no time between them
    assert usage_between(Point(0, 102, 2, 1), Point(5, 100, 1, 1)) is None  # start time went backwards


def test_node_store_keeps_the_last_two_distinct_points() -> None:
    store = NodeStore()
    store.store({"a": Point(0, 100, 1_000_000_000, 1)})
    assert store.usage("a") is None  # one point: no rate yet
    store.store({"a": Point(0, 102, 2_000_000_000, 1)})
    first = store.usage("a")
    assert first is not None and first.nanocores == 500_000_000
    store.store({"a": Point(0, 102, 2_000_000_000, 1)})  # the kubelet had nothing newer: keep the pair
    again = store.usage("a")
    assert again is not None and again.nanocores == 500_000_000
    store.store({})  # the node's scrape failed: its metrics go
    assert store.usage("a") is None


def test_pod_store_drops_a_restarted_container_and_pairs_a_fresh_one_with_its_start() -> None:
    store = PodStore(resolution=60)
    key = ("default", "web")
    store.store({key: {"app": Point(10, 100, 5_000_000_000, 1)}})
    assert store.usage(key) is None
    store.store({key: {"app": Point(10, 104, 6_000_000_000, 1)}})
    found = store.usage(key)
    assert found is not None and found[0][0][1].nanocores == 250_000_000 and found[2] == 4
    # restarted at 105: its counter began again, so no pair until the next sample
    store.store({key: {"app": Point(105, 106, 100, 1)}})
    assert store.usage(key) is None
    # fresh (started 30 s ago, under the 60 s resolution, over metrics-server's 10 s minimum): paired with its start
    store.store({key: {"app": Point(105, 135, 3_000_000_000, 1)}})
    fresh = store.usage(key)
    assert fresh is not None and fresh[0][0][1].nanocores == 100_000_000 and fresh[2] == 30


def test_a_pod_is_left_out_until_every_container_has_two_points() -> None:
    store = PodStore(resolution=15)
    key = ("default", "two")
    store.store({key: {"a": Point(0, 100, 1, 1)}})
    store.store({key: {"a": Point(0, 102, 3, 1), "b": Point(0, 102, 1, 1)}})
    assert store.usage(key) is None
    store.store({key: {"a": Point(0, 104, 5, 1), "b": Point(0, 104, 3, 1)}})
    found = store.usage(key)
    assert found is not None and [name for name, _ in found[0]] == ["a", "b"]


async def test_points_read_from_the_kubelets_own_summary(tmp_path: Path) -> None:
    """What kubelet/stats.py writes is what the scraper reads (names, units, fractional times)."""
    h = Harness(tmp_path)
    pod = make_pod(c("a"))
    h.workers.update(pod)
    await h.sync(pod)
    h.runtime.stats[h.runtime.find("a").id] = ContainerStats(1_700_000_000.25, 123_456, 8 * MiB, 6 * MiB, 5 * MiB)
    summary = await StatsProvider(h.runtime, h.workers.known_pods, "worker1").summary()
    node, pods = points_from_summary(summary)
    await h.workers.close()
    assert node is not None and node.cpu_ns > 0 and node.memory_bytes > 0
    point = pods[("default", "web")]["a"]
    assert (point.timestamp, point.cpu_ns, point.memory_bytes) == (1_700_000_000.25, 123_456, 6 * MiB)
    assert point.start_time == parse_time(h.runtime.find("a").started_at)


def test_summary_entries_missing_a_field_give_no_point() -> None:
    summary = {
        "node": {"nodeName": "n", "startTime": "2023-11-14T22:13:20Z", "cpu": {"time": "2023-11-14T22:13:20Z"}},
        "pods": [
            {
                "podRef": {"name": "p", "namespace": "default"},
                "containers": [{"name": "x", "startTime": "2023-11-14T22:13:20Z", "cpu": {}, "memory": {}}],
            }
        ],
    }
    assert points_from_summary(summary) == (None, {})


# -- a real API server scraping stub kubelets ----------------------------------


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stats(at: float, cpu_ns: int, working_set: int) -> Object:
    return {
        "cpu": {"time": _rfc3339(at), "usageCoreNanoSeconds": cpu_ns},
        "memory": {"time": _rfc3339(at), "workingSetBytes": working_set},
    }


def _summary(node: str, at: float, node_cpu_ns: int, pods: list[tuple[str, str, list[tuple[str, int, int]]]]) -> Object:
    """A Summary sampled at `at`; containers started 100 s before the base time (not "fresh")."""
    started = _rfc3339(BASE - 100)
    return {
        "node": {"nodeName": node, "startTime": started, **_stats(at, node_cpu_ns, 1_610_616_832)},
        "pods": [
            {
                "podRef": {"namespace": ns, "name": name, "uid": f"uid-{name}"},
                "containers": [
                    {"name": cname, "startTime": started, **_stats(at, cpu, memory)}
                    for cname, cpu, memory in containers
                ],
            }
            for ns, name, containers in pods
        ],
    }


BASE = time.time() - 60
T1, T2 = BASE + 0.25, BASE + 2.75  # 2.5 s apart


@dataclass
class StubKubelet:
    """Serves `summaries[0]` to the first scrape and `summaries[1]` to every later one (or a status code)."""

    summaries: list[Object]
    status: int = 200
    port: int = field(default_factory=free_port)
    scrapes: int = 0

    async def handle(self, _request: web.Request) -> web.Response:
        if self.status != 200:
            return web.Response(status=self.status, text="stats unavailable")
        body = self.summaries[min(self.scrapes, len(self.summaries) - 1)]
        self.scrapes += 1
        return web.json_response(body)


@dataclass
class MetricsCluster:
    url: str
    client: Client
    kubeconfig: Path
    home: Path

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(self.home)}
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.home / "cache"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    async def get(self, path: str, **params: str) -> tuple[int, Object]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path, params=params) as response:
            return response.status, await response.json()

    async def send(self, method: str, path: str) -> tuple[int, Object]:
        async with aiohttp.ClientSession() as session, session.request(method, self.url + path, json={}) as response:
            return response.status, await response.json()


def _node(name: str, port: int | None, labels: dict[str, str]) -> Object:
    status: Object = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
    }
    if port is not None:
        status["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"}]
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "status": status}


def _pod(name: str, containers: list[str], labels: dict[str, str]) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": n, "image": "busybox"} for n in containers]},
    }


@pytest.fixture
async def cluster(etcd_server: EtcdServer, tmp_path: Path) -> AsyncIterator[MetricsCluster]:
    """Two scraped stub kubelets, one failing, one node without an address; pods in two namespaces."""
    good = StubKubelet(
        [
            _summary(
                "mx-a",
                T1,
                5_000_000_000,
                [
                    ("default", "burner", [("burn", 10_000_000_000, 10 * MiB), ("idle", 1_000_000, 4 * MiB)]),
                    ("mx-other", "elsewhere", [("app", 0, 2 * MiB)]),
                ],
            ),
            _summary(
                "mx-a",
                T2,
                6_000_000_000,
                [
                    ("default", "burner", [("burn", 11_234_567_891, 12 * MiB), ("idle", 1_000_100, 4 * MiB)]),
                    ("mx-other", "elsewhere", [("app", 250_000_000, 2 * MiB)]),
                ],
            ),
        ]
    )
    broken = StubKubelet([], status=500)
    stubs = []
    for stub in (good, broken):
        app = web.Application()
        app.router.add_get("/stats/summary", stub.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", stub.port).start()
        stubs.append(runner)
    port = free_port()
    config = ServerConfig(advertise_address="127.0.0.1", port=port, metrics_resolution=0.2)
    storage = Storage(etcd_server.url, f"/pkt-mx-{uuid.uuid4().hex[:12]}")
    api = web.AppRunner(create_app(storage, ServiceIPRange("10.96.0.0/12"), config), access_log=None)
    await api.setup()
    client = Client(f"http://127.0.0.1:{port}")
    try:
        await web.TCPSite(api, "127.0.0.1", port).start()
        await client.create("nodes", _node("mx-a", good.port, {"pool": "a"}))
        await client.create("nodes", _node("mx-broken", broken.port, {"pool": "b"}))
        await client.create("nodes", _node("mx-no-address", None, {"pool": "b"}))
        await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mx-other"}})
        await client.create("pods", _pod("burner", ["burn", "idle"], {"app": "burner"}), "default")
        await client.create("pods", _pod("no-metrics", ["app"], {"app": "quiet"}), "default")
        await client.create("pods", _pod("elsewhere", ["app"], {"app": "other"}), "mx-other")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: mx\n  cluster:\n    server: http://127.0.0.1:{port}\n"
            "users:\n- name: mx\n  user: {}\n"
            "contexts:\n- name: mx\n  context:\n    cluster: mx\n    user: mx\n    namespace: default\n"
            "current-context: mx\n"
        )
        metrics = MetricsCluster(f"http://127.0.0.1:{port}", client, kubeconfig, tmp_path)
        await _until_scraped(metrics)
        yield metrics
    finally:
        await client.close()
        await api.cleanup()
        for runner in stubs:
            await runner.cleanup()


async def _until_scraped(metrics: MetricsCluster) -> None:
    """Until the second sample has been paired with the first (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        code, body = await metrics.get(f"{METRICS}/nodes/mx-a")
        if code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no node metrics within {WAIT} s: {body}")


async def test_node_metrics_are_the_rate_between_two_scrapes(cluster: MetricsCluster) -> None:
    code, node = await cluster.get(f"{METRICS}/nodes/mx-a")
    assert code == 200
    assert node["kind"] == "NodeMetrics" and node["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert node["metadata"]["name"] == "mx-a" and node["metadata"]["labels"] == {"pool": "a"}
    assert node["usage"] == {"cpu": "400m", "memory": "1572868Ki"}  # 1 s of CPU over 2.5 s
    assert node["window"] == "2.5s"
    assert node["timestamp"] == datetime.fromtimestamp(T2, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    code, listed = await cluster.get(f"{METRICS}/nodes")
    assert code == 200 and listed["kind"] == "NodeMetricsList"
    assert [n["metadata"]["name"] for n in listed["items"]] == ["mx-a"]  # the failing and address-less nodes: absent
    code, none = await cluster.get(f"{METRICS}/nodes", labelSelector="pool=b")
    assert code == 200 and none["items"] == []
    code, by_name = await cluster.get(f"{METRICS}/nodes", fieldSelector="metadata.name=mx-a")
    assert [n["metadata"]["name"] for n in by_name["items"]] == ["mx-a"]


async def test_pod_metrics_per_container(cluster: MetricsCluster) -> None:
    code, pod = await cluster.get(f"{METRICS}/namespaces/default/pods/burner")
    assert code == 200 and pod["kind"] == "PodMetrics"
    assert pod["metadata"]["namespace"] == "default" and pod["metadata"]["labels"] == {"app": "burner"}
    assert pod["containers"] == [
        {"name": "burn", "usage": {"cpu": "493827156n", "memory": "12Mi"}},  # 1.234567891 s over 2.5 s
        {"name": "idle", "usage": {"cpu": "40n", "memory": "4Mi"}},
    ]
    assert pod["window"] == "2.5s"

    code, listed = await cluster.get(f"{METRICS}/namespaces/default/pods")
    assert code == 200 and listed["kind"] == "PodMetricsList"
    assert [p["metadata"]["name"] for p in listed["items"]] == ["burner"]  # no-metrics has no samples: left out
    code, everywhere = await cluster.get(f"{METRICS}/pods")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in everywhere["items"]] == [
        ("default", "burner"),
        ("mx-other", "elsewhere"),
    ]
    code, selected = await cluster.get(f"{METRICS}/pods", labelSelector="app in (other,quiet)")
    assert [p["metadata"]["name"] for p in selected["items"]] == ["elsewhere"]
    assert selected["items"][0]["containers"] == [{"name": "app", "usage": {"cpu": "100m", "memory": "2Mi"}}]
    code, by_field = await cluster.get(f"{METRICS}/pods", fieldSelector="metadata.namespace=mx-other")
    assert [p["metadata"]["name"] for p in by_field["items"]] == ["elsewhere"]


async def test_metrics_api_errors_are_statuses(cluster: MetricsCluster) -> None:
    code, status = await cluster.get(f"{METRICS}/namespaces/default/pods/no-metrics")
    assert code == 404 and status["reason"] == "NotFound"
    assert status["message"] == 'podmetrics.metrics.k8s.io "default/no-metrics" not found'
    code, status = await cluster.get(f"{METRICS}/namespaces/default/pods/absent")
    assert code == 404 and status["message"] == 'pods "absent" not found'
    code, status = await cluster.get(f"{METRICS}/nodes/mx-broken")
    assert code == 404 and status["message"] == 'nodemetrics.metrics.k8s.io "mx-broken" not found'
    code, status = await cluster.get(f"{METRICS}/pods", fieldSelector="spec.nodeName=mx-a")
    assert code == 400 and status["reason"] == "BadRequest" and "spec.nodeName" in status["message"]
    code, status = await cluster.get(f"{METRICS}/pods", labelSelector="app in (")
    assert code == 400 and status["reason"] == "BadRequest"
    code, status = await cluster.get(f"{METRICS}/nodes", watch="true")
    assert code == 405 and status["reason"] == "MethodNotAllowed"
    for method, path in (
        ("POST", f"{METRICS}/namespaces/default/pods"),
        ("PUT", f"{METRICS}/namespaces/default/pods/burner"),
        ("PATCH", f"{METRICS}/nodes/mx-a"),
        ("DELETE", f"{METRICS}/nodes/mx-a"),
        ("DELETE", f"{METRICS}/nodes"),
    ):
        code, status = await cluster.send(method, path)
        assert (code, status["kind"], status["reason"]) == (405, "Status", "MethodNotAllowed"), (method, path)
    code, status = await cluster.get(f"{METRICS}/services")
    assert code == 404 and status["reason"] == "NotFound"


async def test_discovery_names_the_metrics_group(cluster: MetricsCluster) -> None:
    code, groups = await cluster.get("/apis")
    assert code == 200
    (group,) = [g for g in groups["groups"] if g["name"] == "metrics.k8s.io"]
    assert group["preferredVersion"] == {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
    code, one = await cluster.get("/apis/metrics.k8s.io")
    assert code == 200 and one["versions"] == group["versions"]
    code, resources = await cluster.get(METRICS)
    assert code == 200 and resources["groupVersion"] == "metrics.k8s.io/v1beta1"
    assert {(r["name"], r["kind"], r["namespaced"], tuple(r["verbs"])) for r in resources["resources"]} == {
        ("nodes", "NodeMetrics", False, ("get", "list")),
        ("pods", "PodMetrics", True, ("get", "list")),
    }


def _rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


async def test_kubectl_top(cluster: MetricsCluster) -> None:
    run: Callable[..., subprocess.CompletedProcess[str]] = cluster.kubectl
    nodes = _rows((await asyncio.to_thread(run, "top", "nodes", "--no-headers")).stdout)
    # Measured nodes first; kubectl prints the unmeasured ones in no fixed order (CI saw both).
    assert nodes[0] == ["mx-a", "400m", "20%", "1536Mi", "37%"]  # of allocatable 2 cpu, 4Gi
    assert sorted(nodes[1:]) == [
        ["mx-broken", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
        ["mx-no-address", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
    ]
    pods = _rows((await asyncio.to_thread(run, "top", "pods", "--no-headers")).stdout)
    assert pods == [["burner", "494m", "16Mi"]]  # kubectl rounds nanocores up to millicores
    everywhere = _rows((await asyncio.to_thread(run, "top", "pods", "-A", "--no-headers")).stdout)
    assert everywhere == [["default", "burner", "494m", "16Mi"], ["mx-other", "elsewhere", "100m", "2Mi"]]
    by_ns = _rows((await asyncio.to_thread(run, "top", "pods", "-n", "mx-other", "--no-headers")).stdout)
    assert by_ns == [["elsewhere", "100m", "2Mi"]]
    labelled = _rows((await asyncio.to_thread(run, "top", "pods", "-A", "-l", "app=burner", "--no-headers")).stdout)
    assert [row[1] for row in labelled] == ["burner"]
    containers = _rows((await asyncio.to_thread(run, "top", "pods", "--containers", "--no-headers")).stdout)
    assert containers == [["burner", "burn", "494m", "12Mi"], ["burner", "idle", "1m", "4Mi"]]
    one = _rows((await asyncio.to_thread(run, "top", "pod", "burner", "--containers", "--no-headers")).stdout)
    assert one == [["burner", "burn", "494m", "12Mi"], ["burner", "idle", "1m", "4Mi"]]
    missing = await asyncio.to_thread(run, "top", "pod", "no-metrics", check=False)
    assert missing.returncode != 0 and 'podmetrics.metrics.k8s.io "default/no-metrics" not found' in missing.stderr


async def test_kubectl_get_shows_metrics_tables(cluster: MetricsCluster) -> None:
    out = (await asyncio.to_thread(cluster.kubectl, "get", "podmetrics", "burner")).stdout
    header, row = _rows(out)
    assert header == ["NAME", "CPU", "MEMORY", "WINDOW"]
    assert row == ["burner", "493827196n", "16Mi", "2.5s"]


def test_a_non_positive_resolution_is_refused_by_name(caplog: pytest.LogCaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    apiserver_cli.add_arguments(parser)
    assert parser.parse_args([]).metrics_resolution == 15.0  # metrics-server's default
    assert apiserver_cli.run(parser.parse_args(["--metrics-resolution", "0"])) == 2
    assert "--metrics-resolution must be positive seconds, not 0.0" in caplog.text
