"""Who may use the kubelet API: whoever the API server vouches for, as upstream's kubelet webhooks.

Authentication (pkg/kubelet/server/auth.go, KubeletConfiguration defaults):
the TLS client certificate, verified against --client-ca-file during the
handshake (CN is the user, each O a group); else a bearer token the API server
confirms with a TokenReview (--authentication-token-webhook); else anonymous,
only with --anonymous-auth. Anything else is 401.

Authorization (--authorization-mode Webhook): a SubjectAccessReview to the API
server for resource `nodes`, name = this node, the subresource from the path
(/stats → stats, /metrics → metrics, /logs → log, /spec → spec, all else —
containerLogs, exec, healthz — proxy) and the verb from the HTTP method.
Answers are cached (tokens 2 min, allowed 5 min, denied 30 s, upstream's
defaults); failures to ask are never cached and refuse the request: an API
server that cannot be reached lets nobody in.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import Counter

from control.api.errors import ApiError, status_failure
from control.client import Client
from control.clock import Clock

log = logging.getLogger(__name__)

AUTHENTICATED_GROUP = "system:authenticated"
ANONYMOUS_USER = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

# KubeletConfiguration's defaults (authentication.webhook.cacheTTL, authorization.webhook.cache*TTL).
TOKEN_CACHE_TTL = 120.0
AUTHORIZED_CACHE_TTL = 300.0
UNAUTHORIZED_CACHE_TTL = 30.0
CACHE_ENTRIES = 4096

AUTHORIZATION_MODES = ("AlwaysAllow", "Webhook")

VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Path prefixes with their own subresource of nodes/<name>; every other path is nodes/<name>/proxy.
SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"))
PROXY = "proxy"

DECISIONS = Counter(
    "kubelet_api_auth_decisions_total",
    "Kubelet API requests by authentication/authorization outcome",
    ["decision"],
)


@dataclass(frozen=True)
class Caller:
    """An authenticated kubelet API caller, as user.Info: what a SubjectAccessReview asks about."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def cache_key(self) -> tuple[Any, ...]:
        return (self.name, self.groups, self.uid, tuple(sorted(self.extra.items())))


ANONYMOUS = Caller(ANONYMOUS_USER, (UNAUTHENTICATED_GROUP,))


@dataclass(frozen=True)
class Attributes:
    """What a request asks of this node, in the API's terms (upstream's GetRequestAttributes)."""

    verb: str
    subresource: str


def request_attributes(method: str, path: str) -> Attributes:
    """The verb from the HTTP method, the nodes subresource from the path's first segment."""
    subresource = next((sub for prefix, sub in SUBRESOURCES if path == prefix or path.startswith(prefix + "/")), PROXY)
    return Attributes(VERBS.get(method.upper(), ""), subresource)


class ReviewError(Exception):
    """The API server could not be asked (unreachable, refused the review, or answered nonsense)."""


K = TypeVar("K")
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Answers kept until their own expiry on the injected clock; the oldest go first when full."""

    def __init__(self, clock: Clock, max_entries: int = CACHE_ENTRIES):
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(found, value): found only while the entry has not expired."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if self.clock.now() >= expires:
            del self._entries[key]
            return False, None
        return True, value

    def put(self, key: K, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (self.clock.now() + ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def certificate_caller(request: web.Request) -> Caller | None:
    """CN and O of the client certificate TLS verified against the client CA; None without one."""
    transport = request.transport
    cert: Any = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    subject = [pair for rdn in cert.get("subject", ()) for pair in rdn]
    names = [value for key, value in subject if key == "commonName"]
    if not names or not names[0]:
        return None
    groups = tuple(value for key, value in subject if key == "organizationName")
    return Caller(names[0], (*groups, AUTHENTICATED_GROUP))


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _post_review(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a review and return its status; ReviewError when the API server cannot answer it."""
    try:
        answer = await client.request("POST", path, body=body)
    except ApiError as err:
        raise ReviewError(f"{body['kind']} failed: {err.code} {err}") from None
    status = answer.get("status") if isinstance(answer, dict) else None
    if not isinstance(status, dict):
        raise ReviewError(f"{body['kind']} answer has no status")
    return status


