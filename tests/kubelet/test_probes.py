"""Probes: timing and thresholds with FakeClock, and real httpGet/tcpSocket attempts against local listeners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from control.clock import FakeClock
from kubelet.probes import ProbeManager
from kubelet.runtime import ContainerState, FakeRuntime
from tests.kubelet.harness import Harness, c, make_pod


def running(container_id: str = "c1") -> ContainerState:
    return ContainerState(container_id, "x", "busybox:latest", "sha256:b", {}, "running")


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500)

    async def moved(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/nowhere"})

    async def header(request: web.Request) -> web.Response:
        return web.Response(status=200 if request.headers.get("X-Probe") == "yes" else 403)

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/moved", moved)
    app.router.add_get("/header", header)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port
    await runner.cleanup()


async def test_http_probe_outcomes(http_server: int) -> None:
    probes = ProbeManager(FakeRuntime(), FakeClock())
    container = {"name": "web", "ports": [{"name": "http", "containerPort": http_server}]}

    async def attempt(path: str, port: object = "http", **extra: object) -> bool:
        probe = {"httpGet": {"host": "127.0.0.1", "port": port, "path": path, **extra}}
        return await probes.run_probe(probe, container, running(), "10.244.0.9")

    assert await attempt("/ok") is True
    assert await attempt("/ok", http_server) is True
    assert await attempt("/moved") is True  # 3xx counts as success, as in Kubernetes
    assert await attempt("/broken") is False
    assert await attempt("/header") is False
    assert await attempt("/header", httpHeaders=[{"name": "X-Probe", "value": "yes"}]) is True
    assert await attempt("/ok", "no-such-port") is False


async def test_tcp_probe_outcomes(http_server: int) -> None:
    probes = ProbeManager(FakeRuntime(), FakeClock())
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    free_port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    container = {"name": "c"}
    ok = {"tcpSocket": {"host": "127.0.0.1", "port": http_server}}
    closed = {"tcpSocket": {"host": "127.0.0.1", "port": free_port}}
    assert await probes.run_probe(ok, container, running(), "") is True
    assert await probes.run_probe(closed, container, running(), "") is False


async def test_readiness_timing_and_thresholds(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "initialDelaySeconds": 3, "periodSeconds": 5}
    pod = make_pod(c(readinessProbe=probe))
    await h.sync(pod)
    assert h.app_status()["ready"] is False and h.runtime.execs == []  # not before initialDelaySeconds
    assert h.api.last_status["phase"] == "Running"
    await h.clock.advance(3)
    await h.sync(pod)
    assert h.app_status()["ready"] is True
    assert {x["type"]: x["status"] for x in h.api.last_status["conditions"]}["Ready"] == "True"
    h.runtime.exec_results[("cat", "/tmp/ready")] = 1
    for _ in range(2):
        await h.clock.advance(5)
        await h.sync(pod)
        assert h.app_status()["ready"] is True  # failureThreshold 3 not reached yet
    await h.sync(pod)
    assert len(h.runtime.execs) == 3  # not again before periodSeconds
    await h.clock.advance(5)
    await h.sync(pod)
    assert h.app_status()["ready"] is False
    assert {x["type"]: x["status"] for x in h.api.last_status["conditions"]}["Ready"] == "False"
    unhealthy = [e for e in h.api.events.values() if e["reason"] == "Unhealthy"]
    assert [(e["type"], e["message"], e["count"]) for e in unhealthy] == [
        ("Warning", "Readiness probe failed: command ['cat', '/tmp/ready'] exited with 1", 3)
    ]


async def test_liveness_failure_restarts_the_container(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
    h.runtime.exec_results[("false",)] = 1
    pod = make_pod(c(livenessProbe=probe), terminationGracePeriodSeconds=4)
    await h.sync(pod)
    assert h.app_status()["restartCount"] == 0 and "running" in h.app_status()["state"]
    await h.clock.advance(1)
    await h.sync(pod)  # second failure: stopped with the grace period
    first = h.runtime.find("app", 0)
    assert (first.id, 4) in h.runtime.stops and not first.running
    await h.sync(pod)
    assert h.app_status()["restartCount"] == 1 and "running" in h.app_status()["state"]


async def test_startup_probe_gates_liveness_and_readiness(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    startup = {"exec": {"command": ["started?"]}, "periodSeconds": 1, "failureThreshold": 5}
    liveness = {"exec": {"command": ["alive?"]}, "periodSeconds": 1}
    h.runtime.exec_results[("started?",)] = 1
    pod = make_pod(c(startupProbe=startup, livenessProbe=liveness))
    await h.sync(pod)
    assert (h.app_status()["started"], h.app_status()["ready"]) == (False, False)
    await h.clock.advance(1)
    await h.sync(pod)
    assert all(command == ["started?"] for _, command in h.runtime.execs)  # no liveness while starting
    h.runtime.exec_results[("started?",)] = 0
    await h.clock.advance(1)
    await h.sync(pod)
    assert (h.app_status()["started"], h.app_status()["ready"]) == (True, True)
    assert ["alive?"] in [command for _, command in h.runtime.execs]
    probes_so_far = sum(command == ["started?"] for _, command in h.runtime.execs)
    await h.clock.advance(5)
    await h.sync(pod)
    assert sum(command == ["started?"] for _, command in h.runtime.execs) == probes_so_far  # not probed again


async def test_failing_startup_probe_restarts_the_container(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.runtime.exec_results[("started?",)] = 1
    pod = make_pod(c(startupProbe={"exec": {"command": ["started?"]}, "periodSeconds": 1, "failureThreshold": 2}))
    await h.sync(pod)
    await h.clock.advance(1)
    await h.sync(pod)
    assert not h.runtime.find("app", 0).running
    await h.sync(pod)
    assert h.app_status()["restartCount"] == 1 and h.app_status()["started"] is False


async def test_pre_stop_hook_runs_before_sigterm(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    pod = make_pod(c(lifecycle={"preStop": {"exec": {"command": ["drain"]}}}), terminationGracePeriodSeconds=9)
    await h.sync(pod)
    app = h.runtime.find("app")
    pod["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 9}
    await h.workers.sync_pod(pod)
    assert h.runtime.execs == [(app.id, ["drain"])]
    assert (app.id, 9) in h.runtime.stops
    assert h.api.deleted == [("default", "web", 0)]


async def test_failed_post_start_hook_kills_and_restarts(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.runtime.exec_results[("setup",)] = 1
    pod = make_pod(c(lifecycle={"postStart": {"exec": {"command": ["setup"]}}}), terminationGracePeriodSeconds=3)
    await h.sync(pod)
    first = h.runtime.find("app", 0)
    assert not first.running and (first.id, 3) in h.runtime.stops
    assert "FailedPostStartHook" in {e["reason"] for e in h.api.events.values()}
    h.runtime.exec_results[("setup",)] = 0
    await h.sync(pod)
    assert h.runtime.find("app", 1).running and h.app_status()["restartCount"] == 1


async def test_probe_failures_are_reported_with_their_cause(http_server: int) -> None:
    reported: list[tuple[str, str]] = []

    async def report(state: ContainerState, message: str) -> None:
        reported.append((state.id, message))

    probes = ProbeManager(FakeRuntime(), FakeClock(), report)
    container = {
        "name": "web",
        "readinessProbe": {"httpGet": {"host": "127.0.0.1", "port": http_server, "path": "/broken"}},
        "livenessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": "nope"}},
    }
    assert await probes.ready(container, running("c9"), "") is False
    assert await probes.alive(container, running("c9"), "") is True  # one failure is below failureThreshold
    assert reported == [
        ("c9", "Readiness probe failed: HTTP probe failed with statuscode: 500"),
        ("c9", "Liveness probe failed: probe port 'nope' is not a number nor a named port of container 'web'"),
    ]
