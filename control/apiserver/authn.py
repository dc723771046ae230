"""Who is calling: the caller identity (UserInfo) and the authenticators that find it.

Kubernetes authenticates every request before authorizing it; the authn middleware
stores the result on ``request[USER]`` so later middlewares (authorization,
admission, limits) read one agreed type. Authenticators are tried in order: the
TLS client certificate (verified against --client-ca-file during the handshake),
then the bearer token against each token authenticator (static --token-auth-file,
and whatever else registers: bootstrap tokens, service-account JWTs).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from control.api.errors import ApiError, status_failure

log = logging.getLogger(__name__)

AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
# Reachable without credentials even when anonymous requests are refused (load balancers, kubectl version).
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller, as Kubernetes' user.Info (name, groups, uid, extra)."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


ANONYMOUS = UserInfo("system:anonymous", (UNAUTHENTICATED_GROUP,))
# Where the authenticated caller is kept on each request, for the middlewares and handlers after this one.
USER = web.RequestKey("user", UserInfo)


class Authenticator(Protocol):
    """One way of proving identity (client cert, bearer token, ...); None means 'not mine'."""

    async def authenticate(self, request: web.Request) -> UserInfo | None: ...


class TokenAuthenticator(Protocol):
    """Checks a bearer token (static file, bootstrap token, service-account JWT); None if it is not one of its own."""

    async def authenticate_token(self, token: str) -> UserInfo | None: ...


def unauthorized() -> ApiError:
    """Kubernetes' answer to missing or bad credentials."""
    return ApiError(status_failure(401, "Unauthorized", "Unauthorized"))


def _authenticated(user: UserInfo) -> UserInfo:
    """Every authenticated user is also in system:authenticated."""
    if AUTHENTICATED_GROUP in user.groups:
        return user
    return replace(user, groups=(*user.groups, AUTHENTICATED_GROUP))


class X509Authenticator:
    """The client certificate TLS verified against the client CA: CN is the user, each O a group."""

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        transport = request.transport
        cert: Any = transport.get_extra_info("peercert") if transport is not None else None
        if not cert:
            return None
        common_names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
        organizations = tuple(
            value for rdn in cert.get("subject", ()) for key, value in rdn if key == "organizationName"
        )
        if not common_names or not common_names[0]:
            return None
        return UserInfo(common_names[0], organizations)


class TokenFileError(ValueError):
    """A --token-auth-file line that is not `token,user,uid[,"group1,group2"]`."""


class StaticTokens:
    """Kubernetes' --token-auth-file: CSV lines `token,user,uid,"group1,group2"`, read once at start."""

    def __init__(self, users: Mapping[str, UserInfo]):
        self._users = dict(users)

    @classmethod
    def load(cls, path: Path) -> StaticTokens:
        try:
            text = path.read_text()
        except OSError as err:
            raise TokenFileError(f"--token-auth-file {path}: {err.strerror or err}") from None
        users: dict[str, UserInfo] = {}
        for number, row in enumerate(csv.reader(text.splitlines()), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3 or not row[0] or not row[1]:
                raise TokenFileError(
                    f'--token-auth-file {path} line {number}: want token,user,uid[,"group1,group2"], got {len(row)} '
                    "field(s) or an empty token/user"
                )
            if row[0] in users:
                raise TokenFileError(f"--token-auth-file {path} line {number}: duplicate token")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            users[row[0]] = UserInfo(row[1], groups, row[2])
        return cls(users)

    async def authenticate_token(self, token: str) -> UserInfo | None:
        return self._users.get(token)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authentication:
    """The authenticator chain of one API server and its middleware.

    `anonymous`: requests with no credentials at all become system:anonymous
    (--anonymous-auth, or a plain-HTTP test server). Presented but invalid
    credentials are always 401, as upstream.
    """

    def __init__(
        self,
        authenticators: list[Authenticator] | None = None,
        token_authenticators: list[TokenAuthenticator] | None = None,
        anonymous: bool = False,
    ):
        self.authenticators: list[Authenticator] = list(authenticators or [])
        self.token_authenticators: list[TokenAuthenticator] = list(token_authenticators or [])
        self.anonymous = anonymous

    def add_token_authenticator(self, authenticator: TokenAuthenticator) -> None:
        """Register another bearer-token kind (bootstrap tokens, service-account JWTs); tried after those before."""
        self.token_authenticators.append(authenticator)

    async def user_of(self, request: web.Request) -> UserInfo | None:
        """The caller, ANONYMOUS when it shows no credentials and that is allowed; None means 401."""
        for authenticator in self.authenticators:
            user = await authenticator.authenticate(request)
            if user is not None:
                return _authenticated(user)
        token = bearer_token(request)
        if token is not None:
            for token_authenticator in self.token_authenticators:
                user = await token_authenticator.authenticate_token(token)
                if user is not None:
                    return _authenticated(user)
            return None
        if request.headers.get("Authorization"):
            return None
        return ANONYMOUS if self.anonymous else None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Set request[USER] or answer 401 Unauthorized."""
        user = await self.user_of(request)
        if user is None:
            if request.path in PUBLIC_PATHS:
                user = ANONYMOUS
            else:
                log.info("unauthenticated request refused", extra={"path": request.path, "method": request.method})
                return web.json_response(unauthorized().status, status=401)
        request[USER] = user
        return await handler(request)
