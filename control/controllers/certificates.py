"""CertificateSigningRequests: approve kubelet client certificates, sign approved requests with the cluster CA.

The approver is upstream's csrapproving for kubelets: a CSR for signer
`kubernetes.io/kube-apiserver-client-kubelet` whose subject is exactly
`CN=system:node:<name>, O=system:nodes` (no SANs, client usages only) is
approved when it comes from a bootstrap token (a new node joining) or from
that same node renewing its own certificate.  Upstream asks a
SubjectAccessReview whether the requester may create
`certificatesigningrequests/nodeclient` (`selfnodeclient`), which kubeadm
grants to exactly these groups; here the groups are checked directly.

The signer is upstream's csrsigning: every approved, not yet failed or
signed request for one of the built-in signers is checked against that
signer's rules and signed with `--cluster-signing-cert-file/-key-file`,
for `--cluster-signing-duration` or the request's `expirationSeconds`
(whichever is shorter, never past the CA's own expiry).
"""

from __future__ import annotations

import base64
import datetime
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from control.api.errors import ApiError
from control.api.resources import resource
from control.api.timestamps import now_rfc3339
from control.client import Client, Informer, Object, name_of
from control.controllers.base import Controller

log = logging.getLogger(__name__)

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
MASTERS_GROUP = "system:masters"
DEFAULT_SIGNING_DURATION = 365 * 24 * 3600.0  # --cluster-signing-duration 8760h
MIN_EXPIRATION_SECONDS = 600
BACKDATE = datetime.timedelta(minutes=5)  # tolerate skewed clocks, as upstream's signer does

KUBELET_CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})
KUBELET_SERVING_USAGES = frozenset({"digital signature", "key encipherment", "server auth"})
CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})
SIGNERS = (KUBELET_CLIENT_SIGNER, CLIENT_SIGNER, KUBELET_SERVING_SIGNER)


class SigningError(ValueError):
    """A request its signer refuses; the message says why (the CSR's Failed condition)."""


def parse_request(csr: Object) -> x509.CertificateSigningRequest:
    """The PKCS#10 request of a CSR object (`spec.request`: base64 of the PEM)."""
    try:
        pem = base64.b64decode((csr.get("spec") or {}).get("request") or "", validate=True)
        request = x509.load_pem_x509_csr(pem)
    except ValueError as err:
        raise SigningError(f"spec.request is not a PEM certificate request: {err}") from None
    if not request.is_signature_valid:
        raise SigningError("spec.request carries an invalid signature")
    return request


def _names(request: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in request.subject.get_attributes_for_oid(oid)]


