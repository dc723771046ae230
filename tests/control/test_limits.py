"""Abuse tests: one client misbehaves, the API server refuses it and keeps answering everyone else.

The server is `python -m control.apiserver` over HTTPS (a CA and serving
certificate from control.pki), with static tokens for three users: `admin`
(system:masters), `alice` (well behaved) and `mallory` (the abuser), and small
limits so each is reached with a handful of connections.  In every test
alice keeps reading while mallory abuses, and each of her requests must
succeed.  Every loop is bounded in count and time; no assertion is on timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aetcd
import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from control import pki
from control.apiserver.app import resolve
from control.apiserver.limits import MAX_REQUEST_BODY_BYTES, Limits, RequestLimiter
from control.apiserver.storage import parse_endpoint
from tests.conftest import EtcdServer
from tests.control.apiserver_process import ApiServerProcess

T = TypeVar("T")

TOKENS = {"admin": "pkt-admin-token", "alice": "pkt-alice-token", "mallory": "pkt-mallory-token"}
MUTATING_INFLIGHT = 2
WATCHES_PER_CLIENT = 5
HEADER_TIMEOUT = 2
BODY_TIMEOUT = 3
ABUSE_DEADLINE = 40.0  # no abuse scenario may take longer than this
MIB = 1024 * 1024


@dataclass
class Server:
    url: str
    ca: Path
    namespace: str
    process: ApiServerProcess

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def session(self, user: str) -> aiohttp.ClientSession:
        """A client as `user`; a fresh connection per request so the short idle timeout never races a reuse."""
        connector = aiohttp.TCPConnector(ssl=self.tls(), force_close=True, limit=0)
        return aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {TOKENS[user]}"})

    def path(self, plural: str, name: str = "") -> str:
        return f"{self.url}/api/v1/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")

    async def raw_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection with no HTTP client on top, to misbehave byte by byte."""
        port = int(self.url.rsplit(":", 1)[1])
        return await asyncio.open_connection("127.0.0.1", port, ssl=self.tls(), server_hostname="127.0.0.1")


def _configmap(name: str, value: str = "v") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}}


