"""Writes control/apiserver/openapi_schemas.py: OpenAPI v3 schemas of the served kinds, from the official client.

The `kubernetes` package (a test dependency) carries every built-in type's
fields, JSON names and types; the API server must not import it at run
time, so its schemas are generated once into a module.  Run
`python -m tests.control.openapi_schemas_gen` after adding a resource;
test_openapi.py fails while the module is out of date.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes.client.models as models

from control.api.resources import RESOURCES

TARGET = Path(__file__).resolve().parents[2] / "control" / "apiserver" / "openapi_schemas.py"
EXTRA_KINDS = (
    ("policy", "v1", "Eviction"),
    ("autoscaling", "v1", "Scale"),
    ("", "v1", "Binding"),
    ("authentication.k8s.io", "v1", "TokenRequest"),
)

_SCALARS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "bytearray": {"type": "string", "format": "byte"},
    "bytes": {"type": "string", "format": "byte"},
    "object": {},  # IntOrString, Quantity-like and free-form fields
}


def model_name(group: str, version: str, kind: str) -> str:
    """The client's class for a kind: V1Pod, V2HorizontalPodAutoscaler, CoreV1Event."""
    prefix = version.capitalize()
    for candidate in (f"{prefix}{kind}", f"Core{prefix}{kind}", f"{group.split('.')[0].capitalize()}{prefix}{kind}"):
        if hasattr(models, candidate):
            return candidate
    raise KeyError(f"no client model for {group}/{version} {kind}")


def _type_schema(type_name: str, wanted: list[str]) -> dict[str, Any]:
    if type_name in _SCALARS:
        return dict(_SCALARS[type_name])
    if match := re.fullmatch(r"List\[(.+)\]", type_name):
        return {"type": "array", "items": _type_schema(match.group(1), wanted)}
    if match := re.fullmatch(r"Dict\[str, (.+)\]", type_name):
        return {"type": "object", "additionalProperties": _type_schema(match.group(1), wanted)}
    wanted.append(type_name)
    return {"$ref": f"#/components/schemas/{type_name}"}


def schemas_for(roots: list[str]) -> dict[str, Any]:
    """Every model reachable from the roots, as OpenAPI schemas with JSON field names and required fields."""
    out: dict[str, Any] = {}
    wanted = list(roots)
    while wanted:
        name = wanted.pop()
        if name in out:
            continue
        model = getattr(models, name)
        properties = {
            model.attribute_map[attr]: _type_schema(type_name, wanted)
            for attr, type_name in sorted(model.openapi_types.items())
        }
        required = sorted(
            model.attribute_map[attr] for attr, field in model.model_fields.items() if field.is_required()
        )
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        out[name] = schema
    return out


def kinds() -> dict[str, str]:
    """ "group/version/Kind" -> model name, for every served resource and the subresource bodies."""
    triples = [(r.group, r.version, r.kind) for r in RESOURCES] + list(EXTRA_KINDS)
    return {f"{g}/{v}/{k}": model_name(g, v, k) for g, v, k in triples}


def render() -> str:
    kind_models = kinds()
    schemas = schemas_for(sorted(set(kind_models.values())))
    body = json.dumps({"kinds": kind_models, "schemas": schemas}, indent=1, sort_keys=True)
    return (
        '"""OpenAPI schemas of the served kinds (written by tests/control/openapi_schemas_gen.py; do not edit)."""\n\n'
        "import json\nfrom typing import Any\n\n"
        f'_DOCUMENT = r"""\n{body}\n"""\n\n'
        "_PARSED: dict[str, Any] = json.loads(_DOCUMENT)\n"
        'KIND_MODELS: dict[str, str] = _PARSED["kinds"]\n'
        'SCHEMAS: dict[str, Any] = _PARSED["schemas"]\n'
    )


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
