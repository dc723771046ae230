"""`kubectl exec` end to end: real kubectl -> real API server -> the kubelet's server -> a real dockerd.

The container is a busybox started straight through Docker with the labels
the kubelet gives pod containers, so this module needs no pod network; the
API server holds a Node whose InternalIP and kubelet port point at the
kubelet server on 127.0.0.1, and a Pod bound to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import docker
import kubernetes
import pytest
from kubernetes.stream import stream

from kubelet.exec import CLOSE, ERROR, PROTOCOL_V4, PROTOCOL_V5, RESIZE, STDERR, STDIN, STDOUT, DockerFrames
from kubelet.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_TYPE,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
    DockerRuntime,
)
from kubelet.server import KubeletServer
from pocket.images import import_images
from tests.conftest import ApiServer
from tests.kubelet.dockerd import Dockerd, start_dockerd, stop_dockerd

pytestmark = pytest.mark.root

POD = "exec-target"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    daemon = start_dockerd()
    try:
        client = docker.DockerClient(base_url=daemon.base_url)
        try:
            import_images(client)
            labels = {LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: POD}
            # a sandbox with the same pod labels must never be the one exec'd into
            client.containers.run(
                "busybox:latest", ["sleep", "3600"], detach=True, network_mode="none",
                labels={**labels, LABEL_TYPE: TYPE_SANDBOX, LABEL_CONTAINER_NAME: "POD"},
            )  # fmt: skip
            client.containers.run(
                "busybox:latest",
                ["sh", "-c", "echo inside > /marker && exec sleep 3600"],
                detach=True,
                network_mode="none",
                labels={**labels, LABEL_TYPE: TYPE_CONTAINER, LABEL_CONTAINER_NAME: "main"},
            )
        finally:
            client.close()
        yield daemon
    finally:
        stop_dockerd(daemon)


@pytest.fixture
async def kubelet_url(dockerd: Dockerd) -> AsyncIterator[str]:
    runtime = DockerRuntime(dockerd.base_url)
    server = KubeletServer(runtime, dict, "worker1")
    await server.start("127.0.0.1", 0)
    try:
        site = next(iter(server._runner.sites))  # type: ignore[union-attr]
        yield site.name
    finally:
        await server.stop()
        await runtime.close()


async def _exec(url: str, command: list[str], protocol: str = PROTOCOL_V5, stdin: bytes | None = None) -> dict:
    """Speak the channel protocol as kubectl does; collect what each channel carried."""
    params = [("command", c) for c in command] + [("stdout", "true"), ("stderr", "true")]
    if stdin is not None:
        params.append(("stdin", "true"))
    got: dict = {STDOUT: b"", STDERR: b"", ERROR: b""}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/exec/default/{POD}/main", params=params, protocols=[protocol]) as ws:
            assert ws.protocol == protocol
            if stdin is not None:
                await ws.send_bytes(bytes([STDIN]) + stdin)
                await ws.send_bytes(bytes([CLOSE, STDIN]))
            async for message in ws:
                assert message.type == aiohttp.WSMsgType.BINARY
                got[message.data[0]] += message.data[1:]
    got["status"] = json.loads(got[ERROR])
    return got


def test_docker_frames_split_across_reads() -> None:
    frames = DockerFrames()
    data = bytes([1, 0, 0, 0, 0, 0, 0, 3]) + b"out" + bytes([2, 0, 0, 0, 0, 0, 0, 2]) + b"er"
    assert frames.feed(data[:5]) == []
    assert frames.feed(data[5:13]) == [(1, b"out")]
    assert frames.feed(data[13:]) == [(2, b"er")]


async def test_stdout_stderr_and_success(kubelet_url: str) -> None:
    got = await _exec(kubelet_url, ["sh", "-c", "cat /marker; echo oops >&2"])
    assert got[STDOUT] == b"inside\n"
    assert got[STDERR] == b"oops\n"
    assert got["status"] == {"metadata": {}, "status": "Success"}


async def test_exit_code_in_status(kubelet_url: str) -> None:
    got = await _exec(kubelet_url, ["sh", "-c", "exit 7"], protocol=PROTOCOL_V4)
    status = got["status"]
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]


async def test_stdin_then_v5_close(kubelet_url: str) -> None:
    got = await _exec(kubelet_url, ["sh", "-c", "tr a-z A-Z; echo done"], stdin=b"hello\nworld\n")
    assert got[STDOUT] == b"HELLO\nWORLD\ndone\n"
    assert got["status"]["status"] == "Success"


async def test_unknown_container_is_404(kubelet_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await session.ws_connect(
                f"{kubelet_url}/exec/default/{POD}/nope",
                params=[("command", "true"), ("stdout", "true")],
                protocols=[PROTOCOL_V5],
            )
    assert err.value.status == 404


# -- through the API server with the real kubectl ---------------------------


@pytest.fixture
async def bound_pod(apiserver: ApiServer, kubelet_url: str) -> AsyncIterator[None]:
    port = int(kubelet_url.rsplit(":", 1)[1])
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "exec-node"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": "default"},
        "spec": {"nodeName": "exec-node", "containers": [{"name": "main", "image": "busybox:latest"}]},
    }
    client = apiserver.client
    created_node = await client.create("nodes", node)
    await client.update_status("nodes", {**created_node, "status": node["status"]})
    await client.create("pods", pod, "default")
    try:
        yield
    finally:
        await client.delete("pods", POD, "default", grace_period_seconds=0)
        await client.delete("nodes", "exec-node")


@pytest.mark.usefixtures("bound_pod")
async def test_kubectl_exec_output_and_exit_code(kubectl: Kubectl) -> None:
    result = await asyncio.to_thread(kubectl, "exec", POD, "--", "sh", "-c", "cat /marker; echo to-stderr >&2")
    assert result.stdout == "inside\n"
    assert "to-stderr" in result.stderr
    failed = await asyncio.to_thread(kubectl, "exec", POD, "-c", "main", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3, failed.stderr


@pytest.mark.usefixtures("bound_pod")
async def test_kubectl_exec_stdin(kubectl: Kubectl) -> None:
    result = await asyncio.to_thread(kubectl, "exec", "-i", POD, "--", "sh", "-c", "wc -l", input="a\nb\nc\n")
    assert result.stdout.strip() == "3"


@pytest.mark.usefixtures("bound_pod")
async def test_kubectl_exec_errors(kubectl: Kubectl) -> None:
    missing = await asyncio.to_thread(kubectl, "exec", "no-such-pod", "--", "true", check=False)
    assert missing.returncode != 0 and 'pods "no-such-pod" not found' in missing.stderr
    bad_container = await asyncio.to_thread(kubectl, "exec", POD, "-c", "other", "--", "true", check=False)
    assert bad_container.returncode != 0 and "container other is not valid" in bad_container.stderr


async def test_tty_with_resize(kubelet_url: str) -> None:
    params = [("command", "sh"), ("stdin", "true"), ("stdout", "true"), ("tty", "true")]
    out, error = b"", b""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{kubelet_url}/exec/default/{POD}/main", params=params, protocols=[PROTOCOL_V5]
        ) as ws:
            await ws.send_bytes(bytes([RESIZE]) + json.dumps({"Width": 91, "Height": 27}).encode())
            await ws.send_bytes(bytes([STDIN]) + b"stty size; exit 4\n")
            async for message in ws:
                if message.data[0] == STDOUT:
                    out += message.data[1:]
                elif message.data[0] == ERROR:
                    error += message.data[1:]
    assert b"27 91" in out  # the terminal got the size kubectl sent
    assert json.loads(error)["details"]["causes"] == [{"reason": "ExitCode", "message": "4"}]


@pytest.mark.usefixtures("bound_pod")
async def test_kubectl_exec_interactive_tty(kubectl: Kubectl, kubeconfig: Path) -> None:
    """`kubectl exec -it` from a real terminal (a pty): the shell echoes and the exit code comes back."""

    def interactive() -> tuple[int, bytes]:
        pid, fd = pty.fork()
        if pid == 0:
            os.execvp("kubectl", ["kubectl", "--kubeconfig", str(kubeconfig), "exec", "-it", POD, "--", "sh"])
        output = b""
        os.write(fd, b"echo tty-$((6*7))\r")
        os.write(fd, b"exit 6\r")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), output

    code, output = await asyncio.to_thread(interactive)
    assert b"tty-42" in output, output
    assert code == 6, output


@pytest.mark.usefixtures("bound_pod")
async def test_official_client_stream_exec(apiserver: ApiServer) -> None:
    """kubernetes.stream (websocket-client, v4.channel.k8s.io) through the API server, as Python users exec."""

    def run() -> tuple[str, dict]:
        configuration = kubernetes.client.Configuration()
        configuration.host = apiserver.url
        api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        client = stream(
            api.connect_get_namespaced_pod_exec,
            POD,
            "default",
            command=["sh", "-c", "cat /marker; exit 2"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        client.run_forever(timeout=20)
        out = client.read_stdout()
        error = client.read_channel(ERROR)
        client.close()
        return out, json.loads(error)

    out, status = await asyncio.to_thread(run)
    assert out == "inside\n"
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "2"
