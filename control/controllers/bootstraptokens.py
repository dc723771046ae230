"""The token cleaner: expired bootstrap tokens are deleted, as kube-controller-manager's tokencleaner does.

A bootstrap-token Secret (`kube-system`, type `bootstrap.kubernetes.io/token`)
stops authenticating at its `expiration` anyway; deleting it keeps the
credential from lingering in etcd.  A Secret that is not expired yet is
looked at again when it expires.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Iterable

from control.api.errors import ApiError
from control.api.timestamps import parse_time
from control.client import Client, Informer, Object, name_of
from control.controllers.base import Controller

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
FIELD_SELECTOR = f"type={SECRET_TYPE}"


def expiration_of(secret: Object) -> float | None:
    """Seconds since the epoch of the Secret's `expiration`; None when it has none (or an unreadable one)."""
    raw = (secret.get("data") or {}).get("expiration")
    if not raw:
        return None
    try:
        return parse_time(base64.b64decode(raw, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        log.warning("bootstrap token Secret %s has an unreadable expiration", name_of(secret))
        return None


class TokenCleaner(Controller):
    """Deletes bootstrap-token Secrets once they have expired."""

    name = "tokencleaner"

    def __init__(self, client: Client, secrets: Informer, now: Callable[[], float] = time.time):
        super().__init__()
        self.client = client
        self.secrets = secrets
        self.now = now
        secrets.add_handler(self._on_secret)

    def all_keys(self) -> Iterable[str]:
        return [name_of(s) for s in self.secrets.items()]

    def _on_secret(self, kind: str, secret: Object, _prev: Object | None) -> None:
        if kind != "DELETED":
            self.queue.add(name_of(secret))

    async def sync(self, key: str) -> None:
        secret = self.secrets.get(key, NAMESPACE)
        if secret is None or secret.get("type") != SECRET_TYPE:
            return
        expires = expiration_of(secret)
        if expires is None:
            return
        remaining = expires - self.now()
        if remaining > 0:
            self.queue.add_after(key, remaining)
            return
        try:
            await self.client.delete("secrets", key, NAMESPACE)
            log.info("deleted expired bootstrap token Secret %s", key)
        except ApiError as err:
            if err.code != 404:
                raise
