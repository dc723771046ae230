"""The cluster PKI: certificates say who they are for, verify against the CA, and are reused when still right."""

from __future__ import annotations

import argparse
import base64
import os
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from control import pki
from pocket import certs
from pocket.cli import _command
from pocket.cluster import security
from pocket.config import ClusterConfig
from pocket.node import node_components


def _sans(path: Path) -> set[str]:
    ext = pki.load_certificate(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def test_ca_and_client_certificate_verify_with_openssl(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path)
    paths = pki.ensure_cert(tmp_path, ca, "admin", pki.ADMIN)
    assert pki.subject_of(pki.load_certificate(paths.cert)) == ("kubernetes-admin", ("system:masters",))
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca.paths.cert), "-purpose", "sslclient", str(paths.cert)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert paths.key.stat().st_mode & 0o777 == 0o600
    # Python's ssl accepts the pair too (what the clients load).
    ssl.create_default_context(cafile=str(ca.paths.cert)).load_cert_chain(paths.cert, paths.key)


def test_apiserver_serving_certificate_names(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path)
    paths = pki.ensure_cert(tmp_path, ca, "apiserver", pki.apiserver_serving(("192.168.56.10",), "10.96.0.1"))
    assert _sans(paths.cert) == {
        "192.168.56.10",
        "10.96.0.1",
        "127.0.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    }
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca.paths.cert), "-purpose", "sslserver", str(paths.cert)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr


def test_second_run_reuses_everything(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path)
    pki.ensure_cert(tmp_path, ca, "node-w1", pki.node_client("w1"))
    pki.ensure_key_pair(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ca = pki.ensure_ca(tmp_path)
    pki.ensure_cert(tmp_path, ca, "node-w1", pki.node_client("w1"))
    pki.ensure_key_pair(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert set(before) == {"ca.crt", "ca.key", "node-w1.crt", "node-w1.key", "sa.key", "sa.pub"}


def test_changed_request_or_new_ca_remakes_the_certificate(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path)
    first = pki.ensure_cert(tmp_path, ca, "kubelet", pki.kubelet_serving("w1", "192.168.56.11")).cert.read_bytes()
    # Another address: the old certificate no longer fits.
    pki.ensure_cert(tmp_path, ca, "kubelet", pki.kubelet_serving("w1", "192.168.56.12"))
    assert _sans(tmp_path / "kubelet.crt") == {"192.168.56.12", "w1"}
    assert (tmp_path / "kubelet.crt").read_bytes() != first
    # A certificate signed by a different CA is not trusted and is remade.
    other = pki.ensure_ca(tmp_path / "other")
    kept = (tmp_path / "kubelet.crt").read_bytes()
    pki.ensure_cert(tmp_path, other, "kubelet", pki.kubelet_serving("w1", "192.168.56.12"))
    assert (tmp_path / "kubelet.crt").read_bytes() != kept
    pki.load_certificate(tmp_path / "kubelet.crt").verify_directly_issued_by(other.certificate)


def test_bad_requests_are_named(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path)
    with pytest.raises(pki.PKIError, match="invalid certificate host name 'bad name'"):
        pki.ensure_cert(tmp_path, ca, "x", pki.CertSpec("x", (), ("bad name",), (pki.SERVER,)))
    with pytest.raises(pki.PKIError, match="unknown certificate usage 'peer'"):
        pki.CertSpec("x", usages=("peer",))
    with pytest.raises(pki.PKIError, match="common name"):
        pki.CertSpec("")


# -- the local cluster's PKI and the TLS command lines ---------------------------------------


def _cluster(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(prefix="pkt-pki-", state_dir=tmp_path / "state", run_dir=tmp_path / "run",
                         kubeconfig=tmp_path / "user.kubeconfig", api_port=6499)  # fmt: skip


def _flags(argv: tuple[str, ...]) -> dict[str, str]:
    return {a: (argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "")
            for i, a in enumerate(argv) if a.startswith("--")}  # fmt: skip


def test_cluster_pki_is_complete_and_idempotent(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    assert certs.ensure_cluster_pki(cluster) is True
    paths = certs.cluster_pki(cluster)
    for node in cluster.nodes:
        kubeconfig = yaml.safe_load(paths.kubeconfig(certs.node_identity(node.name)).read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.168.56.10:6443"
        user = kubeconfig["users"][0]["user"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
        assert pki.subject_of(cert) == (f"system:node:{node.name}", ("system:nodes",))
        assert _sans(paths.cert(certs.kubelet_serving(node.name))) == {node.ip, node.name}
    assert paths.service_account_public.exists() and paths.encryption_config.exists()
    assert certs.ensure_cluster_pki(cluster) is False  # a second `pocket up` changes nothing
    assert certs.write_user_kubeconfig(cluster) is True
    assert certs.write_user_kubeconfig(cluster) is False
    user_config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert user_config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6499"
    assert "insecure-skip-tls-verify" not in user_config["clusters"][0]["cluster"]


def test_every_component_is_launched_with_tls_and_accepts_it(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    paths = certs.cluster_pki(cluster)
    launched = {
        (node.name, c.name): c
        for node in cluster.nodes
        for c in node_components(cluster, node, python="/usr/bin/python3", pki=paths)
    }
    for (node, name), component in launched.items():
        argv = component.argv
        if name in ("apiserver", "controller-manager", "scheduler", "kdns", "kubelet", "kproxy"):
            parser = argparse.ArgumentParser(prog=name, exit_on_error=False)
            _command(name).add_arguments(parser)
            parser.parse_args(list(argv[4:]))
            assert "--api-server" not in argv, (node, name)
            assert not any("http://192.168.56.10:6443" in a for a in argv), (node, name)
        if name in ("controller-manager", "scheduler", "kdns", "kubelet", "kproxy"):
            assert _flags(argv)["--kubeconfig"].startswith(str(paths.directory / "kubeconfigs")), (node, name)
    etcd = _flags(launched[("control-plane", "etcd")].argv)
    assert etcd["--listen-client-urls"] == "https://192.168.56.10:2379,https://127.0.0.1:2379"
    assert "--client-cert-auth" in etcd and etcd["--trusted-ca-file"] == str(paths.ca)
    apiserver = _flags(launched[("control-plane", "apiserver")].argv)
    assert apiserver["--etcd-servers"] == "https://127.0.0.1:2379"
    assert apiserver["--client-ca-file"] == str(paths.ca)
    assert apiserver["--authorization-mode"] == "Node,RBAC"
    assert apiserver["--enable-admission-plugins"] == "NodeRestriction"
    assert launched[("control-plane", "apiserver")].health_url == "https://192.168.56.10:6443/healthz"
    assert _flags(launched[("worker1", "kubelet")].argv)["--tls-cert-file"] == str(paths.cert("kubelet-worker1"))
    assert _flags(launched[("worker1", "kproxy")].argv)["--kubeconfig"] == str(paths.kubeconfig("node-worker1"))


def test_a_cluster_running_without_tls_is_left_as_it_is(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    pid_file = cluster.pid_file(cluster.control_plane.name, "apiserver")
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()} 0\n")  # pid, start time unknown
    assert security(cluster) is None
    certs.ensure_cluster_pki(cluster)
    assert security(cluster) == certs.cluster_pki(cluster)
