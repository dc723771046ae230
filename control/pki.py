"""The cluster's certificate authority and the certificates and keys it signs.

One CA (`ca.crt`/`ca.key`) signs every serving and client certificate, as
kubeadm lays out `/etc/kubernetes/pki`. Each `ensure_*` function is idempotent:
a file that is still valid for what is asked (same CA, subject, names, usage,
not about to expire) is kept, so a second bring-up changes nothing; anything
else is (re)made. Keys are written mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
CA_COMMON_NAME = "kubernetes"
CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)  # a certificate closer than this to expiry is remade
SA_KEY_BITS = 2048

SERVER = "server"
CLIENT = "client"
USAGES = {SERVER: ExtendedKeyUsageOID.SERVER_AUTH, CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH}

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PKIError(Exception):
    """A certificate request that cannot be met (bad name, bad address)."""


@dataclass(frozen=True)
class CertSpec:
    """What a certificate says: subject (CN, O), subject alternative names, and client/server usage."""

    common_name: str
    organizations: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # IP addresses and DNS names
    usages: tuple[str, ...] = (CLIENT,)

    def __post_init__(self) -> None:
        if not self.common_name:
            raise PKIError("a certificate needs a common name")
        unknown = [u for u in self.usages if u not in USAGES]
        if unknown:
            raise PKIError(f"unknown certificate usage {unknown[0]!r} (known: {', '.join(USAGES)})")


@dataclass(frozen=True)
class CertPaths:
    """Where a certificate and its key live."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CA:
    """The loaded cluster CA: its certificate (to verify and to name the issuer) and its key (to sign)."""

    paths: CertPaths
    certificate: x509.Certificate
    key: Key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    """ECDSA P-256: fast to make, accepted by OpenSSL, Go (etcd, kubectl) and Python alike."""
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> Key:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PKIError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or " " in host:
                raise PKIError(f"invalid certificate host name {host!r}") from None
            names.append(x509.DNSName(host))
    return names


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_before_utc <= _now() and cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def ensure_ca(pki_dir: Path) -> CA:
    """Load the cluster CA from `pki_dir`, or create it (self-signed, 10 years) if missing or expired."""
    paths = CertPaths(pki_dir / f"{CA_NAME}.crt", pki_dir / f"{CA_NAME}.key")
    if paths.cert.exists() and paths.key.exists():
        cert, key = load_certificate(paths.cert), _load_key(paths.key)
        if _fresh(cert) and _public_bytes(cert.public_key()) == _public_bytes(key.public_key()):
            return CA(paths, cert, key)
    key = _new_key()
    name = _name(CA_COMMON_NAME)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(paths.key, _key_pem(key), private=True)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return CA(paths, cert, key)


def _matches(cert: x509.Certificate, key: Key, ca: CA, spec: CertSpec) -> bool:
    """Is this existing certificate what `spec` asks for, signed by this CA and still fresh?"""
    if cert.subject != _name(spec.common_name, spec.organizations) or cert.issuer != ca.certificate.subject:
        return False
    if not _fresh(cert) or _public_bytes(cert.public_key()) != _public_bytes(key.public_key()):
        return False
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (InvalidSignature, ValueError, TypeError):
        return False
    try:
        sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = set()
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    return sans == set(_alt_names(spec.hosts)) and usages == {USAGES[u] for u in spec.usages}


def ensure_cert(pki_dir: Path, ca: CA, name: str, spec: CertSpec) -> CertPaths:
    """`<pki_dir>/<name>.crt` and `.key` as `spec` says, signed by `ca`; kept if already so."""
    if not name or "/" in name:
        raise PKIError(f"invalid certificate file name {name!r}")
    paths = CertPaths(pki_dir / f"{name}.crt", pki_dir / f"{name}.key")
    if paths.cert.exists() and paths.key.exists():
        if _matches(load_certificate(paths.cert), _load_key(paths.key), ca, spec):
            return paths
    alt_names = _alt_names(spec.hosts)
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organizations))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([USAGES[u] for u in spec.usages]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,  # type: ignore[arg-type]
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    _write(paths.key, _key_pem(key), private=True)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return paths


def ensure_key_pair(pki_dir: Path, name: str = "sa") -> CertPaths:
    """An RSA signing key pair `<name>.key` / `<name>.pub` (service-account tokens are RS256); kept if present."""
    paths = CertPaths(pki_dir / f"{name}.pub", pki_dir / f"{name}.key")
    if paths.key.exists() and paths.cert.exists():
        key = _load_key(paths.key)
        public = serialization.load_pem_public_key(paths.cert.read_bytes())
        if isinstance(key, rsa.RSAPrivateKey) and _public_bytes(public) == _public_bytes(key.public_key()):
            return paths
    key = rsa.generate_private_key(public_exponent=65537, key_size=SA_KEY_BITS)
    _write(paths.key, _key_pem(key), private=True)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(paths.cert, public_pem, private=False)
    return paths


def subject_of(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(CN, O values) of a certificate: Kubernetes' user name and groups for a client certificate."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else ""), tuple(str(o.value) for o in orgs)


# -- the cluster's identities (security contract of issue 9) ---------------------------------

ADMIN = CertSpec("kubernetes-admin", ("system:masters",))
SCHEDULER = CertSpec("system:kube-scheduler")
CONTROLLER_MANAGER = CertSpec("system:kube-controller-manager")
KUBE_DNS = CertSpec("system:kube-dns")
APISERVER_KUBELET_CLIENT = CertSpec("kube-apiserver-kubelet-client", ("system:masters",))
APISERVER_ETCD_CLIENT = CertSpec("kube-apiserver-etcd-client")


def node_client(node: str) -> CertSpec:
    """A node's identity, used by its kubelet and its kproxy."""
    return CertSpec(f"system:node:{node}", ("system:nodes",))


def apiserver_serving(ips: tuple[str, ...], service_ip: str, cluster_domain: str = "cluster.local") -> CertSpec:
    """The API server's serving certificate, valid for every name a client may use to reach it."""
    dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{cluster_domain}")
    return CertSpec("kube-apiserver", (), (*ips, service_ip, *dns, "localhost", "127.0.0.1"), (SERVER,))


def etcd_serving(*ips: str) -> CertSpec:
    """etcd's certificate for clients and, in a multi-member cluster, its peers: valid for every member's IP."""
    return CertSpec("etcd-server", (), ("127.0.0.1", *ips, "localhost"), (SERVER, CLIENT))


def kubelet_serving(node: str, ip: str) -> CertSpec:
    return CertSpec(f"system:node:{node}", ("system:nodes",), (ip, node), (SERVER,))
