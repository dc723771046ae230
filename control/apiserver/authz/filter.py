"""The authorization filter of the API server: impersonation, the authorizer chain, NodeRestriction.

Runs after authentication (which put the caller on `request[USER]`), as
kube-apiserver's handler chain does: `Impersonate-*` headers are checked
(the `impersonate` verb on users, groups, service accounts, uids and user
extras) and replace the caller; then the request's attributes go through
the chain from `--authorization-mode` and a denial is Kubernetes' 403; then,
with RBAC, role and binding writes must not grant more than the writer holds,
and writes by node identities pass the NodeRestriction admission plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import prometheus_client
from aiohttp import web

from control.api import errors
from control.apiserver import protobuf
from control.apiserver.authn import ANONYMOUS, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP, USER, UserInfo
from control.apiserver.authz.admission import NodeRestriction, parse_plugins
from control.apiserver.authz.attributes import Attributes, request_attributes
from control.apiserver.authz.authorizer import AlwaysAllow, AlwaysDeny, Authorizer, Chain, forbidden, parse_modes
from control.apiserver.authz.bootstrap import RBAC_GROUP, aggregate_forever, reconcile_policy
from control.apiserver.authz.escalation import EscalationCheck
from control.apiserver.authz.node import NodeAuthorizer, PodGraph, node_name
from control.apiserver.authz.rbac import SERVICE_ACCOUNT_PREFIX, RBACAuthorizer
from control.apiserver.authz.reviews import Reviews
from control.apiserver.registry import Registry

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DECISIONS = prometheus_client.Counter(
    "apiserver_authorization_decisions_total", "Authorization decisions by outcome.", ["decision"]
)
PROTOBUF = "application/vnd.kubernetes.protobuf"
IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_UID = "Impersonate-Uid"
IMPERSONATE_EXTRA = "Impersonate-Extra-"


def _flag(parse: Callable[[str], tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    def checked(text: str) -> tuple[str, ...]:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return checked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """kube-apiserver's `--authorization-mode` and `--enable-admission-plugins`."""
    parser.add_argument(
        "--authorization-mode",
        type=_flag(parse_modes),
        default=("AlwaysAllow",),
        help="comma list of AlwaysAllow, AlwaysDeny, Node, RBAC, asked in order (the bring-up gives Node,RBAC)",
    )
    parser.add_argument(
        "--enable-admission-plugins",
        type=_flag(parse_plugins),
        default=(),
        help="comma list of admission plugins to enable: NodeRestriction",
    )


