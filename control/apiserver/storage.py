"""etcd storage for API objects, as Kubernetes' etcd3 store keeps them.

Objects are JSON values under `<prefix>/registry/...` keys; an object's
`metadata.resourceVersion` is its key's etcd mod revision, so optimistic
concurrency is one etcd compare on that revision.  This module knows keys,
revisions and JSON only; API semantics (names, Status errors) live in the
registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aetcd
import grpc
from aetcd import rpc, watcher
from aetcd.utils import prefix_range_end

from control.apiserver.encryption import Encryption, EncryptionError

log = logging.getLogger(__name__)

Object = dict[str, Any]


MAX_ETCD_REPLY_BYTES = 512 * 2**20


class StorageError(Exception):
    """Base of the storage failures the registry maps to API errors."""


class KeyExists(StorageError):
    """A create found the key already present."""


class KeyNotFound(StorageError):
    """A read, update or delete found no key."""


class RevisionConflict(StorageError):
    """A compare-and-swap found a newer mod revision than expected."""


class PreconditionFailed(StorageError):
    """An extra compare of a transaction (e.g. an allocation key) failed."""


class TransformFailed(StorageError):
    """A stored value could not be decrypted (wrong or missing key); the value is left as it is."""

    def __init__(self, key: str, why: str):
        super().__init__(f"unable to transform key {key!r}: {why}")
        self.key = key


class Compacted(StorageError):
    """The revision asked for has been compacted away."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"revision {requested} compacted (now {compacted})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True)
class Stored:
    """One object as read from etcd: decoded JSON plus its mod revision."""

    key: str
    obj: Object
    revision: int


@dataclass(frozen=True)
class Change:
    """A watch event: PUT (with `created`) or DELETE, with the previous value if known."""

    kind: str  # "PUT" or "DELETE"
    key: str
    obj: Object | None
    prev: Object | None
    revision: int
    created: bool


@dataclass(frozen=True)
class Extra:
    """An additional operation in the same transaction as an object write.

    Used for ClusterIP allocation records: `must_be_absent` makes the whole
    write fail (PreconditionFailed) if the key already exists; `value=None`
    deletes the key.
    """

    key: str
    value: bytes | None
    must_be_absent: bool = False


KeyList = list[str]


def _encode(obj: Object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def _with_rv(raw: bytes, revision: int) -> Object:
    obj: Object = json.loads(raw)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def parse_endpoint(url: str) -> tuple[str, int]:
    """`http://host:port` (the first of a comma list) -> (host, port)."""
    first = url.split(",")[0].strip()
    if "://" not in first:
        first = "http://" + first
    parts = urlsplit(first)
    if not parts.hostname:
        raise ValueError(f"invalid etcd server URL {url!r}")
    return parts.hostname, parts.port or 2379


@dataclass(frozen=True)
class EtcdTLS:
    """--etcd-cafile/--etcd-certfile/--etcd-keyfile: the CA that signed etcd's certificate, and our client pair."""

    ca_file: str
    cert_file: str
    key_file: str

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC TLS credentials; a missing or unreadable file is named."""
        pem = {}
        for flag, path in (
            ("--etcd-cafile", self.ca_file),
            ("--etcd-certfile", self.cert_file),
            ("--etcd-keyfile", self.key_file),
        ):
            try:
                with open(path, "rb") as file:
                    pem[flag] = file.read()
            except OSError as err:
                raise ValueError(f"{flag} {path}: {err.strerror or err}") from None
        return grpc.ssl_channel_credentials(pem["--etcd-cafile"], pem["--etcd-keyfile"], pem["--etcd-certfile"])


class _TLSClient(aetcd.Client):
    """aetcd only opens plaintext channels; this opens a TLS one (client certificate included) instead."""

    def __init__(self, credentials: grpc.ChannelCredentials, **kwargs: Any):
        super().__init__(**kwargs)
        self._credentials = credentials

    async def connect(self) -> None:
        """Open the channel and the stubs aetcd's calls use; no await, so no other task sees it half made."""
        if self._connected.is_set():
            return
        self.channel = grpc.aio.secure_channel(
            f"{self._host}:{self._port}", self._credentials, options=list(self._options.items())
        )
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata)
        self._connected.set()


