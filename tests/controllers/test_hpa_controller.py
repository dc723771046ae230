"""The HPA controller against a real API server on a real etcd.

Deployments and their pods are real objects (the test plays the kubelet for
pod status); cpu usage comes from a test double of `PodMetricsSource`, and
time from a FakeClock, so stabilisation windows pass without waiting.
`ApiPodMetricsSource` is checked against a small HTTP server answering as
the resource metrics API does.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from control.client import Client, Informer
from control.clock import FakeClock
from control.controllers.cli import add_arguments, settings_from
from control.controllers.hpa import (
    ApiPodMetricsSource,
    HorizontalController,
    HpaSettings,
    MetricsError,
    PodMetric,
)
from control.controllers.manager import ControllerManager
from tests.conftest import free_port
from tests.controllers.helpers import eventually, make_namespace

LONG_AGO = "2026-01-01T00:00:00Z"


class StaticMetrics:
    """Test double of PodMetricsSource: the usage the test sets, sampled now."""

    def __init__(self) -> None:
        self.usage: dict[str, int] = {}
        self.asked: list[tuple[str, str, str, str | None]] = []

    async def pod_usage(
        self, namespace: str, selector: str, resource_name: str, container: str | None = None
    ) -> dict[str, PodMetric]:
        self.asked.append((namespace, selector, resource_name, container))
        if not self.usage:
            raise MetricsError("no metrics returned from resource metrics API")
        return {name: PodMetric(value, time.time() - 1, 15.0) for name, value in self.usage.items()}


@dataclass
class Setup:
    client: Client
    namespace: str
    controller: HorizontalController
    metrics: StaticMetrics
    clock: FakeClock
    hpas: Informer
    pods: Informer


@pytest.fixture
async def setup(apiserver) -> AsyncIterator[Setup]:
    client = apiserver.client
    namespace = await make_namespace(client)
    hpas = Informer(client, "horizontalpodautoscalers", namespace)
    pods = Informer(client, "pods", namespace)
    metrics = StaticMetrics()
    clock = FakeClock(1000.0)
    controller = HorizontalController(
        client, hpas, pods, metrics, HpaSettings(downscale_stabilization=300.0), clock=clock
    )
    tasks = [asyncio.create_task(i.run()) for i in (hpas, pods)]
    try:
        await asyncio.wait_for(asyncio.gather(hpas.synced.wait(), pods.synced.wait()), 20)
        yield Setup(client, namespace, controller, metrics, clock, hpas, pods)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def make_deployment(s: Setup, replicas: int, *, ready_pods: int | None = None) -> None:
    """A Deployment and `ready_pods` (default: replicas) Running, Ready pods of it with a 100m cpu request."""
    labels = {"app": "web"}
    pod_spec = {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}
    template = {"metadata": {"labels": labels}, "spec": pod_spec}
    deployment = {
        "metadata": {"name": "web", "namespace": s.namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }
    await s.client.create("deployments", deployment, s.namespace)
    for i in range(replicas if ready_pods is None else ready_pods):
        pod = {"metadata": {"name": f"web-{i}", "namespace": s.namespace, "labels": labels}, "spec": pod_spec}
        await s.client.create("pods", pod, s.namespace)
        status = {
            "phase": "Running",
            "startTime": LONG_AGO,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": LONG_AGO}],
        }
        await s.client.patch("pods", f"web-{i}", {"status": status}, s.namespace, subresource="status")
    expected = replicas if ready_pods is None else ready_pods

    async def pods_seen() -> bool:
        return sum(1 for p in s.pods.items() if (p.get("status") or {}).get("phase") == "Running") == expected

    await eventually(pods_seen, what=f"{expected} running pods in the informer")


async def make_hpa(
    s: Setup,
    *,
    behavior: dict[str, Any] | None = None,
    maximum: int = 5,
    metric: dict[str, Any] | None = None,
    **target: Any,
) -> str:
    hpa = {
        "metadata": {"name": "web", "namespace": s.namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": maximum,
            "metrics": [
                metric
                or {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": target or {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
            **({"behavior": behavior} if behavior else {}),
        },
    }
    await s.client.create("horizontalpodautoscalers", hpa, s.namespace)
    await eventually(lambda: _async(s.hpas.get("web", s.namespace)), what="the HPA in the informer")
    return f"{s.namespace}/web"


async def _async(value: Any) -> Any:
    return value


async def replicas(s: Setup) -> int:
    return int((await s.client.get("deployments", "web", s.namespace))["spec"]["replicas"])


async def hpa_status(s: Setup) -> dict[str, Any]:
    return (await s.client.get("horizontalpodautoscalers", "web", s.namespace)).get("status") or {}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


async def events(s: Setup) -> list[tuple[str, str, str]]:
    items = (await s.client.list("events", s.namespace))["items"]
    return [
        (e["type"], e["reason"], e["message"])
        for e in items
        if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
    ]


async def sync_when_cached(s: Setup, key: str) -> None:
    """Sync once the informer holds the HPA's latest status, as the controller would see it after a resync."""
    stored = await s.client.get("horizontalpodautoscalers", "web", s.namespace)

    async def caught_up() -> bool:
        cached = s.hpas.get("web", s.namespace)
        return cached is not None and cached["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    await eventually(caught_up, what="the informer to catch up with the HPA")
    await s.controller.sync(key)


async def test_scales_up_on_high_cpu_and_reports(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 2)
    key = await make_hpa(s)
    s.metrics.usage = {"web-0": 100, "web-1": 80}  # 90% of the 100m requests against 50%
    await s.controller.sync(key)

    assert await replicas(s) == 4  # ceil(2 * 90/50)
    assert s.metrics.asked[-1] == (s.namespace, "app=web", "cpu", None)
    status = await hpa_status(s)
    assert (status["currentReplicas"], status["desiredReplicas"]) == (2, 4)
    assert status["currentMetrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 90, "averageValue": "90m"}}}
    ]
    assert status["lastScaleTime"]
    assert conditions(status) == {
        "AbleToScale": ("True", "SucceededRescale"),
        "ScalingActive": ("True", "ValidMetricFound"),
        "ScalingLimited": ("False", "DesiredWithinRange"),
    }
    assert (
        "Normal",
        "SuccessfulRescale",
        "New size: 4; reason: cpu resource utilization (percentage of request) above target",
    ) in await events(s)


async def test_scale_up_is_limited_by_max_replicas(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 2)
    key = await make_hpa(s, maximum=3)
    s.metrics.usage = {"web-0": 100, "web-1": 100}
    await s.controller.sync(key)
    assert await replicas(s) == 3
    assert conditions(await hpa_status(s))["ScalingLimited"] == ("True", "TooManyReplicas")


async def test_scale_down_waits_for_the_stabilisation_window(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 3)
    key = await make_hpa(s, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    s.metrics.usage = {"web-0": 5, "web-1": 5, "web-2": 5}  # 5% against 50%
    await s.controller.sync(key)
    assert await replicas(s) == 3
    status = await hpa_status(s)
    assert conditions(status)["AbleToScale"] == ("True", "ScaleDownStabilized")
    assert (status["currentReplicas"], status["desiredReplicas"]) == (3, 3)

    await s.clock.advance(30)
    await sync_when_cached(s, key)
    assert await replicas(s) == 3

    await s.clock.advance(31)  # the first recommendation (3, at creation) has left the window
    await sync_when_cached(s, key)
    assert await replicas(s) == 1
    assert ("Normal", "SuccessfulRescale", "New size: 1; reason: All metrics below target") in await events(s)


async def test_without_metrics_nothing_is_scaled(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 2)
    key = await make_hpa(s)
    await s.controller.sync(key)
    assert await replicas(s) == 2
    status = await hpa_status(s)
    assert conditions(status)["ScalingActive"] == ("False", "FailedGetResourceMetric")
    reasons = {(t, r) for t, r, _ in await events(s)}
    assert {("Warning", "FailedGetResourceMetric"), ("Warning", "FailedComputeMetricsReplicas")} <= reasons
    message = next(m for _, r, m in await events(s) if r == "FailedComputeMetricsReplicas")
    assert message == (
        "invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization: "
        "no metrics returned from resource metrics API"
    )


async def test_missing_target_is_reported(setup: Setup) -> None:
    s = setup
    key = await make_hpa(s)
    await s.controller.sync(key)
    status = await hpa_status(s)
    assert conditions(status)["AbleToScale"] == ("False", "FailedGetScale")
    assert "web" in next(c["message"] for c in status["conditions"] if c["type"] == "AbleToScale")


async def test_replicas_above_max_are_brought_down_without_metrics(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 4, ready_pods=0)
    key = await make_hpa(s, maximum=2)
    await s.controller.sync(key)
    assert await replicas(s) == 2
    assert (
        "Normal",
        "SuccessfulRescale",
        "New size: 2; reason: Current number of replicas above Spec.MaxReplicas",
    ) in await events(s)
    assert s.metrics.asked == []


async def test_average_value_target(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 2)
    key = await make_hpa(s, type="AverageValue", averageValue="30m")
    s.metrics.usage = {"web-0": 100, "web-1": 50}  # average 75m against 30m: ceil(2 * 2.5)
    await s.controller.sync(key)
    assert await replicas(s) == 5
    status = await hpa_status(s)
    assert status["currentMetrics"][0]["resource"]["current"] == {"averageValue": "75m"}
    reason = "New size: 5; reason: cpu resource above target"
    assert ("Normal", "SuccessfulRescale", reason) in await events(s)


async def test_container_resource_metric(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 2)
    target = {"type": "Utilization", "averageUtilization": 50}
    metric = {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "c", "target": target}}
    key = await make_hpa(s, metric=metric)
    s.metrics.usage = {"web-0": 100, "web-1": 100}
    await s.controller.sync(key)
    assert s.metrics.asked[-1] == (s.namespace, "app=web", "cpu", "c")
    assert await replicas(s) == 4
    status = await hpa_status(s)
    assert status["currentMetrics"] == [
        {
            "type": "ContainerResource",
            "containerResource": {
                "name": "cpu",
                "container": "c",
                "current": {"averageUtilization": 100, "averageValue": "100m"},
            },
        }
    ]
    reason = "New size: 4; reason: cpu container resource utilization (percentage of request) above target"
    assert ("Normal", "SuccessfulRescale", reason) in await events(s)


async def test_unsupported_metric_type_is_reported(setup: Setup) -> None:
    s = setup
    await make_deployment(s, 2)
    metric = {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "1"}}}
    key = await make_hpa(s, metric=metric)
    await s.controller.sync(key)
    assert await replicas(s) == 2
    status = await hpa_status(s)
    assert conditions(status)["ScalingActive"] == ("False", "InvalidMetricSourceType")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "ScalingActive")
    assert message == 'the HPA was unable to compute the replica count: unknown metric source type "External"'


