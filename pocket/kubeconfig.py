"""Kubeconfig files: the user's (kubectl on the host, through the forwarder) and one per component identity."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NAME = "pocketkube"


@dataclass(frozen=True)
class Credentials:
    """What a kubeconfig user proves itself with and what it trusts: the cluster CA, a client cert/key or a token."""

    ca: bytes | None = None
    client_certificate: bytes | None = None
    client_key: bytes | None = None
    token: str | None = None

    @classmethod
    def from_files(cls, ca: Path, cert: Path | None = None, key: Path | None = None) -> Credentials:
        return cls(ca.read_bytes(), cert.read_bytes() if cert else None, key.read_bytes() if key else None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(server: str, credentials: Credentials | None = None, user: str = NAME) -> dict[str, Any]:
    """One cluster, one user, one current context; certificates embedded (`-data`) so the file stands alone."""
    creds = credentials or Credentials()
    cluster: dict[str, Any] = {"server": server}
    if creds.ca:
        cluster["certificate-authority-data"] = _b64(creds.ca)
    auth: dict[str, Any] = {}
    if creds.client_certificate and creds.client_key:
        auth["client-certificate-data"] = _b64(creds.client_certificate)
        auth["client-key-data"] = _b64(creds.client_key)
    if creds.token:
        auth["token"] = creds.token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": cluster}],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": NAME, "context": {"cluster": NAME, "user": user}}],
        "current-context": NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, credentials: Credentials | None = None, user: str = NAME) -> bool:
    """Write it (mode 0600: it holds a private key); False if the file already says exactly this."""
    text = yaml.safe_dump(kubeconfig(server, credentials, user), sort_keys=False)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)  # before the key goes in
    path.write_text(text)
    return True
