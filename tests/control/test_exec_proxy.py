"""`pods/exec` refusals at the API server, before any upgrade, as Status bodies (the relay itself is tested
with a real kubelet and kubectl in tests/kubelet/test_exec.py)."""

from __future__ import annotations

from tests.conftest import ApiServer
from tests.control.test_api import pod, raw

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
