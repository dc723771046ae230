"""The one place the API server builds kubelet URLs and HTTP sessions.

Logs, exec and the metrics scraper all reach kubelets through here, so a
change of transport (HTTPS, client certificates) is made once.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from control.api import errors

Object = dict[str, Any]


class KubeletClient:
    """Addresses a node's kubelet as the Node object publishes it."""

    def __init__(self, default_port: int):
        self.default_port = default_port

    def base_url(self, node: Object) -> str:
        """`http://<InternalIP>:<kubelet port>`; the port from `status.daemonEndpoints`, else the default."""
        status = node.get("status") or {}
        ip = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
        if not ip:
            raise errors.internal_error(f"node {node['metadata']['name']} has no InternalIP address")
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or self.default_port
        return f"http://{ip}:{port}"

    def session(self, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
        """A session for requests to kubelets; the caller closes it."""
        return aiohttp.ClientSession(timeout=timeout)
