"""The kubeconfig `pocket up` writes for kubectl on the host (through the forwarder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NAME = "pocketkube"


def kubeconfig(server: str) -> dict[str, Any]:
    """One cluster, one user (no credentials yet: the API is plain HTTP), one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": {"server": server}}],
        "users": [{"name": NAME, "user": {}}],
        "contexts": [{"name": NAME, "context": {"cluster": NAME, "user": NAME}}],
        "current-context": NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str) -> bool:
    """Write it (mode 0600); False if the file already says exactly this."""
    text = yaml.safe_dump(kubeconfig(server), sort_keys=False)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return True
