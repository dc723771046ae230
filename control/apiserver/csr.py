"""CertificateSigningRequest semantics the API server owns (certificates.k8s.io/v1).

On create the server, not the client, says who asked: `spec.username`,
`uid`, `groups` and `extra` come from the authenticated caller (the
approver trusts them), and `spec.request` must be a PEM certificate
request.  Approval and denial go through the `approval` subresource, which
changes only `status.conditions`; the signer writes `status.certificate`
through `status`.
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import Any

from cryptography import x509

from control.api import errors
from control.api.resources import resource
from control.apiserver.authn import UserInfo
from control.apiserver.registry import Registry, WriteOptions, apply_patch

Object = dict[str, Any]

GROUP = "certificates.k8s.io"
DECISIONS = ("Approved", "Denied")
KNOWN_USAGES = frozenset(
    {
        "signing",
        "digital signature",
        "content commitment",
        "key encipherment",
        "key agreement",
        "data encipherment",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
        "any",
        "server auth",
        "client auth",
        "code signing",
        "email protection",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "timestamping",
        "ocsp signing",
        "microsoft sgc",
        "netscape sgc",
    }
)


def _invalid(name: str, path: str, reason: str, message: str) -> errors.ApiError:
    return errors.invalid("CertificateSigningRequest", name, [(path, reason, message)], GROUP)


def prepare_create(body: Any, user: UserInfo | None) -> Any:
    """The CSR to store: requester identity from the caller, status cleared, request and usages checked."""
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        return body  # the registry names what is wrong with the body
    csr = copy.deepcopy(body)
    spec = csr["spec"]
    name = str((csr.get("metadata") or {}).get("name") or (csr.get("metadata") or {}).get("generateName") or "")
    for field in ("username", "uid", "groups", "extra"):
        spec.pop(field, None)
    if user is not None:
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    csr.pop("status", None)
    try:
        pem = base64.b64decode(spec.get("request") or "", validate=True)
        x509.load_pem_x509_csr(pem)
    except (ValueError, binascii.Error):
        raise _invalid(
            name, "spec.request", "FieldValueInvalid", "Invalid value: []byte{...}: PEM block type must be "
            "CERTIFICATE REQUEST"
        ) from None
    if not spec.get("signerName"):
        raise _invalid(name, "spec.signerName", "FieldValueRequired", "Required value")
    usages = spec.get("usages")
    if not usages:
        raise _invalid(name, "spec.usages", "FieldValueRequired", "Required value")
    for index, usage in enumerate(usages if isinstance(usages, list) else [usages]):
        if usage not in KNOWN_USAGES:
            raise _invalid(
                name, f"spec.usages[{index}]", "FieldValueNotSupported", f'Unsupported value: "{usage}"'
            )
    seconds = spec.get("expirationSeconds")
    if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 600):
        raise _invalid(
            name, "spec.expirationSeconds", "FieldValueInvalid", f"Invalid value: {seconds}: may not specify a "
            "duration less than 600 seconds (10 minutes)"
        )
    return csr


def _check_decisions(name: str, conditions: Any) -> list[Object]:
    if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
        raise _invalid(name, "status.conditions", "FieldValueInvalid", "Invalid value: must be a list of conditions")
    kinds = [c.get("type") for c in conditions]
    if "Approved" in kinds and "Denied" in kinds:
        raise _invalid(
            name, "status.conditions", "FieldValueInvalid", "Invalid value: Approved and Denied conditions are "
            "mutually exclusive"
        )
    for index, cond in enumerate(conditions):
        if cond.get("type") in DECISIONS and cond.get("status", "True") != "True":
            raise _invalid(
                name, f"status.conditions[{index}].status", "FieldValueNotSupported",
                f'Unsupported value: "{cond.get("status")}": supported values: "True"'
            )
        cond.setdefault("status", "True")
    return conditions


async def update_approval(
    registry: Registry, name: str, method: str, body: Any, patch_type: str | None, options: WriteOptions
) -> Object:
    """PUT/PATCH certificatesigningrequests/<name>/approval: only the conditions change."""
    res = resource("certificatesigningrequests")
    current = await registry.get(res, None, name)
    requested = apply_patch(res.kind, current, patch_type, body) if method == "PATCH" and patch_type else body
    if not isinstance(requested, dict):
        raise errors.bad_request("the body of an approval request must be a CertificateSigningRequest object")
    conditions = _check_decisions(name, copy.deepcopy((requested.get("status") or {}).get("conditions") or []))
    old = {c.get("type") for c in (current.get("status") or {}).get("conditions") or []} & set(DECISIONS)
    new = {c.get("type") for c in conditions} & set(DECISIONS)
    if old and old != new:
        raise _invalid(
            name, "status.conditions", "FieldValueForbidden", f"Forbidden: updates may not change the "
            f"{'/'.join(sorted(old))} decision"
        )
    stored = copy.deepcopy(current)
    stored.setdefault("status", {})["conditions"] = conditions
    rv = (requested.get("metadata") or {}).get("resourceVersion")
    stored["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
    return await registry.update(res, None, name, stored, options, "status")
