"""The kubelet's HTTP server on the node IP: container logs for `kubectl logs`, exec, /healthz and /metrics.

With TLS (the bring-up) it serves HTTPS only, and every request passes the
authn/authz filter of kubelet/auth.py: callers the API server vouches for
(TokenReview) or with a certificate from the client CA, allowed by a
SubjectAccessReview on this node's `nodes/<subresource>`.
"""

from __future__ import annotations

import logging
import ssl
import time
from contextlib import aclosing
from collections.abc import Callable
from typing import Any

from aiohttp import web

from control.observability import HealthCheck, health_app
from kubelet.auth import KubeletAuth
from kubelet.exec import ExecServer
from kubelet.stats import StatsProvider
from kubelet.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    LABEL_TYPE,
    TYPE_CONTAINER,
    ContainerRuntime,
    DockerRuntime,
    LogOptions,
)

log = logging.getLogger(__name__)

Object = dict[str, Any]

TRUE_VALUES = ("true", "1")


class LogRequestError(Exception):
    """A log request that cannot be served; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in TRUE_VALUES


def _int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LogRequestError(400, f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise LogRequestError(400, f"{name} must not be negative, got {value}")
    return value


def serving_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """HTTPS with this node's serving certificate; a client certificate, if any, must come from `client_ca_file`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(client_ca_file)
    context.verify_mode = ssl.CERT_OPTIONAL  # no certificate: a bearer token, or 401, rather than a failed handshake
    return context


class KubeletServer:
    """Serves logs of the pods this kubelet runs, found by namespace/name through the pod workers' view."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        pods: Callable[[], dict[str, Object]],
        node_name: str,
        checks: dict[str, HealthCheck] | None = None,
        tls: ssl.SSLContext | None = None,
        auth: KubeletAuth | None = None,
    ):
        if tls is not None and auth is None:
            raise ValueError("an HTTPS kubelet API needs its authn/authz filter (auth)")
        self.runtime, self.pods, self.node_name = runtime, pods, node_name
        self.tls = tls
        self.app = health_app(checks)
        if auth is not None:
            self.app.middlewares.append(auth.middleware)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        self.stats = StatsProvider(runtime, pods, node_name)
        self.app.router.add_get("/stats/summary", self.stats_summary)
        if isinstance(runtime, DockerRuntime):
            ExecServer(runtime.api).register(self.app)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=self.tls).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _find_container(self, namespace: str, pod_name: str, container: str, previous: bool) -> str:
        pod = next(
            (
                p
                for p in self.pods().values()
                if p["metadata"].get("namespace") == namespace and p["metadata"].get("name") == pod_name
            ),
            None,
        )
        if pod is None:
            raise LogRequestError(404, f'pod "{namespace}/{pod_name}" is not running on node "{self.node_name}"')
        names = [c.get("name") for c in pod.get("spec", {}).get("containers") or []]
        if container not in names:
            raise LogRequestError(
                404, f'container "{container}" not found in pod "{namespace}/{pod_name}" (has: {", ".join(names)})'
            )
        instances = await self.runtime.list_containers(
            {LABEL_POD_UID: pod["metadata"]["uid"], LABEL_TYPE: TYPE_CONTAINER, LABEL_CONTAINER_NAME: container}
        )
        instances.sort(key=lambda s: s.restart_count)
        if previous:
            if len(instances) < 2:
                raise LogRequestError(400, f'previous terminated container "{container}" in pod "{pod_name}" not found')
            return instances[-2].id
        if not instances:
            raise LogRequestError(400, f'container "{container}" in pod "{pod_name}" is waiting to start')
        return instances[-1].id

    async def stats_summary(self, _request: web.Request) -> web.Response:
        return web.json_response(await self.stats.summary())

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            since = _int(request, "sinceSeconds")
            options = LogOptions(
                follow=_flag(request, "follow"),
                tail_lines=_int(request, "tailLines"),
                timestamps=_flag(request, "timestamps"),
                since_seconds=int(time.time()) - since if since is not None else None,
            )
            container_id = await self._find_container(namespace, pod, container, _flag(request, "previous"))
        except LogRequestError as err:
            return web.Response(status=err.status, text=str(err) + "\n")
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        try:
            async with aclosing(self.runtime.logs(container_id, options)) as chunks:
                async for chunk in chunks:
                    await response.write(chunk)
        except ConnectionResetError:
            return response
        await response.write_eof()
        return response
