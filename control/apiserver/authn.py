"""Who is calling: the caller identity (UserInfo) and the authenticators that find it.

Kubernetes authenticates every request before authorizing it; the authn middleware
stores the result on ``request["user"]`` so later middlewares (authorization,
admission, limits) read one agreed type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from aiohttp import web

AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller, as Kubernetes' user.Info (name, groups, uid, extra)."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


ANONYMOUS = UserInfo("system:anonymous", (UNAUTHENTICATED_GROUP,))


class Authenticator(Protocol):
    """One way of proving identity (client cert, bearer token, ...); None means 'not mine'."""

    async def authenticate(self, request: web.Request) -> UserInfo | None: ...
