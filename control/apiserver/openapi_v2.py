"""`GET /openapi/v2`: the served kinds' schemas as one Swagger 2.0 document.

kubectl still reads this document for some validation (a `kind: List`
manifest is checked item by item against it), and it asks for the
protobuf form (gnostic's `openapi.v2.Document`), so both the JSON and the
protobuf encodings are served, chosen by the Accept header as upstream
does. The definitions are the OpenAPI v3 component schemas, with their
`$ref`s pointed at `#/definitions/` and each top-level kind marked with
`x-kubernetes-group-version-kind`, which is how kubectl finds a kind's
schema. There are no paths: kubectl's v2 use needs none, and `explain`
uses v3.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Iterable
from typing import Any

import yaml

from control.apiserver.discovery import GIT_VERSION
from control.apiserver.openapi_schemas import KIND_MODELS, SCHEMAS

PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# What kubectl sends in Accept; `@` is not legal in a media type, so answers carry the dotted form above.
PROTOBUF_DEPRECATED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
JSON = "application/json"

_V3_PREFIX = "#/components/schemas/"
_V2_PREFIX = "#/definitions/"


def _convert(schema: Any) -> Any:
    """A v3 schema value as v2: refs rewritten, v3-only keywords (nullable, oneOf, anyOf) left out."""
    if isinstance(schema, list):
        return [_convert(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("nullable", "oneOf", "anyOf"):
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(_V3_PREFIX):
            out[key] = _V2_PREFIX + value.removeprefix(_V3_PREFIX)
        elif key == "properties":
            out[key] = {name: _convert(prop) for name, prop in value.items()}
        elif key.startswith("x-") or key in ("default", "enum", "example"):
            out[key] = value
        else:
            out[key] = _convert(value)
    return out


@functools.cache
def swagger_document() -> dict[str, Any]:
    """The whole document as JSON-ready data (built once: the schemas are fixed at build time)."""
    kinds: dict[str, list[dict[str, str]]] = {}
    for gvk, model in KIND_MODELS.items():
        group_version, _, kind = gvk.rpartition("/")
        group, _, version = group_version.rpartition("/")
        kinds.setdefault(model, []).append({"group": group, "kind": kind, "version": version})
    definitions = {}
    for name, schema in sorted(SCHEMAS.items()):
        converted = _convert(schema)
        if name in kinds:
            converted["x-kubernetes-group-version-kind"] = kinds[name]
        definitions[name] = converted
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": {},
        "definitions": definitions,
    }


@functools.cache
def json_bytes() -> bytes:
    return json.dumps(swagger_document()).encode()


@functools.cache
def protobuf_bytes() -> bytes:
    return encode_document(swagger_document())


def wants_protobuf(accept: str) -> bool:
    """True when the Accept header names the protobuf encoding (kubectl sends only that)."""
    offered = [part.split(";")[0].strip() for part in accept.split(",")]
    return PROTOBUF in offered or PROTOBUF_DEPRECATED in offered


# -- protobuf encoding of gnostic's openapi.v2 messages ---------------------------------------
# Field numbers are those of gnostic's openapiv2/OpenAPIv2.proto.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings and embedded messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode()) if text else b""


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _int64(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)


def _double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", float(value))


def _any(value: Any) -> bytes:
    """gnostic's Any: the value as YAML text (field 2), which is how kube-openapi reads extensions back."""
    return _string(2, yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip())


def _named(number: int, name: str, value: bytes) -> bytes:
    return _field(number, _string(1, name) + _field(2, value))


def _schema(schema: dict[str, Any]) -> bytes:
    out = bytearray()
    out += _string(1, schema.get("$ref", ""))
    out += _string(2, schema.get("format", ""))
    out += _string(3, schema.get("title", ""))
    out += _string(4, schema.get("description", ""))
    if "default" in schema:
        out += _field(5, _any(schema["default"]))
    for number, key in ((6, "multipleOf"), (7, "maximum"), (9, "minimum")):
        if key in schema:
            out += _double(number, schema[key])
    out += _bool(8, bool(schema.get("exclusiveMaximum")))
    out += _bool(10, bool(schema.get("exclusiveMinimum")))
    for number, key in (
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ):
        if key in schema:
            out += _int64(number, int(schema[key]))
    out += _string(13, schema.get("pattern", ""))
    out += _bool(16, bool(schema.get("uniqueItems")))
    for name in schema.get("required") or []:
        out += _string(19, name)
    for value in schema.get("enum") or []:
        out += _field(20, _any(value))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out += _field(21, _field(1, _schema(extra)))
    elif isinstance(extra, bool):
        out += _field(21, _varint(2 << 3) + (b"\x01" if extra else b"\x00"))
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        out += _field(22, b"".join(_string(1, t) for t in types))
    if isinstance(schema.get("items"), dict):
        out += _field(23, _field(1, _schema(schema["items"])))
    for part in schema.get("allOf") or []:
        out += _field(24, _schema(part))
    if "properties" in schema:
        out += _field(25, b"".join(_named(1, n, _schema(p)) for n, p in schema["properties"].items()))
    out += _bool(27, bool(schema.get("readOnly")))
    if "example" in schema:
        out += _field(30, _any(schema["example"]))
    out += _extensions(31, schema)
    return bytes(out)


def _extensions(number: int, obj: dict[str, Any]) -> bytes:
    return b"".join(_named(number, key, _any(value)) for key, value in obj.items() if key.startswith("x-"))


def _definitions(definitions: Iterable[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(_named(1, name, _schema(schema)) for name, schema in definitions)


def encode_document(document: dict[str, Any]) -> bytes:
    """The document as an `openapi.v2.Document` message (paths are not encoded: there are none)."""
    info = document.get("info") or {}
    out = _string(1, document["swagger"])
    out += _field(2, _string(1, info.get("title", "")) + _string(2, info.get("version", "")))
    out += _field(8, b"")
    out += _field(9, _definitions(document["definitions"].items()))
    return out
