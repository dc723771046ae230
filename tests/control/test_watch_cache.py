"""The watch cache: lists and watches from memory, one etcd watch per resource, consistent reads kept."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import prometheus_client

from control.apiserver.storage import Storage
from tests.conftest import ApiServer

CM = "/api/v1/namespaces/default/configmaps"


def _lists(source: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "apiserver_watch_cache_lists_total", {"resource": "configmaps", "source": source}
    )
    return value or 0.0


def _etcd_watchers(etcd_url: str) -> float:
    with urllib.request.urlopen(f"{etcd_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return float(line.split()[1])
    raise AssertionError("etcd exposes no etcd_debugging_mvcc_watcher_total")


async def test_consistent_lists_see_writes_made_behind_the_servers_back(apiserver: ApiServer) -> None:
    """Writes straight to etcd (not through this server) are in the very next list: the cache is never stale."""
    client = apiserver.client
    await client.list("configmaps", "default")  # warm the cache
    direct = Storage(apiserver.etcd_url, apiserver.prefix)
    try:
        from_cache, from_etcd = _lists("cache"), _lists("etcd")
        for round_ in range(5):
            name = f"direct-{round_}"
            created = await direct.create(
                f"/registry/configmaps/default/{name}", {"metadata": {"name": name, "namespace": "default"}}
            )
            stored_rv = created["metadata"]["resourceVersion"]
            listed = await client.list("configmaps", "default")
            assert name in [i["metadata"]["name"] for i in listed["items"]]
            assert int(listed["metadata"]["resourceVersion"]) >= int(stored_rv)  # not older than the write
            stored = await direct.get(f"/registry/configmaps/default/{name}")
            assert stored is not None
            await direct.delete(f"/registry/configmaps/default/{name}", stored.revision)
            listed = await client.list("configmaps", "default")
            assert name not in [i["metadata"]["name"] for i in listed["items"]]
        assert _lists("cache") - from_cache == 10 and _lists("etcd") == from_etcd
    finally:
        await direct.close()


async def test_list_paging_and_selectors_from_the_cache(apiserver: ApiServer) -> None:
    client = apiserver.client
    for i in range(5):
        await client.create("configmaps", {"metadata": {"name": f"page-{i}", "labels": {"page": "yes"}}}, "default")
    await client.create("configmaps", {"metadata": {"name": "page-x", "labels": {"page": "no"}}}, "default")
    try:
        names: list[str] = []
        params = {"labelSelector": "page=yes", "limit": "2"}
        revisions = set()
        while True:
            page = await client.request("GET", CM, params=params)
            names += [i["metadata"]["name"] for i in page["items"]]
            revisions.add(page["metadata"]["resourceVersion"])
            token = page["metadata"].get("continue")
            if not token:
                break
            params = {"labelSelector": "page=yes", "limit": "2", "continue": token}
        assert names == [f"page-{i}" for i in range(5)]
        assert len(revisions) == 1  # every page is the first page's snapshot
        any_rv = await client.request("GET", CM, params={"resourceVersion": "0", "labelSelector": "page=no"})
        assert [i["metadata"]["name"] for i in any_rv["items"]] == ["page-x"]
    finally:
        for name in [f"page-{i}" for i in range(5)] + ["page-x"]:
            await client.delete("configmaps", name, "default")


async def _read_events(resp: object, count: int) -> list[dict]:
    events = []
    async for line in resp.content:  # type: ignore[attr-defined]
        if line.strip():
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


async def test_many_watchers_share_one_etcd_watch_and_resume_from_history(apiserver: ApiServer) -> None:
    client = apiserver.client
    listed = await client.list("configmaps", "default")
    rv = listed["metadata"]["resourceVersion"]
    before = _etcd_watchers(apiserver.etcd_url)
    watchers = [
        await client.session.get(
            client.server + CM, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "20"}
        )
        for _ in range(25)
    ]
    try:
        await asyncio.sleep(0.2)
        assert _etcd_watchers(apiserver.etcd_url) - before <= 0  # the 25 streams added no etcd watch
        await client.create("configmaps", {"metadata": {"name": "fanout"}}, "default")
        await client.patch("configmaps", "fanout", {"data": {"k": "v"}}, "default")
        await client.delete("configmaps", "fanout", "default")
        seen = await asyncio.gather(*(asyncio.wait_for(_read_events(w, 3), 10) for w in watchers))
        for events in seen:
            assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
                ("ADDED", "fanout"),
                ("MODIFIED", "fanout"),
                ("DELETED", "fanout"),
            ]
        # a late watcher from the same resourceVersion gets the same three from the cache's history
        async with client.session.get(client.server + CM, params={"watch": "1", "resourceVersion": rv}) as late:
            replay = await asyncio.wait_for(_read_events(late, 3), 10)
        assert [e["type"] for e in replay] == ["ADDED", "MODIFIED", "DELETED"]
        assert replay[1]["object"]["data"] == {"k": "v"}
    finally:
        for watcher in watchers:
            watcher.close()
