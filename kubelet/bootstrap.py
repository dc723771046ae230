"""Kubelet TLS bootstrap: turn a bootstrap token into this node's own client certificate.

As upstream's kubelet does with `--bootstrap-kubeconfig`: when the
`--kubeconfig` file is missing or its client certificate no longer valid,
the kubelet makes a private key, sends a CertificateSigningRequest for
`CN=system:node:<node>, O=system:nodes` (signer
`kubernetes.io/kube-apiserver-client-kubelet`) with the bootstrap
credentials, waits until the controller manager has approved and signed it,
then writes the key and certificate to `<cert-dir>/kubelet-client-current.pem`
and a kubeconfig naming them (server and CA from the bootstrap kubeconfig).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control.api.errors import ApiError
from control.client import Client, KubeconfigError

log = logging.getLogger(__name__)

Object = dict[str, Any]

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_FILE = "kubelet-client-current.pem"
POLL_SECONDS = 1.0
DEFAULT_WAIT_SECONDS = 900.0
RENEW_BEFORE = datetime.timedelta(minutes=5)  # a certificate this close to expiry is not worth starting with
ROTATE_AT = 0.8  # fraction of the lifetime after which the kubelet renews its client certificate
ROTATE_RETRY_SECONDS = 30.0


class BootstrapError(RuntimeError):
    """The node could not get a client certificate; the message says at which step."""


def node_subject(node_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
        ]
    )


def _load_yaml(path: Path) -> Object:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise KubeconfigError(f"kubeconfig {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise KubeconfigError(f"kubeconfig {path}: not YAML: {err}") from None
    if not isinstance(config, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a Config object")
    return config


def current_certificate_ok(kubeconfig: Path, node_name: str) -> bool:
    """Whether `kubeconfig` exists and names a client certificate for this node that is still valid."""
    if not kubeconfig.exists():
        return False
    try:
        config = _load_yaml(kubeconfig)
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        cert_path = kubeconfig.parent / user["client-certificate"]
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (KubeconfigError, KeyError, StopIteration, TypeError, OSError, ValueError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return certificate.subject == node_subject(node_name) and (
        certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc - RENEW_BEFORE
    )


def _cluster_of(bootstrap: Path) -> Object:
    """The bootstrap kubeconfig's cluster entry (server, CA), with a file CA inlined as data."""
    config = _load_yaml(bootstrap)
    try:
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = dict(next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"]))
    except (KeyError, StopIteration, TypeError):
        raise KubeconfigError(f"kubeconfig {bootstrap}: no usable current context and cluster") from None
    if cluster.get("certificate-authority"):
        ca_path = bootstrap.parent / cluster.pop("certificate-authority")
        try:
            cluster["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
        except OSError as err:
            raise KubeconfigError(f"kubeconfig {bootstrap}: certificate-authority {ca_path}: {err}") from None
    return cluster


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def csr_object(node_name: str, key: ec.EllipticCurvePrivateKey) -> Object:
    """The CertificateSigningRequest a kubelet sends; its name is a digest of key and subject, as upstream's."""
    request = x509.CertificateSigningRequestBuilder().subject_name(node_subject(node_name)).sign(key, hashes.SHA256())
    pem = request.public_bytes(serialization.Encoding.PEM)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(public + node_name.encode()).hexdigest()[:40]
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": f"node-csr-{digest}"},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }


async def _wait_for_certificate(client: Client, name: str, wait_seconds: float) -> bytes:
    """Poll the CSR until it is signed; Denied or Failed end the wait with BootstrapError."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        csr = await client.get("certificatesigningrequests", name)
        status = csr.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Denied", "Failed") and condition.get("status", "True") == "True":
                raise BootstrapError(
                    f"CSR {name} was {condition['type'].lower()}: {condition.get('reason', '')} "
                    f"{condition.get('message', '')}".strip()
                )
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        if asyncio.get_running_loop().time() > deadline:
            raise BootstrapError(
                f"CSR {name} was not signed within {wait_seconds:.0f}s: is the controller manager running with "
                "--cluster-signing-cert-file, and may this bootstrap token create node CSRs?"
            )
        await asyncio.sleep(POLL_SECONDS)


def _new_key_and_request(node_name: str) -> tuple[ec.EllipticCurvePrivateKey, Object]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, csr_object(node_name, key)


async def _submit(client: Client, body: Object) -> None:
    name = body["metadata"]["name"]
    try:
        await client.create("certificatesigningrequests", body)
    except ApiError as err:
        if err.code != 409:
            raise BootstrapError(f"cannot create CSR {name}: {err}") from None
        await client.delete("certificatesigningrequests", name)  # a leftover of an earlier attempt
        await client.create("certificatesigningrequests", body)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def rotation_deadline(certificate: x509.Certificate, fraction: float = ROTATE_AT) -> datetime.datetime:
    """When to renew: at `fraction` of the certificate's lifetime (upstream picks 70-90%)."""
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return certificate.not_valid_before_utc + lifetime * fraction


async def renew_client_certificate(client: Client, node_name: str, client_file: Path, wait_seconds: float) -> None:
    """Replace the node's client certificate with a new one, asked for with the current one (self renewal).

    The new key and certificate go to `client_file` and into the client's TLS
    context, so the connections it opens from now on present them.
    """
    key, body = _new_key_and_request(node_name)
    await _submit(client, body)
    try:
        certificate = await _wait_for_certificate(client, body["metadata"]["name"], wait_seconds)
    except ApiError as err:
        raise BootstrapError(f"cannot read CSR {body['metadata']['name']}: {err}") from None
    _write(client_file, certificate + _key_pem(key), 0o600)
    if client.ssl_context is not None:
        client.ssl_context.load_cert_chain(client_file, client_file)
    log.info("client certificate rotated", extra={"node": node_name})


async def rotate_forever(client: Client, node_name: str, client_file: Path) -> None:
    """Renew the client certificate each time it reaches its rotation deadline (the kubelet's --rotate-certificates)."""
    while True:
        certificate = x509.load_pem_x509_certificate(client_file.read_bytes())
        wait = (rotation_deadline(certificate) - datetime.datetime.now(datetime.UTC)).total_seconds()
        await asyncio.sleep(max(wait, 0.0))
        try:
            await renew_client_certificate(client, node_name, client_file, DEFAULT_WAIT_SECONDS)
        except (BootstrapError, ApiError) as err:
            log.warning("client certificate rotation failed; retrying in %ss: %s", ROTATE_RETRY_SECONDS, err)
            await asyncio.sleep(ROTATE_RETRY_SECONDS)


async def bootstrap_client_certificate(
    node_name: str,
    bootstrap_kubeconfig: Path,
    kubeconfig: Path,
    cert_dir: Path,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> bool:
    """Make sure `kubeconfig` holds a valid client certificate for this node; True if one was obtained now."""
    if current_certificate_ok(kubeconfig, node_name):
        return False
    cluster = _cluster_of(bootstrap_kubeconfig)
    key, body = _new_key_and_request(node_name)
    name = body["metadata"]["name"]
    async with Client.from_kubeconfig(bootstrap_kubeconfig, user_agent=f"kubelet/{node_name} bootstrap") as client:
        try:
            await _submit(client, body)
        except BootstrapError as err:
            raise BootstrapError(f"{err} (with the bootstrap credentials)") from None
        log.info("sent certificate signing request", extra={"csr": name, "node": node_name})
        try:
            certificate = await _wait_for_certificate(client, name, wait_seconds)
        except ApiError as err:
            raise BootstrapError(f"cannot read CSR {name}: {err}") from None
    client_file = cert_dir / CLIENT_FILE
    _write(client_file, certificate + _key_pem(key), 0o600)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "users": [
            {
                "name": "default-auth",
                "user": {"client-certificate": str(client_file.resolve()), "client-key": str(client_file.resolve())},
            }
        ],
        "contexts": [{"name": "default-context", "context": {"cluster": "default-cluster", "user": "default-auth"}}],
        "current-context": "default-context",
    }
    _write(kubeconfig, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)
    log.info("client certificate obtained", extra={"node": node_name, "kubeconfig": str(kubeconfig)})
    return True
