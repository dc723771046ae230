"""The cluster PKI: certificates say who they are for, verify against the CA, and are reused when still right."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from control import pki


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
