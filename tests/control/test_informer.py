"""control.client.Informer (what every component runs) against the real server and etcd."""

from __future__ import annotations

import asyncio
from typing import Any

from control.apiserver.storage import Storage
from control.client import Informer

from tests.conftest import ApiServer


async def wait_for(condition: Any, timeout: float = 15) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_informer_follows_selector_changes_across_compaction(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("namespaces", {"metadata": {"name": "inf"}})
    await client.create(
        "pods", {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "inf"
    )
    informer = Informer(client, "pods", "inf", field_selector="spec.nodeName=", retry_delay=0.1)
    seen: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, obj, _prev: seen.append((kind, obj["metadata"]["name"])))
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        assert [p["metadata"]["name"] for p in informer.items()] == ["a"]
        await client.create(
            "pods", {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "inf"
        )
        await client.bind("inf", "a", "node-1")
        await wait_for(lambda: sorted(p["metadata"]["name"] for p in informer.items()) == ["b"])
        assert ("ADDED", "b") in seen and ("DELETED", "a") in seen

        # A live watch keeps delivering after etcd compacts its history.
        store = Storage(apiserver.etcd_url, apiserver.prefix)
        for i in range(3):
            await client.create("configmaps", {"metadata": {"name": f"churn-{i}"}}, "inf")
        await store.compact(await store.revision())
        await store.close()
        await client.create(
            "pods", {"metadata": {"name": "c"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "inf"
        )
        await wait_for(lambda: sorted(p["metadata"]["name"] for p in informer.items()) == ["b", "c"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
