"""A real API server process over HTTPS with `--authorization-mode Node,RBAC`, NodeRestriction and static tokens.

The RBAC and node authorization tests need what only the command line
wires up (the flags, the bootstrap policy at start), so they run
`python -m control.apiserver` against the session's etcd, with one bearer
token per test identity (kubectl sends tokens over HTTPS only, hence TLS,
with a CA made by control.pki).  Object names carry a per-server suffix,
since the process stores at etcd's root.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from control import pki
from control.client import Client
from tests.conftest import KUBECTL, EtcdServer
from tests.control.apiserver_process import ApiServerProcess


@dataclass(frozen=True)
class Identity:
    token: str
    user: str
    groups: tuple[str, ...] = ()


@dataclass
class AuthzServer:
    """The server, its identities by short name, and a suffix that keeps object names apart."""

    process: ApiServerProcess
    identities: dict[str, Identity]
    workdir: Path
    ca_file: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def url(self) -> str:
        return self.process.url

    def client(self, who: str) -> Client:
        return Client(self.url, token=self.identities[who].token, ssl_context=self.ssl_context())

    def anonymous_client(self) -> Client:
        return Client(self.url, ssl_context=self.ssl_context())

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def kubeconfig(self, who: str) -> Path:
        path = self.workdir / f"{who}.kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: pkt\n  cluster:\n    server: {self.url}\n    certificate-authority: {self.ca_file}\n"
            f"users:\n- name: {who}\n  user:\n    token: {self.identities[who].token}\n"
            f"contexts:\n- name: pkt\n  context:\n    cluster: pkt\n    user: {who}\n"
            "current-context: pkt\n"
        )
        return path

    def kubectl(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The real kubectl as `who`; the caller checks returncode and output."""
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig(who)), "--cache-dir", str(self.workdir / "cache"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(home)},
            timeout=60,
        )


def start_authz_server(etcd: EtcdServer, workdir: Path, identities: dict[str, Identity]) -> Iterator[AuthzServer]:
    """Start the server with a token file for `identities`; stop it when the generator is closed."""
    tokens = workdir / "tokens.csv"
    tokens.write_text(
        "".join(f'{i.token},{i.user},uid-{name},"{",".join(i.groups)}"\n' for name, i in identities.items())
    )
    ca = pki.ensure_ca(workdir / "pki")
    serving = pki.ensure_cert(workdir / "pki", ca, "apiserver", pki.apiserver_serving(("127.0.0.1",), "10.96.0.1"))
    process = ApiServerProcess(
        etcd.url,
        workdir / "apiserver.log",
        [
            "--tls-cert-file",
            str(serving.cert),
            "--tls-private-key-file",
            str(serving.key),
            "--anonymous-auth",
            "true",
            "--authorization-mode",
            "Node,RBAC",
            "--enable-admission-plugins",
            "NodeRestriction",
            "--token-auth-file",
            str(tokens),
        ],
        ca_file=ca.paths.cert,
    )
    process.start()
    try:
        yield AuthzServer(process, identities, workdir, ca.paths.cert)
    finally:
        process.stop()
