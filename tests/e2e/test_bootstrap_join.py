"""A joining node's TLS bootstrap against the running cluster: bootstrap token -> CSR -> approved, signed
certificate -> a node identity the Node authorizer confines (kubeadm join's credential path)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from control.api.errors import ApiError
from control.apiserver.bootstraptokens import generate_token, token_secret
from control.client import Client
from kubelet.bootstrap import bootstrap_client_certificate, current_certificate_ok
from tests.e2e.conftest import LocalCluster

pytestmark = pytest.mark.e2e


def test_new_node_gets_a_confined_identity_from_a_bootstrap_token(cluster: LocalCluster, tmp_path: Path) -> None:
    token = generate_token()
    secret_name = f"bootstrap-token-{token.split('.')[0]}"
    manifest = tmp_path / "token.json"
    manifest.write_text(json.dumps(token_secret(token, ttl_seconds=600, description="e2e join")))
    cluster.kubectl("apply", "-f", str(manifest))
    user = yaml.safe_load(cluster.kubeconfig.read_text())
    server_entry = user["clusters"][0]["cluster"]
    if not str(server_entry.get("server", "")).startswith("https://"):
        pytest.fail("the cluster under test serves plain HTTP: a bootstrap token proves nothing there")
    bootstrap = tmp_path / "bootstrap-kubelet.conf"
    bootstrap.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server_entry}],
                "users": [{"name": "tls-bootstrap-token-user", "user": {"token": token}}],
                "contexts": [{"name": "b", "context": {"cluster": "c", "user": "tls-bootstrap-token-user"}}],
                "current-context": "b",
            }
        )
    )
    kubeconfig = tmp_path / "kubelet.conf"
    node = f"pkt-join-{token[:6]}"
    try:
        assert asyncio.run(bootstrap_client_certificate(node, bootstrap, kubeconfig, tmp_path / "pki", 120))
        assert current_certificate_ok(kubeconfig, node)
        csrs = json.loads(cluster.kubectl("get", "csr", "-o", "json"))["items"]
        (mine,) = [c for c in csrs if c["spec"].get("username") == f"system:bootstrap:{token[:6]}"]
        conditions = {c["type"]: c for c in mine["status"]["conditions"]}
        print("CSR", mine["metadata"]["name"], "conditions:", sorted(conditions))
        assert conditions["Approved"]["reason"] == "AutoApproved" and mine["status"]["certificate"]

        async def as_node() -> tuple[int, int]:
            async with Client.from_kubeconfig(kubeconfig) as client:
                services = len((await client.list("services"))["items"])
                try:
                    await client.get("secrets", secret_name, "kube-system")
                except ApiError as err:
                    return services, err.code
                return services, 200

        services, secret_code = asyncio.run(as_node())
        assert services >= 1, "a node may list services (kproxy)"
        assert secret_code == 403, "a node may not read a Secret no pod of it uses"
    finally:
        cluster.kubectl("delete", "secret", secret_name, "-n", "kube-system", "--ignore-not-found")
        for csr in json.loads(cluster.kubectl("get", "csr", "-o", "json"))["items"]:
            if csr["spec"].get("username") in (f"system:bootstrap:{token[:6]}", f"system:node:{node}"):
                cluster.kubectl("delete", "csr", csr["metadata"]["name"], "--ignore-not-found")
