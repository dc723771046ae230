"""Lists bigger than gRPC's default 4 MiB reply still come back (etcd and the watch cache)."""

from __future__ import annotations

from tests.conftest import ApiServer

OBJECTS = 6
VALUE_BYTES = 900 * 1024  # under etcd's 1.5 MiB request limit; six of them pass 4 MiB


async def test_list_larger_than_four_mebibytes(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("namespaces", {"metadata": {"name": "big"}})
    for i in range(OBJECTS):
        await client.create(
            "configmaps", {"metadata": {"name": f"blob-{i}"}, "data": {"v": str(i) * VALUE_BYTES}}, "big"
        )
    listed = await client.list("configmaps", "big")
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == [f"blob-{i}" for i in range(OBJECTS)]
    assert all(len(item["data"]["v"]) == VALUE_BYTES for item in listed["items"])
    # A restarted server reads everything from etcd in one go to fill its cache.
    apiserver.restart()
    listed = await apiserver.client.list("configmaps", "big")
    assert len(listed["items"]) == OBJECTS
