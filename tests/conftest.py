"""Shared fixtures: a real etcd and a real pocketkube API server.

Reusable by every test package (controllers, scheduler, ...):

- `etcd_server` (session): Debian's `etcd` on 127.0.0.1 with free ports and
  a temporary data dir; `.url` is its client URL.  Stopped and removed at
  the end of the session.
- `apiserver_module` (module): an API server (in-process, on its own event
  loop in a background thread) on 127.0.0.1 and a free port, storing under
  a key prefix unique to the test module, so modules never see each other's
  objects.  `.url`, `.restart()`, `.prefix`.
- `apiserver` (function): the module's server plus a fresh async
  `control.client.Client` bound to the test's event loop, as `.client`
  (closed after the test); `.url`, `.restart()` as above.
- `kubeconfig` (function): path of a kubeconfig file pointing at `apiserver`.
- `kubectl` (function): `kubectl(*args, check=True) -> CompletedProcess`
  running the real /usr/bin/kubectl against `apiserver` (text output).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web

from control.apiserver.allocator import ServiceIPRange
from control.apiserver.app import ServerConfig, create_app
from control.apiserver.cache import DEFAULT_HISTORY
from control.apiserver.storage import Storage
from control.client import Client
from tests.processes import stop

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
KUBECTL = "/usr/bin/kubectl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EtcdServer:
    url: str
    data_dir: Path


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd for the whole session; killed and its data removed at the end."""
    data_dir = tmp_path_factory.mktemp("pkt-etcd")
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    log_file = open(data_dir / "etcd.log", "wb")
    process = subprocess.Popen(
        [
            ETCD,
            "--name",
            "pkt-test",
            "--data-dir",
            str(data_dir / "data"),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"pkt-test={peer_url}",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"etcd exited with {process.returncode}; see {data_dir / 'etcd.log'}")
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=1) as resp:
                    if b'"true"' in resp.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not become healthy within 30s")
            time.sleep(0.1)
        yield EtcdServer(client_url, data_dir)
    finally:
        stop(process)
        log_file.close()
        shutil.rmtree(data_dir, ignore_errors=True)


class ApiServerThread:
    """An API server on its own event loop in a daemon thread; restartable on the same etcd prefix."""

    def __init__(
        self,
        etcd_url: str,
        prefix: str,
        service_range: str = "10.96.0.0/12",
        compaction_interval: float = 300.0,
        watch_cache_size: int = DEFAULT_HISTORY,
        default_watch_timeout: float = 1800.0,
    ):
        self.etcd_url = etcd_url
        self.prefix = prefix
        self.service_range = service_range
        self.compaction_interval = compaction_interval
        self.watch_cache_size = watch_cache_size
        self.default_watch_timeout = default_watch_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="pkt-apiserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("apiserver did not start within 30s")
        if self._error is not None:
            raise RuntimeError(f"apiserver failed to start: {self._error!r}") from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as err:  # reported to start() through _error
            self._error = err
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        config = ServerConfig(
            advertise_address="127.0.0.1",
            port=self.port,
            bookmark_interval=1.0,
            compaction_interval=self.compaction_interval,
            watch_cache_size=self.watch_cache_size,
            default_watch_timeout=self.default_watch_timeout,
        )
        app = create_app(Storage(self.etcd_url, self.prefix), ServiceIPRange(self.service_range), config)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def apiserver_module(etcd_server: EtcdServer) -> Iterator[ApiServerThread]:
    server = ApiServerThread(etcd_server.url, f"/pkt-{uuid.uuid4().hex[:12]}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ApiServer:
    """What tests use: the server's URL, a client on the test's loop, restart()."""

    url: str
    client: Client
    server: ApiServerThread

    @property
    def prefix(self) -> str:
        return self.server.prefix

    @property
    def etcd_url(self) -> str:
        return self.server.etcd_url

    def restart(self) -> None:
        self.server.restart()


@pytest.fixture
async def apiserver(apiserver_module: ApiServerThread) -> AsyncIterator[ApiServer]:
    client = Client(apiserver_module.url)
    try:
        yield ApiServer(apiserver_module.url, client, apiserver_module)
    finally:
        await client.close()


@pytest.fixture
def kubeconfig(apiserver_module: ApiServerThread, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: pkt\n  cluster:\n    server: {apiserver_module.url}\n"
        "users:\n- name: pkt\n  user: {}\n"
        "contexts:\n- name: pkt\n  context:\n    cluster: pkt\n    user: pkt\n    namespace: default\n"
        "current-context: pkt\n"
    )
    return path


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kube-cache"), *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run
