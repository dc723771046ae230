"""Joining as kubeadm does, against real API servers: the control plane's bootstrap token and signed cluster-info,
a worker's check of the signature, and (over HTTPS) the kubelet's TLS bootstrap with that token."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest
import yaml

from control import pki
from control.api.errors import ApiError
from control.client import Client, Informer, ssl_context_for
from control.controllers.certificates import ClusterSigner, CSRApprovingController, CSRSigningController
from kubelet.bootstrap import bootstrap_client_certificate, current_certificate_ok
from pocket.setup import (
    CLUSTER_INFO,
    CLUSTER_INFO_NAMESPACE,
    SetupError,
    bootstrap_token_for,
    discover_cluster,
    record_join_token,
    verified_cluster_info,
)
from tests.conftest import ApiServer, EtcdServer
from tests.control.sa_apiserver import keyed_apiserver

TOKEN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


async def test_token_is_recorded_once_and_checked(apiserver: ApiServer) -> None:
    client = apiserver.client
    bootstrap = bootstrap_token_for(TOKEN)
    assert bootstrap == bootstrap_token_for(TOKEN) != bootstrap_token_for(OTHER)
    try:
        assert not await discover_cluster(client, TOKEN), "nothing published yet: a worker must wait"
        assert await record_join_token(client, TOKEN, apiserver.url)
        assert not await record_join_token(client, TOKEN, apiserver.url), "the same token again changes nothing"
        assert await discover_cluster(client, TOKEN) == {"server": apiserver.url}
        with pytest.raises(SetupError, match="does not match"):
            await discover_cluster(client, OTHER)
        with pytest.raises(SetupError, match="different join token"):
            await record_join_token(client, OTHER, apiserver.url)
        info = await client.get("configmaps", CLUSTER_INFO, CLUSTER_INFO_NAMESPACE)
        assert verified_cluster_info(info, TOKEN, apiserver.url) == {"server": apiserver.url}
        tampered = {**info, "data": {**info["data"], "kubeconfig": info["data"]["kubeconfig"].replace("http", "ftp")}}
        with pytest.raises(SetupError, match="does not match"):
            verified_cluster_info(tampered, TOKEN, apiserver.url)
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": bootstrap}}
        status = (await client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review))["status"]
        assert status["authenticated"] and status["user"]["username"] == f"system:bootstrap:{bootstrap[:6]}"
    finally:
        for plural, name, namespace in (
            ("configmaps", CLUSTER_INFO, CLUSTER_INFO_NAMESPACE),
            ("secrets", f"bootstrap-token-{bootstrap[:6]}", "kube-system"),
        ):
            try:
                await client.delete(plural, name, namespace)
            except ApiError as err:  # what a failed test did not make
                assert err.code == 404


async def test_worker_joins_over_https_with_the_bootstrap_token(etcd_server: EtcdServer, tmp_path: Path) -> None:
    async with keyed_apiserver(etcd_server.url, tmp_path, https=True) as server:
        assert server.ca is not None
        ca_pem = server.ca.paths.cert.read_bytes()
        admin_cert = pki.ensure_cert(tmp_path / "pki", server.ca, "admin", pki.ADMIN)
        context = ssl_context_for(ca_pem, admin_cert.cert.read_bytes(), admin_cert.key.read_bytes())
        async with Client(server.url, ssl_context=context) as admin:
            assert await record_join_token(admin, TOKEN, server.url, ca_pem)
            csrs = Informer(admin, "certificatesigningrequests")
            signer = ClusterSigner.from_files(server.ca.paths.cert, server.ca.paths.key, 3600)
            tasks = [asyncio.create_task(csrs.run())]
            await csrs.synced.wait()
            tasks += [
                asyncio.create_task(c.run(60))
                for c in (CSRApprovingController(admin, csrs), CSRSigningController(admin, csrs, signer))
            ]
            try:
                # discovery: the worker has no CA yet, so it reads cluster-info without verifying the server,
                # then trusts only what the token's signature vouches for
                unverified = ssl.create_default_context()
                unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
                async with Client(server.url, token=bootstrap_token_for(TOKEN), ssl_context=unverified) as joining:
                    info = await joining.get("configmaps", CLUSTER_INFO, CLUSTER_INFO_NAMESPACE)
                cluster_entry = verified_cluster_info(info, TOKEN, server.url)
                assert base64.b64decode(cluster_entry["certificate-authority-data"]) == ca_pem
                bootstrap_config = tmp_path / "bootstrap-kubelet.conf"
                bootstrap_config.write_text(
                    yaml.safe_dump(
                        {
                            "apiVersion": "v1",
                            "kind": "Config",
                            "clusters": [{"name": "c", "cluster": cluster_entry}],
                            "users": [{"name": "b", "user": {"token": bootstrap_token_for(TOKEN)}}],
                            "contexts": [{"name": "b", "context": {"cluster": "c", "user": "b"}}],
                            "current-context": "b",
                        }
                    )
                )
                kubeconfig = tmp_path / "kubelet.conf"
                assert await bootstrap_client_certificate("worker4", bootstrap_config, kubeconfig, tmp_path / "kp", 30)
                assert current_certificate_ok(kubeconfig, "worker4")
                async with Client.from_kubeconfig(kubeconfig) as node:
                    assert (await node.get("namespaces", "default"))["metadata"]["name"] == "default"
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
