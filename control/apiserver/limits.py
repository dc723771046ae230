"""Limits that keep one abusive client from taking the API server down.

As kube-apiserver: a cap on request bodies (`MaxRequestBodyBytes`, 3 MiB,
413 RequestEntityTooLarge), and two in-flight budgets, read-only and
mutating (`--max-requests-inflight` 400, `--max-mutating-requests-inflight`
200), answered with 429 and `Retry-After: 1` when full (upstream's message,
"Too many requests, please try again later.", in a TooManyRequests Status
rather than upstream's plain text, so that every error here is a Status).
Long-running requests (watches; exec, attach, log, portforward, proxy
subresources) take no in-flight slot, and members of `system:masters` are
exempt, as upstream's max-in-flight filter has it.

Beyond upstream (which leaves these to priority and fairness): at most
`--max-watches-per-client` open watches per client (the authenticated user,
else the peer address), JSON bodies nested at most `MAX_JSON_DEPTH` deep
(Python's decoder and every recursive walk after it would otherwise fail
with RecursionError near 1,000 levels), a deadline for a request body to
arrive, and, through aiohttp's keep-alive timer, a deadline for a
connection's request headers (slowloris).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol
from collections.abc import Awaitable, Callable

import prometheus_client
from aiohttp import web

from control.api import errors
from control.api.errors import ApiError
from control.apiserver.authn import USER

log = logging.getLogger(__name__)

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024  # upstream's MaxRequestBodyBytes
MAX_REQUESTS_INFLIGHT = 400
MAX_MUTATING_REQUESTS_INFLIGHT = 200
MAX_WATCHES_PER_CLIENT = 1000
MAX_JSON_DEPTH = 100
REQUEST_HEADER_TIMEOUT = 32.0  # upstream's ReadHeaderTimeout
REQUEST_BODY_TIMEOUT = 60.0  # upstream's default --request-timeout
RETRY_AFTER_SECONDS = 1

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LONG_RUNNING_SUBRESOURCES = frozenset({"exec", "attach", "log", "portforward", "proxy"})
UNLIMITED_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
PRIVILEGED_GROUP = "system:masters"
PROTOBUF = "application/vnd.kubernetes.protobuf"

INFLIGHT = prometheus_client.Gauge(
    "apiserver_current_inflight_requests",
    "Requests currently holding an in-flight slot, by kind (readOnly, mutating).",
    ["request_kind"],
)
DROPPED = prometheus_client.Counter(
    "apiserver_dropped_requests_total",
    "Requests answered 429 because a limit was reached, by kind (readOnly, mutating, watch).",
    ["request_kind"],
)


@dataclass(frozen=True)
class Limits:
    """The limits one API server enforces; 0 turns a count or size limit off."""

    max_requests_inflight: int = MAX_REQUESTS_INFLIGHT
    max_mutating_requests_inflight: int = MAX_MUTATING_REQUESTS_INFLIGHT
    max_request_body_bytes: int = MAX_REQUEST_BODY_BYTES
    max_watches_per_client: int = MAX_WATCHES_PER_CLIENT
    max_json_depth: int = MAX_JSON_DEPTH
    request_header_timeout: float = REQUEST_HEADER_TIMEOUT
    request_body_timeout: float = REQUEST_BODY_TIMEOUT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The limit flags of `pocket apiserver`."""
    parser.add_argument(
        "--max-requests-inflight",
        type=_non_negative_int,
        default=MAX_REQUESTS_INFLIGHT,
        help="read-only requests served at once before 429 (0: no limit)",
    )
    parser.add_argument(
        "--max-mutating-requests-inflight",
        type=_non_negative_int,
        default=MAX_MUTATING_REQUESTS_INFLIGHT,
        help="mutating requests served at once before 429 (0: no limit)",
    )
    parser.add_argument(
        "--max-resource-write-bytes",
        type=_non_negative_int,
        default=MAX_REQUEST_BODY_BYTES,
        help="largest request body accepted, in bytes, before 413 (0: no limit)",
    )
    parser.add_argument(
        "--max-watches-per-client",
        type=_non_negative_int,
        default=MAX_WATCHES_PER_CLIENT,
        help="open watches per user (or peer address when unauthenticated) before 429 (0: no limit)",
    )
    parser.add_argument(
        "--request-header-timeout",
        type=_positive_float,
        default=REQUEST_HEADER_TIMEOUT,
        help="seconds a connection may take to send a request's headers, or stay idle, before it is closed",
    )
    parser.add_argument(
        "--request-body-timeout",
        type=_positive_float,
        default=REQUEST_BODY_TIMEOUT,
        help="seconds a request body may take to arrive before the request is answered 408 and closed",
    )


def from_args(args: argparse.Namespace) -> Limits:
    return Limits(
        max_requests_inflight=args.max_requests_inflight,
        max_mutating_requests_inflight=args.max_mutating_requests_inflight,
        max_request_body_bytes=args.max_resource_write_bytes,
        max_watches_per_client=args.max_watches_per_client,
        request_header_timeout=args.request_header_timeout,
        request_body_timeout=args.request_body_timeout,
    )


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


# -- errors --------------------------------------------------------------------


