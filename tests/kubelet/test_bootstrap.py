"""Kubelet TLS bootstrap against a real HTTPS API server on etcd, with the CSR approver and signer running."""

from __future__ import annotations

import argparse
import asyncio
import logging
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from control import pki
from control.apiserver.bootstraptokens import generate_token, token_secret
from control.client import Client, Informer, ssl_context_for
from control.controllers.certificates import ClusterSigner, CSRApprovingController, CSRSigningController
from kubelet import cli
from kubelet.bootstrap import (
    CLIENT_FILE,
    BootstrapError,
    bootstrap_client_certificate,
    csr_object,
    current_certificate_ok,
    renew_client_certificate,
    rotation_deadline,
)
from tests.conftest import EtcdServer
from tests.control.sa_apiserver import KeyedServer, keyed_apiserver
from tests.controllers.helpers import eventually


def write_bootstrap_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
                "users": [{"name": "tls-bootstrap-token-user", "user": {"token": token}}],
                "contexts": [
                    {"name": "tls-bootstrap", "context": {"cluster": "c", "user": "tls-bootstrap-token-user"}}
                ],
                "current-context": "tls-bootstrap",
            }
        )
    )


@pytest.fixture
async def cluster(etcd_server: EtcdServer, tmp_path: Path) -> AsyncIterator[tuple[KeyedServer, Client]]:
    """HTTPS API server plus an admin client, with the CSR approver and signer running on the cluster CA."""
    async with keyed_apiserver(etcd_server.url, tmp_path, https=True) as server:
        assert server.ca is not None
        admin_cert = pki.ensure_cert(tmp_path / "pki", server.ca, "admin", pki.ADMIN)
        context = ssl_context_for(
            server.ca.paths.cert.read_bytes(), admin_cert.cert.read_bytes(), admin_cert.key.read_bytes()
        )
        async with Client(server.url, ssl_context=context) as admin:
            csrs = Informer(admin, "certificatesigningrequests")
            signer = ClusterSigner.from_files(server.ca.paths.cert, server.ca.paths.key, 3600)
            tasks = [asyncio.create_task(csrs.run())]
            await csrs.synced.wait()
            tasks += [
                asyncio.create_task(c.run(60))
                for c in (CSRApprovingController(admin, csrs), CSRSigningController(admin, csrs, signer))
            ]
            try:
                yield server, admin
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def test_bootstrap_obtains_a_node_certificate_usable_over_https(
    cluster: tuple[KeyedServer, Client], tmp_path: Path
) -> None:
    server, admin = cluster
    assert server.ca is not None
    token = generate_token()
    await admin.create("secrets", token_secret(token, ttl_seconds=600), "kube-system")
    bootstrap = tmp_path / "bootstrap-kubelet.conf"
    write_bootstrap_kubeconfig(bootstrap, server.url, server.ca.paths.cert, token)
    kubeconfig, cert_dir = tmp_path / "kubelet.conf", tmp_path / "kubelet-pki"

    assert await bootstrap_client_certificate("w5", bootstrap, kubeconfig, cert_dir, wait_seconds=30)
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert stat.S_IMODE((cert_dir / "kubelet-client-current.pem").stat().st_mode) == 0o600
    assert current_certificate_ok(kubeconfig, "w5")
    assert not current_certificate_ok(kubeconfig, "w6"), "the certificate names its own node only"

    # the new kubeconfig works over HTTPS, as system:node:w5 in system:nodes (a CSR records who sent it)
    async with Client.from_kubeconfig(kubeconfig) as node:
        assert (await node.list("namespaces"))["items"]
        # a node renewing its own certificate is approved too (upstream's selfnodeclient)
        recorded = await node.create(
            "certificatesigningrequests", csr_object("w5", ec.generate_private_key(ec.SECP256R1()))
        )
    assert recorded["spec"]["username"] == "system:node:w5"
    assert "system:nodes" in recorded["spec"]["groups"]

    async def renewed() -> bool:
        csr = await admin.get("certificatesigningrequests", recorded["metadata"]["name"])
        return bool((csr.get("status") or {}).get("certificate"))

    await eventually(renewed, timeout=20, what="self renewal CSR signed")

    before = kubeconfig.read_bytes()
    assert not await bootstrap_client_certificate("w5", bootstrap, kubeconfig, cert_dir, wait_seconds=30)
    assert kubeconfig.read_bytes() == before, "a valid certificate is kept"


async def test_bootstrap_with_an_unknown_token_fails_clearly(
    cluster: tuple[KeyedServer, Client], tmp_path: Path
) -> None:
    server, _ = cluster
    assert server.ca is not None
    bootstrap = tmp_path / "bootstrap-kubelet.conf"
    write_bootstrap_kubeconfig(bootstrap, server.url, server.ca.paths.cert, generate_token())
    with pytest.raises(BootstrapError, match=r"cannot create CSR .*: Unauthorized \(with the bootstrap credentials\)"):
        await bootstrap_client_certificate("w5", bootstrap, tmp_path / "kubelet.conf", tmp_path / "pki", 5)
    assert not (tmp_path / "kubelet.conf").exists()


def test_bootstrap_kubeconfig_needs_kubeconfig(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--node-name",
            f"w{uuid.uuid4().hex[:4]}",
            "--node-ip",
            "127.0.0.1",
            "--docker-host",
            "unix:///nonexistent",
            "--root-dir",
            str(tmp_path),
            "--resolv-conf",
            "",
            "--bootstrap-kubeconfig",
            str(tmp_path / "b.conf"),
        ]
    )
    with caplog.at_level(logging.ERROR, logger="kubelet"):
        assert cli.run(args) == 2
    assert "--bootstrap-kubeconfig needs --kubeconfig" in caplog.text


async def test_rotation_renews_with_the_current_certificate(
    cluster: tuple[KeyedServer, Client], tmp_path: Path
) -> None:
    server, admin = cluster
    assert server.ca is not None
    token = generate_token()
    await admin.create("secrets", token_secret(token, ttl_seconds=600), "kube-system")
    bootstrap = tmp_path / "bootstrap-kubelet.conf"
    write_bootstrap_kubeconfig(bootstrap, server.url, server.ca.paths.cert, token)
    kubeconfig, cert_dir = tmp_path / "kubelet.conf", tmp_path / "kubelet-pki"
    assert await bootstrap_client_certificate("w6", bootstrap, kubeconfig, cert_dir, wait_seconds=30)
    client_file = cert_dir / CLIENT_FILE
    first = x509.load_pem_x509_certificate(client_file.read_bytes())
    assert (
        rotation_deadline(first) - first.not_valid_before_utc
        == (first.not_valid_after_utc - first.not_valid_before_utc) * 0.8
    )
    async with Client.from_kubeconfig(kubeconfig) as node:
        await renew_client_certificate(node, "w6", client_file, wait_seconds=30)
        second = x509.load_pem_x509_certificate(client_file.read_bytes())
        assert second.serial_number != first.serial_number
        assert pki.subject_of(second) == ("system:node:w6", ("system:nodes",))
        await node.close()  # the next connection is made with the reloaded TLS context: it still authenticates
        recorded = await node.create(
            "certificatesigningrequests", csr_object("w6", ec.generate_private_key(ec.SECP256R1()))
        )
    assert recorded["spec"]["username"] == "system:node:w6"
    renewals = [
        c
        for c in (await admin.list("certificatesigningrequests"))["items"]
        if c["spec"]["username"] == "system:node:w6"
    ]
    assert any("self kubelet client" in (c["status"].get("conditions") or [{}])[0].get("message", "") for c in renewals)