def _san_count(request: x509.CertificateSigningRequest) -> int:
    try:
        return len(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return 0


def is_node_client_request(csr: Object, request: x509.CertificateSigningRequest) -> bool:
    """A kubelet client certificate request: CN=system:node:<name>, O=system:nodes, client usages, no SANs."""
    spec = csr.get("spec") or {}
    common = _names(request, NameOID.COMMON_NAME)
    return (
        spec.get("signerName") == KUBELET_CLIENT_SIGNER
        and len(common) == 1
        and common[0].startswith(NODE_USER_PREFIX)
        and len(common[0]) > len(NODE_USER_PREFIX)
        and _names(request, NameOID.ORGANIZATION_NAME) == [NODES_GROUP]
        and _san_count(request) == 0
        and set(spec.get("usages") or []) <= KUBELET_CLIENT_USAGES
        and "client auth" in (spec.get("usages") or [])
    )


def approval_reason(csr: Object, request: x509.CertificateSigningRequest) -> str | None:
    """The approval message for an acceptable kubelet client CSR, None when it is not one to auto-approve."""
    if not is_node_client_request(csr, request):
        return None
    spec = csr.get("spec") or {}
    groups = set(spec.get("groups") or [])
    if spec.get("username") == _names(request, NameOID.COMMON_NAME)[0] and NODES_GROUP in groups:
        return "Auto approving self kubelet client certificate after SubjectAccessReview."
    if MASTERS_GROUP in groups or any(
        g == BOOTSTRAPPERS_GROUP or g.startswith(BOOTSTRAPPERS_GROUP + ":") for g in groups
    ):
        return "Auto approving kubelet client certificate after SubjectAccessReview."
    return None


def _condition(csr: Object, kind: str) -> Object | None:
    for cond in (csr.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status", "True") == "True":
            return cond
    return None


def is_decided(csr: Object) -> bool:
    return _condition(csr, "Approved") is not None or _condition(csr, "Denied") is not None


# -- signing -----------------------------------------------------------------

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class ClusterSigner:
    """The cluster CA that signs approved requests."""

    certificate: x509.Certificate
    key: SigningKey
    duration: float = DEFAULT_SIGNING_DURATION

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path, duration: float) -> ClusterSigner:
        """Load `--cluster-signing-cert-file/--cluster-signing-key-file`; ValueError names the bad file."""
        try:
            certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        except (OSError, ValueError) as err:
            raise ValueError(f"--cluster-signing-cert-file {cert_file}: {err}") from None
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"--cluster-signing-key-file {key_file}: {err}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError(f"--cluster-signing-key-file {key_file}: unsupported key type")
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public != certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ValueError(f"--cluster-signing-key-file {key_file} does not belong to {cert_file}")
        if duration <= 0:
            raise ValueError(f"--cluster-signing-duration must be positive, got {duration}")
        return cls(certificate, key, duration)

    def sign(self, csr: Object, now: datetime.datetime | None = None) -> str:
        """The PEM certificate for an approved CSR object; SigningError when its signer's rules refuse it."""
        spec = csr.get("spec") or {}
        request = parse_request(csr)
        usages = set(spec.get("usages") or [])
        check_signer_rules(spec.get("signerName", ""), request, usages)
        now = now or datetime.datetime.now(datetime.UTC)
        seconds = self.duration
        requested = spec.get("expirationSeconds")
        if isinstance(requested, int) and not isinstance(requested, bool):
            seconds = min(seconds, max(requested, MIN_EXPIRATION_SECONDS))
        not_after = min(now + datetime.timedelta(seconds=seconds), self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(self.certificate.subject)
            .public_key(request.public_key())  # type: ignore[arg-type]
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(usages), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.certificate.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        extended = [oid for usage, oid in _EXTENDED.items() if usage in usages]
        if extended:
            builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        try:
            sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            builder = builder.add_extension(sans, critical=False)
        except x509.ExtensionNotFound:
            pass
        algorithm = None if isinstance(self.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        certificate = builder.sign(self.key, algorithm)  # type: ignore[arg-type]
        return certificate.public_bytes(serialization.Encoding.PEM).decode()


_EXTENDED = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH}


def _key_usage(usages: set[str]) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature="digital signature" in usages,
        content_commitment=False,
        key_encipherment="key encipherment" in usages,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def check_signer_rules(signer: str, request: x509.CertificateSigningRequest, usages: set[str]) -> None:
    """Upstream's per-signer restrictions; SigningError says which one the request breaks."""
    if signer not in SIGNERS:
        raise SigningError(f"signer {signer!r} is not one this controller signs for")
    common = _names(request, NameOID.COMMON_NAME)
    if signer in (KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER):
        if len(common) != 1 or not common[0].startswith(NODE_USER_PREFIX):
            raise SigningError(f'subject common name must begin with "{NODE_USER_PREFIX}"')
        if _names(request, NameOID.ORGANIZATION_NAME) != [NODES_GROUP]:
            raise SigningError(f'subject organization must be exactly "{NODES_GROUP}"')
    if signer == KUBELET_CLIENT_SIGNER:
        allowed = KUBELET_CLIENT_USAGES
        if _san_count(request):
            raise SigningError("kubelet client certificates may not carry subject alternative names")
    elif signer == KUBELET_SERVING_SIGNER:
        allowed = KUBELET_SERVING_USAGES
        if not _san_count(request):
            raise SigningError("kubelet serving certificates need at least one DNS or IP subject alternative name")
    else:
        allowed = CLIENT_USAGES
    if not usages or not usages <= allowed:
        raise SigningError(f"usages {sorted(usages)} are not a subset of {sorted(allowed)} for signer {signer}")


# -- the controllers -----------------------------------------------------------


def _with_condition(csr: Object, kind: str, reason: str, message: str) -> Object:
    stamp = now_rfc3339()
    status = dict(csr.get("status") or {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    conditions.append(
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    return {**csr, "status": {**status, "conditions": conditions}}


class CSRApprovingController(Controller):
    """Approves kubelet client certificate requests from joining nodes and from nodes renewing their own."""

    name = "csrapproving"

    def __init__(self, client: Client, csrs: Informer):
        super().__init__()
        self.client = client
        self.csrs = csrs
        csrs.add_handler(self._on_csr)

    def all_keys(self) -> Iterable[str]:
        return [name_of(c) for c in self.csrs.items() if not is_decided(c)]

    def _on_csr(self, kind: str, csr: Object, _prev: Object | None) -> None:
        if kind != "DELETED" and not is_decided(csr):
            self.queue.add(name_of(csr))

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or is_decided(csr) or (csr.get("status") or {}).get("certificate"):
            return
        try:
            request = parse_request(csr)
        except SigningError:
            return  # not ours to judge; the signer marks it Failed once someone approves it
        message = approval_reason(csr, request)
        if message is None:
            return
        approved = _with_condition(csr, "Approved", "AutoApproved", message)
        await _put(self.client, approved, "approval")
        log.info("approved CSR %s for %s", key, (csr.get("spec") or {}).get("username"))


class CSRSigningController(Controller):
    """Signs approved requests for the built-in signers with the cluster CA."""

    name = "csrsigning"

    def __init__(self, client: Client, csrs: Informer, signer: ClusterSigner, now: Callable[[], Any] | None = None):
        super().__init__()
        self.client = client
        self.csrs = csrs
        self.signer = signer
        self.now = now
        csrs.add_handler(self._on_csr)

    def all_keys(self) -> Iterable[str]:
        return [name_of(c) for c in self.csrs.items() if self._wants_signing(c)]

    def _on_csr(self, kind: str, csr: Object, _prev: Object | None) -> None:
        if kind != "DELETED" and self._wants_signing(csr):
            self.queue.add(name_of(csr))

    @staticmethod
    def _wants_signing(csr: Object) -> bool:
        return (
            (csr.get("spec") or {}).get("signerName") in SIGNERS
            and _condition(csr, "Approved") is not None
            and _condition(csr, "Denied") is None
            and _condition(csr, "Failed") is None
            and not (csr.get("status") or {}).get("certificate")
        )

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or not self._wants_signing(csr):
            return
        try:
            pem = self.signer.sign(csr, self.now() if self.now else None)
        except SigningError as err:
            failed = _with_condition(csr, "Failed", "SignerValidationFailure", str(err))
            await _put(self.client, failed, "status")
            log.info("CSR %s failed: %s", key, err)
            return
        certificate = base64.b64encode(pem.encode()).decode()
        signed = {**csr, "status": {**(csr.get("status") or {}), "certificate": certificate}}
        await _put(self.client, signed, "status")
        log.info("signed CSR %s", key)


async def _put(client: Client, csr: Object, subresource: str) -> None:
    """PUT the CSR to a subresource; a stale copy (409) or a deleted CSR (404) waits for the next event."""
    path = resource("certificatesigningrequests").path(None, name_of(csr), subresource)
    try:
        await client.request("PUT", path, body=csr)
    except ApiError as err:
        if err.code not in (404, 409):
            raise