class Storage:
    """Objects in etcd under one key prefix (empty in production, unique per test)."""

    def __init__(
        self, etcd_url: str, prefix: str = "", encryption: Encryption | None = None, tls: EtcdTLS | None = None
    ):
        host, port = parse_endpoint(etcd_url)
        self.prefix = prefix.rstrip("/")
        self.encryption = encryption
        # gRPC's default 4 MiB reply limit would fail a list of a few thousand pods.
        settings: dict[str, Any] = {
            "host": host,
            "port": port,
            "timeout": 10,
            "options": {"grpc.max_receive_message_length": MAX_ETCD_REPLY_BYTES},
        }
        self._client = aetcd.Client(**settings) if tls is None else _TLSClient(tls.credentials(), **settings)

    def full(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _short(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) :]

    def _seal(self, key: str, body: bytes) -> bytes:
        """The stored form of an object's JSON: encrypted for the configured resources."""
        return body if self.encryption is None else self.encryption.encrypt(key, body)

    def _open(self, key: str, raw: bytes, revision: int) -> Object:
        if self.encryption is not None:
            try:
                raw = self.encryption.decrypt(key, raw)
            except EncryptionError as err:
                raise TransformFailed(key, str(err)) from None
        return _with_rv(raw, revision)

    async def connect(self) -> None:
        await self._client.connect()

    async def close(self) -> None:
        await self._client.close()

    @property
    def _kv(self) -> Any:
        return self._client.kvstub

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any] | None = None) -> Any:
        await self._client.connect()
        request = rpc.TxnRequest(
            compare=[c.build_message() for c in compare],
            success=self._client._ops_to_requests(success),
            failure=self._client._ops_to_requests(failure or []),
        )
        return await self._kv.Txn(request, timeout=10)

    async def revision(self) -> int:
        """The current etcd revision (a cheap read that checks etcd is up)."""
        await self._client.connect()
        response = await self._kv.Range(rpc.RangeRequest(key=self.full("/"), count_only=True), timeout=5)
        return int(response.header.revision)

    # -- single objects ------------------------------------------------------

    async def get(self, key: str) -> Stored | None:
        await self._client.connect()
        response = await self._kv.Range(rpc.RangeRequest(key=self.full(key)), timeout=10)
        if not response.kvs:
            return None
        kv = response.kvs[0]
        return Stored(key, self._open(key, kv.value, kv.mod_revision), kv.mod_revision)

    async def get_raw(self, key: str) -> bytes | None:
        stored = await self._client.get(self.full(key))
        return None if stored is None else bytes(stored.value)

    def _extra_ops(self, extras: list[Extra]) -> tuple[list[Any], list[Any]]:
        tx = self._client.transactions
        compares, ops = [], []
        for extra in extras:
            if extra.must_be_absent:
                compares.append(tx.version(self.full(extra.key)) == 0)
            if extra.value is None:
                ops.append(tx.delete(self.full(extra.key)))
            else:
                ops.append(tx.put(self.full(extra.key), extra.value))
        return compares, ops

    async def create(self, key: str, obj: Object, extras: list[Extra] | None = None) -> Object:
        """Store a new object; KeyExists if present, PreconditionFailed if an extra key is taken."""
        tx = self._client.transactions
        full = self.full(key)
        extra_compares, extra_ops = self._extra_ops(extras or [])
        body = _encode(_without_rv(obj))
        response = await self._txn(
            [tx.version(full) == 0, *extra_compares],
            [tx.put(full, self._seal(key, body)), *extra_ops],
            [tx.get(full)],
        )
        if not response.succeeded:
            if response.responses[0].response_range.kvs:
                raise KeyExists(key)
            raise PreconditionFailed(key)
        return _with_rv(body, response.header.revision)

    async def update(
        self,
        key: str,
        obj: Object,
        expected_revision: int,
        extras: list[Extra] | None = None,
    ) -> Object:
        """Replace an object if its mod revision is still `expected_revision`."""
        tx = self._client.transactions
        full = self.full(key)
        extra_compares, extra_ops = self._extra_ops(extras or [])
        body = _encode(_without_rv(obj))
        response = await self._txn(
            [tx.mod(full) == expected_revision, *extra_compares],
            [tx.put(full, self._seal(key, body)), *extra_ops],
            [tx.get(full)],
        )
        if not response.succeeded:
            kvs = response.responses[0].response_range.kvs
            if not kvs:
                raise KeyNotFound(key)
            if kvs[0].mod_revision != expected_revision:
                raise RevisionConflict(key)
            raise PreconditionFailed(key)
        return _with_rv(body, response.header.revision)

    async def delete(self, key: str, expected_revision: int, extras: list[Extra] | None = None) -> int:
        """Delete an object if unchanged since `expected_revision`; return the deletion revision."""
        tx = self._client.transactions
        full = self.full(key)
        extra_compares, extra_ops = self._extra_ops(extras or [])
        response = await self._txn(
            [tx.mod(full) == expected_revision, *extra_compares],
            [tx.delete(full), *extra_ops],
            [tx.get(full)],
        )
        if not response.succeeded:
            if not response.responses[0].response_range.kvs:
                raise KeyNotFound(key)
            raise RevisionConflict(key)
        return int(response.header.revision)

    # -- ranges --------------------------------------------------------------

    async def list(
        self,
        prefix: str,
        *,
        revision: int = 0,
        start_after: str | None = None,
        limit: int = 0,
    ) -> tuple[list[Stored], int, bool]:
        """Objects under `prefix` (key order) at `revision` (0 = now).

        Returns (objects, the snapshot revision, whether more remain).
        """
        await self._client.connect()
        start = self.full(start_after) + b"\0" if start_after else self.full(prefix)
        request = rpc.RangeRequest(
            key=start,
            range_end=prefix_range_end(self.full(prefix)),
            revision=revision,
            limit=limit,
        )
        try:
            response = await self._kv.Range(request, timeout=10)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise Compacted(revision, await self.revision()) from err
            raise
        items = []
        for kv in response.kvs:
            short = self._short(kv.key)
            items.append(Stored(short, self._open(short, kv.value, kv.mod_revision), kv.mod_revision))
        return items, int(response.header.revision), bool(response.more)

    async def keys(self, prefix: str) -> KeyList:
        await self._client.connect()
        request = rpc.RangeRequest(key=self.full(prefix), range_end=prefix_range_end(self.full(prefix)), keys_only=True)
        response = await self._kv.Range(request, timeout=10)
        return [self._short(kv.key) for kv in response.kvs]

    async def freshness(self, prefix: str, revision: int) -> tuple[int, bool, int]:
        """(keys under `prefix` now, whether any was written after `revision`, the current revision), in one read.

        What a cache that reflects `prefix` at `revision` needs to know it is
        still exact: no key written since, and as many keys as it holds (a
        deletion shows as a smaller count; a creation as a newer write).
        Only keys are read, at most one of them.
        """
        await self._client.connect()
        full = self.full(prefix)
        end = prefix_range_end(full)
        count = rpc.RangeRequest(key=full, range_end=end, count_only=True)
        # count_only ignores min_mod_revision in etcd 3.4; a one-key keys_only read honours it
        newer = rpc.RangeRequest(key=full, range_end=end, keys_only=True, limit=1, min_mod_revision=revision + 1)
        request = rpc.TxnRequest(success=[rpc.RequestOp(request_range=count), rpc.RequestOp(request_range=newer)])
        response = await self._kv.Txn(request, timeout=10)
        total = int(response.responses[0].response_range.count)
        written = bool(response.responses[1].response_range.kvs)
        return total, written, int(response.header.revision)

    async def compact(self, revision: int) -> None:
        await self._client.compact(revision, physical=True)

    # -- watch ---------------------------------------------------------------

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Change]:
        """Every change under `prefix` strictly after `after_revision`, in order.

        Starting from an explicit revision (never "now") is what makes a
        list followed by a watch lossless.  Raises Compacted when etcd no
        longer has that history.
        """
        await self._client.connect()
        try:
            stream = await self._client.watch_prefix(self.full(prefix), start_revision=after_revision + 1, prev_kv=True)
        except aetcd.RevisionCompactedError as err:
            raise Compacted(after_revision, err.compacted_revision) from err
        try:
            async for event in stream:
                yield _change(self, event)
        except aetcd.RevisionCompactedError as err:
            raise Compacted(after_revision, err.compacted_revision) from err
        finally:
            await asyncio.shield(_cancel_quietly(stream))


async def _cancel_quietly(stream: Any) -> None:
    try:
        await stream.cancel()
    except Exception:  # the etcd connection may already be gone
        log.debug("watch cancel failed", exc_info=True)


def _change(storage: Storage, event: Any) -> Change:
    kv = event.kv
    key = storage._short(kv.key)
    has_prev = event.prev_kv is not None and event.prev_kv.key
    prev = storage._open(key, event.prev_kv.value, event.prev_kv.mod_revision) if has_prev else None
    if event.kind == "DELETE":
        return Change("DELETE", key, None, prev, kv.mod_revision, False)
    return Change("PUT", key, storage._open(key, kv.value, kv.mod_revision), prev, kv.mod_revision, kv.version == 1)


def _without_rv(obj: Object) -> Object:
    """The stored form: resourceVersion is never persisted (it is the mod revision)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    return {**obj, "metadata": meta}