class Authorization:
    """One API server's authorizers, admission and review endpoints, built from the flags."""

    def __init__(self, registry: Registry, modes: Sequence[str], admission_plugins: Sequence[str] = ()):
        self.registry = registry
        self.graph = PodGraph(registry.cache)
        self.rbac = RBACAuthorizer(registry.cache) if "RBAC" in modes else None
        built: dict[str, Authorizer] = {"AlwaysAllow": AlwaysAllow(), "AlwaysDeny": AlwaysDeny()}
        built["Node"] = NodeAuthorizer(self.graph)
        if self.rbac is not None:
            built["RBAC"] = self.rbac
        self.chain = Chain([built[mode] for mode in modes])
        self.node_restriction = (
            NodeRestriction(registry, self.graph) if "NodeRestriction" in admission_plugins else None
        )
        self.reviews = Reviews(self.chain, self.rbac)
        self.escalation = EscalationCheck(registry, self.chain, self.rbac) if self.rbac is not None else None

    async def start(self) -> list[asyncio.Task[None]]:
        """With RBAC: reconcile the bootstrap policy (the post-start hook), then keep aggregating ClusterRoles."""
        if self.rbac is None:
            return []
        await reconcile_policy(self.registry)
        return [asyncio.create_task(aggregate_forever(self.registry))]

    # -- the filter ----------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        user: UserInfo = request.get(USER) or ANONYMOUS
        user = await self._impersonate(request, user)
        request[USER] = user
        attrs = request_attributes(user, request.method, request.path, _query(request))
        decision = await self.chain.authorize(attrs)
        if not decision.allowed:
            DECISIONS.labels("denied").inc()
            log.info(
                "forbidden",
                extra={"user": user.name, "verb": attrs.verb, "resource": attrs.resource, "path": attrs.path},
            )
            raise forbidden(attrs, decision.reason)
        DECISIONS.labels("allowed").inc()
        if attrs.resource_request and not attrs.read_only:
            if self.escalation is not None and attrs.api_group == RBAC_GROUP:
                await self.escalation.check(attrs, request.content_type, await _object_body(request))
            if self.node_restriction is not None and node_name(user) is not None:
                await self.node_restriction.admit(attrs, request.content_type, await _object_body(request))
        return await handler(request)

    async def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """The impersonated user when Impersonate-* headers are present and each is allowed; else `user`."""
        name = request.headers.get(IMPERSONATE_USER)
        groups = tuple(request.headers.getall(IMPERSONATE_GROUP, []))
        uid = request.headers.get(IMPERSONATE_UID)
        extra: dict[str, tuple[str, ...]] = {}
        for header in request.headers:
            if header.lower().startswith(IMPERSONATE_EXTRA.lower()):
                key = header[len(IMPERSONATE_EXTRA) :].lower()
                extra[key] = tuple(request.headers.getall(header))
        if name is None:
            if groups or uid or extra:
                raise errors.bad_request(
                    f"requested {IMPERSONATE_GROUP}/{IMPERSONATE_UID}/{IMPERSONATE_EXTRA}* without impersonating a user"
                )
            return user
        checks: list[Attributes] = []
        if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
            namespace, account = name[len(SERVICE_ACCOUNT_PREFIX) :].split(":")
            checks.append(_impersonation(user, "serviceaccounts", account, namespace))
        else:
            checks.append(_impersonation(user, "users", name))
        checks += [_impersonation(user, "groups", group) for group in groups]
        if uid:
            checks.append(_impersonation(user, "uids", uid, group="authentication.k8s.io"))
        for key, values in extra.items():
            checks += [_impersonation(user, f"userextras/{key}", v, group="authentication.k8s.io") for v in values]
        for attrs in checks:
            decision = await self.chain.authorize(attrs)
            if not decision.allowed:
                raise forbidden(attrs, decision.reason)
        implied: tuple[str, ...] = ()
        if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
            namespace = name.split(":")[2]
            implied = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        implied += (UNAUTHENTICATED_GROUP,) if name == ANONYMOUS.name else (AUTHENTICATED_GROUP,)
        all_groups = groups + tuple(g for g in implied if g not in groups)
        log.info("impersonating", extra={"user": user.name, "as": name})
        return UserInfo(name, all_groups, uid or "", extra)

    # -- authorization.k8s.io ------------------------------------------------

    async def review(self, request: web.Request) -> web.Response:
        """POST of any of the four review kinds (routed here before the stored-resource handler)."""
        plural = request.match_info["plural"]
        namespace = request.match_info.get("namespace")
        user: UserInfo = request.get(USER) or ANONYMOUS
        body = await _object_body(request)
        if plural == "selfsubjectrulesreviews":
            answer = await self.reviews.rules_review(user, body)
        else:
            answer = await self.reviews.access_review(plural, user, namespace, body)
        return web.Response(status=201, text=json.dumps(answer), content_type="application/json")

    def add_routes(self, app: web.Application) -> None:
        """POSTs of reviews, routed before the generic /apis/{group}/... route so they are never stored.

        Other methods fall through to it and find nothing stored (a GET lists no reviews, as for tokenreviews).
        """
        base = "/apis/authorization.k8s.io/v1"
        for plural in ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"):
            app.router.add_post(f"{base}/{{plural:{plural}}}", self.review)
        app.router.add_post(f"{base}/namespaces/{{namespace}}/{{plural:localsubjectaccessreviews}}", self.review)


def _impersonation(user: UserInfo, resource: str, name: str, namespace: str = "", group: str = "") -> Attributes:
    res, _, sub = resource.partition("/")
    return Attributes(
        user, "impersonate", True, api_group=group, resource=res, subresource=sub, namespace=namespace, name=name
    )


def _query(request: web.Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query}


async def _object_body(request: web.Request) -> Any:
    """The request's object, decoded as the handler will decode it (JSON of any content type, or kubectl's
    protobuf), so no encoding slips past the checks; None when there is none. aiohttp keeps the bytes."""
    if not request.body_exists:
        return None
    raw = await request.read()
    if request.content_type == PROTOBUF:
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as err:
            raise errors.unsupported_media_type(f"{PROTOBUF} ({err})") from None
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None  # the handler answers 400
