"""`python -m control.apiserver` as its own process, for tests of its flags and its log output.

The encryption and abuse tests need what only the command line wires up
(--encryption-provider-config, the limit flags, aiohttp's connection
timers) and the server's real stderr, so they run the real command.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import free_port
from tests.processes import stop

START_TIMEOUT = 30.0


class ApiServerProcess:
    """One API server process on 127.0.0.1; its stderr (verbose, JSON lines) goes to `log_path`.

    With `ca_file` the server is expected to serve HTTPS (its flags carry --tls-cert-file).
    """

    def __init__(self, etcd_url: str, log_path: Path, extra_args: list[str] | None = None, ca_file: Path | None = None):
        self.etcd_url = etcd_url
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.port = free_port()
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        self._tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "control.apiserver",
            "--etcd-servers",
            self.etcd_url,
            "--bind-address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--advertise-address",
            "127.0.0.1",
            "-v",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"apiserver exited with {self._process.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=self._tls) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"apiserver not ready within {START_TIMEOUT}s: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self._process is None:
            return
        stop(self._process)
        self._process = None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
