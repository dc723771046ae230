"""The official `kubernetes` Python client's watch against a real API server and etcd (issue 3).

What clients rely on, as Kubernetes does it: a watch from a resourceVersion
that etcd has compacted (and the watch cache no longer holds) answers 200
and then an ERROR event carrying a 410 Expired Status; `watch.Watch().stream`
turns that into `ApiException(status=410)`, and the client relists and
watches again from the list's resourceVersion.  A watch the server ends
(its timeout) or a cut connection is resumed from the last seen
resourceVersion without losing what was written in between.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ProtocolError

from control.apiserver.storage import Storage
from tests.conftest import ApiServerThread, EtcdServer

NAMESPACE = "default"
CACHE_HISTORY = 4  # changes the watch cache keeps per resource: small, so a few writes push a revision out
SERVER_WATCH_TIMEOUT = 1.0  # the server ends every watch without timeoutSeconds after this long
STREAM_GUARD = 60.0  # a stream still waiting after this long is stopped (the test then fails on what it saw)


@pytest.fixture(scope="module")
def server(etcd_server: EtcdServer) -> Iterator[ApiServerThread]:
    api = ApiServerThread(
        etcd_server.url,
        f"/pkt-pywatch-{uuid.uuid4().hex[:8]}",
        watch_cache_size=CACHE_HISTORY,
        default_watch_timeout=SERVER_WATCH_TIMEOUT,
    )
    api.start()
    try:
        yield api
    finally:
        api.stop()


def core_api(url: str) -> Iterator[client.CoreV1Api]:
    configuration = client.Configuration()
    configuration.host = url
    with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture
def core(server: ApiServerThread) -> Iterator[client.CoreV1Api]:
    yield from core_api(server.url)


class DroppingProxy:
    """A TCP relay on 127.0.0.1 in front of the API server whose open connections the test can cut."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="pkt-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop(self) -> int:
        """Cut every open connection (both ends); return how many client connections there were."""
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        return len(cut) // 2

    def close(self) -> None:
        self.listener.close()
        self.drop()


@pytest.fixture
def proxy(server: ApiServerThread) -> Iterator[DroppingProxy]:
    relay = DroppingProxy(server.port)
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def proxied(proxy: DroppingProxy) -> Iterator[client.CoreV1Api]:
    """A client that reaches the API server through the proxy."""
    yield from core_api(f"http://127.0.0.1:{proxy.port}")


def config_map(name: str, value: str = "0") -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"value": value})


def list_revision(core: client.CoreV1Api) -> str:
    """The resourceVersion of a fresh list of the namespace's ConfigMaps (what a client watches from)."""
    listed = core.list_namespaced_config_map(NAMESPACE)
    assert listed.metadata is not None and listed.metadata.resource_version
    return listed.metadata.resource_version


def name_of(obj: Any) -> str:
    return str(obj.metadata.name)


def compact_etcd(server: ApiServerThread) -> int:
    """Compact etcd at its current revision, as the API server's compactor would; return that revision."""

    async def compact() -> int:
        storage = Storage(server.etcd_url, server.prefix)
        try:
            revision = await storage.revision()
            await storage.compact(revision)
            return revision
        finally:
            await storage.close()

    return asyncio.run(compact())


def guarded(stream_watch: watch.Watch) -> threading.Timer:
    """A started timer that stops the watch after STREAM_GUARD seconds, so a missing event fails, not hangs."""
    timer = threading.Timer(STREAM_GUARD, stream_watch.stop)
    timer.daemon = True
    timer.start()
    return timer


def counting(
    func: Callable[..., Any], before_each_rewatch: Callable[[int], None]
) -> tuple[Callable[..., Any], list[int]]:
    """Wrap a list function so every call is counted and, from the second on, preceded by `before_each_rewatch(n)`.

    functools.wraps keeps the docstring and signature the client reads to find the return type.
    """
    calls: list[int] = []

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if calls:
            before_each_rewatch(len(calls))
        calls.append(len(calls))
        return func(*args, **kwargs)

    return wrapper, calls