@dataclass(frozen=True)
class AuthSettings:
    """The kubelet's authentication/authorization flags, with KubeletConfiguration's defaults."""

    anonymous: bool = False
    token_webhook: bool = True
    token_cache_ttl: float = TOKEN_CACHE_TTL
    authorization_mode: str = "Webhook"
    authorized_ttl: float = AUTHORIZED_CACHE_TTL
    unauthorized_ttl: float = UNAUTHORIZED_CACHE_TTL

    def __post_init__(self) -> None:
        if self.authorization_mode not in AUTHORIZATION_MODES:
            known = ", ".join(AUTHORIZATION_MODES)
            raise ValueError(f"--authorization-mode: unknown mode {self.authorization_mode!r} (known: {known})")


class KubeletAuth:
    """The kubelet API's authn/authz filter for one node, asking the API server through `client`."""

    def __init__(self, client: Client, node_name: str, clock: Clock, settings: AuthSettings | None = None):
        self.client = client
        self.node_name = node_name
        self.settings = settings or AuthSettings()
        self._tokens: ExpiringCache[str, Caller | None] = ExpiringCache(clock)
        self._decisions: ExpiringCache[tuple[Any, ...], bool] = ExpiringCache(clock)

    async def authenticate(self, request: web.Request) -> Caller | None:
        """The caller, or None for 401; ReviewError when a token cannot be checked."""
        caller = certificate_caller(request)
        if caller is not None:
            return caller
        token = bearer_token(request)
        if token is not None:
            return await self._review_token(token) if self.settings.token_webhook else None
        if request.headers.get("Authorization"):
            return None
        return ANONYMOUS if self.settings.anonymous else None

    async def _review_token(self, token: str) -> Caller | None:
        key = hashlib.sha256(token.encode()).hexdigest()  # the cache never holds a token itself
        found, cached = self._tokens.get(key)
        if found:
            return cached
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        status = await _post_review(self.client, TOKEN_REVIEWS, review)
        caller = None
        user = status.get("user") or {}
        if status.get("authenticated") and user.get("username"):
            groups = tuple(str(g) for g in user.get("groups") or [])
            extra = {str(k): tuple(str(x) for x in v) for k, v in (user.get("extra") or {}).items()}
            caller = Caller(str(user["username"]), groups, str(user.get("uid") or ""), extra)
        self._tokens.put(key, caller, self.settings.token_cache_ttl)
        return caller

    async def authorize(self, caller: Caller, attrs: Attributes) -> bool:
        """Whether the API server lets `caller` do `attrs` on this node; ReviewError when it cannot be asked."""
        if self.settings.authorization_mode == "AlwaysAllow":
            return True
        key = (caller.cache_key(), attrs.verb, attrs.subresource)
        found, cached = self._decisions.get(key)
        if found:
            return bool(cached)
        spec: dict[str, Any] = {
            "resourceAttributes": {
                "verb": attrs.verb,
                "group": "",
                "version": "v1",
                "resource": "nodes",
                "subresource": attrs.subresource,
                "name": self.node_name,
            },
            "user": caller.name,
            "groups": list(caller.groups),
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra.items()}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        status = await _post_review(self.client, SUBJECT_ACCESS_REVIEWS, review)
        allowed = status.get("allowed") is True
        self._decisions.put(key, allowed, self.settings.authorized_ttl if allowed else self.settings.unauthorized_ttl)
        return allowed

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """401 for unknown callers, 403 for those the API server does not allow, else the handler."""
        try:
            caller = await self.authenticate(request)
        except ReviewError as err:
            log.warning("kubelet API caller not authenticated", extra={"path": request.path, "error": str(err)})
            DECISIONS.labels("error").inc()
            return _status(401, "Unauthorized", "Unauthorized")
        if caller is None:
            DECISIONS.labels("unauthenticated").inc()
            return _status(401, "Unauthorized", "Unauthorized")
        attrs = request_attributes(request.method, request.path)
        described = f"user={caller.name}, verb={attrs.verb}, resource=nodes, subresource={attrs.subresource}"
        try:
            allowed = await self.authorize(caller, attrs)
        except ReviewError as err:
            log.warning("kubelet API authorization failed", extra={"path": request.path, "error": str(err)})
            DECISIONS.labels("error").inc()
            return _status(403, "Forbidden", f"Authorization error ({described}): {err}")
        if not allowed:
            log.info("kubelet API caller refused", extra={"user": caller.name, "path": request.path})
            DECISIONS.labels("denied").inc()
            return _status(403, "Forbidden", f"Forbidden ({described})")
        DECISIONS.labels("allowed").inc()
        return await handler(request)


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_failure(code, reason, message), status=code)
