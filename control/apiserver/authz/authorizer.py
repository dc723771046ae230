"""The authorizer chain from `--authorization-mode`, and Kubernetes' 403 for a denied request.

Each mode answers allow, deny or no opinion; the chain asks them in order and
the first allow or deny wins (upstream's union authorizer).  Members of
`system:masters` are allowed before any mode is asked, as kube-apiserver's
privileged-group authorizer does, so the admin credential cannot be locked out
by a bad RBAC edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from control.api import errors
from control.api.errors import ApiError
from control.apiserver.authz.attributes import Attributes

MASTERS_GROUP = "system:masters"
MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer: "allow", "deny" or "" (no opinion), and why."""

    verdict: str
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


ALLOW = Decision("allow")
NO_OPINION = Decision("")


class Authorizer(Protocol):
    name: str

    async def authorize(self, attrs: Attributes) -> Decision: ...


class AlwaysAllow:
    name = "AlwaysAllow"

    async def authorize(self, attrs: Attributes) -> Decision:
        return ALLOW


class AlwaysDeny:
    name = "AlwaysDeny"

    async def authorize(self, attrs: Attributes) -> Decision:
        return Decision("deny", "Everything is forbidden.")


class Chain:
    """The configured modes in order, behind the privileged-group check."""

    def __init__(self, authorizers: Sequence[Authorizer]):
        self.authorizers = tuple(authorizers)

    async def authorize(self, attrs: Attributes) -> Decision:
        if MASTERS_GROUP in attrs.user.groups:
            return ALLOW
        reasons = []
        for authorizer in self.authorizers:
            decision = await authorizer.authorize(attrs)
            if decision.verdict:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
        return Decision("", "\n".join(reasons))


def parse_modes(text: str) -> tuple[str, ...]:
    """`--authorization-mode`: a comma list of known modes, each at most once; ValueError names the bad one."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes:
        raise ValueError("--authorization-mode: at least one mode is required")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"--authorization-mode: unknown mode {mode!r} (known: {', '.join(MODES)})")
    duplicates = sorted({m for m in modes if modes.count(m) > 1})
    if duplicates:
        raise ValueError(f"--authorization-mode: mode {duplicates[0]!r} given more than once")
    return modes


def forbidden_message(attrs: Attributes) -> str:
    """The text after "is forbidden:" in Kubernetes' 403, naming user, verb and what was asked for."""
    user = attrs.user.name
    if not attrs.resource_request:
        return f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    what = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return f'User "{user}" cannot {attrs.verb} resource "{what}" in API group "{attrs.api_group}" {where}'


def forbidden(attrs: Attributes, reason: str = "") -> ApiError:
    """The 403 Status kube-apiserver sends for a denied request (responsewriters.Forbidden)."""
    text = forbidden_message(attrs) + (f": {reason}" if reason else "")
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if not attrs.resource_request or not attrs.resource:
        message = f"forbidden: {text}"
    elif attrs.name:
        message = f'{qualified} "{attrs.name}" is forbidden: {text}'
    else:
        message = f"{qualified} is forbidden: {text}"
    details = {"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource if attrs.resource_request else ""}
    details = {k: v for k, v in details.items() if v}
    return ApiError(errors.status_failure(403, "Forbidden", message, details))