def test_watch_from_a_compacted_revision_is_410_then_the_client_relists_and_resumes(
    core: client.CoreV1Api, server: ApiServerThread
) -> None:
    prefix = f"gone-{uuid.uuid4().hex[:6]}"
    core.list_namespaced_config_map(NAMESPACE)  # the watch cache starts before the writes below
    first = core.create_namespaced_config_map(NAMESPACE, config_map(f"{prefix}-a"))
    assert first.metadata is not None
    old_rv = first.metadata.resource_version
    for i in range(CACHE_HISTORY + 2):  # push old_rv out of the watch cache's history
        core.patch_namespaced_config_map(f"{prefix}-a", NAMESPACE, {"data": {"value": str(i + 1)}})
    compacted = compact_etcd(server)

    # On the wire: 200, then one ERROR event whose object is a 410 Expired Status.
    raw: Any = core.list_namespaced_config_map(NAMESPACE, watch=True, resource_version=old_rv, _preload_content=False)
    try:
        assert raw.status == 200
        events = [json.loads(line) for line in raw.data.decode().splitlines() if line.strip()]
    finally:
        raw.release_conn()
    assert events == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old_rv} ({compacted})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]

    # The client's watch raises 410 (after its one retry from the same revision) ...
    stream_watch = watch.Watch()
    with pytest.raises(ApiException) as gone:
        for _ in stream_watch.stream(core.list_namespaced_config_map, NAMESPACE, resource_version=old_rv):
            pytest.fail("no event can come from a compacted revision")
    assert gone.value.status == 410
    assert str(gone.value.reason).startswith("Expired: too old resource version")

    # ... and so does an exact list at that revision.
    with pytest.raises(ApiException) as list_gone:
        core.list_namespaced_config_map(NAMESPACE, resource_version=old_rv, resource_version_match="Exact")
    assert list_gone.value.status == 410
    status = json.loads(str(list_gone.value.body))
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert status["message"] == "The resourceVersion for the provided list is too old."

    # The client relists: the current state and a revision to watch from.
    relisted = core.list_namespaced_config_map(NAMESPACE)
    assert relisted.metadata is not None
    mine = {name_of(cm): cm.data for cm in relisted.items if name_of(cm).startswith(prefix)}
    assert mine == {f"{prefix}-a": {"value": str(CACHE_HISTORY + 2)}}
    core.create_namespaced_config_map(NAMESPACE, config_map(f"{prefix}-b"))  # between the list and the watch

    seen: list[tuple[str, str, str]] = []
    resumed = watch.Watch()
    timer = guarded(resumed)
    try:
        for event in resumed.stream(
            core.list_namespaced_config_map, NAMESPACE, resource_version=relisted.metadata.resource_version
        ):
            obj = event["object"]
            if not name_of(obj).startswith(prefix):
                continue
            seen.append((event["type"], name_of(obj), (obj.data or {}).get("value", "")))
            if len(seen) == 1:  # written while the watch is open
                core.patch_namespaced_config_map(f"{prefix}-a", NAMESPACE, {"data": {"value": "later"}})
                core.delete_namespaced_config_map(f"{prefix}-b", NAMESPACE)
            if len(seen) == 3:
                resumed.stop()
    finally:
        timer.cancel()
    assert seen == [
        ("ADDED", f"{prefix}-b", "0"),
        ("MODIFIED", f"{prefix}-a", "later"),
        ("DELETED", f"{prefix}-b", "0"),
    ]


def test_stream_resumes_after_the_server_ends_the_watch_without_missing_writes(core: client.CoreV1Api) -> None:
    """Watch.stream re-watches from the last resourceVersion when the server closes the stream (its timeout)."""
    prefix = f"resume-{uuid.uuid4().hex[:6]}"
    start_rv = list_revision(core)
    rewatches = 3

    def write_in_the_gap(n: int) -> None:
        """Runs after the server ended watch n and before the client's next watch starts."""
        core.create_namespaced_config_map(NAMESPACE, config_map(f"{prefix}-gap-{n}"))

    list_func, calls = counting(core.list_namespaced_config_map, write_in_the_gap)
    core.create_namespaced_config_map(NAMESPACE, config_map(f"{prefix}-before"))
    expected = [f"{prefix}-before", *(f"{prefix}-gap-{n}" for n in range(1, rewatches + 1))]
    seen: list[str] = []
    stream_watch = watch.Watch()
    timer = guarded(stream_watch)
    try:
        for event in stream_watch.stream(list_func, NAMESPACE, resource_version=start_rv):
            if name_of(event["object"]).startswith(prefix):
                assert event["type"] == "ADDED"
                seen.append(name_of(event["object"]))
            if len(seen) == len(expected):
                stream_watch.stop()
    finally:
        timer.cancel()
    assert seen == expected
    assert len(calls) == rewatches + 1  # each gap object was written between two watches


def test_timeout_seconds_loop_resumes_from_the_last_resource_version(core: client.CoreV1Api) -> None:
    """The usual client loop: watch with timeoutSeconds, then watch again from Watch.resource_version."""
    prefix = f"loop-{uuid.uuid4().hex[:6]}"
    stream_watch = watch.Watch()
    resource_version = list_revision(core)
    seen: list[str] = []
    rounds = 3
    for n in range(rounds):
        core.create_namespaced_config_map(NAMESPACE, config_map(f"{prefix}-{n}"))  # written while no watch is open
        for event in stream_watch.stream(
            core.list_namespaced_config_map, NAMESPACE, resource_version=resource_version, timeout_seconds=1
        ):
            if name_of(event["object"]).startswith(prefix):
                seen.append(f"{event['type']} {name_of(event['object'])}")
        resource_version = stream_watch.resource_version
    assert seen == [f"ADDED {prefix}-{n}" for n in range(rounds)]


def test_stream_resumes_from_its_resource_version_after_the_connection_drops(
    proxy: DroppingProxy, proxied: client.CoreV1Api
) -> None:
    """A cut connection breaks the stream; watching again from Watch.resource_version misses nothing."""
    core = proxied
    prefix = f"drop-{uuid.uuid4().hex[:6]}"
    drops = 3
    expected = [f"{prefix}-{n}" for n in range(drops + 1)]
    resource_version = list_revision(core)
    core.create_namespaced_config_map(NAMESPACE, config_map(expected[0]))
    stream_watch = watch.Watch()
    seen: list[str] = []
    broken = 0
    timer = guarded(stream_watch)
    try:
        for _ in range(drops + 1):  # one stream per connection
            try:
                for event in stream_watch.stream(
                    core.list_namespaced_config_map, NAMESPACE, resource_version=resource_version
                ):
                    if not name_of(event["object"]).startswith(prefix):
                        continue
                    seen.append(name_of(event["object"]))
                    if len(seen) == len(expected):
                        stream_watch.stop()
                    else:
                        assert proxy.drop() >= 1
                        core.create_namespaced_config_map(NAMESPACE, config_map(expected[len(seen)]))
            except ProtocolError:
                broken += 1
            resource_version = stream_watch.resource_version
            if len(seen) == len(expected):
                break
    finally:
        timer.cancel()
    assert seen == expected
    assert broken == drops
