"""EndpointSlice, HorizontalPodAutoscaler, PodDisruptionBudget, pods/eviction (kubectl drain) and kubectl describe,
against the real API server with the real kubectl."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control.api.errors import ApiError
from control.client import Client

from tests.conftest import KUBECTL, ApiServer
from tests.control.test_api import pod, raw

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

SLICE = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}],
    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
}
HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5},
}


def _apply(kubectl: Kubectl, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)


async def test_new_kinds_round_trip_with_defaults_and_validation(apiserver: ApiServer, kubectl: Kubectl) -> None:
    client = apiserver.client
    try:
        assert _apply(kubectl, SLICE).returncode == 0
        got = json.loads(kubectl("get", "endpointslices", "web-abc", "-o", "json").stdout)
        assert got["endpoints"][0]["addresses"] == ["10.244.1.5"] and got["addressType"] == "IPv4"
        listed = kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name").stdout
        assert listed.split() == ["endpointslice.discovery.k8s.io/web-abc"]

        assert _apply(kubectl, HPA).returncode == 0
        hpa = json.loads(kubectl("get", "hpa", "web", "-o", "json").stdout)
        assert hpa["spec"]["minReplicas"] == 1
        assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80

        bad_slice = {**SLICE, "metadata": {"name": "bad"}, "endpoints": [{"addresses": ["fd00::1"]}]}
        bad_hpa = {**HPA, "metadata": {"name": "bad"}, "spec": {"scaleTargetRef": {"kind": "Deployment"}}}
        bad_pdb = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "bad"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1},
        }
        for plural, body, field in (
            ("endpointslices", bad_slice, "endpoints[0].addresses[0]"),
            ("horizontalpodautoscalers", bad_hpa, "spec.scaleTargetRef.name"),
            ("poddisruptionbudgets", bad_pdb, "spec"),
        ):
            try:
                await client.create(plural, body, "default")
                raise AssertionError(f"{plural} {body} was accepted")
            except ApiError as err:
                assert err.code == 422 and err.status["reason"] == "Invalid"
                assert field in [c["field"] for c in err.status["details"]["causes"]]
    finally:
        kubectl("delete", "endpointslice", "web-abc", "--ignore-not-found")
        kubectl("delete", "hpa", "web", "--ignore-not-found")


async def _ready_pod(client: Client, name: str, node: str | None = None, labels: dict[str, str] | None = None) -> None:
    created = await client.create("pods", pod(name, labels or {"app": "budgeted"}, node), "default")
    ready = [{"type": "Ready", "status": "True"}]
    await client.update_status("pods", {**created, "status": {"phase": "Running", "conditions": ready}})


EVICT = "/api/v1/namespaces/default/pods/{name}/eviction"


def _eviction(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}


async def test_eviction_respects_the_disruption_budget(apiserver: ApiServer) -> None:
    client = apiserver.client
    budget = {
        "metadata": {"name": "budget"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "budgeted"}}},
    }
    await client.create("poddisruptionbudgets", budget, "default")
    for name in ("evict-a", "evict-b"):
        await _ready_pod(client, name)
    try:
        code, body = await raw(client, "POST", EVICT.format(name="evict-a"), _eviction("evict-a"))
        assert (code, body["status"]) == (201, "Success")
        code, body = await raw(client, "POST", EVICT.format(name="evict-b"), _eviction("evict-b"))
        assert (code, body["reason"]) == (429, "TooManyRequests")
        assert "needs 1 healthy pods and has 1 currently" in body["details"]["causes"][0]["message"]
        assert [p["metadata"]["name"] for p in (await client.list("pods", "default", label_selector="app=budgeted"))[
            "items"
        ]] == ["evict-b"]  # fmt: skip
        stored = await client.get("poddisruptionbudgets", "budget", "default")
        assert "evict-a" in stored["status"]["disruptedPods"]

        code, body = await raw(client, "POST", EVICT.format(name="evict-b"), _eviction("other"))
        assert code == 400 and "does not match" in body["message"]
        code, body = await raw(client, "POST", EVICT.format(name="nope"), _eviction("nope"))
        assert (code, body["reason"]) == (404, "NotFound")
    finally:
        for name in ("evict-a", "evict-b"):
            try:
                await client.delete("pods", name, "default", grace_period_seconds=0)
            except ApiError as err:
                assert err.code == 404
        await client.delete("poddisruptionbudgets", "budget", "default")


async def test_kubectl_drain_cordons_and_evicts(apiserver: ApiServer, kubectl: Kubectl) -> None:
    client = apiserver.client
    await client.create("nodes", {"metadata": {"name": "drain-me"}})
    await _ready_pod(client, "on-drained", node="drain-me", labels={"app": "drained"})
    await _ready_pod(client, "elsewhere", labels={"app": "drained"})
    try:
        result = kubectl("drain", "drain-me", "--force", "--grace-period=0", "--timeout=30s", "-v=6")
        assert "evicting pod default/on-drained" in result.stderr + result.stdout
        assert "POST " in result.stderr and "/pods/on-drained/eviction 201" in result.stderr
        node = await client.get("nodes", "drain-me")
        assert node["spec"]["unschedulable"] is True
        names = [
            p["metadata"]["name"] for p in (await client.list("pods", "default", label_selector="app=drained"))["items"]
        ]
        assert names == ["elsewhere"]
    finally:
        await client.delete("pods", "elsewhere", "default", grace_period_seconds=0)
        await client.delete("nodes", "drain-me")


async def test_kubectl_describe_shows_objects_and_their_events(apiserver: ApiServer, kubectl: Kubectl) -> None:
    client = apiserver.client
    await client.create("nodes", {"metadata": {"name": "described-node", "labels": {"zone": "a"}}})
    created = await client.create("pods", pod("described", {"app": "described"}, "described-node"), "default")
    await client.create(
        "events",
        {
            "metadata": {"name": "described.1"},
            "involvedObject": {
                "kind": "Pod",
                "name": "described",
                "namespace": "default",
                "uid": created["metadata"]["uid"],
            },
            "reason": "Scheduled",
            "message": "Successfully assigned default/described to described-node",
            "type": "Normal",
            "source": {"component": "default-scheduler"},
            "count": 1,
        },
        "default",
    )
    await client.create(
        "services",
        {"metadata": {"name": "described"}, "spec": {"selector": {"app": "described"}, "ports": [{"port": 80}]}},
        "default",
    )
    deployment = {
        "metadata": {"name": "described"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "described"}},
            "template": {
                "metadata": {"labels": {"app": "described"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await client.create("deployments", deployment, "default")
    try:
        described = kubectl("describe", "pod", "described").stdout
        assert "Node:" in described and "described-node" in described
        assert "Scheduled" in described and "Successfully assigned default/described" in described
        assert "Selector:" in kubectl("describe", "service", "described").stdout
        assert "Replicas:" in kubectl("describe", "deployment", "described").stdout
        assert "zone=a" in kubectl("describe", "node", "described-node").stdout
    finally:
        await client.delete("deployments", "described", "default")
        await client.delete("services", "described", "default")
        await client.delete("pods", "described", "default", grace_period_seconds=0)
        await client.delete("events", "described.1", "default")
        await client.delete("nodes", "described-node")


async def test_kubectl_get_watch_streams_changes(apiserver: ApiServer, kubeconfig: Path) -> None:
    """`kubectl get -w` (a Table watch served by the watch cache) prints the initial row, then each change."""
    client = apiserver.client
    await client.create("configmaps", {"metadata": {"name": "watched-0", "labels": {"watched": "yes"}}}, "default")
    process = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "get", "configmaps", "-w", "--request-timeout=30s",
        "-l", "watched=yes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines: list[str] = []

        async def next_line() -> str:
            text = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()  # type: ignore[union-attr]
            assert text, f"kubectl get -w ended early: {lines}"
            return text

        while not any(line.startswith("watched-0") for line in lines):
            lines.append(await next_line())
        await client.create("configmaps", {"metadata": {"name": "watched-1", "labels": {"watched": "yes"}}}, "default")
        while not any(line.startswith("watched-1") for line in lines):
            lines.append(await next_line())
        assert lines[0].split() == ["NAME", "DATA", "AGE"]
    finally:
        process.kill()
        await process.wait()
        for name in ("watched-0", "watched-1"):
            await client.delete("configmaps", name, "default")
