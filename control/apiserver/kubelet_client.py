"""The one place the API server builds kubelet URLs and HTTP sessions.

Logs, exec and the metrics scraper all reach kubelets through here, so a
change of transport (HTTPS, client certificates) is made once.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from control.api import errors

Object = dict[str, Any]


class KubeletClient:
    """Addresses a node's kubelet as the Node object publishes it; HTTPS with a client certificate if `ssl_context`."""

    def __init__(self, default_port: int, ssl_context: ssl.SSLContext | None = None):
        self.default_port = default_port
        self.ssl_context = ssl_context

    def base_url(self, node: Object) -> str:
        """`https://<InternalIP>:<kubelet port>` (http without TLS); the port from `status.daemonEndpoints`."""
        status = node.get("status") or {}
        ip = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
        if not ip:
            raise errors.internal_error(f"node {node['metadata']['name']} has no InternalIP address")
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or self.default_port
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{ip}:{port}"

    def session(self, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
        """A session for requests to kubelets; the caller closes it."""
        if self.ssl_context is None:
            return aiohttp.ClientSession(timeout=timeout)
        return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=self.ssl_context))
