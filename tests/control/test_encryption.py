"""Encryption at rest: Secrets in etcd are AES-GCM ciphertext, the API serves plaintext.

A real etcd and `python -m control.apiserver --encryption-provider-config`
(restarted between key configurations); etcd is read directly with aetcd to
see what an attacker holding a copy of etcd's data would see.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import aetcd
import pytest
import yaml

from control.api.errors import ApiError
from control.apiserver.encryption import (
    EncryptionConfigError,
    load_encryption_config,
    parse_encryption_config,
    write_encryption_config,
)
from control.apiserver.storage import parse_endpoint
from control.client import Client, WatchEvent
from tests.conftest import EtcdServer
from tests.control.apiserver_process import ApiServerProcess

SECRET_VALUE = "pkt-hunter2-" + uuid.uuid4().hex  # unique, so finding it anywhere means it leaked
# Listed last in every config: etcd's root prefix is shared with the session's other API server processes,
# whose plaintext Secrets must not fail these servers' lists; it never reads an encrypted value.
IDENTITY: dict[str, Any] = {"identity": {}}


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _config(path: Path, providers: list[dict[str, Any]], resources: tuple[str, ...] = ("secrets",)) -> Path:
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": providers}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _aesgcm(*keys: tuple[str, str]) -> dict[str, Any]:
    return {"aesgcm": {"keys": [{"name": name, "secret": secret} for name, secret in keys]}}


def _secret(name: str, value: str = SECRET_VALUE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {"password": base64.b64encode(value.encode()).decode()},
        "stringData": {"token": value},
    }


class Cluster:
    """An API server process that can be restarted with another encryption config, plus raw etcd reads."""

    def __init__(self, etcd: EtcdServer, tmp_path: Path):
        self.etcd = etcd
        self.tmp_path = tmp_path
        self.log_path = tmp_path / "apiserver.log"
        self.server: ApiServerProcess | None = None
        self.namespace = f"pkt-enc-{uuid.uuid4().hex[:8]}"

    def start(self, config: Path) -> Client:
        self.stop()
        self.server = ApiServerProcess(self.etcd.url, self.log_path, ["--encryption-provider-config", str(config)])
        self.server.start()
        return Client(self.server.url)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    async def raw(self, key: str) -> bytes:
        host, port = parse_endpoint(self.etcd.url)
        async with aetcd.Client(host=host, port=port) as etcd:
            stored = await etcd.get(key.encode())
        assert stored is not None, f"{key} is not in etcd"
        return bytes(stored.value)

    def secret_key(self, name: str) -> str:
        return f"/registry/secrets/{self.namespace}/{name}"

    async def remove_objects(self) -> None:
        """Delete this test's keys from etcd: Secrets sealed with its throwaway keys would fail others' lists."""
        host, port = parse_endpoint(self.etcd.url)
        async with aetcd.Client(host=host, port=port) as etcd:
            for plural in ("secrets", "configmaps", "events"):
                await etcd.delete_prefix(f"/registry/{plural}/{self.namespace}/".encode())
            await etcd.delete(f"/registry/namespaces/{self.namespace}".encode())


@pytest.fixture
async def cluster(etcd_server: EtcdServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(etcd_server, tmp_path)
    try:
        yield made
    finally:
        made.stop()
        await made.remove_objects()


@pytest.fixture
async def key1_client(cluster: Cluster, tmp_path: Path) -> AsyncIterator[tuple[Client, str]]:
    key1 = _key()
    client = cluster.start(_config(tmp_path / "key1.yaml", [_aesgcm(("key1", key1)), IDENTITY]))
    await client.create("namespaces", {"metadata": {"name": cluster.namespace}})
    try:
        yield client, key1
    finally:
        await client.close()


async def test_secret_in_etcd_is_ciphertext_and_api_serves_plaintext(
    cluster: Cluster, key1_client: tuple[Client, str]
) -> None:
    client, _ = key1_client
    ns = cluster.namespace
    created = await client.create("secrets", _secret("db"), ns)
    await client.create("configmaps", {"metadata": {"name": "plain"}, "data": {"v": SECRET_VALUE}}, ns)

    raw = await cluster.raw(cluster.secret_key("db"))
    assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:")
    encoded = base64.b64encode(SECRET_VALUE.encode())
    assert SECRET_VALUE.encode() not in raw and encoded not in raw and b'"kind"' not in raw
    # resources the config does not name are stored as JSON
    assert json.loads(await cluster.raw(f"/registry/configmaps/{ns}/plain"))["data"]["v"] == SECRET_VALUE

    expected = base64.b64encode(SECRET_VALUE.encode()).decode()
    got = await client.get("secrets", "db", ns)
    assert got["data"] == {"password": expected, "token": expected}
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    listed = await client.list("secrets", ns)
    assert [s["data"]["password"] for s in listed["items"]] == [expected]

    # a new nonce per write: the same object written twice never repeats its ciphertext
    got["metadata"]["labels"] = {"rewritten": "yes"}
    await client.update("secrets", got)
    rewritten = await cluster.raw(cluster.secret_key("db"))
    assert rewritten.startswith(b"k8s:enc:aesgcm:v1:key1:") and rewritten[23:35] != raw[23:35]


async def test_watch_delivers_plaintext(cluster: Cluster, key1_client: tuple[Client, str]) -> None:
    client, _ = key1_client
    ns = cluster.namespace
    created = await client.create("secrets", _secret("before"), ns)
    rv = created["metadata"]["resourceVersion"]
    await client.create("secrets", _secret("watched", "second-value"), ns)
    events = cast(
        AsyncGenerator[WatchEvent, None], client.watch("secrets", ns, resource_version=rv, timeout_seconds=10)
    )
    async with contextlib.aclosing(events):
        event = await anext(events)
    assert event.type == "ADDED" and event.object["metadata"]["name"] == "watched"
    assert base64.b64decode(event.object["data"]["password"]) == b"second-value"


async def test_key_rotation(cluster: Cluster, key1_client: tuple[Client, str], tmp_path: Path) -> None:
    client, key1 = key1_client
    ns = cluster.namespace
    await client.create("secrets", _secret("old"), ns)
    await client.close()

    # step 1: the new key is listed second everywhere (reads only), then first (writes)
    key2 = _key()
    client = cluster.start(_config(tmp_path / "both.yaml", [_aesgcm(("key2", key2), ("key1", key1)), IDENTITY]))
    try:
        old = await client.get("secrets", "old", ns)
        assert base64.b64decode(old["data"]["password"]).decode() == SECRET_VALUE
        await client.create("secrets", _secret("new"), ns)
        assert (await cluster.raw(cluster.secret_key("new"))).startswith(b"k8s:enc:aesgcm:v1:key2:")
        assert (await cluster.raw(cluster.secret_key("old"))).startswith(b"k8s:enc:aesgcm:v1:key1:")
        # step 2: rewrite every Secret (kubectl replace), which encrypts it with the first key
        old["metadata"]["annotations"] = {"rotated": "key2"}
        await client.update("secrets", old)
        assert (await cluster.raw(cluster.secret_key("old"))).startswith(b"k8s:enc:aesgcm:v1:key2:")
    finally:
        await client.close()

    # step 3: the old key is gone; everything still reads
    client = cluster.start(_config(tmp_path / "key2.yaml", [_aesgcm(("key2", key2)), IDENTITY]))
    try:
        names = sorted(s["metadata"]["name"] for s in (await client.list("secrets", ns))["items"])
        assert names == ["new", "old"]
        assert (await client.get("secrets", "old", ns))["metadata"]["annotations"] == {"rotated": "key2"}
    finally:
        await client.close()


async def test_wrong_key_is_a_clear_error_and_corrupts_nothing(
    cluster: Cluster, key1_client: tuple[Client, str], tmp_path: Path
) -> None:
    client, key1 = key1_client
    ns = cluster.namespace
    await client.create("secrets", _secret("kept"), ns)
    await client.close()
    stored = await cluster.raw(cluster.secret_key("kept"))

    # same key name, other bytes: authentication fails; nothing is written
    client = cluster.start(_config(tmp_path / "wrong.yaml", [_aesgcm(("key1", _key())), IDENTITY]))
    try:
        with pytest.raises(ApiError) as err:
            await client.get("secrets", "kept", ns)
        assert err.value.code == 500
        assert f"unable to transform key '{cluster.secret_key('kept')}'" in str(err.value)
        assert "message authentication failed" in str(err.value)
        with pytest.raises(ApiError) as listed:
            await client.list("secrets", ns)
        assert listed.value.code == 500
        with pytest.raises(ApiError):
            await client.patch("secrets", "kept", {"metadata": {"labels": {"x": "y"}}}, ns)
        with pytest.raises(ApiError):
            await client.delete("secrets", "kept", ns)
    finally:
        await client.close()
    assert await cluster.raw(cluster.secret_key("kept")) == stored

    # the key that wrote it is no longer listed: named as such
    client = cluster.start(_config(tmp_path / "other.yaml", [_aesgcm(("key9", _key())), IDENTITY]))
    try:
        with pytest.raises(ApiError) as err:
            await client.get("secrets", "kept", ns)
        assert "k8s:enc:aesgcm:v1:key1:" in str(err.value)
    finally:
        await client.close()

    # back on the right key, the Secret is intact
    client = cluster.start(_config(tmp_path / "right.yaml", [_aesgcm(("key1", key1)), IDENTITY]))
    try:
        got = await client.get("secrets", "kept", ns)
        assert base64.b64decode(got["data"]["password"]).decode() == SECRET_VALUE
    finally:
        await client.close()


async def test_identity_first_reads_encrypted_and_writes_plaintext(
    cluster: Cluster, key1_client: tuple[Client, str], tmp_path: Path
) -> None:
    """Turning encryption off (identity first) keeps existing Secrets readable, as upstream documents."""
    client, key1 = key1_client
    ns = cluster.namespace
    await client.create("secrets", _secret("sealed"), ns)
    await client.close()
    client = cluster.start(_config(tmp_path / "off.yaml", [IDENTITY, _aesgcm(("key1", key1))]))
    try:
        assert (await client.get("secrets", "sealed", ns))["type"] == "Opaque"
        await client.create("secrets", _secret("open"), ns)
        assert json.loads(await cluster.raw(cluster.secret_key("open")))["metadata"]["name"] == "open"
    finally:
        await client.close()


async def test_secret_values_never_reach_logs_or_events(cluster: Cluster, key1_client: tuple[Client, str]) -> None:
    client, _ = key1_client
    ns = cluster.namespace
    await client.create("secrets", _secret("logged"), ns)
    await client.get("secrets", "logged", ns)
    await client.patch("secrets", "logged", {"stringData": {"other": SECRET_VALUE}}, ns)
    with pytest.raises(ApiError):  # a failing write, whose error is logged and answered
        await client.create("secrets", {**_secret("Bad_Name"), "type": 7}, ns)
    with pytest.raises(ApiError):
        await client.create("secrets", _secret("logged"), ns)
    await client.delete("secrets", "logged", ns)
    events = await client.list("events")
    await client.close()
    cluster.stop()
    log = cluster.log_path.read_text()
    assert "apiserver listening" in log  # the log was captured (verbose), so its silence means something
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    assert SECRET_VALUE not in log and encoded not in log
    assert SECRET_VALUE not in json.dumps(events) and encoded not in json.dumps(events)


# -- the configuration file --------------------------------------------------------


def test_write_encryption_config_creates_a_private_key_once(tmp_path: Path) -> None:
    path = tmp_path / "pki" / "encryption-config.yaml"
    assert write_encryption_config(path) is True
    first = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert write_encryption_config(path) is False and path.read_bytes() == first
    encryption = load_encryption_config(path)
    assert encryption.encrypted_resources() == ["secrets"]
    secret = yaml.safe_load(first)["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["secret"]
    assert len(base64.b64decode(secret)) == 32
    sealed = encryption.encrypt("/registry/secrets/ns/a", b"{}")
    assert (
        sealed.startswith(b"k8s:enc:aesgcm:v1:key1:") and encryption.decrypt("/registry/secrets/ns/a", sealed) == b"{}"
    )


def test_ciphertext_is_bound_to_its_key(tmp_path: Path) -> None:
    """The etcd key is authenticated data: a value copied to another object's key does not decrypt."""
    encryption = parse_encryption_config(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"], "providers": [_aesgcm(("k", _key()))]}],
        }
    )
    sealed = encryption.encrypt("/registry/secrets/ns/a", b"{}")
    with pytest.raises(Exception, match="message authentication failed"):
        encryption.decrypt("/registry/secrets/ns/b", sealed)


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ([{"aescbc": {"keys": [{"name": "k", "secret": "AAAA"}]}}], "provider 'aescbc' is not supported"),
        ([_aesgcm(("k", base64.b64encode(b"short").decode()))], "16, 24 or 32 bytes, got 5"),
        ([_aesgcm(("k", "not base64!"))], "keys[0].secret: not valid base64"),
        ([_aesgcm(("a:b", _key()))], "keys[0].name"),
        ([_aesgcm(("k", _key()), ("k", _key()))], "key names must be unique"),
        ([], "providers: at least one provider"),
        ([{"identity": {}, "aesgcm": {}}], "exactly one provider type"),
    ],
)
def test_bad_config_names_the_field(providers: list[dict[str, Any]], message: str) -> None:
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": providers}],
    }
    with pytest.raises(EncryptionConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_encryption_config(doc)


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(EncryptionConfigError, match="must be EncryptionConfiguration"):
        parse_encryption_config({"apiVersion": "v1", "kind": "Config", "resources": []})


def test_apiserver_refuses_a_bad_config_file(tmp_path: Path) -> None:
    bad = _config(tmp_path / "bad.yaml", [_aesgcm(("key1", "c2hvcnQ="))])
    result = subprocess.run(
        [sys.executable, "-m", "control.apiserver", "--encryption-provider-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"encryption provider config {bad}" in result.stderr and "got 5" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "control.apiserver", "--encryption-provider-config", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr
