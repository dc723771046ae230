"""The kubelet's HTTP server with FakeRuntime: log lookup rules, query parameters, /healthz and /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kubelet.server import KubeletServer
from tests.kubelet.harness import Harness, c, make_pod


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Harness, str, list[bool]]]:
    h = Harness(tmp_path)
    healthy = [True]
    server = KubeletServer(h.runtime, h.workers.known_pods, "worker1", {"loops": lambda: healthy[0]})
    await server.start("127.0.0.1", 0)
    site = next(iter(server._runner.sites))  # type: ignore[union-attr]
    try:
        yield h, site.name, healthy
    finally:
        await server.stop()
        await h.workers.close()


async def test_logs_current_previous_and_tail(served: tuple[Harness, str, list[bool]]) -> None:
    h, url, _ = served
    pod = make_pod(c())
    h.workers.update(pod)
    await h.sync(pod)
    first = h.runtime.find("app", 0)
    h.runtime.output[first.id] = b"one\ntwo\n"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/containerLogs/default/web/app") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
            assert await resp.text() == "one\ntwo\n"
        async with http.get(f"{url}/containerLogs/default/web/app", params={"previous": "true"}) as resp:
            assert resp.status == 400 and "previous terminated container" in await resp.text()
        h.runtime.exit(first.id, 1)
        await h.sync(pod)
        second = h.runtime.find("app", 1)
        h.runtime.output[second.id] = b"three\nfour\nfive\n"
        async with http.get(f"{url}/containerLogs/default/web/app", params={"tailLines": "2"}) as resp:
            assert await resp.text() == "four\nfive\n"
        async with http.get(f"{url}/containerLogs/default/web/app", params={"previous": "1"}) as resp:
            assert await resp.text() == "one\ntwo\n"
        async with http.get(f"{url}/containerLogs/default/web/app", params={"sinceSeconds": "-3"}) as resp:
            assert resp.status == 400 and "sinceSeconds" in await resp.text()
        async with http.get(f"{url}/containerLogs/other/web/app") as resp:
            assert resp.status == 404 and 'pod "other/web" is not running on node "worker1"' in await resp.text()


async def test_healthz_and_metrics(served: tuple[Harness, str, list[bool]]) -> None:
    h, url, healthy = served
    pod = make_pod(c())
    h.workers.update(pod)
    await h.sync(pod)
    await h.workers.cleanup_orphans()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        healthy[0] = False
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 503 and "loops" in await resp.text()
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
    assert "kubelet_pod_start_duration_seconds_bucket" in text
    assert "kubelet_running_pods 1.0" in text
    assert 'kubelet_running_containers{container_state="running"} 1.0' in text
    assert "kubelet_runtime_operations_errors_total" in text
