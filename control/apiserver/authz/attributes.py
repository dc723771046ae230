"""Request attributes: what a request asks to do, as Kubernetes' RequestInfo resolver reads it from the URL.

Authorization decides on these attributes only (never on the body), so they
must come out exactly as upstream's: `GET .../pods` is `list`, `?watch=1`
or a `/watch/` path is `watch`, `DELETE` of a collection is
`deletecollection`, a `fieldSelector=metadata.name=x` list names `x`, and
anything outside `/api` and `/apis/<group>/<version>` is a non-resource URL
with the HTTP method as its verb.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from control.apiserver.authn import UserInfo

API_PREFIXES = ("api", "apis")
SPECIAL_VERBS = ("proxy", "watch")
NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class Attributes:
    """One authorization question: may `user` do `verb` on this resource (or non-resource path)?"""

    user: UserInfo
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def read_only(self) -> bool:
        return self.verb in ("get", "list", "watch")


def _watch_requested(values: list[str]) -> bool:
    """?watch as Kubernetes decodes it: a Go bool; an undecodable value counts unless it reads false."""
    if not values:
        return False
    value = values[0]
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return value.lower() not in ("false", "0")


def _name_from_field_selector(selector: str) -> str:
    """The name a `metadata.name=x` (or `==`) requirement pins, if the selector pins exactly one."""
    for term in selector.split(","):
        term = term.strip()
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and "!" not in key and key.strip() == "metadata.name":
                value = value.strip()
                if value and value not in (".", "..") and "/" not in value and "%" not in value:
                    return value
                return ""
    return ""


def request_attributes(user: UserInfo, method: str, path: str, query: Mapping[str, list[str]]) -> Attributes:
    """The attributes of one HTTP request; `query` maps each parameter to all its values."""
    parts = [p for p in path.strip("/").split("/") if p]
    non_resource = Attributes(user, method.lower(), False, path=path)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return non_resource
    prefix, rest = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if rest[0] in SPECIAL_VERBS:
        verb = rest[0]
        rest = rest[1:]
        if not rest:
            return non_resource
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if _watch_requested(list(query.get("watch", []))) else "list"
    if not name and verb in ("list", "watch"):
        name = _name_from_field_selector((query.get("fieldSelector") or [""])[0])
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        user,
        verb,
        True,
        path=path,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )
