"""`pods/exec` refusals at the API server, before any upgrade, as Status bodies (the relay itself is tested
with a real kubelet and kubectl in tests/kubelet/test_exec.py); protobuf DeleteOptions and Eviction bodies."""

from __future__ import annotations

import pytest

from control.api.errors import ApiError
from tests.conftest import ApiServer
from tests.control.test_api import pod, raw
from tests.control.test_protobuf import envelope, field

EXEC = "/api/v1/namespaces/default/pods/{name}/exec"


async def test_exec_refusals_are_status_bodies(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("nodes", {"metadata": {"name": "exec-proxy-node"}})
    await client.create("pods", pod("exec-unbound"), "default")
    await client.create("pods", pod("exec-bound", node="exec-proxy-node"), "default")
    try:
        code, body = await raw(client, "POST", EXEC.format(name="exec-missing") + "?command=true&stdout=true")
        assert (code, body["reason"]) == (404, "NotFound")
        code, body = await raw(client, "POST", EXEC.format(name="exec-unbound") + "?command=true&stdout=true")
        assert code == 400 and body["message"] == "pod exec-unbound does not have a host assigned"
        code, body = await raw(client, "POST", EXEC.format(name="exec-bound") + "?command=true&stdout=true&container=x")
        assert code == 400 and body["message"] == "container x is not valid for pod exec-bound"
        code, body = await raw(client, "POST", EXEC.format(name="exec-bound") + "?command=true&stdout=true")
        assert code == 500 and "InternalIP" in body["message"]  # the node has no address to reach its kubelet
        await client.update_status(
            "nodes",
            {
                **(await client.get("nodes", "exec-proxy-node")),
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
            },
        )
        code, body = await raw(client, "POST", EXEC.format(name="exec-bound") + "?stdout=true")
        assert code == 400 and "at least one command" in body["message"]
        code, body = await raw(client, "POST", EXEC.format(name="exec-bound") + "?command=true&stdout=true")
        assert code == 400 and "WebSocket" in body["message"] and body["kind"] == "Status"
    finally:
        for name in ("exec-unbound", "exec-bound"):
            await client.delete("pods", name, "default", grace_period_seconds=0)
        await client.delete("nodes", "exec-proxy-node")


async def test_protobuf_delete_options_and_eviction_bodies(apiserver: ApiServer) -> None:
    """kubectl drain's typed client may send both as protobuf; an explicit gracePeriodSeconds=0 is honoured."""
    client = apiserver.client
    await client.create("nodes", {"metadata": {"name": "pb-node"}})
    await client.create("pods", pod("pb-bound", node="pb-node"), "default")
    await client.create("pods", pod("pb-evicted", node="pb-node"), "default")
    try:
        grace_zero = envelope("v1", "DeleteOptions", field(1, 0))
        path = "/api/v1/namespaces/default/pods/pb-bound"
        async with client.session.delete(
            client.server + path, data=grace_zero, headers={"Content-Type": "application/vnd.kubernetes.protobuf"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        with pytest.raises(ApiError) as gone:
            await client.get("pods", "pb-bound", "default")
        assert gone.value.code == 404  # removed at once, not marked for a 30 s grace period
        eviction = envelope("policy/v1", "Eviction", field(1, field(1, "pb-evicted")) + field(2, field(1, 0)))
        async with client.session.post(
            client.server + "/api/v1/namespaces/default/pods/pb-evicted/eviction",
            data=eviction,
            headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
        ) as resp:
            assert resp.status == 201, await resp.text()
        with pytest.raises(ApiError) as evicted:
            await client.get("pods", "pb-evicted", "default")
        assert evicted.value.code == 404
    finally:
        await client.delete("nodes", "pb-node")
