"""Projected volumes, above all the service-account token volume the API server's admission adds to pods.

A `projected` volume merges sources into one directory: `serviceAccountToken`
(a token the kubelet requests for the pod through the TokenRequest API,
bound to the pod), `configMap`, `secret` and `downwardAPI` items.  Tokens
are refreshed as upstream's token manager does: once 80% of their lifetime
has passed (or they are older than 24 hours), the kubelet requests a new one
and replaces the file.  The file is replaced by rename inside the volume's
directory, which containers mount, so a running container sees the new token
at the same path.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from control.api.errors import ApiError
from control.api.resources import resource
from kubelet.volumes import FetchData, VolumeError, relative_path, write_data_volume

log = logging.getLogger(__name__)

Object = dict[str, Any]

REFRESH_FRACTION = 0.8  # refresh once this much of the lifetime has passed
MAX_TOKEN_AGE = 24 * 3600.0  # and never keep a token longer than this
DEFAULT_TOKEN_SECONDS = 3600
DOWNWARD_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations")


class TokenApi(Protocol):
    """The one call the token manager makes (`control.client.Client` has it)."""

    async def request(self, method: str, path: str, *, body: Any = None) -> Any: ...


@dataclass
class _Token:
    token: str
    issued: float
    expires: float

    def needs_refresh(self, now: float) -> bool:
        lifetime = self.expires - self.issued
        return now >= self.issued + REFRESH_FRACTION * lifetime or now >= self.issued + MAX_TOKEN_AGE


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _write_atomically(target: Path, content: str, mode: int) -> None:
    """Replace the file by rename, so a reader never sees half a token."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(content)
    os.chmod(temporary, mode)
    os.replace(temporary, target)


def _downward_value(pod: Object, item: Object, volume: str) -> str:
    field_ref = item.get("fieldRef") or {}
    path = field_ref.get("fieldPath", "")
    if not field_ref or path not in DOWNWARD_FIELDS:
        raise VolumeError(
            f"volume {volume!r}: downwardAPI item {item.get('path')!r}: only fieldRef {', '.join(DOWNWARD_FIELDS)} "
            "is supported"
        )
    meta = pod.get("metadata") or {}
    value = meta.get(path.split(".", 1)[1], "")
    if isinstance(value, dict):  # labels and annotations: key="value" lines, sorted, as the kubelet writes them
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(value.items()))
    return str(value)


class ProjectedVolumes:
    """Writes projected volumes and keeps their service-account tokens fresh."""

    def __init__(self, api: TokenApi, now: Callable[[], float] = time.time):
        self.api = api
        self.now = now
        self._tokens: dict[tuple[str, str, str], _Token] = {}  # (pod uid, volume, path) -> token
        self._files: dict[tuple[str, str, str], tuple[Path, int]] = {}  # same key -> (file, mode)

    async def project(self, pod: Object, volume: Object, directory: Path, fetch: FetchData) -> Path:
        """Make every source of the projected volume exist in `directory`."""
        name = volume.get("name", "")
        source = volume.get("projected") or {}
        mode = source.get("defaultMode", 0o644)
        directory.mkdir(parents=True, exist_ok=True)
        for entry in source.get("sources") or []:
            if "serviceAccountToken" in entry:
                await self._token_file(pod, name, entry["serviceAccountToken"], directory, mode)
            elif kind := next((k for k in ("configMap", "secret") if k in entry), None):
                data_source = {"name": name, kind: {"defaultMode": mode, **entry[kind]}}
                await write_data_volume(data_source, kind, directory, fetch)
            elif "downwardAPI" in entry:
                for item in entry["downwardAPI"].get("items") or []:
                    target = directory / relative_path(item.get("path", ""), f"volume {name!r} downwardAPI item")
                    _write_atomically(target, _downward_value(pod, item, name), item.get("mode", mode))
            else:
                raise VolumeError(
                    f"volume {name!r}: projected source {sorted(entry)} is not supported "
                    "(serviceAccountToken, configMap, secret, downwardAPI are)"
                )
        return directory

    async def _token_file(self, pod: Object, volume: str, source: Object, directory: Path, mode: int) -> None:
        path = source.get("path", "")
        target = directory / relative_path(path, f"volume {volume!r} serviceAccountToken path")
        key = (pod["metadata"]["uid"], volume, path)
        token = self._tokens.get(key)
        if token is None or token.needs_refresh(self.now()):
            token = await self._request(pod, source, volume)
            self._tokens[key] = token
        self._files[key] = (target, mode)
        _write_atomically(target, token.token, mode)

    async def _request(self, pod: Object, source: Object, volume: str) -> _Token:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        account = spec.get("serviceAccountName") or "default"
        body: Object = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else [],
                "expirationSeconds": source.get("expirationSeconds", DEFAULT_TOKEN_SECONDS),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        path = resource("serviceaccounts").path(meta.get("namespace"), account, "token")
        requested_at = self.now()
        try:
            answer = await self.api.request("POST", path, body=body)
        except ApiError as err:
            raise VolumeError(
                f'volume {volume!r}: failed to fetch token for service account "{account}": {err}'
            ) from None
        status = answer.get("status") or {}
        if not status.get("token") or not status.get("expirationTimestamp"):
            raise VolumeError(f"volume {volume!r}: TokenRequest for {account!r} returned no token")
        log.info(
            "requested service account token",
            extra={"pod": f"{meta.get('namespace')}/{meta['name']}", "serviceaccount": account},
        )
        return _Token(status["token"], requested_at, _epoch(status["expirationTimestamp"]))

    async def refresh(self, pod: Object) -> None:
        """Replace the pod's tokens that are due (call on every pod sync)."""
        uid = pod["metadata"]["uid"]
        now = self.now()
        for key, token in list(self._tokens.items()):
            if key[0] != uid or not token.needs_refresh(now):
                continue
            source = self._source(pod, key[1], key[2])
            if source is None:
                continue
            try:
                fresh = await self._request(pod, source, key[1])
            except VolumeError as err:
                log.warning("token refresh failed; the old token stays until it expires: %s", err)
                continue
            self._tokens[key] = fresh
            target, mode = self._files[key]
            _write_atomically(target, fresh.token, mode)

    @staticmethod
    def _source(pod: Object, volume: str, path: str) -> Object | None:
        for candidate in (pod.get("spec") or {}).get("volumes") or []:
            if candidate.get("name") != volume:
                continue
            for entry in (candidate.get("projected") or {}).get("sources") or []:
                token_source = entry.get("serviceAccountToken")
                if token_source is not None and token_source.get("path") == path:
                    return dict(token_source)
        return None

    def forget(self, uid: str) -> None:
        """Drop a finished pod's tokens."""
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
            self._files.pop(key, None)
