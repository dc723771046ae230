"""A container's environment, as Kubernetes' kubelet builds it.

Service variables follow `pkg/kubelet/envvars`: Docker-link style names for
every service the pod may see (its namespace's services when
`enableServiceLinks`, plus `default/kubernetes` always); the container's own
`env` wins over them and may refer to them with `$(VAR)`.
"""

from __future__ import annotations

import ipaddress
import re
import math
from collections.abc import Iterable, Mapping
from typing import Any

from control.api.quantity import parse_quantity

Object = dict[str, Any]

MASTER_SERVICE = ("default", "kubernetes")


class EnvError(ValueError):
    """A container's env cannot be built (bad fieldRef, unsupported source)."""


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _url_host(ip: str) -> str:
    try:
        return f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    except ValueError:
        return ip


def visible_services(services: Iterable[Object], namespace: str, enable_service_links: bool) -> list[Object]:
    """The services whose variables a pod in `namespace` gets (one per name).

    `default/kubernetes` is always there; a `kubernetes` service in the pod's
    own namespace replaces it when links are enabled; headless ones are skipped.
    """
    by_name: dict[str, Object] = {}
    for svc in services:
        meta = svc.get("metadata", {})
        ns, name = meta.get("namespace"), meta.get("name", "")
        cluster_ip = svc.get("spec", {}).get("clusterIP") or ""
        if cluster_ip in ("", "None"):
            continue
        if (ns, name) == MASTER_SERVICE:
            by_name.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            by_name[name] = svc
    return list(by_name.values())


def service_env(services: Iterable[Object]) -> dict[str, str]:
    """The `{SVC}_SERVICE_*` and `{SVC}_PORT*` variables of the given services."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec", {})
        ip = spec["clusterIP"]
        prefix = _env_name(svc["metadata"]["name"])
        ports = spec.get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        for index, port in enumerate(ports):
            number = str(port["port"])
            if index == 0:
                env[f"{prefix}_SERVICE_PORT"] = number
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = number
        for index, port in enumerate(ports):
            number = str(port["port"])
            protocol = (port.get("protocol") or "TCP").upper()
            url = f"{protocol.lower()}://{_url_host(ip)}:{number}"
            if index == 0:
                env[f"{prefix}_PORT"] = url
            link = f"{prefix}_PORT_{number}_{protocol}"
            env[link] = url
            env[f"{link}_PROTO"] = protocol.lower()
            env[f"{link}_PORT"] = number
            env[f"{link}_ADDR"] = ip
    return env


_REFERENCE = re.compile(r"\$(\$|\((?P<name>[^)]*)\))")


def expand(value: str, *lookups: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown names stay literal."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group("name")
        for table in lookups:
            if name in table:
                return table[name]
        return match.group(0)

    return _REFERENCE.sub(replace, value)


_LABEL_FIELD = re.compile(r"metadata\.(labels|annotations)\['(?P<key>[^']+)'\]$")


def field_value(pod: Object, path: str) -> str:
    """The value of a `valueFrom.fieldRef.fieldPath` for this pod."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_FIELD.match(path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group("key"), ""))
    raise EnvError(f"unsupported fieldRef.fieldPath {path!r}")


# ("configmaps" | "secrets", name) -> the object's data (Secret values already decoded), or None if it is missing
ConfigSources = Mapping[tuple[str, str], Mapping[str, str] | None]

_VALID_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SOURCE_KINDS = {"configMapRef": "configmaps", "secretRef": "secrets"}
_KEY_KINDS = {"configMapKeyRef": "configmaps", "secretKeyRef": "secrets"}
_SINGULAR = {"configmaps": "configmap", "secrets": "secret"}


def referenced_sources(container: Object) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets a container's env and envFrom read, to fetch before `container_env`."""
    wanted = set()
    for source in container.get("envFrom") or []:
        for field_name, plural in _SOURCE_KINDS.items():
            if field_name in source:
                wanted.add((plural, source[field_name].get("name", "")))
    for var in container.get("env") or []:
        for field_name, plural in _KEY_KINDS.items():
            if field_name in (var.get("valueFrom") or {}):
                wanted.add((plural, var["valueFrom"][field_name].get("name", "")))
    return wanted


def _source_data(sources: ConfigSources, plural: str, ref: Object) -> Mapping[str, str] | None:
    """The referenced object's data; None if it is missing and `optional`, an error if it is missing and required."""
    data = sources.get((plural, ref.get("name", "")))
    if data is None and not ref.get("optional"):
        raise EnvError(f'{_SINGULAR[plural]} "{ref.get("name", "")}" not found')
    return data


