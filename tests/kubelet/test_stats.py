"""The Summary API: Docker's stats JSON read right (cgroup v1 and v2), sums per pod, rates between samples."""

from __future__ import annotations

from pathlib import Path

from kubelet.runtime import ContainerStats, stats_from_docker
from kubelet.stats import StatsProvider
from tests.kubelet.harness import Harness, c, make_pod

MiB = 2**20


def test_docker_stats_cgroup_v1_and_v2() -> None:
    v1 = {
        "cpu_stats": {"cpu_usage": {"total_usage": 50_493_210}},
        "memory_stats": {"usage": 10 * MiB, "stats": {"total_inactive_file": 2 * MiB, "total_rss": 7 * MiB}},
    }
    v2 = {
        "cpu_stats": {"cpu_usage": {"total_usage": 9}},
        "memory_stats": {"usage": 10 * MiB, "stats": {"inactive_file": 3 * MiB, "anon": 6 * MiB}},
    }
    assert stats_from_docker(v1, 5.0) == ContainerStats(5.0, 50_493_210, 10 * MiB, 8 * MiB, 7 * MiB)
    assert stats_from_docker(v2, 5.0) == ContainerStats(5.0, 9, 10 * MiB, 7 * MiB, 6 * MiB)


async def test_summary_sums_containers_per_pod_and_rates_between_samples(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    pod = make_pod(c("a"), c("b"))
    h.workers.update(pod)
    await h.sync(pod)
    a, b = h.runtime.find("a"), h.runtime.find("b")
    h.runtime.stats[a.id] = ContainerStats(100.0, 1_000_000_000, 20 * MiB, 16 * MiB, 12 * MiB)
    h.runtime.stats[b.id] = ContainerStats(100.0, 500_000_000, 4 * MiB, 3 * MiB, 2 * MiB)
    provider = StatsProvider(h.runtime, h.workers.known_pods, "worker1")

    first = await provider.summary()
    assert first["node"]["nodeName"] == "worker1" and first["node"]["memory"]["workingSetBytes"] > 0
    (entry,) = first["pods"]
    assert entry["podRef"] == {"name": "web", "namespace": "default", "uid": "uid-1"}
    assert [x["name"] for x in entry["containers"]] == ["a", "b"]
    assert entry["cpu"]["usageCoreNanoSeconds"] == 1_500_000_000
    assert entry["memory"]["workingSetBytes"] == 19 * MiB and entry["memory"]["rssBytes"] == 14 * MiB
    assert "usageNanoCores" not in entry["containers"][0]["cpu"]  # no earlier sample to take a rate from

    h.runtime.stats[a.id] = ContainerStats(102.0, 2_000_000_000, 20 * MiB, 16 * MiB, 12 * MiB)
    second = await provider.summary()
    assert second["pods"][0]["containers"][0]["cpu"]["usageNanoCores"] == 500_000_000  # 1 s of CPU in 2 s

    h.runtime.exit(b.id, 0)
    third = await provider.summary()
    assert [x["name"] for x in third["pods"][0]["containers"]] == ["a"]
    await h.workers.close()


async def test_summary_leaves_out_unknown_pods(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    pod = make_pod(c())
    h.workers.update(pod)
    await h.sync(pod)
    h.runtime.stats[h.runtime.find("app").id] = ContainerStats(1.0, 1, 1, 1, 1)
    assert (await StatsProvider(h.runtime, dict, "worker1").summary())["pods"] == []
    await h.workers.close()


async def test_sample_times_keep_fractions_of_a_second(tmp_path: Path) -> None:
    """A metrics pipeline divides CPU by the time between samples: whole seconds would skew the rate."""
    h = Harness(tmp_path)
    pod = make_pod(c())
    h.workers.update(pod)
    await h.sync(pod)
    h.runtime.stats[h.runtime.find("app").id] = ContainerStats(1_700_000_000.25, 7, 4096, 4096, 4096)
    summary = await StatsProvider(h.runtime, h.workers.known_pods, "worker1").summary()
    container = summary["pods"][0]["containers"][0]
    assert container["cpu"]["time"] == "2023-11-14T22:13:20.25Z"
    assert container["memory"]["time"] == "2023-11-14T22:13:20.25Z"
    assert container["cpu"]["usageCoreNanoSeconds"] == 7 and container["memory"]["workingSetBytes"] == 4096
    await h.workers.close()
