"""Service accounts in the API server: bound tokens, their authenticator, and pod admission.

Tokens are Kubernetes' bound service-account tokens: RS256 JWTs signed with
`--service-account-signing-key-file`, issued by the TokenRequest
subresource (`serviceaccounts/<name>/token`) and verified with the keys of
`--service-account-key-file`.  A token names its service account and,
when bound, the pod (or Secret) it was issued for; it stops working when
it expires or when either of them is deleted, as upstream's validator
checks.  Pod admission does what upstream's ServiceAccount admission
plugin does: default `spec.serviceAccountName` and add the projected
`kube-api-access-*` volume that the kubelet fills with a token, the
cluster CA and the namespace.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from control.api import errors
from control.api.errors import ApiError
from control.api.resources import resource
from control.apiserver.authn import AUTHENTICATED_GROUP, TokenAuthenticator, UserInfo
from control.apiserver.registry import Registry

log = logging.getLogger(__name__)

Object = dict[str, Any]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600  # upstream: "may not specify a duration less than 10 minutes"
MAX_EXPIRATION_SECONDS = 1 << 32
ADMISSION_EXPIRATION_SECONDS = 3607  # what upstream's admission plugin writes into the projected volume
NOT_BEFORE_LEEWAY = 60.0  # clock skew tolerated between token issuers and this server
DELETED_POD_GRACE = 60.0  # a pod being deleted keeps its token valid this long, as upstream
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS = "system:serviceaccounts"
BOUND_KINDS = ("Pod", "Secret")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The `kid` header: base64url(SHA-256 of the DER public key), as the kube-apiserver derives it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


def load_signing_key(path: Path) -> rsa.RSAPrivateKey:
    """The private key of `--service-account-signing-key-file` (PEM, RSA)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise KeyFileError(f"--service-account-signing-key-file {path}: {err}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"--service-account-signing-key-file {path}: only RSA keys are supported (RS256)")
    return key


def load_public_keys(paths: Iterable[Path]) -> list[rsa.RSAPublicKey]:
    """Every RSA public key in the `--service-account-key-file` files (public keys, private keys or certificates)."""
    keys: list[rsa.RSAPublicKey] = []
    for path in paths:
        try:
            text = path.read_bytes()
        except OSError as err:
            raise KeyFileError(f"--service-account-key-file {path}: {err}") from None
        found = []
        for block in _pem_blocks(text):
            found.append(_public_key_of(block, path))
        if not found:
            raise KeyFileError(f"--service-account-key-file {path}: no PEM public key, private key or certificate")
        keys += found
    return keys


def _pem_blocks(text: bytes) -> list[bytes]:
    blocks, current = [], []
    for line in text.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN "):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith(b"-----END "):
                blocks.append(b"".join(current))
                current = []
    return blocks


def _public_key_of(block: bytes, path: Path) -> rsa.RSAPublicKey:
    key: Any
    try:
        if b"CERTIFICATE" in block.splitlines()[0]:
            key = x509.load_pem_x509_certificate(block).public_key()
        elif b"PRIVATE KEY" in block.splitlines()[0]:
            key = serialization.load_pem_private_key(block, password=None).public_key()
        else:
            key = serialization.load_pem_public_key(block)
    except (ValueError, TypeError) as err:
        raise KeyFileError(f"--service-account-key-file {path}: {err}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFileError(f"--service-account-key-file {path}: only RSA keys are supported (RS256)")
    return key


def sign_jwt(claims: Object, private_key: rsa.RSAPrivateKey) -> str:
    """A compact RS256 JWS of the claims, with the key's `kid`."""
    header = {"alg": "RS256", "kid": key_id(private_key.public_key())}
    signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}." + _b64url(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def verified_claims(token: str, public_keys: Iterable[rsa.RSAPublicKey]) -> Object | None:
    """The claims of an RS256 JWT signed by one of the keys; None for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url_decode(parts[0]))
        signature = _b64url_decode(parts[2])
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        return None
    signed = f"{parts[0]}.{parts[1]}".encode()
    for key in public_keys:
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return claims
    return None


def service_account_username(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return (ALL_SERVICE_ACCOUNTS, f"{ALL_SERVICE_ACCOUNTS}:{namespace}")


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid_request(name: str, path: str, why: str) -> ApiError:
    return errors.invalid("TokenRequest", name, [(path, "FieldValueInvalid", why)], "authentication.k8s.io")


@dataclass(frozen=True)
class ServiceAccountConfig:
    """The API server's service-account flags."""

    issuer: str = DEFAULT_ISSUER  # --service-account-issuer
    key_files: tuple[Path, ...] = ()  # --service-account-key-file (repeatable)
    signing_key_file: Path | None = None  # --service-account-signing-key-file
    api_audiences: tuple[str, ...] = ()  # --api-audiences; default: the issuer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """kube-apiserver's service-account flags, by their upstream names."""
    parser.add_argument(
        "--service-account-issuer", default=DEFAULT_ISSUER, help="`iss` of issued tokens, and the one accepted"
    )
    parser.add_argument(
        "--service-account-key-file",
        action="append",
        default=[],
        help="PEM public keys (or private keys, certificates) that verify service-account tokens; repeatable",
    )
    parser.add_argument(
        "--service-account-signing-key-file",
        default="",
        help="PEM RSA private key that signs service-account tokens; without it there is no TokenRequest API",
    )
    parser.add_argument(
        "--api-audiences", default="", help="comma-separated audiences tokens must carry (default: the issuer)"
    )


def config_from_args(args: argparse.Namespace) -> ServiceAccountConfig:
    """The flags as a config; KeyFileError names a key file that does not load."""
    config = ServiceAccountConfig(
        issuer=args.service_account_issuer,
        key_files=tuple(Path(p) for p in args.service_account_key_file),
        signing_key_file=Path(args.service_account_signing_key_file) if args.service_account_signing_key_file else None,
        api_audiences=tuple(a.strip() for a in args.api_audiences.split(",") if a.strip()),
    )
    if not config.issuer:
        raise KeyFileError("--service-account-issuer must not be empty")
    if config.signing_key_file is not None:
        load_signing_key(config.signing_key_file)
    load_public_keys(config.key_files)
    return config


@dataclass
class ServiceAccountTokens:
    """Issues and verifies bound service-account tokens against the objects in the registry.

    `signing_key` None means no TokenRequest API (no
    `--service-account-signing-key-file`): tokens are only verified, and
    pod admission adds no token volume (the kubelet could not fill it).
    """

    registry: Registry
    public_keys: list[rsa.RSAPublicKey]
    signing_key: rsa.RSAPrivateKey | None = None
    issuer: str = DEFAULT_ISSUER
    audiences: tuple[str, ...] = ()  # --api-audiences; default: the issuer
    now: Callable[[], float] = time.time
    accepted_issuers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        self.audiences = self.audiences or (self.issuer,)
        self.accepted_issuers = self.accepted_issuers or (self.issuer,)

    @classmethod
    def from_config(cls, registry: Registry, config: ServiceAccountConfig) -> ServiceAccountTokens:
        """Load the keys the flags name; KeyFileError names a file that cannot be used."""
        signing_key = load_signing_key(config.signing_key_file) if config.signing_key_file else None
        public_keys = load_public_keys(config.key_files)
        if signing_key is not None:
            public_keys.append(signing_key.public_key())
        return cls(registry, public_keys, signing_key, config.issuer, config.api_audiences)

    @property
    def can_issue(self) -> bool:
        return self.signing_key is not None

    # -- TokenRequest ------------------------------------------------------

    async def token_request(self, namespace: str, name: str, body: Any) -> Object:
        """POST serviceaccounts/<name>/token: a TokenRequest with `status.token` filled."""
        if self.signing_key is None:
            raise errors.not_found("serviceaccounts/token", name)
        request = self._check_token_request(name, body)
        spec = request["spec"]
        account = await self.registry.get(resource("serviceaccounts"), namespace, name)
        bound = await self._bound_object(namespace, name, spec.get("boundObjectRef"))
        issued = int(self.now())
        expires = issued + int(spec["expirationSeconds"])
        private: Object = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]},
        }
        if bound is not None:
            kind, obj = bound
            private[kind.lower()] = {"name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
            if kind == "Pod":
                node = await self._node_of(obj)
                if node is not None:
                    private["node"] = node
        claims = {
            "aud": list(spec["audiences"]),
            "exp": expires,
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": issued,
            "sub": service_account_username(namespace, name),
        }
        token = sign_jwt(claims, self.signing_key)
        log.info(
            "issued service account token",
            extra={"serviceaccount": f"{namespace}/{name}", "jti": claims["jti"], "expires": _rfc3339(expires)},
        )
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": _rfc3339(issued)},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": _rfc3339(expires)},
        }

    def _check_token_request(self, name: str, body: Any) -> Object:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise errors.bad_request("the body of a serviceaccounts/token request must be a TokenRequest object")
        if body.get("kind") not in (None, "TokenRequest"):
            raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match TokenRequest")
        request = copy.deepcopy(body)
        spec = request.setdefault("spec", {})
        if not isinstance(spec, dict):
            raise errors.bad_request("TokenRequest spec must be an object")
        audiences = spec.get("audiences") or list(self.audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            raise _invalid_request(name, "spec.audiences", f"Invalid value: {json.dumps(audiences)}: must be strings")
        spec["audiences"] = audiences
        seconds = spec.get("expirationSeconds")
        if seconds is None:
            seconds = DEFAULT_EXPIRATION_SECONDS
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise _invalid_request(name, "spec.expirationSeconds", f"Invalid value: {json.dumps(seconds)}")
        if seconds < MIN_EXPIRATION_SECONDS:
            raise _invalid_request(
                name,
                "spec.expirationSeconds",
                f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
            )
        if seconds > MAX_EXPIRATION_SECONDS:
            raise _invalid_request(
                name,
                "spec.expirationSeconds",
                f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds",
            )
        spec["expirationSeconds"] = seconds
        ref = spec.get("boundObjectRef")
        if ref is not None:
            if not isinstance(ref, dict):
                raise _invalid_request(name, "spec.boundObjectRef", "Invalid value: must be an object")
            if ref.get("kind") not in BOUND_KINDS:
                raise errors.invalid(
                    "TokenRequest",
                    name,
                    [
                        (
                            "spec.boundObjectRef.kind",
                            "FieldValueNotSupported",
                            f'Unsupported value: "{ref.get("kind")}": supported values: "Pod", "Secret"',
                        )
                    ],
                    "authentication.k8s.io",
                )
            if ref.get("apiVersion", "v1") != "v1":
                raise _invalid_request(
                    name, "spec.boundObjectRef.apiVersion", f'Invalid value: "{ref.get("apiVersion")}": must be v1'
                )
            if not ref.get("name"):
                raise errors.invalid(
                    "TokenRequest",
                    name,
                    [("spec.boundObjectRef.name", "FieldValueRequired", "Required value")],
                    "authentication.k8s.io",
                )
        return request

    async def _bound_object(self, namespace: str, account: str, ref: Object | None) -> tuple[str, Object] | None:
        if ref is None:
            return None
        kind = ref["kind"]
        plural = "pods" if kind == "Pod" else "secrets"
        obj = await self.registry.get(resource(plural), namespace, ref["name"])
        uid = obj["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(
                plural,
                ref["name"],
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName") != account:
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{account}" to pod running with different serviceaccount name.'
            )
        return kind, obj

    async def _node_of(self, pod: Object) -> Object | None:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            return None
        try:
            node = await self.registry.get(resource("nodes"), None, node_name)
        except ApiError as err:
            if err.code == 404:
                return None
            raise
        return {"name": node_name, "uid": node["metadata"]["uid"]}

    # -- the authenticator ---------------------------------------------------

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        """The service account a valid token names; None for tokens that are not (or no longer) valid.

        The token must be meant for one of `audiences` (default: this API server's).
        """
        claims = verified_claims(token, self.public_keys)
        if claims is None or claims.get("iss") not in self.accepted_issuers:
            return None
        why = self._claims_problem(claims, audiences or self.audiences)
        if why is None:
            why = await self._binding_problem(claims)
        if why is not None:
            log.info("service account token rejected", extra={"reason": why, "jti": claims.get("jti", "")})
            return None
        private = claims["kubernetes.io"]
        namespace, account = private["namespace"], private["serviceaccount"]
        extra: dict[str, tuple[str, ...]] = {}
        if isinstance(private.get("pod"), dict):
            extra["authentication.kubernetes.io/pod-name"] = (private["pod"]["name"],)
            extra["authentication.kubernetes.io/pod-uid"] = (private["pod"]["uid"],)
        if isinstance(private.get("node"), dict):
            extra["authentication.kubernetes.io/node-name"] = (private["node"]["name"],)
            extra["authentication.kubernetes.io/node-uid"] = (private["node"]["uid"],)
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = (f"JTI={claims['jti']}",)
        return UserInfo(
            service_account_username(namespace, account["name"]),
            service_account_groups(namespace),
            account["uid"],
            extra,
        )

    def _claims_problem(self, claims: Object, wanted: tuple[str, ...]) -> str | None:
        now = self.now()
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict) or not isinstance(private.get("serviceaccount"), dict):
            return "no kubernetes.io service account claim"
        namespace, account = private.get("namespace"), private["serviceaccount"]
        if not namespace or not account.get("name") or not account.get("uid"):
            return "incomplete kubernetes.io claim"
        if claims.get("sub") != service_account_username(namespace, account["name"]):
            return "sub does not name the service account of the kubernetes.io claim"
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if not isinstance(exp, int | float) or now >= exp:
            return "token has expired"
        if not isinstance(nbf, int | float) or now + NOT_BEFORE_LEEWAY < nbf:
            return "token is not valid yet"
        audiences = claims.get("aud")
        if isinstance(audiences, str):
            audiences = [audiences]
        if not isinstance(audiences, list) or not set(audiences) & set(wanted):
            return "token audiences do not include this API server"
        return None

    async def _binding_problem(self, claims: Object) -> str | None:
        """Whether the service account and the bound object still exist with the uids the token names."""
        private = claims["kubernetes.io"]
        namespace = private["namespace"]
        account = await self._get("serviceaccounts", namespace, private["serviceaccount"]["name"])
        if account is None or account["metadata"]["uid"] != private["serviceaccount"]["uid"]:
            return f"service account {namespace}/{private['serviceaccount']['name']} no longer exists"
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            ref = private.get(kind)
            if not isinstance(ref, dict):
                continue
            obj = await self._get(plural, namespace, str(ref.get("name", "")))
            if obj is None or obj["metadata"]["uid"] != ref.get("uid"):
                return f"bound {kind} {namespace}/{ref.get('name')} no longer exists"
            deleting = obj["metadata"].get("deletionTimestamp")
            if deleting and _epoch(deleting) + DELETED_POD_GRACE < self.now():
                return f"bound {kind} {namespace}/{ref.get('name')} is being deleted"
        return None

    async def _get(self, plural: str, namespace: str, name: str) -> Object | None:
        try:
            return await self.registry.get(resource(plural), namespace, name)
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    # -- TokenReview -----------------------------------------------------------

    async def review(self, body: Any, chain: Sequence[TokenAuthenticator]) -> Object:
        """POST tokenreviews: who the bearer token authenticates as, through the API server's token authenticators.

        With `spec.audiences` a service-account token must be meant for one
        of them; the other token kinds know no audiences and only answer
        when the asked-for audiences include this API server's.
        """
        if not isinstance(body, dict) or body.get("kind") not in (None, "TokenReview"):
            raise errors.bad_request("the body of the request must be a TokenReview object")
        spec: Object = body["spec"] if isinstance(body.get("spec"), dict) else {}
        token = spec.get("token")
        if not token or not isinstance(token, str):
            raise errors.bad_request("token is required for TokenReview in authentication")
        wanted = spec.get("audiences") or []
        if not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted):
            raise errors.bad_request("spec.audiences must be a list of strings")
        requested = tuple(wanted) or self.audiences
        user = None
        for authenticator in chain:
            if authenticator is self:
                user = await self.authenticate_token(token, requested)
            elif set(requested) & set(self.audiences):
                user = await authenticator.authenticate_token(token)
            if user is not None:
                break
        status: Object = {"authenticated": user is not None}
        if user is not None:
            groups = list(user.groups)
            if AUTHENTICATED_GROUP not in groups:
                groups.append(AUTHENTICATED_GROUP)
            status["user"] = {"username": user.name, "groups": groups}
            if user.uid:
                status["user"]["uid"] = user.uid
            if user.extra:
                status["user"]["extra"] = {k: list(v) for k, v in user.extra.items()}
            status["audiences"] = self._granted_audiences(token, requested)
        else:
            status["error"] = "[invalid bearer token, token lookup failed]"
        return {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }

    def _granted_audiences(self, token: str, requested: tuple[str, ...]) -> list[str]:
        """The asked-for audiences the token is good for: its own for a JWT, the API server's otherwise."""
        claims = verified_claims(token, self.public_keys)
        if claims is None:
            return [a for a in requested if a in self.audiences]
        audiences = claims.get("aud")
        own = [audiences] if isinstance(audiences, str) else audiences if isinstance(audiences, list) else []
        return [a for a in requested if a in own]

    # -- pod admission -------------------------------------------------------

    async def admit_pod(self, namespace: str, pod: Any) -> None:
        """Upstream's ServiceAccount admission on pod create (mutates `pod`).

        Defaults `spec.serviceAccountName` to `default`; a pod naming
        another account that does not exist is refused (403).  The
        `default` account may be missing while the controller manager has
        not made it yet: the pod is admitted, and the kubelet's token
        request succeeds once it exists.
        """
        if not isinstance(pod, dict) or not isinstance(pod.get("spec"), dict):
            return  # validation names what is wrong with the body
        spec = pod["spec"]
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        spec["serviceAccountName"] = name
        spec["serviceAccount"] = name  # the deprecated alias upstream keeps in step
        if (pod.get("metadata") or {}).get("annotations", {}).get("kubernetes.io/config.mirror"):
            return
        account = await self._get("serviceaccounts", namespace, name)
        if account is None and name != DEFAULT_SERVICE_ACCOUNT:
            raise ApiError(
                errors.status_failure(
                    403,
                    "Forbidden",
                    f'pods "{(pod.get("metadata") or {}).get("name", "")}" is forbidden: error looking up service '
                    f'account {namespace}/{name}: serviceaccount "{name}" not found',
                )
            )
        if not self.can_issue or not _automount(spec, account):
            return
        add_token_volume(spec)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _automount(spec: Object, account: Object | None) -> bool:
    """The pod's automountServiceAccountToken, else the service account's, else true."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def token_volume(name: str) -> Object:
    """The projected volume upstream's admission adds: token, cluster CA and namespace."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": ADMISSION_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def add_token_volume(spec: Object) -> None:
    """Add the token volume and mount it in every container that mounts nothing at the token path."""
    volumes = spec.setdefault("volumes", [])
    if not isinstance(volumes, list):
        return
    existing = {v.get("name") for v in volumes if isinstance(v, dict)}
    name = VOLUME_PREFIX + _suffix()
    while name in existing:
        name = VOLUME_PREFIX + _suffix()
    volumes.append(token_volume(name))
    for field_name in ("initContainers", "containers"):
        for container in spec.get(field_name) or []:
            if not isinstance(container, dict):
                continue
            mounts = container.setdefault("volumeMounts", [])
            if isinstance(mounts, list) and not any(
                isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts
            ):
                mounts.append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})


def _suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # utilrand's alphabet, as generateName uses
    return "".join(secrets.choice(alphabet) for _ in range(5))