def _from_sources(container: Object, sources: ConfigSources) -> dict[str, str]:
    """envFrom: every key (with the optional prefix) that is a valid variable name, later sources winning."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind = next((k for k in _SOURCE_KINDS if k in source), None)
        if kind is None:
            raise EnvError(f"container {container.get('name')!r}: envFrom entry needs configMapRef or secretRef")
        data = _source_data(sources, _SOURCE_KINDS[kind], source[kind])
        for key, value in (data or {}).items():
            name = source.get("prefix", "") + key
            if _VALID_NAME.match(name):
                env[name] = value
    return env


_RESOURCE_FIELDS = {
    f"{kind}.{res}" for kind in ("limits", "requests") for res in ("cpu", "memory", "ephemeral-storage")
}


def resource_value(pod: Object, container: Object, ref: Object, allocatable: Mapping[str, str]) -> str:
    """A `resourceFieldRef` value, as Kubernetes computes it: the quantity divided by `divisor`, rounded up.

    An unset limit is the node's allocatable amount; an unset request is the
    limit when that is set (API defaulting), else 0.
    """
    field = ref.get("resource", "")
    if field not in _RESOURCE_FIELDS:
        raise EnvError(f"resourceFieldRef.resource {field!r} is not one of {', '.join(sorted(_RESOURCE_FIELDS))}")
    target = container
    if ref.get("containerName"):
        target = next(
            (c for c in pod.get("spec", {}).get("containers") or [] if c.get("name") == ref["containerName"]), {}
        )
        if not target:
            raise EnvError(f"resourceFieldRef.containerName {ref['containerName']!r} is not a container of the pod")
    kind, _, resource = field.partition(".")
    resources = target.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if kind == "limits":
        raw = limits.get(resource, allocatable.get(resource, "0"))
    else:
        raw = requests.get(resource, limits.get(resource, "0"))
    try:
        amount, divisor = parse_quantity(raw), parse_quantity(ref.get("divisor") or "1")
    except ValueError as err:
        raise EnvError(f"resourceFieldRef {field}: {err}") from None
    if divisor <= 0:
        raise EnvError(f"resourceFieldRef {field}: divisor must be positive, got {ref.get('divisor')!r}")
    return str(math.ceil(amount / divisor))


def _value_from(
    pod: Object, container: Object, name: str, source: Object, sources: ConfigSources, allocatable: Mapping[str, str]
) -> str | None:
    """A `valueFrom` value; None when an optional source or key is missing (the variable is then left out)."""
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"].get("fieldPath", ""))
    if "resourceFieldRef" in source:
        return resource_value(pod, container, source["resourceFieldRef"], allocatable)
    kind = next((k for k in _KEY_KINDS if k in source), None)
    if kind is None:
        raise EnvError(
            f"env {name!r}: valueFrom supports fieldRef, resourceFieldRef, configMapKeyRef and secretKeyRef, "
            f"got {sorted(source)}"
        )
    ref = source[kind]
    data = _source_data(sources, _KEY_KINDS[kind], ref)
    if data is None:
        return None
    key = ref.get("key", "")
    if key not in data:
        if ref.get("optional"):
            return None
        raise EnvError(f'env {name!r}: key "{key}" not found in {_SINGULAR[_KEY_KINDS[kind]]} "{ref.get("name")}"')
    return data[key]


def container_env(
    pod: Object,
    container: Object,
    services: Iterable[Object],
    sources: ConfigSources | None = None,
    allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full environment of one container: envFrom, then env, over the service variables.

    `allocatable` (the node's) stands in for unset limits in resourceFieldRef.
    """
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    links = spec.get("enableServiceLinks", True)
    svc_env = service_env(visible_services(services, meta.get("namespace", "default"), links is not False))
    sources = sources or {}
    user = _from_sources(container, sources)
    for var in container.get("env") or []:
        name = var.get("name")
        if not name:
            raise EnvError(f"container {container.get('name')!r}: env entry without a name")
        if var.get("value"):
            user[name] = expand(var["value"], user, svc_env)
        elif var.get("valueFrom"):
            value = _value_from(pod, container, name, var["valueFrom"], sources, allocatable or {})
            if value is not None:
                user[name] = value
        else:
            user[name] = ""
    return {**svc_env, **user}
