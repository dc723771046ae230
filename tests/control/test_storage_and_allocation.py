"""etcd-level guarantees: lossless list-then-watch, 410 after compaction, ClusterIP allocation."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import uuid
from typing import Any
from collections.abc import Iterator

import aetcd
import pytest

from control.api.errors import ApiError
from control.apiserver.storage import Compacted, KeyExists, RevisionConflict, Storage
from control.client import Client

from tests.conftest import ApiServer, ApiServerThread, EtcdServer


@pytest.fixture(scope="module")
def apiserver_module(etcd_server: EtcdServer) -> Iterator[ApiServerThread]:
    """A watch cache that keeps one change per resource, so a resourceVersion two changes back is outside it."""
    server = ApiServerThread(etcd_server.url, f"/pkt-{uuid.uuid4().hex[:12]}", watch_cache_size=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def storage(etcd_server: EtcdServer) -> Any:
    store = Storage(etcd_server.url, prefix=f"/pkt-st-{uuid.uuid4().hex[:8]}")
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def test_storage_create_update_delete_semantics(storage: Storage) -> None:
    created = await storage.create("/registry/configmaps/ns/a", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    rv = int(created["metadata"]["resourceVersion"])
    with pytest.raises(KeyExists):
        await storage.create("/registry/configmaps/ns/a", {"metadata": {"name": "a"}})
    updated = await storage.update("/registry/configmaps/ns/a", {**created, "data": {"v": "2"}}, rv)
    assert int(updated["metadata"]["resourceVersion"]) > rv
    with pytest.raises(RevisionConflict):
        await storage.update("/registry/configmaps/ns/a", {**created, "data": {"v": "3"}}, rv)
    stored = await storage.get("/registry/configmaps/ns/a")
    assert stored is not None and stored.obj["data"] == {"v": "2"}
    raw = await storage.get_raw("/registry/configmaps/ns/a")
    assert raw is not None and "resourceVersion" not in json.loads(raw)["metadata"]
    await storage.delete("/registry/configmaps/ns/a", stored.revision)
    assert await storage.get("/registry/configmaps/ns/a") is None


async def test_list_then_watch_loses_nothing_under_concurrent_writes(storage: Storage) -> None:
    key = "/registry/configmaps/ns/counter"
    await storage.create(key, {"metadata": {"name": "counter"}, "data": {"n": "0"}})
    last = 200

    async def writer() -> None:
        for n in range(1, last + 1):
            stored = await storage.get(key)
            assert stored is not None
            await storage.update(key, {**stored.obj, "data": {"n": str(n)}}, stored.revision)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    items, revision, _ = await storage.list("/registry/configmaps/ns/")
    seen = [int(items[0].obj["data"]["n"])]

    async def follow() -> None:
        async for change in storage.watch("/registry/configmaps/ns/", revision):
            assert change.obj is not None and change.prev is not None
            assert int(change.prev["data"]["n"]) == seen[-1]
            seen.append(int(change.obj["data"]["n"]))
            if seen[-1] == last:
                return

    await asyncio.wait_for(follow(), 30)
    await task
    assert seen == list(range(seen[0], last + 1))


async def test_watch_from_compacted_revision_raises(storage: Storage) -> None:
    created = await storage.create("/registry/configmaps/ns/c", {"metadata": {"name": "c"}})
    old = int(created["metadata"]["resourceVersion"])
    await storage.update("/registry/configmaps/ns/c", {"metadata": {"name": "c"}, "data": {"x": "y"}}, old)
    now = await storage.revision()
    await storage.compact(now)
    with pytest.raises(Compacted):
        async for _ in storage.watch("/registry/configmaps/ns/", old - 1):
            pass


async def test_api_watch_and_continue_expire_with_410(apiserver: ApiServer) -> None:
    client = apiserver.client
    for i in range(3):
        await client.create("configmaps", {"metadata": {"name": f"exp-{i}"}}, "default")
    first = await client.request("GET", "/api/v1/namespaces/default/configmaps", params={"limit": "1"})
    old_rv = first["metadata"]["resourceVersion"]
    await client.patch("configmaps", "exp-0", {"data": {"a": "b"}}, "default")
    await client.patch("configmaps", "exp-0", {"data": {"a": "c"}}, "default")
    store = Storage(apiserver.etcd_url, apiserver.prefix)
    now = await store.revision()
    await store.compact(now)
    await store.close()

    async with client.session.get(
        client.server + "/api/v1/namespaces/default/configmaps", params={"watch": "1", "resourceVersion": old_rv}
    ) as resp:
        assert resp.status == 200
        lines = [json.loads(line) async for line in resp.content if line.strip()]
    assert lines == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old_rv} ({now})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]

    with pytest.raises(ApiError) as expired:
        await client.request(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            params={"limit": "1", "continue": first["metadata"]["continue"]},
        )
    assert expired.value.code == 410 and expired.value.reason == "Expired"
    assert expired.value.status["metadata"]["continue"]


def service(name: str, cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80}], "selector": {"app": name}}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"metadata": {"name": name}, "spec": spec}


async def allocation_keys(etcd_url: str, prefix: str) -> dict[str, str]:
    host, port = etcd_url.removeprefix("http://").split(":")
    async with aetcd.Client(host=host, port=int(port)) as etcd:
        found = await etcd.get_prefix(f"{prefix}/registry/ipallocations/".encode())
        return {kv.key.decode().rsplit("/", 1)[1]: kv.value.decode() for kv in found}


async def test_cluster_ips_unique_outside_static_band_and_survive_restart(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("namespaces", {"metadata": {"name": "ips"}})
    ips = {}
    for i in range(30):
        svc = await client.create("services", service(f"s{i}"), "ips")
        ips[svc["metadata"]["name"]] = svc["spec"]["clusterIP"]
        assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    assert len(set(ips.values())) == 30
    network = ipaddress.IPv4Network("10.96.0.0/12")
    for ip in ips.values():
        addr = ipaddress.IPv4Address(ip)
        assert addr in network and int(addr) - int(network.network_address) > 256

    dns = await client.create("services", service("kube-dns", "10.96.0.10"), "ips")
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    with pytest.raises(ApiError) as taken:
        await client.create("services", service("dup", "10.96.0.10"), "ips")
    assert taken.value.code == 422 and "provided IP is already allocated" in taken.value.status["message"]
    with pytest.raises(ApiError) as outside:
        await client.create("services", service("far", "10.200.0.1"), "ips")
    assert outside.value.code == 422 and "not in the valid range" in outside.value.status["message"]

    headless = await client.create("services", service("headless", "None"), "ips")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["clusterIPs"] == ["None"]

    with pytest.raises(ApiError) as immutable:
        await client.patch("services", "s0", {"spec": {"clusterIP": "10.96.5.5"}}, "ips")
    assert immutable.value.code == 422 and "field is immutable" in immutable.value.status["message"]

    for i in range(10):
        await client.delete("services", f"s{i}", "ips")
    await client.delete("services", "kube-dns", "ips")
    again = await client.create("services", service("kube-dns-2", "10.96.0.10"), "ips")
    assert again["spec"]["clusterIP"] == "10.96.0.10"

    apiserver.restart()
    fresh = Client(apiserver.url)
    try:
        for i in range(10, 20):
            svc = await fresh.create("services", service(f"new{i}"), "ips")
            assert svc["spec"]["clusterIP"] not in {ips[f"s{j}"] for j in range(10, 30)}
        listed = await fresh.list("services")
    finally:
        await fresh.close()
    live = {
        s["spec"]["clusterIP"]: f"{s['metadata']['namespace']}/{s['metadata']['name']}"
        for s in listed["items"]
        if s["spec"].get("clusterIP") not in (None, "None")
    }
    assert len(live) == len([s for s in listed["items"] if s["spec"].get("clusterIP") not in (None, "None")])
    assert await allocation_keys(apiserver.etcd_url, apiserver.prefix) == live


@pytest.fixture
def tiny_range_server(etcd_server: EtcdServer) -> Iterator[ApiServerThread]:
    server = ApiServerThread(etcd_server.url, f"/pkt-tiny-{uuid.uuid4().hex[:8]}", service_range="10.100.0.0/28")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_small_range_exhausts_and_reuses_released_ips(tiny_range_server: ApiServerThread) -> None:
    async with Client(tiny_range_server.url) as client:
        taken = {"10.100.0.1"}  # the kubernetes Service
        for i in range(13):
            svc = await client.create("services", service(f"t{i}"), "default")
            assert svc["spec"]["clusterIP"] not in taken
            taken.add(svc["spec"]["clusterIP"])
        assert taken == {f"10.100.0.{n}" for n in range(1, 15)}
        with pytest.raises(ApiError) as full:
            await client.create("services", service("overflow"), "default")
        assert full.value.code == 500 and "range" in full.value.status["message"]
        released = (await client.get("services", "t5", "default"))["spec"]["clusterIP"]
        await client.delete("services", "t5", "default")
        reused = await client.create("services", service("after"), "default")
        assert reused["spec"]["clusterIP"] == released


async def test_node_ports_allocated_kept_released_and_never_shared(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("namespaces", {"metadata": {"name": "nodeports"}})
    spec = {"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}
    first = await client.create("services", {"metadata": {"name": "np"}, "spec": spec}, "nodeports")
    ports = [p["nodePort"] for p in first["spec"]["ports"]]
    assert len(set(ports)) == 2 and all(30000 <= p <= 32767 for p in ports)

    relabelled = await client.patch("services", "np", {"metadata": {"labels": {"x": "y"}}}, "nodeports")
    assert [p["nodePort"] for p in relabelled["spec"]["ports"]] == ports
    replaced = await client.update(
        "services", {**relabelled, "spec": {**relabelled["spec"], "ports": [{"name": "http", "port": 80}]}}
    )
    assert [p["nodePort"] for p in replaced["spec"]["ports"]] == [ports[0]]

    with pytest.raises(ApiError) as shared:
        await client.create(
            "services",
            {
                "metadata": {"name": "thief"},
                "spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": ports[0]}]},
            },
            "nodeports",
        )
    assert shared.value.code == 422 and "provided port is already allocated" in shared.value.status["message"]
    assert shared.value.status["details"]["causes"][0]["field"] == "spec.ports[0].nodePort"
    with pytest.raises(ApiError) as outside:
        await client.create(
            "services",
            {"metadata": {"name": "low"}, "spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": 80}]}},
            "nodeports",
        )
    assert outside.value.code == 422 and "30000-32767" in outside.value.status["message"]

    released = ports[1]
    taker = await client.create(
        "services",
        {"metadata": {"name": "taker"}, "spec": {"type": "NodePort", "ports": [{"port": 82, "nodePort": released}]}},
        "nodeports",
    )
    assert taker["spec"]["ports"][0]["nodePort"] == released
    await client.delete("services", "np", "nodeports")
    again = await client.create(
        "services",
        {"metadata": {"name": "again"}, "spec": {"type": "NodePort", "ports": [{"port": 83, "nodePort": ports[0]}]}},
        "nodeports",
    )
    assert again["spec"]["ports"][0]["nodePort"] == ports[0]


async def test_type_change_to_cluster_ip_releases_node_ports_and_clusterips_request(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("namespaces", {"metadata": {"name": "retype"}})
    svc = await client.create(
        "services", {"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}, "retype"
    )
    node_port = svc["spec"]["ports"][0]["nodePort"]
    plain = await client.update("services", {**svc, "spec": {**svc["spec"], "type": "ClusterIP"}})
    assert "nodePort" not in plain["spec"]["ports"][0]
    assert str(node_port) not in [k.rsplit("/", 1)[1] for k in await node_port_keys(apiserver)]
    by_list = await client.create(
        "services",
        {"metadata": {"name": "ips"}, "spec": {"clusterIPs": ["10.96.0.77"], "ports": [{"port": 80}]}},
        "retype",
    )
    assert by_list["spec"]["clusterIP"] == "10.96.0.77"


async def node_port_keys(apiserver: ApiServer) -> list[str]:
    host, port = apiserver.etcd_url.removeprefix("http://").split(":")
    async with aetcd.Client(host=host, port=int(port)) as etcd:
        found = await etcd.get_prefix(f"{apiserver.prefix}/registry/nodeportallocations/".encode())
        return [kv.key.decode() for kv in found]


@pytest.fixture
def compacting_server(etcd_server: EtcdServer) -> Iterator[ApiServerThread]:
    server = ApiServerThread(etcd_server.url, f"/pkt-compact-{uuid.uuid4().hex[:8]}", compaction_interval=0.2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_periodic_compaction_expires_old_watches(compacting_server: ApiServerThread) -> None:
    async with Client(compacting_server.url) as client:
        created = await client.create("configmaps", {"metadata": {"name": "old"}}, "default")
        old_rv = created["metadata"]["resourceVersion"]
        await client.patch("configmaps", "old", {"data": {"a": "1"}}, "default")

        async def until_expired() -> ApiError:
            while True:
                await client.patch("configmaps", "old", {"data": {"a": str(uuid.uuid4())}}, "default")
                try:
                    async for _ in client.watch("configmaps", "default", resource_version=old_rv, timeout_seconds=1):
                        pass
                except ApiError as err:
                    return err
                await asyncio.sleep(0.1)

        expired = await asyncio.wait_for(until_expired(), 20)
    assert expired.code == 410 and expired.reason == "Expired"
