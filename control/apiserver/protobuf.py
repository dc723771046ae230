"""Decoding of Kubernetes protobuf request bodies for a few simple kinds.

kubectl's typed generators (`kubectl create namespace|configmap|secret|
service|deployment`) send `application/vnd.kubernetes.protobuf`: the magic `k8s\\0`
followed by a `runtime.Unknown` envelope (type meta, then the object's own
message).  This module turns such a body into the JSON object the rest of
the server works with, using field tables written from the Kubernetes API
definitions (k8s.io/api core/v1, k8s.io/apimachinery meta/v1).  Zero values
are dropped, as JSON `omitempty` would, because Go's protobuf encoding
writes them.  Kinds without a table are refused, so the caller answers 415.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from control.api.resources import RESOURCES

MAGIC = b"k8s\x00"

# field number -> (JSON name, type); types: "string", "bytes", "int", "bool",
# "time", "intstr", "map", "bytesmap", a message name, or "[]" + any of them.
Fields = dict[int, tuple[str, str]]

MESSAGES: dict[str, Fields] = {
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        4: ("selfLink", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "[]string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"), 3: ("status", "NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "bytesmap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {
        1: ("ports", "[]ServicePort"),
        2: ("selector", "map"),
        3: ("clusterIP", "string"),
        4: ("type", "string"),
        5: ("externalIPs", "[]string"),
        7: ("sessionAffinity", "string"),
        8: ("loadBalancerIP", "string"),
        10: ("externalName", "string"),
        11: ("externalTrafficPolicy", "string"),
        13: ("publishNotReadyAddresses", "bool"),
        17: ("ipFamilyPolicy", "string"),
        18: ("clusterIPs", "[]string"),
        19: ("ipFamilies", "[]string"),
        20: ("allocateLoadBalancerNodePorts", "bool"),
        21: ("loadBalancerClass", "string"),
        22: ("internalTrafficPolicy", "string"),
    },
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {
        1: ("replicas", "int"),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("strategy", "DeploymentStrategy"),
        5: ("minReadySeconds", "int"),
        6: ("revisionHistoryLimit", "int"),
        7: ("paused", "bool"),
        9: ("progressDeadlineSeconds", "int"),
    },
    "DeploymentStrategy": {1: ("type", "string"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intstr"), 2: ("maxSurge", "intstr")},
    "LabelSelector": {1: ("matchLabels", "map"), 2: ("matchExpressions", "[]LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "[]Container"),
        3: ("restartPolicy", "string"),
        4: ("terminationGracePeriodSeconds", "int"),
        6: ("dnsPolicy", "string"),
        7: ("nodeSelector", "map"),
        8: ("serviceAccountName", "string"),
        10: ("nodeName", "string"),
        11: ("hostNetwork", "bool"),
        16: ("hostname", "string"),
        17: ("subdomain", "string"),
        19: ("schedulerName", "string"),
        20: ("initContainers", "[]Container"),
        30: ("enableServiceLinks", "bool"),
    },
    "Container": {
        1: ("name", "string"),
        2: ("image", "string"),
        3: ("command", "[]string"),
        4: ("args", "[]string"),
        5: ("workingDir", "string"),
        6: ("ports", "[]ContainerPort"),
        7: ("env", "[]EnvVar"),
        8: ("resources", "ResourceRequirements"),
        13: ("terminationMessagePath", "string"),
        14: ("imagePullPolicy", "string"),
        16: ("stdin", "bool"),
        17: ("stdinOnce", "bool"),
        18: ("tty", "bool"),
        20: ("terminationMessagePolicy", "string"),
    },
    "ContainerPort": {
        1: ("name", "string"),
        2: ("hostPort", "int"),
        3: ("containerPort", "int"),
        4: ("protocol", "string"),
        5: ("hostIP", "string"),
    },
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "quantitymap"), 2: ("requests", "quantitymap")},
    "ServicePort": {
        1: ("name", "string"),
        2: ("protocol", "string"),
        3: ("port", "int"),
        4: ("targetPort", "intstr"),
        5: ("nodePort", "int"),
        6: ("appProtocol", "string"),
    },
}

MESSAGES.update(
    {
        # meta/v1 DeleteOptions (kubectl delete/drain bodies): its pointer fields keep explicit zeros
        "DeleteOptions": {
            1: ("gracePeriodSeconds", "optint"),
            2: ("preconditions", "Preconditions"),
            3: ("orphanDependents", "optbool"),
            4: ("propagationPolicy", "string"),
            5: ("dryRun", "[]string"),
        },
        "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
        "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
        # authorization/v1 reviews (kubectl auth can-i); status is the server's to write, so never decoded
        "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec")},
        "SelfSubjectAccessReviewSpec": {
            1: ("resourceAttributes", "ResourceAttributes"),
            2: ("nonResourceAttributes", "NonResourceAttributes"),
        },
        "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec")},
        "LocalSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec")},
        "SubjectAccessReviewSpec": {
            1: ("resourceAttributes", "ResourceAttributes"),
            2: ("nonResourceAttributes", "NonResourceAttributes"),
            3: ("user", "string"),
            4: ("groups", "[]string"),
            6: ("uid", "string"),
        },
        "ResourceAttributes": {
            1: ("namespace", "string"),
            2: ("verb", "string"),
            3: ("group", "string"),
            4: ("version", "string"),
            5: ("resource", "string"),
            6: ("subresource", "string"),
            7: ("name", "string"),
        },
        "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
        "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectRulesReviewSpec")},
        "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
        # rbac/v1 (kubectl create role|clusterrole|rolebinding|clusterrolebinding)
        "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
        "ClusterRole": {
            1: ("metadata", "ObjectMeta"),
            2: ("rules", "[]PolicyRule"),
            3: ("aggregationRule", "AggregationRule"),
        },
        "PolicyRule": {
            1: ("verbs", "[]string"),
            2: ("apiGroups", "[]string"),
            3: ("resources", "[]string"),
            4: ("resourceNames", "[]string"),
            5: ("nonResourceURLs", "[]string"),
        },
        "AggregationRule": {1: ("clusterRoleSelectors", "[]LabelSelector")},
        "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
        "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
        "Subject": {
            1: ("kind", "string"),
            2: ("apiGroup", "string"),
            3: ("name", "string"),
            4: ("namespace", "string"),
        },
        "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
        # authentication/v1 TokenRequest (kubectl create token)
        "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
        "TokenRequestSpec": {
            1: ("audiences", "[]string"),
            3: ("boundObjectRef", "BoundObjectReference"),
            4: ("expirationSeconds", "optint"),
        },
        "BoundObjectReference": {
            1: ("kind", "string"),
            2: ("apiVersion", "string"),
            3: ("name", "string"),
            4: ("uid", "string"),
        },
        # certificates/v1 (kubectl certificate approve|deny); spec.extra (a map of lists) is JSON-only
        "CertificateSigningRequest": {
            1: ("metadata", "ObjectMeta"),
            2: ("spec", "CertificateSigningRequestSpec"),
            3: ("status", "CertificateSigningRequestStatus"),
        },
        "CertificateSigningRequestSpec": {
            1: ("request", "base64"),
            2: ("username", "string"),
            3: ("uid", "string"),
            4: ("groups", "[]string"),
            5: ("usages", "[]string"),
            7: ("signerName", "string"),
            8: ("expirationSeconds", "optint"),
        },
        "CertificateSigningRequestStatus": {
            1: ("conditions", "[]CertificateSigningRequestCondition"),
            2: ("certificate", "base64"),
        },
        "CertificateSigningRequestCondition": {
            1: ("type", "string"),
            2: ("reason", "string"),
            3: ("message", "string"),
            4: ("lastUpdateTime", "time"),
            5: ("lastTransitionTime", "time"),
            6: ("status", "string"),
        },
    }
)
SUPPORTED = {
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "Eviction"),
    ("authentication.k8s.io/v1", "TokenRequest"),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
    *(("rbac.authorization.k8s.io/v1", kind) for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")),
    *(
        ("authorization.k8s.io/v1", kind)
        for kind in (
            "SelfSubjectAccessReview",
            "SubjectAccessReview",
            "LocalSubjectAccessReview",
            "SelfSubjectRulesReview",
        )
    ),
    # DeleteOptions travel under the group version of the resource being deleted
    *(("/".join(filter(None, (r.group, r.version))), "DeleteOptions") for r in RESOURCES),
    ("meta.k8s.io/v1", "DeleteOptions"),
}
_PRESENT = ("optint", "optbool")  # optional (pointer) fields: present means set, even to zero
_MAPS = ("map", "bytesmap", "quantitymap")


class ProtobufError(ValueError):
    """The body is not a protobuf object this server can read."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            out.append((number, int.from_bytes(data[pos : pos + width], "little")))
            pos += width
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string":
        return bytes(value).decode() if isinstance(value, bytes) else str(value)
    if kind == "bytes":
        return bytes(value) if isinstance(value, bytes) else b""
    if kind == "base64":  # a []byte field, which JSON carries as base64
        return base64.b64encode(bytes(value)).decode() if isinstance(value, bytes) else ""
    if kind in ("int", "optint"):
        return _signed(value) if isinstance(value, int) else 0
    if kind in ("bool", "optbool"):
        return bool(value)
    if not isinstance(value, bytes):
        raise ProtobufError(f"expected a message for {kind}")
    fields = _fields(value)
    if kind == "time":
        seconds = next((_signed(v) for n, v in fields if n == 1 and isinstance(v, int)), 0)
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)) if seconds else None
    if kind == "intstr":
        values = dict(fields)
        if values.get(1, 0) == 1:
            return _scalar("string", values.get(3, b""))
        number = values.get(2, 0)
        return _signed(number) if isinstance(number, int) else 0
    if kind in _MAPS:
        entry = dict(fields)
        key = _scalar("string", entry.get(1, b""))
        raw = entry.get(2, b"")
        if kind == "bytesmap":
            return key, base64.b64encode(bytes(raw)).decode()
        if kind == "quantitymap":  # resource.Quantity is a message holding its string form
            return key, _scalar("string", dict(_fields(bytes(raw))).get(1, b""))
        return key, _scalar("string", raw)
    return decode_message(kind, value)


