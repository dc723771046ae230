"""`pods/exec` as kube-apiserver serves it to kubectl 1.32: a WebSocket relayed to the kubelet.

kubectl opens a WebSocket offering `v5.channel.k8s.io` (then older
channel protocols); the API server opens one to the kubelet's
`/exec/{namespace}/{pod}/{container}` with the same offer, answers kubectl
with the protocol the kubelet chose, and copies binary messages both ways
unchanged: the channel framing (stdin, stdout, stderr, error Status,
resize, v5 close) is the kubelet's business.  A request that is not a
WebSocket upgrade (kubectl's SPDY fallback) gets a 400 naming what is
supported.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import WSMsgType, web

from control.api import errors
from control.api.errors import ApiError

log = logging.getLogger(__name__)

SUPPORTED = ("v5.channel.k8s.io", "v4.channel.k8s.io")
EXEC_PARAMETERS = ("command", "container", "stdin", "stdout", "stderr", "tty")


def offered_protocols(request: web.Request) -> list[str]:
    """The client's subprotocols we can relay, in its order of preference."""
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip() in SUPPORTED]


def check_exec_request(request: web.Request) -> list[str]:
    """Validate before any upgrade, so errors reach kubectl as Status bodies; returns the protocols to offer."""
    if not request.query.getall("command", []):
        raise errors.bad_request("you must specify at least one command for the container")
    if not any(request.query.get(s, "").lower() in ("true", "1") for s in ("stdin", "stdout", "stderr")):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if not web.WebSocketResponse(protocols=SUPPORTED).can_prepare(request).ok:
        raise errors.bad_request(
            "exec is served over WebSocket only (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); "
            "SPDY is not supported"
        )
    protocols = offered_protocols(request)
    if not protocols:
        raise errors.bad_request(
            "no supported WebSocket subprotocol offered (supported: v5.channel.k8s.io, v4.channel.k8s.io)"
        )
    return protocols


async def proxy_exec(
    request: web.Request, kubelet_url: str, protocols: list[str], session: aiohttp.ClientSession
) -> web.StreamResponse:
    """Connect to the kubelet first (its refusal becomes a Status), then upgrade kubectl and relay; closes `session`."""
    params = [(k, v) for k in EXEC_PARAMETERS for v in request.query.getall(k, [])]
    try:
        try:
            upstream = await session.ws_connect(kubelet_url, params=params, protocols=protocols, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as err:
            reason = {400: "BadRequest", 404: "NotFound"}.get(err.status, "InternalError")
            raise ApiError(
                errors.status_failure(
                    err.status if err.status in (400, 404) else 500,
                    reason,
                    f"kubelet refused exec at {kubelet_url}: {err.status} {err.message}",
                )
            ) from None
        except aiohttp.ClientError as err:
            raise errors.internal_error(f'error dialing kubelet "{kubelet_url}": {err}') from None
        if upstream.protocol not in SUPPORTED:
            await upstream.close()
            raise errors.internal_error(f"kubelet chose no supported subprotocol (got {upstream.protocol!r})")
        downstream = web.WebSocketResponse(protocols=(upstream.protocol,), max_msg_size=0)
        await downstream.prepare(request)
        await _relay_both(downstream, upstream)
        return downstream
    finally:
        await session.close()


async def _relay_both(downstream: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Copy until either side closes, then close the other (the kubelet's last message is the error Status)."""
    to_kubelet = asyncio.create_task(_copy(downstream, upstream))
    to_client = asyncio.create_task(_copy(upstream, downstream))
    try:
        await asyncio.wait((to_kubelet, to_client), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_kubelet, to_client):
            task.cancel()
        await asyncio.gather(to_kubelet, to_client, return_exceptions=True)
        await upstream.close()
        await downstream.close()


async def _copy(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if sink.closed:
            return
        if message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.ERROR:
            log.debug("exec stream error", extra={"error": str(source.exception())})
            return
