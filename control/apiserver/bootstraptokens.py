"""Bootstrap tokens: the short-lived shared secrets a new node joins with, as kubeadm makes them.

A token `<id>.<secret>` (6 and 16 characters of [a-z0-9]) is valid while
the Secret `kube-system/bootstrap-token-<id>` of type
`bootstrap.kubernetes.io/token` holds the same secret, allows
authentication (`usage-bootstrap-authentication: "true"`), has not
expired and is not being deleted.  Its caller is `system:bootstrap:<id>`
in `system:bootstrappers` plus the Secret's `auth-extra-groups`, which is
what RBAC lets create CertificateSigningRequests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from control.api.errors import ApiError
from control.api.resources import resource
from control.apiserver.authn import UserInfo
from control.apiserver.registry import Registry

log = logging.getLogger(__name__)

Object = dict[str, Any]

NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
TOKEN_PATTERN = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
GROUP_PATTERN = re.compile(r"system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]")
KUBEADM_GROUP = "system:bootstrappers:kubeadm:default-node-token"  # what kubeadm puts in auth-extra-groups
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate_token() -> str:
    """A fresh random `<id>.<secret>` token."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(6)) + "." + "".join(
        secrets.choice(_ALPHABET) for _ in range(16)
    )


def token_secret(
    token: str,
    *,
    ttl_seconds: float | None = None,
    extra_groups: tuple[str, ...] = (KUBEADM_GROUP,),
    description: str = "",
    now: Callable[[], float] = time.time,
) -> Object:
    """The Secret that makes `token` valid (what `kubeadm token create` writes)."""
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise ValueError("a bootstrap token is <6 of [a-z0-9]>.<16 of [a-z0-9]>, e.g. abcdef.0123456789abcdef")
    for group in extra_groups:
        if not GROUP_PATTERN.fullmatch(group):
            raise ValueError(f"auth-extra-groups: {group!r} must start with system:bootstrappers:")
    data = {
        "token-id": match.group(1),
        "token-secret": match.group(2),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
    }
    if extra_groups:
        data["auth-extra-groups"] = ",".join(extra_groups)
    if description:
        data["description"] = description
    if ttl_seconds is not None:
        expires = datetime.fromtimestamp(now() + ttl_seconds, UTC)
        data["expiration"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_PREFIX + match.group(1), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "stringData": data,
    }


def _decoded(secret: Object) -> dict[str, str]:
    data: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    data.update(secret.get("stringData") or {})
    return data


class BootstrapTokenAuthenticator:
    """Bearer bootstrap tokens checked against their Secrets in kube-system."""

    def __init__(self, registry: Registry, now: Callable[[], float] = time.time):
        self.registry = registry
        self.now = now

    async def authenticate_token(self, token: str) -> UserInfo | None:
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            return None
        token_id, token_secret_value = match.groups()
        try:
            secret = await self.registry.get(resource("secrets"), NAMESPACE, SECRET_PREFIX + token_id)
        except ApiError as err:
            if err.code == 404:
                log.info("bootstrap token rejected", extra={"token_id": token_id, "reason": "no such Secret"})
                return None
            raise
        why = self._problem(secret, token_id, token_secret_value)
        if why is not None:
            log.info("bootstrap token rejected", extra={"token_id": token_id, "reason": why})
            return None
        data = _decoded(secret)
        groups = [GROUP]
        for group in (data.get("auth-extra-groups") or "").split(","):
            group = group.strip()
            if group and GROUP_PATTERN.fullmatch(group) and group not in groups:
                groups.append(group)
        return UserInfo(USER_PREFIX + token_id, tuple(groups))

    def _problem(self, secret: Object, token_id: str, secret_value: str) -> str | None:
        if secret.get("type") != SECRET_TYPE:
            return f"Secret has type {secret.get('type')!r}, not {SECRET_TYPE}"
        if (secret.get("metadata") or {}).get("deletionTimestamp"):
            return "Secret is being deleted"
        data = _decoded(secret)
        if data.get("token-id") != token_id:
            return "Secret's token-id does not match its name"
        if not hmac.compare_digest(data.get("token-secret", ""), secret_value):
            return "wrong token secret"
        if data.get("usage-bootstrap-authentication") != "true":
            return "token is not marked for authentication"
        expiration = data.get("expiration")
        if expiration:
            try:
                expires = datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return f"unparsable expiration {expiration!r}"
            if self.now() >= expires:
                return "token has expired"
        return None
