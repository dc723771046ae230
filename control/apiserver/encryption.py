"""Encryption at rest, as kube-apiserver's `--encryption-provider-config` does it.

The configuration is Kubernetes' EncryptionConfiguration
(`apiserver.config.k8s.io/v1`): for each listed resource, an ordered list of
providers.  The first provider encrypts every write; any provider whose
prefix matches may decrypt a read, which is what makes key rotation work
(add the new key second, restart, move it first, restart, rewrite all
objects, drop the old key).  Supported providers are `aesgcm` (AES-GCM, a
random 96-bit nonce per write, the etcd key as authenticated data so a
value cannot be moved to another object's key) and `identity` (plain JSON).

Stored form, as upstream: `k8s:enc:aesgcm:v1:<key name>:<nonce><ciphertext+tag>`.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control.api.resources import RESOURCES

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
ENCRYPTED_PREFIX = b"k8s:enc:"
AESGCM_PREFIX = "k8s:enc:aesgcm:v1:"
NONCE_BYTES = 12
AES_KEY_SIZES = (16, 24, 32)
SUPPORTED_PROVIDERS = ("aesgcm", "identity")


class EncryptionConfigError(ValueError):
    """The EncryptionConfiguration file is unusable; the message names the field."""


class EncryptionError(Exception):
    """A stored value cannot be decrypted with the configured providers."""


class Provider(Protocol):
    """One entry of a resource's `providers` list."""

    def encrypt(self, data: bytes, context: bytes) -> bytes: ...

    def decrypt(self, stored: bytes, context: bytes) -> bytes | None:
        """The plaintext, or None when the value is not this provider's (prefix does not match)."""


class Identity:
    """Values stored as they are; refuses to hand out encrypted bytes as if they were JSON."""

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        return data

    def decrypt(self, stored: bytes, context: bytes) -> bytes | None:
        if stored.startswith(ENCRYPTED_PREFIX):
            return None
        return stored


@dataclass(frozen=True)
class AesGcmKey:
    name: str
    secret: bytes

    @property
    def prefix(self) -> bytes:
        return f"{AESGCM_PREFIX}{self.name}:".encode()


class AesGcm:
    """AES-GCM with the first key for writes and every key for reads."""

    def __init__(self, keys: list[AesGcmKey]):
        self.keys = keys
        self._ciphers = [(key.prefix, key.name, AESGCM(key.secret)) for key in keys]

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        prefix, _, cipher = self._ciphers[0]
        nonce = os.urandom(NONCE_BYTES)
        return prefix + nonce + cipher.encrypt(nonce, data, context)

    def decrypt(self, stored: bytes, context: bytes) -> bytes | None:
        for prefix, name, cipher in self._ciphers:
            if stored.startswith(prefix):
                body = stored[len(prefix) :]
                nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
                try:
                    return cipher.decrypt(nonce, sealed, context)
                except InvalidTag:
                    raise EncryptionError(
                        f"aesgcm key {name!r}: cipher: message authentication failed "
                        "(the key is not the one the value was written with, or the value was altered)"
                    ) from None
        return None


@dataclass(frozen=True)
class Rule:
    """One `resources[]` entry: which resources, and their providers in order."""

    resources: tuple[str, ...]  # "secrets", "deployments.apps", "*.", "*.*", "*.apps"
    providers: tuple[Provider, ...]

    def matches(self, plural: str, group: str) -> bool:
        for name in self.resources:
            res, _, res_group = name.partition(".")
            if (res == "*" or res == plural) and (res_group == "*" or res_group == group):
                return True
        return False


class Encryption:
    """Encrypts and decrypts stored values of the configured resources; others pass through."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._by_plural: dict[str, tuple[Provider, ...]] = {}
        for res in RESOURCES:
            rule = next((r for r in rules if r.matches(res.plural, res.group)), None)
            if rule is not None:
                self._by_plural[res.plural] = rule.providers

    def _providers(self, key: str) -> tuple[Provider, ...] | None:
        # storage keys are /registry/<plural>/[<namespace>/]<name>
        parts = key.split("/", 3)
        return self._by_plural.get(parts[2]) if len(parts) > 2 else None

    def encrypted_resources(self) -> list[str]:
        """Plurals whose writes are encrypted (first provider is not identity)."""
        return sorted(p for p, providers in self._by_plural.items() if not isinstance(providers[0], Identity))

    def encrypt(self, key: str, data: bytes) -> bytes:
        providers = self._providers(key)
        if providers is None:
            return data
        return providers[0].encrypt(data, key.encode())

    def decrypt(self, key: str, stored: bytes) -> bytes:
        providers = self._providers(key)
        if providers is None:
            providers = (Identity(),)
        for provider in providers:
            plain = provider.decrypt(stored, key.encode())
            if plain is not None:
                return plain
        if stored.startswith(ENCRYPTED_PREFIX):
            written_with = stored[: stored.find(b":", len(AESGCM_PREFIX)) + 1].decode(errors="replace")
            raise EncryptionError(f"no provider configured can read a value stored with prefix {written_with!r}")
        raise EncryptionError("no matching prefix found (the value is not encrypted and identity is not listed)")


# -- the configuration file ----------------------------------------------------


def load_encryption_config(path: str | Path) -> Encryption:
    """Parse an EncryptionConfiguration file; EncryptionConfigError names what is wrong."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise EncryptionConfigError(f"encryption provider config {path}: {err.strerror or err}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise EncryptionConfigError(f"encryption provider config {path}: not valid YAML: {err}") from None
    try:
        return parse_encryption_config(doc)
    except EncryptionConfigError as err:
        raise EncryptionConfigError(f"encryption provider config {path}: {err}") from None