def _is_zero(value: int | bytes) -> bool:
    """A zero scalar, or a message whose fields are all zero (how Go encodes an unset struct)."""
    if not value:
        return True
    if isinstance(value, int):
        return False
    try:
        return all(_is_zero(inner) for _, inner in _fields(value))
    except ProtobufError:
        return False


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """One message as JSON, zero values omitted."""
    table = MESSAGES.get(name)
    if table is None:
        raise ProtobufError(f"no protobuf table for {name}")
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in table:
            if not _is_zero(value):  # Go writes zero values of fields it does not use; others would be lost
                raise ProtobufError(f"field {number} of {name} is not supported; send JSON")
            continue
        json_name, kind = table[number]
        repeated = kind.startswith("[]")
        kind = kind.removeprefix("[]")
        item = _scalar(kind, value)
        if kind in _MAPS:
            out.setdefault(json_name, {})[item[0]] = item[1]
        elif repeated:
            out.setdefault(json_name, []).append(item)
        elif kind in _PRESENT:
            out[json_name] = item
        elif item not in ("", 0, False, None, {}, b""):
            out[json_name] = item
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it encodes."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    envelope = _fields(body[len(MAGIC) :])
    type_meta: dict[str, Any] = {}
    raw = b""
    for number, value in envelope:
        if number == 1 and isinstance(value, bytes):
            type_meta = decode_message("TypeMeta", value)
        elif number == 2 and isinstance(value, bytes):
            raw = value
        elif number == 3 and value:
            raise ProtobufError("compressed protobuf bodies are not supported")
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if (api_version, kind) not in SUPPORTED:
        raise ProtobufError(f"protobuf bodies of {api_version}/{kind} are not supported; send JSON")
    return {"apiVersion": api_version, "kind": kind, **decode_message(kind, raw)}