def too_many_requests(message: str = "Too many requests, please try again later.") -> ApiError:
    """429 with the details clients read to back off (client-go honours Retry-After)."""
    return ApiError(errors.status_failure(429, "TooManyRequests", message, {"retryAfterSeconds": RETRY_AFTER_SECONDS}))


def entity_too_large(limit: int) -> ApiError:
    return ApiError(errors.status_failure(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}"))


def body_timeout(seconds: float) -> ApiError:
    return ApiError(errors.status_failure(408, "Timeout", f"request body not received within {seconds:g}s"))


def too_deep(limit: int) -> ApiError:
    return errors.bad_request(f"json: exceeded max depth: the request body nests more than {limit} levels")


def _answer(err: ApiError, close: bool = False) -> web.Response:
    response = web.Response(status=err.code, text=json.dumps(err.status), content_type="application/json")
    if err.code == 429:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if close:
        response.force_close()
    return response


# -- JSON depth ----------------------------------------------------------------


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests objects/arrays more than `limit` levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_too_deep(raw: bytes, limit: int) -> bool:
    """Whether a JSON body nests too deep; cheap for the usual body, which has few brackets."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    try:
        value = json.loads(raw)
    except RecursionError:
        return True
    except ValueError:
        return False  # not JSON: the handler names the syntax error
    return isinstance(value, (dict, list)) and nested_deeper_than(value, limit)


# -- the middleware ------------------------------------------------------------


class _Target(Protocol):
    @property
    def subresource(self) -> str | None: ...


Resolver = Callable[[str], tuple[str, _Target | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestLimiter:
    """In-flight budgets, per-client watch counts, and body checks, as one aiohttp middleware."""

    def __init__(self, limits: Limits, resolve: Resolver):
        self.limits = limits
        self._resolve = resolve
        self.inflight = {"readOnly": 0, "mutating": 0}
        self.watches: Counter[str] = Counter()

    @staticmethod
    def is_watch(request: web.Request) -> bool:
        return request.method == "GET" and request.query.get("watch") in ("1", "true", "True")

    def is_long_running(self, request: web.Request) -> bool:
        if self.is_watch(request):
            return True
        try:
            _, target = self._resolve(request.path)
        except ApiError:
            return False
        return target is not None and target.subresource in LONG_RUNNING_SUBRESOURCES

    @staticmethod
    def client(request: web.Request) -> str:
        """Who a per-client limit counts: the authenticated user, else the peer address."""
        user = request.get(USER)
        name = getattr(user, "name", "")
        if name and name != "system:anonymous":
            return f"user:{name}"
        return f"address:{request.remote}"

    @staticmethod
    def privileged(request: web.Request) -> bool:
        return PRIVILEGED_GROUP in getattr(request.get(USER), "groups", ())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS:
            return await handler(request)
        if self.is_watch(request) and not self.privileged(request):
            return await self._watch(request, handler)
        if self.is_long_running(request):
            return await handler(request)
        if self.privileged(request):
            return await self._checked(request, handler)
        kind = "mutating" if request.method in MUTATING_METHODS else "readOnly"
        limit = self.limits.max_mutating_requests_inflight if kind == "mutating" else self.limits.max_requests_inflight
        if limit and self.inflight[kind] >= limit:
            DROPPED.labels(kind).inc()
            return _answer(too_many_requests())
        # the slot covers reading the body too, as upstream's: a slow uploader holds one until its deadline
        self.inflight[kind] += 1
        INFLIGHT.labels(kind).inc()
        try:
            return await self._checked(request, handler)
        finally:
            self.inflight[kind] -= 1
            INFLIGHT.labels(kind).dec()

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in MUTATING_METHODS and request.can_read_body:
            refused = await self._check_body(request)
            if refused is not None:
                return refused
        return await handler(request)

    async def _check_body(self, request: web.Request) -> web.Response | None:
        """Read the body within the deadline and size cap (the handler reuses it) and check its nesting."""
        cap = self.limits.max_request_body_bytes
        if cap and request.content_length is not None and request.content_length > cap:
            return _answer(entity_too_large(cap), close=True)
        try:
            raw = await asyncio.wait_for(request.read(), self.limits.request_body_timeout)
        except TimeoutError:
            log.info("request body timed out", extra={"client": request.remote, "path": request.path})
            return _answer(body_timeout(self.limits.request_body_timeout), close=True)
        except web.HTTPRequestEntityTooLarge:
            return _answer(entity_too_large(cap), close=True)
        if request.content_type != PROTOBUF and json_too_deep(raw, self.limits.max_json_depth):
            return _answer(too_deep(self.limits.max_json_depth))
        return None

    async def _watch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        client = self.client(request)
        limit = self.limits.max_watches_per_client
        if limit and self.watches[client] >= limit:
            DROPPED.labels("watch").inc()
            log.info("watch refused", extra={"client": client, "open": self.watches[client]})
            return _answer(too_many_requests(f"too many watches open for this client (limit {limit})"))
        self.watches[client] += 1
        try:
            return await handler(request)
        finally:
            self.watches[client] -= 1
            if not self.watches[client]:
                del self.watches[client]