@pytest.fixture(scope="module")
def server(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("pkt-limits")
    ca = pki.ensure_ca(workdir)
    serving = pki.ensure_cert(workdir, ca, "apiserver", pki.apiserver_serving(("127.0.0.1",), "10.96.0.1"))
    tokens = workdir / "tokens.csv"
    tokens.write_text(
        f'{TOKENS["admin"]},admin,uid-admin,"system:masters"\n'
        f"{TOKENS['alice']},alice,uid-alice\n"
        f"{TOKENS['mallory']},mallory,uid-mallory\n"
    )
    process = ApiServerProcess(
        etcd_server.url,
        workdir / "apiserver.log",
        [
            "--tls-cert-file",
            str(serving.cert),
            "--tls-private-key-file",
            str(serving.key),
            "--token-auth-file",
            str(tokens),
            "--max-mutating-requests-inflight",
            str(MUTATING_INFLIGHT),
            "--max-watches-per-client",
            str(WATCHES_PER_CLIENT),
            "--request-header-timeout",
            str(HEADER_TIMEOUT),
            "--request-body-timeout",
            str(BODY_TIMEOUT),
        ],
        ca_file=ca.paths.cert,
    )
    process.start()
    namespace = f"pkt-lim-{uuid.uuid4().hex[:8]}"
    made = Server(process.url, ca.paths.cert, namespace, process)
    try:
        asyncio.run(_create_namespace(made))
        yield made
    finally:
        process.stop()
        asyncio.run(_remove_namespace(etcd_server, namespace))


async def _create_namespace(server: Server) -> None:
    async with server.session("admin") as admin:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": server.namespace}}
        async with admin.post(f"{server.url}/api/v1/namespaces", json=body) as response:
            assert response.status == 201, await response.text()


async def _remove_namespace(etcd: EtcdServer, namespace: str) -> None:
    host, port = parse_endpoint(etcd.url)
    async with aetcd.Client(host=host, port=port) as client:
        await client.delete_prefix(f"/registry/configmaps/{namespace}/".encode())
        await client.delete(f"/registry/namespaces/{namespace}".encode())


async def while_abused(server: Server, abuse: Awaitable[T]) -> T:
    """Run `abuse` while alice keeps reading; every one of her requests must succeed, during and after."""
    task = asyncio.ensure_future(asyncio.wait_for(abuse, ABUSE_DEADLINE))
    answered = 0
    async with server.session("alice") as alice:
        while True:
            finished = task.done()
            async with alice.get(f"{server.url}/api/v1/namespaces/{server.namespace}") as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["metadata"]["name"] == server.namespace
            answered += 1
            if finished:
                break
            await asyncio.sleep(0.05)
    assert answered >= 2
    return await task


async def _status(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await response.json(content_type=None)
    assert body["kind"] == "Status" and body["code"] == response.status, body
    return dict(body)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """One HTTP response from a raw connection: its code and its JSON body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), json.loads(body)


async def _closed_by_server(reader: asyncio.StreamReader, limit: float) -> bool:
    """Whether the server ends the connection within `limit` seconds (EOF or reset)."""
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return True


# -- request bodies ----------------------------------------------------------------


async def test_oversized_bodies_get_413(server: Server) -> None:
    async def abuse() -> list[dict[str, Any]]:
        statuses = []
        async with server.session("mallory") as mallory:
            too_big = json.dumps(_configmap("big", "x" * MAX_REQUEST_BODY_BYTES))
            async with mallory.post(
                server.path("configmaps"), data=too_big, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413
                statuses.append(await _status(response))

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap applies as it streams in
                yield b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"chunked"},"data":{"v":"'
                for _ in range(4 * MIB // 65536):
                    yield b"x" * 65536
                yield b'"}}'

            async with mallory.post(
                server.path("configmaps"), data=chunks(), headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413
                statuses.append(await _status(response))
        return statuses

    statuses = await while_abused(server, abuse())
    for status in statuses:
        assert status["reason"] == "RequestEntityTooLarge"
        assert status["message"] == f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}"
    async with server.session("alice") as alice:
        for name in ("big", "chunked"):
            async with alice.get(server.path("configmaps", name)) as response:
                assert response.status == 404
        # under the cap is fine (1 MiB, within etcd's own request limit)
        async with alice.post(server.path("configmaps"), json=_configmap("fits", "y" * MIB)) as response:
            assert response.status == 201, await response.text()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_deeply_nested_json_gets_400(server: Server) -> None:
    head = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":{},"extra":'

    async def abuse() -> list[dict[str, Any]]:
        statuses = []
        async with server.session("mallory") as mallory:
            for depth in (100_000, 5_000, 100):  # "extra" adds one level to the object's own
                body = head + _nested(depth) + "}"
                async with mallory.post(
                    server.path("configmaps"), data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    assert response.status == 400, await response.text()
                    statuses.append(await _status(response))
            patch = '{"metadata":{"labels":{}},"extra":' + _nested(50_000) + "}"
            async with mallory.patch(
                server.path("configmaps", "deep"),
                data=patch,
                headers={"Content-Type": "application/merge-patch+json"},
            ) as response:
                assert response.status == 400, await response.text()
                statuses.append(await _status(response))
        return statuses

    statuses = await while_abused(server, abuse())
    for status in statuses:
        assert status["reason"] == "BadRequest"
        assert status["message"] == "json: exceeded max depth: the request body nests more than 100 levels"
    async with server.session("alice") as alice:  # ordinary nesting is untouched
        body = head + _nested(20) + "}"
        async with alice.post(
            server.path("configmaps"), data=body, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 201, await response.text()


# -- in-flight requests and slow uploads --------------------------------------------


async def _stalled_upload(server: Server, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST whose headers promise a body that never fully arrives."""
    reader, writer = await server.raw_connection()
    body = json.dumps(_configmap(name)).encode()
    writer.write(
        f"POST /api/v1/namespaces/{server.namespace}/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKENS['mallory']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    await writer.drain()
    return reader, writer


async def test_slow_uploads_fill_only_the_mutating_budget_and_time_out(server: Server) -> None:
    async def abuse() -> tuple[list[tuple[int, dict[str, Any]]], dict[str, Any], str]:
        stalled = [await _stalled_upload(server, f"slow-{i}") for i in range(MUTATING_INFLIGHT)]
        refused: dict[str, Any] = {}
        retry_after = ""
        async with server.session("mallory") as mallory, server.session("admin") as admin:
            for _ in range(100):  # until the stalled uploads hold both slots (bounded)
                async with mallory.post(server.path("configmaps"), json=_configmap("extra")) as response:
                    if response.status == 429:
                        refused = await _status(response)
                        retry_after = response.headers.get("Retry-After", "")
                        break
                    assert response.status in (201, 409), await response.text()
                await asyncio.sleep(0.02)
            # system:masters is exempt from the in-flight budgets, as upstream
            async with admin.post(server.path("configmaps"), json=_configmap("by-admin")) as response:
                assert response.status == 201, await response.text()
        answers = [await _read_response(reader) for reader, _ in stalled]
        for _, writer in stalled:
            writer.close()
        return answers, refused, retry_after

    answers, refused, retry_after = await while_abused(server, abuse())
    assert refused["reason"] == "TooManyRequests" and refused["code"] == 429
    assert refused["message"] == "Too many requests, please try again later."
    assert refused["details"] == {"retryAfterSeconds": 1} and retry_after == "1"
    for code, status in answers:  # the deadline answered them, and freed their slots
        assert code == 408 and status["reason"] == "Timeout"
        assert status["message"] == f"request body not received within {BODY_TIMEOUT}s"
    async with server.session("alice") as alice:
        async with alice.post(server.path("configmaps"), json=_configmap("after-slow")) as response:
            assert response.status == 201, await response.text()


async def test_read_only_budget_is_separate_and_long_running_requests_take_no_slot() -> None:
    """The middleware on its own, behind a handler that blocks until released, so slots stay taken."""
    release = asyncio.Event()
    entered: list[str] = []

    async def blocking(request: web.Request) -> web.Response:
        entered.append(request.method)
        await release.wait()
        return web.json_response({"ok": True})

    limiter = RequestLimiter(Limits(max_requests_inflight=2, max_mutating_requests_inflight=1), resolve)
    app = web.Application(middlewares=[limiter.middleware])
    app.router.add_route("*", "/api/{tail:.+}", blocking)
    async with TestServer(app, host="127.0.0.1") as test_server, aiohttp.ClientSession() as session:
        url = str(test_server.make_url("/api/v1/namespaces/default/pods"))
        held = [asyncio.ensure_future(session.get(url)) for _ in range(2)]
        held.append(asyncio.ensure_future(session.post(url, json={})))
        async with asyncio.timeout(10):
            while len(entered) < 3:
                await asyncio.sleep(0.01)
        async with session.get(url) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "1"
        async with session.delete(f"{url}/p") as response:
            assert response.status == 429
        # a watch and a log stream are long-running: no slot needed
        watch = asyncio.ensure_future(session.get(url, params={"watch": "true"}))
        log = asyncio.ensure_future(session.get(f"{url}/p/log"))
        async with asyncio.timeout(10):
            while len(entered) < 5:
                await asyncio.sleep(0.01)
        release.set()
        for pending in [*held, watch, log]:
            response = await pending
            assert response.status == 200
            response.release()
        assert limiter.inflight == {"readOnly": 0, "mutating": 0}
        async with session.get(url) as response:
            assert response.status == 200


# -- watches ------------------------------------------------------------------------


async def test_watches_per_client(server: Server) -> None:
    watch_url = server.path("configmaps")

    async def abuse() -> tuple[dict[str, Any], list[int]]:
        async with server.session("mallory") as mallory, server.session("alice") as alice:
            opened = [
                await mallory.get(watch_url, params={"watch": "1", "timeoutSeconds": "3"})
                for _ in range(WATCHES_PER_CLIENT)
            ]
            assert [r.status for r in opened] == [200] * WATCHES_PER_CLIENT
            async with mallory.get(watch_url, params={"watch": "1"}) as refused:
                assert refused.status == 429 and refused.headers["Retry-After"] == "1"
                status = await _status(refused)
            # the limit is mallory's: alice still watches
            async with alice.get(watch_url, params={"watch": "1", "timeoutSeconds": "1"}) as theirs:
                assert theirs.status == 200
                await theirs.read()
            for response in opened:  # the server ends them at timeoutSeconds
                await response.read()
                response.release()
            codes = []
            async with mallory.get(watch_url, params={"watch": "1", "timeoutSeconds": "1"}) as again:
                codes.append(again.status)
                await again.read()
        return status, codes

    status, codes = await while_abused(server, abuse())
    assert status["reason"] == "TooManyRequests"
    assert status["message"] == f"too many watches open for this client (limit {WATCHES_PER_CLIENT})"
    assert codes == [200]  # freed once mallory's watches ended


# -- slow and broken connections ----------------------------------------------------


async def test_slowloris_connections_are_dropped(server: Server) -> None:
    count = 40

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Send a request's headers a byte at a time, forever; report whether the server hung up."""
        line = f"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {'a' * 200}".encode()
        closer = asyncio.ensure_future(_closed_by_server(reader, 30))
        for byte in line:
            if closer.done():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                break
            await asyncio.sleep(0.25)
        closed = await closer
        writer.close()
        return closed

    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        closed = await _closed_by_server(reader, 30)
        writer.close()
        return closed

    async def abuse() -> list[bool]:
        connections = [await server.raw_connection() for _ in range(count)]
        half = count // 2
        return list(
            await asyncio.gather(
                *(trickle(r, w) for r, w in connections[:half]), *(idle(r, w) for r, w in connections[half:])
            )
        )

    closed = await while_abused(server, abuse())
    assert closed == [True] * count


async def test_malformed_tls_handshakes(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    garbage: list[bytes] = [
        os.urandom(512),
        b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # plain HTTP to the HTTPS port
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff",  # a ClientHello record that lies about its length
        b"\x16\x03\x03\xff\xff" + os.urandom(64),
        b"\x15\x03\x03\x00\x02\x02\x28" * 10,  # alert records instead of a hello
    ]

    async def one(payload: bytes) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        closed = await _closed_by_server(reader, 30)
        writer.close()
        return closed

    async def abuse() -> list[bool]:
        return list(await asyncio.gather(*(one(garbage[i % len(garbage)]) for i in range(30))))

    closed = await while_abused(server, abuse())
    assert closed == [True] * 30
    assert server.process.running()


# -- flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-requests-inflight", "-1", "must not be negative, got -1"),
        ("--max-resource-write-bytes", "lots", "expected a whole number, got 'lots'"),
        ("--request-header-timeout", "0", "must be more than 0 seconds, got 0"),
    ],
)
def test_bad_limit_flags_are_named(flag: str, value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "control.apiserver", flag, value], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert flag in result.stderr and message in result.stderr
