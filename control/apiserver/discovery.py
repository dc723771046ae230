"""Discovery documents and the OpenAPI v3 documents kubectl reads.

Everything is derived from the resource table, so a resource added there
is discoverable without touching this module.  The OpenAPI documents carry
the operations (with `x-kubernetes-group-version-kind` and the
`fieldValidation` query parameter) kubectl's `--validate=strict` looks
for, and every kind's schema (`openapi_schemas.py`, generated from the
official client's types) for request and response bodies, which is what
a schema-driven fuzzer needs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from control.api.resources import METRICS_RESOURCES, RESOURCES, Resource, group_versions
from control.apiserver.openapi_schemas import KIND_MODELS, SCHEMAS

Object = dict[str, Any]

GIT_VERSION = "v1.32.0-pocketkube"

_SUBRESOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    # subresource -> (group, version, kind; "" means the parent's), verbs
    "status": ("", "", "", ("get", "patch", "update")),
    "binding": ("", "", "Binding", ("create",)),
    "log": ("", "", "Pod", ("get",)),
    "exec": ("", "", "PodExecOptions", ("create", "get")),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
    "approval": ("", "", "", ("get", "patch", "update")),
}


def version_info() -> Object:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "python3",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> Object:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> Object:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries, "preferredVersion": entries[0]}


def _named_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for r in (*RESOURCES, *METRICS_RESOURCES):
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    return groups


def api_group_list() -> Object:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(n, v) for n, v in _named_groups().items()]}


def api_group(name: str) -> Object | None:
    versions = _named_groups().get(name)
    return _group(name, versions) if versions else None


def _resource_entry(r: Resource) -> Object:
    entry: Object = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
        "storageVersionHash": hashlib.sha256(f"{r.api_version}/{r.kind}".encode()).hexdigest()[:12],
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    return entry


def _subresource_entry(r: Resource, sub: str) -> Object:
    group, version, kind, verbs = _SUBRESOURCES[sub]
    entry: Object = {
        "name": f"{r.plural}/{sub}",
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind or r.kind,
        "verbs": list(verbs),
    }
    if group:
        entry["group"], entry["version"] = group, version
    return entry


def _discoverable() -> dict[str, list[Resource]]:
    """The stored resources and the metrics API's (served from memory, not etcd), by group version."""
    served = group_versions()
    for r in METRICS_RESOURCES:
        served.setdefault(r.api_version, []).append(r)
    return served


def api_resource_list(group_version: str) -> Object | None:
    resources = _discoverable().get(group_version)
    if resources is None:
        return None
    entries = []
    for r in resources:
        entries.append(_resource_entry(r))
        entries.extend(_subresource_entry(r, sub) for sub in r.subresources)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}


# -- OpenAPI v3 --------------------------------------------------------------


def _doc_path(group_version: str) -> str:
    return f"api/{group_version}" if "/" not in group_version else f"apis/{group_version}"


def _param(name: str, where: str = "query", required: bool = False) -> Object:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}, "uniqueItems": True}


_WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]


def _ref(group: str, version: str, kind: str) -> Object:
    return {"$ref": f"#/components/schemas/{KIND_MODELS[f'{group}/{version}/{kind}']}"}


_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _operation(r: Resource, action: str, op_id: str, params: list[Object], body: Object | None = None) -> Object:
    """One operation; writes carry the kind's schema (PATCH: a free-form patch document)."""
    own = _ref(r.group, r.version, r.kind)
    response = {"description": "OK", "content": {"application/json": {"schema": own}}}
    operation: Object = {
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": response},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    }
    if action in ("post", "put"):
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body or own}}}
        operation["responses"]["201"] = response
    elif action == "patch":
        schema = {"type": "object"}
        operation["requestBody"] = {"required": True, "content": {t: {"schema": schema} for t in _PATCH_TYPES}}
    return operation


def _operation_id(verb: str, r: Resource, namespaced_path: bool, suffix: str = "") -> str:
    group = "".join(p.capitalize() for p in (r.group or "core").split(".")[:1])
    scope = "Namespaced" if namespaced_path else ""
    return f"{verb}{group}{r.version.capitalize()}{scope}{r.kind}{suffix}"


def openapi_document(group_version: str) -> Object | None:
    resources = group_versions().get(group_version)
    if resources is None:
        return None
    paths: dict[str, Object] = {}
    for r in resources:
        ns = r.namespaced
        base = r.group_prefix + ("/namespaces/{namespace}" if ns else "") + f"/{r.plural}"
        path_params = ([_param("namespace", "path", True)] if ns else []) + [_param("name", "path", True)]
        paths[base] = {
            "get": _operation(
                r, "list", _operation_id("list", r, ns), [_param("labelSelector"), _param("fieldSelector")]
            ),
            "post": _operation(r, "post", _operation_id("create", r, ns), list(_WRITE_PARAMS)),
            "parameters": [_param("namespace", "path", True)] if ns else [],
        }
        paths[f"{base}/{{name}}"] = {
            "get": _operation(r, "get", _operation_id("read", r, ns), []),
            "put": _operation(r, "put", _operation_id("replace", r, ns), list(_WRITE_PARAMS)),
            "patch": _operation(r, "patch", _operation_id("patch", r, ns), list(_WRITE_PARAMS) + [_param("force")]),
            "delete": _operation(
                r, "delete", _operation_id("delete", r, ns), [_param("gracePeriodSeconds"), _param("propagationPolicy")]
            ),
            "parameters": path_params,
        }
        if "status" in r.subresources:
            paths[f"{base}/{{name}}/status"] = {
                "get": _operation(r, "get", _operation_id("read", r, ns, "Status"), []),
                "put": _operation(r, "put", _operation_id("replace", r, ns, "Status"), list(_WRITE_PARAMS)),
                "patch": _operation(r, "patch", _operation_id("patch", r, ns, "Status"), list(_WRITE_PARAMS)),
                "parameters": path_params,
            }
        if ns:
            paths[f"{r.group_prefix}/{r.plural}"] = {
                "get": _operation(r, "list", _operation_id("list", r, False, "ForAllNamespaces"), [])
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


def openapi_index() -> Object:
    out: dict[str, Object] = {}
    for group_version in group_versions():
        doc = openapi_document(group_version)
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
        out[_doc_path(group_version)] = {"serverRelativeURL": f"/openapi/v3/{_doc_path(group_version)}?hash={digest}"}
    return {"paths": out}
