"""`kubectl exec` on the node: a WebSocket remote command stream onto a Docker exec.

The API server relays kubectl's WebSocket (subprotocol `v5.channel.k8s.io`
or `v4.channel.k8s.io`) to `/exec/{namespace}/{pod}/{container}` here.
Every binary message starts with a channel byte: 0 stdin, 1 stdout,
2 stderr, 3 error (one v1 Status when the command ends), 4 resize
(`{"Width": w, "Height": h}`); v5 adds 255, "close this channel" (stdin
EOF).  The command runs through the Docker SDK (exec_create/exec_start on
a hijacked socket), demultiplexed from Docker's 8-byte frame headers when
there is no TTY.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from aiohttp import WSMsgType, web

from kubelet.runtime import LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_TYPE, TYPE_CONTAINER

log = logging.getLogger(__name__)

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
PROTOCOLS = (PROTOCOL_V5, PROTOCOL_V4)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

EXIT_CODE_POLLS = 50  # exec_inspect may report Running briefly after the stream ends
TRUE_VALUES = ("true", "1")


@dataclass(frozen=True)
class ExecRequest:
    """What kubectl asked for: the command and which streams to attach."""

    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, request: web.Request) -> ExecRequest:
        def flag(name: str) -> bool:
            return request.query.get(name, "").lower() in TRUE_VALUES

        command = request.query.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="you must specify at least one command for the container\n")
        streams = cls(command, flag("stdin"), flag("stdout"), flag("stderr"), flag("tty"))
        if not (streams.stdin or streams.stdout or streams.stderr):
            raise web.HTTPBadRequest(text="you must specify at least 1 of stdin, stdout, stderr\n")
        if streams.tty and streams.stderr:
            # kubectl never asks for both: a TTY merges stderr into stdout
            raise web.HTTPBadRequest(text="stdout and stderr cannot both be requested with a tty\n")
        return streams


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(command: list[str], code: int) -> dict[str, Any]:
    """The Status the kubelet reports for a command that exited non-zero; kubectl exits with `code`."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


class DockerFrames:
    """Splits Docker's multiplexed exec stream (8-byte header: stream, 0, 0, 0, big-endian size) into frames."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            stream, size = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
            if len(self._buffer) < 8 + size:
                break
            frames.append((stream, self._buffer[8 : 8 + size]))
            self._buffer = self._buffer[8 + size :]
        return frames


class ExecServer:
    """Runs exec requests in this node's containers, found by their Kubernetes labels."""

    def __init__(self, api: docker.APIClient):
        self.api = api

    def register(self, app: web.Application) -> None:
        app.router.add_route("GET", "/exec/{namespace}/{pod}/{container}", self.handle)
        app.router.add_route("POST", "/exec/{namespace}/{pod}/{container}", self.handle)

    async def _container_id(self, namespace: str, pod: str, container: str) -> str:
        labels = [
            f"{LABEL_POD_NAMESPACE}={namespace}",
            f"{LABEL_POD_NAME}={pod}",
            f"{LABEL_CONTAINER_NAME}={container}",
            f"{LABEL_TYPE}={TYPE_CONTAINER}",
        ]
        found = await asyncio.to_thread(self.api.containers, filters={"label": labels, "status": "running"})
        if not found:
            raise web.HTTPNotFound(
                text=f'container "{container}" of pod "{namespace}/{pod}" is not running on this node\n'
            )
        return str(found[0]["Id"])

    async def handle(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        wanted = ExecRequest.from_query(request)
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text=f"exec needs a WebSocket upgrade with subprotocol {' or '.join(PROTOCOLS)}\n")
        container_id = await self._container_id(namespace, pod, container)
        await ws.prepare(request)
        if ws.ws_protocol not in PROTOCOLS:
            await ws.close(message=f"unsupported subprotocol; use {' or '.join(PROTOCOLS)}".encode())
            return ws
        try:
            status = await self._run(ws, container_id, wanted)
        except docker.errors.DockerException as err:
            status = failure_status(f"exec in {container_id[:12]} failed: {getattr(err, 'explanation', None) or err}")
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        await ws.close()
        return ws

    async def _run(self, ws: web.WebSocketResponse, container_id: str, wanted: ExecRequest) -> dict[str, Any]:
        exec_id = (
            await asyncio.to_thread(
                self.api.exec_create,
                container_id,
                wanted.command,
                stdin=wanted.stdin,
                stdout=wanted.stdout,
                stderr=wanted.stderr,
                tty=wanted.tty,
            )
        )["Id"]
        raw = await asyncio.to_thread(self.api.exec_start, exec_id, socket=True, tty=wanted.tty)
        sock: socket.socket = getattr(raw, "_sock", raw)
        sock.setblocking(False)
        client = asyncio.create_task(self._from_client(ws, sock, exec_id, wanted))
        try:
            await self._to_client(ws, sock, wanted)
        finally:
            client.cancel()
            await asyncio.gather(client, return_exceptions=True)
            sock.close()
        code = await self._exit_code(exec_id)
        return success_status() if code == 0 else exit_status(wanted.command, code)

    async def _to_client(self, ws: web.WebSocketResponse, sock: socket.socket, wanted: ExecRequest) -> None:
        """Docker's output onto channels 1 and 2 until the command closes it."""
        loop = asyncio.get_running_loop()
        frames = DockerFrames()
        while data := await loop.sock_recv(sock, 65536):
            if ws.closed:
                return
            if wanted.tty:
                await ws.send_bytes(bytes([STDOUT]) + data)
                continue
            for stream, payload in frames.feed(data):
                channel = STDERR if stream == 2 else STDOUT
                if (channel == STDOUT and wanted.stdout) or (channel == STDERR and wanted.stderr):
                    await ws.send_bytes(bytes([channel]) + payload)

    async def _from_client(
        self, ws: web.WebSocketResponse, sock: socket.socket, exec_id: str, wanted: ExecRequest
    ) -> None:
        """kubectl's stdin, resizes and stdin close into the exec; a closed WebSocket ends stdin too."""
        loop = asyncio.get_running_loop()
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[0], message.data[1:]
            if channel == STDIN and wanted.stdin:
                await loop.sock_sendall(sock, payload)
            elif channel == RESIZE and wanted.tty:
                await self._resize(exec_id, payload)
            elif channel == CLOSE and ws.ws_protocol == PROTOCOL_V5 and payload[:1] == bytes([STDIN]):
                _close_write(sock)
        _close_write(sock)

    async def _resize(self, exec_id: str, payload: bytes) -> None:
        try:
            size = json.loads(payload)
            await asyncio.to_thread(self.api.exec_resize, exec_id, height=int(size["Height"]), width=int(size["Width"]))
        except (ValueError, KeyError, TypeError, docker.errors.DockerException) as err:
            log.debug("exec resize ignored", extra={"error": str(err)})

    async def _exit_code(self, exec_id: str) -> int:
        for _ in range(EXIT_CODE_POLLS):
            info = await asyncio.to_thread(self.api.exec_inspect, exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await asyncio.sleep(0.1)
        raise docker.errors.DockerException(f"exec {exec_id[:12]} reported no exit code")


def _close_write(sock: socket.socket) -> None:
    """EOF on the command's stdin (Docker keeps the output side open)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
