"""LoadBalancer address assignment against the real API server (status written through services/status)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from control.client import Client, Informer
from control.controllers.loadbalancer import DEFAULT_POOL, LoadBalancerController, parse_pool
from tests.conftest import ApiServer


def test_parse_pool_ranges_cidrs_and_errors() -> None:
    assert parse_pool(DEFAULT_POOL) == [f"192.168.56.{n}" for n in range(240, 251)]
    assert parse_pool("10.0.0.0/30, 10.0.0.9") == ["10.0.0.1", "10.0.0.2", "10.0.0.9"]
    with pytest.raises(ValueError, match="'10.0.0.9-10.0.0.1'"):
        parse_pool("10.0.0.9-10.0.0.1")
    with pytest.raises(ValueError, match="'nonsense'"):
        parse_pool("nonsense")
    with pytest.raises(ValueError, match="no addresses"):
        parse_pool(" , ")


async def eventually(check: Callable[[], Any], attempts: int = 100) -> Any:
    """Poll a bounded number of times (up to ~10 s)."""
    for _ in range(attempts):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    return await check()


@pytest.fixture
async def controller(apiserver: ApiServer) -> AsyncIterator[tuple[Client, str]]:
    namespace = f"lb-{uuid.uuid4().hex[:6]}"
    async with Client(apiserver.url) as client:
        await client.create("namespaces", {"metadata": {"name": namespace}})
        services = Informer(client, "services", namespace)
        lb = LoadBalancerController(client, services, parse_pool("192.168.56.240-192.168.56.241"))
        tasks = [asyncio.create_task(services.run()), asyncio.create_task(lb.run())]
        try:
            yield client, namespace
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def lb_service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}], **spec},
    }


async def test_assigns_distinct_addresses_keeps_them_and_frees_them(controller: tuple[Client, str]) -> None:
    client, ns = controller

    async def ingress(name: str) -> list[str]:
        svc = await client.get("services", name, ns)
        return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]

    await client.create("services", lb_service("a"), ns)
    await client.create("services", lb_service("b"), ns)
    first = await eventually(lambda: ingress("a"))
    second = await eventually(lambda: ingress("b"))
    assert first and second and set(first + second) == {"192.168.56.240", "192.168.56.241"}
    # A node port was allocated by the API server for both.
    svc = await client.get("services", "a", ns)
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    # The pool is exhausted: a third gets nothing.
    await client.create("services", lb_service("c"), ns)
    await asyncio.sleep(0.5)
    assert await ingress("c") == []
    # Deleting one frees its address for the waiting one (found on its next resync or update).
    await client.delete("services", "a", ns)
    svc_c = await client.get("services", "c", ns)
    svc_c["metadata"].setdefault("labels", {})["poke"] = "1"
    await client.update("services", svc_c)
    assert await eventually(lambda: ingress("c")) == first
    # Turning a LoadBalancer into ClusterIP gives its address back.
    svc_b = await client.get("services", "b", ns)
    svc_b["spec"]["type"] = "ClusterIP"
    for port in svc_b["spec"]["ports"]:
        port.pop("nodePort", None)
    await client.update("services", svc_b)

    async def b_released() -> bool:
        return await ingress("b") == []

    assert await eventually(b_released)


async def test_requested_address_is_honoured_when_free(controller: tuple[Client, str]) -> None:
    client, ns = controller
    await client.create("services", lb_service("want", loadBalancerIP="192.168.56.241"), ns)

    async def ingress() -> list[dict[str, Any]]:
        svc = await client.get("services", "want", ns)
        return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []

    assert await eventually(ingress) == [{"ip": "192.168.56.241", "ipMode": "VIP"}]