def parse_encryption_config(doc: Any) -> Encryption:
    if not isinstance(doc, dict):
        raise EncryptionConfigError("expected an EncryptionConfiguration object")
    if doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
        raise EncryptionConfigError(
            f"kind/apiVersion must be {KIND} {API_VERSION}, got {doc.get('kind')!r} {doc.get('apiVersion')!r}"
        )
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        raise EncryptionConfigError("resources: at least one entry is required")
    return Encryption([_parse_rule(entry, f"resources[{i}]") for i, entry in enumerate(entries)])


def _parse_rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise EncryptionConfigError(f"{where}: must be an object with resources and providers")
    names = entry.get("resources")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise EncryptionConfigError(f"{where}.resources: a non-empty list of resource names is required")
    providers = entry.get("providers")
    if not isinstance(providers, list) or not providers:
        raise EncryptionConfigError(f"{where}.providers: at least one provider is required")
    parsed = tuple(_parse_provider(p, f"{where}.providers[{i}]") for i, p in enumerate(providers))
    return Rule(tuple(names), parsed)


def _parse_provider(entry: Any, where: str) -> Provider:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise EncryptionConfigError(f"{where}: exactly one provider type per entry (one of {SUPPORTED_PROVIDERS})")
    kind, body = next(iter(entry.items()))
    if kind == "identity":
        return Identity()
    if kind != "aesgcm":
        raise EncryptionConfigError(
            f"{where}: provider {kind!r} is not supported (supported: {', '.join(SUPPORTED_PROVIDERS)})"
        )
    keys = (body or {}).get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not keys:
        raise EncryptionConfigError(f"{where}.aesgcm.keys: at least one key is required")
    parsed = [_parse_key(key, f"{where}.aesgcm.keys[{i}]") for i, key in enumerate(keys)]
    names = [k.name for k in parsed]
    if len(set(names)) != len(names):
        raise EncryptionConfigError(f"{where}.aesgcm.keys: key names must be unique, got {names}")
    return AesGcm(parsed)


def _parse_key(entry: Any, where: str) -> AesGcmKey:
    if not isinstance(entry, dict):
        raise EncryptionConfigError(f"{where}: must be an object with name and secret")
    name, secret = entry.get("name"), entry.get("secret")
    if not isinstance(name, str) or not name or ":" in name:
        raise EncryptionConfigError(f"{where}.name: a non-empty name without ':' is required")
    if not isinstance(secret, str) or not secret:
        raise EncryptionConfigError(f"{where}.secret: a base64-encoded key is required")
    try:
        raw = base64.b64decode(secret, validate=True)
    except binascii.Error:
        raise EncryptionConfigError(f"{where}.secret: not valid base64") from None
    if len(raw) not in AES_KEY_SIZES:
        raise EncryptionConfigError(f"{where}.secret: an AES key must be 16, 24 or 32 bytes, got {len(raw)}")
    return AesGcmKey(name, raw)


def write_encryption_config(path: str | Path, resources: tuple[str, ...] = ("secrets",)) -> bool:
    """Create an EncryptionConfiguration with a fresh random 32-byte AES-GCM key, unless `path` exists.

    The file is the only copy of the key: it is written owner-only (0600)
    and never replaced, since a new key would make every stored Secret
    unreadable.  `identity` is listed second so objects written before
    encryption was turned on stay readable.  Returns whether it was created.
    """
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "resources": [
            {
                "resources": list(resources),
                "providers": [
                    {"aesgcm": {"keys": [{"name": "key1", "secret": base64.b64encode(os.urandom(32)).decode()}]}},
                    {"identity": {}},
                ],
            }
        ],
    }
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    return True
