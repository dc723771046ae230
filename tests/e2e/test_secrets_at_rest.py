"""Secrets at rest on the local cluster: kubectl sees plaintext, etcd holds AES-GCM ciphertext,
and the API server's log never shows the value.

etcd is read through its own v3 JSON gateway from inside the control-plane
node, with the API server's etcd client certificate: what anyone with a
copy of etcd's data or its credentials would see.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from pocket.certs import APISERVER, APISERVER_ETCD_CLIENT, ClusterPKI
from pocket.cluster import security
from pocket.config import ETCD_CLIENT_PORT
from pocket.netns import entered

pytestmark = pytest.mark.e2e

SECRET_VALUE = "pkt-at-rest-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def tls(cluster: Any) -> ClusterPKI:
    found = security(cluster.config)
    assert found is not None, "the cluster under test runs without TLS: `pocket down` and `pocket up` it"
    return found


@pytest.fixture(scope="module")
def namespace(cluster: Any) -> Iterator[str]:
    name = f"pkt-at-rest-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def _etcd_value(cluster: Any, tls: ClusterPKI, key: str) -> bytes:
    """The raw value of one etcd key, read on the control-plane node with the API server's etcd credentials."""
    cp = cluster.config.control_plane
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(tls.cert(APISERVER_ETCD_CLIENT), tls.key(APISERVER_ETCD_CLIENT))
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    request = urllib.request.Request(f"https://{cp.ip}:{ETCD_CLIENT_PORT}/v3/kv/range", data=body)
    with entered(cluster.config.node_netns(cp.name)):
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            kvs = json.loads(response.read()).get("kvs") or []
    assert len(kvs) == 1, f"{key} not found in etcd"
    return base64.b64decode(kvs[0]["value"])


def test_secret_is_ciphertext_in_etcd_and_plaintext_through_kubectl(
    cluster: Any, tls: ClusterPKI, namespace: str
) -> None:
    config = yaml.safe_load(tls.encryption_config.read_text())
    assert config["kind"] == "EncryptionConfiguration" and "aesgcm" in config["resources"][0]["providers"][0]
    assert tls.encryption_config.stat().st_mode & 0o077 == 0  # owner-only

    cluster.kubectl("create", "secret", "generic", "db", "-n", namespace, f"--from-literal=password={SECRET_VALUE}")
    got = json.loads(cluster.kubectl("get", "secret", "db", "-n", namespace, "-o", "json"))
    assert base64.b64decode(got["data"]["password"]).decode() == SECRET_VALUE

    raw = _etcd_value(cluster, tls, f"/registry/secrets/{namespace}/db")
    key_name = config["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["name"]
    assert raw.startswith(f"k8s:enc:aesgcm:v1:{key_name}:".encode())
    assert SECRET_VALUE.encode() not in raw and base64.b64encode(SECRET_VALUE.encode()) not in raw

    # ConfigMaps are not in the config: stored as JSON
    cluster.kubectl("create", "configmap", "plain", "-n", namespace, "--from-literal=v=visible")
    assert json.loads(_etcd_value(cluster, tls, f"/registry/configmaps/{namespace}/plain"))["data"] == {"v": "visible"}

    log = cluster.config.log_file(cluster.config.control_plane.name, APISERVER).read_text(errors="replace")
    assert SECRET_VALUE not in log and base64.b64encode(SECRET_VALUE.encode()).decode() not in log
    events = cluster.kubectl("get", "events", "-A", "-o", "json")
    assert SECRET_VALUE not in events and base64.b64encode(SECRET_VALUE.encode()).decode() not in events