async def test_running_controller_acts_on_its_own(setup: Setup) -> None:
    """The worker loop: a new HPA is synced at once, and every sync period after that."""
    s = setup
    await make_deployment(s, 1)
    s.metrics.usage = {"web-0": 100}
    task = asyncio.create_task(s.controller.run(0.2))
    try:
        await make_hpa(s)
        await eventually(lambda: _async_replicas_at_least(s, 2), what="the HPA to scale the Deployment up")
        asked = len(s.metrics.asked)
        await eventually(lambda: _async(len(s.metrics.asked) > asked + 1), what="periodic syncs")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _async_replicas_at_least(s: Setup, count: int) -> bool:
    return await replicas(s) >= count


# -- the resource metrics API client ------------------------------------------------


@pytest.fixture
async def metrics_api() -> AsyncIterator[tuple[str, list[dict[str, str]], list[dict[str, Any]]]]:
    """An HTTP server answering /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods with the items the test sets."""
    queries: list[dict[str, str]] = []
    items: list[dict[str, Any]] = []

    async def pods(request: web.Request) -> web.Response:
        queries.append({"namespace": request.match_info["ns"], **request.query})
        if request.match_info["ns"] == "broken":
            return web.json_response(
                {"kind": "Status", "status": "Failure", "message": "kubelet unreachable", "code": 503}, status=503
            )
        return web.json_response({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": items})

    app = web.Application()
    app.router.add_get("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", pods)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", queries, items
    finally:
        await runner.cleanup()


async def test_api_metrics_source(metrics_api) -> None:
    url, queries, items = metrics_api
    async with Client(url) as client:
        source = ApiPodMetricsSource(client)
        with pytest.raises(MetricsError, match="no metrics returned from resource metrics API"):
            await source.pod_usage("team", "app=web,tier!=db", "cpu")
        assert queries == [{"namespace": "team", "labelSelector": "app=web,tier!=db"}]
        items.append(
            {
                "metadata": {"name": "web-0", "namespace": "team"},
                "timestamp": "2026-01-01T00:00:10Z",
                "window": "10.5s",
                "containers": [{"name": "c", "usage": {"cpu": "12500000n", "memory": "10Mi"}}],
            }
        )
        assert await source.pod_usage("team", "app=web", "cpu") == {"web-0": PodMetric(13, 1767225610.0, 10.5)}
        with pytest.raises(
            MetricsError, match="unable to fetch metrics from resource metrics API: kubelet unreachable"
        ):
            await source.pod_usage("broken", "app=web", "cpu")


# -- in the controller manager ------------------------------------------------------


async def test_controller_manager_runs_the_hpa_controller(apiserver) -> None:
    """Registered with its flags: a target above maxReplicas is brought down, and the metrics come from the
    API server's real metrics.k8s.io (which has no kubelets to scrape here, so it reports no metrics)."""
    client = apiserver.client
    namespace = await make_namespace(client)
    args = argparse.ArgumentParser()
    add_arguments(args)
    settings = settings_from(args.parse_args(["--horizontal-pod-autoscaler-sync-period", "200ms"]))
    assert settings.hpa.sync_period == 0.2
    manager = ControllerManager(Client(apiserver.url), settings)
    task = asyncio.create_task(manager.run())
    try:
        template = {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]},
        }
        deployment = {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "template": template}
        await client.create("deployments", {"metadata": {"name": "web"}, "spec": deployment}, namespace)
        hpa = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 2,
        }
        await client.create("horizontalpodautoscalers", {"metadata": {"name": "web"}, "spec": hpa}, namespace)

        async def disabled() -> dict[str, Any] | None:
            status = (await client.get("horizontalpodautoscalers", "web", namespace)).get("status") or {}
            return status if conditions(status).get("ScalingActive", ("", ""))[1] == "ScalingDisabled" else None

        await eventually(disabled, what="ScalingDisabled for a target at 0 replicas")
        await client.patch("deployments", "web", {"spec": {"replicas": 5}}, namespace)

        async def scaled_to_max() -> bool:
            return (await client.get("deployments", "web", namespace))["spec"]["replicas"] == 2

        await eventually(scaled_to_max, what="the Deployment scaled down to maxReplicas")

        async def no_metrics() -> str | None:
            status = (await client.get("horizontalpodautoscalers", "web", namespace)).get("status") or {}
            active: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c["type"] == "ScalingActive"), {}
            )
            return active.get("message") if active.get("reason") == "FailedGetResourceMetric" else None

        message = await eventually(no_metrics, what="the HPA to report the metrics API's empty answer")
        assert message == (
            "the HPA was unable to compute the replica count: failed to get cpu utilization: "
            "no metrics returned from resource metrics API"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await manager.client.close()
