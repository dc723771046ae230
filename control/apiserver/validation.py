"""Defaulting and validation of API objects, per kind, as Kubernetes does them.

`apply_defaults` fills what Kubernetes' defaulting functions fill (so a
stored object looks the same as on a real cluster); `validate` returns the
field errors Kubernetes' validation would give, as (field path, cause
type, message) triples for a 422 Invalid; `unknown_fields` implements
`?fieldValidation=Strict` for the fields this server knows.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any
from collections.abc import Callable

from control.api.errors import ApiError
from control.api.selectors import from_label_selector, matches

Object = dict[str, Any]
Cause = tuple[str, str, str]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def dns1123_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', "
            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return errors


def dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
            "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        )
    return errors


# Which name rule each kind's metadata.name follows (Kubernetes' ValidateName funcs).
def path_segment_name_errors(value: str) -> list[str]:
    """Kubernetes' IsValidPathSegmentName: RBAC names may hold ':' (system:node), never '/' or '%'."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NAME_RULES: dict[str, Callable[[str], list[str]]] = {
    "Namespace": dns1123_label_errors,
    "Service": dns1035_label_errors,
    "Role": path_segment_name_errors,
    "ClusterRole": path_segment_name_errors,
    "RoleBinding": path_segment_name_errors,
    "ClusterRoleBinding": path_segment_name_errors,
}


def name_errors(kind: str, name: str) -> list[str]:
    return NAME_RULES.get(kind, dns1123_subdomain_errors)(name)


# -- defaults ----------------------------------------------------------------


def _default_container(container: Object) -> None:
    image = str(container.get("image") or "")
    if "imagePullPolicy" not in container:
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last and "@" not in last else ("" if "@" not in last else "digest")
        container["imagePullPolicy"] = "Always" if tag in ("", "latest") else "IfNotPresent"
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            http = probe.get("httpGet")
            if isinstance(http, dict):
                http.setdefault("path", "/")
                http.setdefault("scheme", "HTTP")


def default_pod_spec(spec: Object) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("securityContext", {})
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                _default_container(container)
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            for source in ("configMap", "secret"):
                if isinstance(volume.get(source), dict):
                    volume[source].setdefault("defaultMode", 420)
            if not any(k != "name" for k in volume):
                volume["emptyDir"] = {}


def _default_template(spec: Object) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def _defaults_pod(obj: Object) -> None:
    if isinstance(obj.get("spec"), dict):
        default_pod_spec(obj["spec"])


def _defaults_service(obj: Object) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _defaults_workload(obj: Object, deployment: bool) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    if deployment:
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def _defaults_namespace(obj: Object) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    labels = obj.setdefault("metadata", {}).setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")


def _defaults_secret(obj: Object) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _defaults_hpa(obj: Object) -> None:
    """minReplicas 1 and, with no metrics, 80% average CPU utilization (autoscaling/v2 defaults)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]


RBAC_GROUP = "rbac.authorization.k8s.io"


def _defaults_binding(obj: Object) -> None:
    """Subjects' apiGroup, as SetDefaults_Subject: rbac for User/Group, core for ServiceAccount."""
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and "apiGroup" not in subject:
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = RBAC_GROUP
            elif subject.get("kind") == "ServiceAccount":
                subject["apiGroup"] = ""


DEFAULTERS: dict[str, Callable[[Object], None]] = {
    "Pod": _defaults_pod,
    "Service": _defaults_service,
    "Deployment": lambda obj: _defaults_workload(obj, True),
    "ReplicaSet": lambda obj: _defaults_workload(obj, False),
    "Namespace": _defaults_namespace,
    "Secret": _defaults_secret,
    "HorizontalPodAutoscaler": _defaults_hpa,
    "RoleBinding": _defaults_binding,
    "ClusterRoleBinding": _defaults_binding,
}


def apply_defaults(kind: str, obj: Object) -> None:
    defaulter = DEFAULTERS.get(kind)
    if defaulter is not None:
        defaulter(obj)


# -- validation --------------------------------------------------------------


def _required(path: str) -> Cause:
    return (path, "FieldValueRequired", "Required value")


def _invalid(path: str, value: Any, why: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
    return (path, "FieldValueInvalid", f"Invalid value: {shown}: {why}")


def _unsupported(path: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    choices = ", ".join(f'"{a}"' for a in allowed)
    return (path, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {choices}')


def _duplicate(path: str, value: Any) -> Cause:
    return (path, "FieldValueDuplicate", f"Duplicate value: {value!r}".replace("'", '"'))


def _port_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _labels(path: str, labels: Any) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [_invalid(path, labels, "must be a map of string keys to string values")]
    causes = []
    for key, value in labels.items():
        if not re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key) or len(key) > 316:
            causes.append(_invalid(path, key, "name part must consist of alphanumeric characters, '-', '_' or '.'"))
        if (
            not isinstance(value, str)
            or len(value) > 63
            or not re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value)
        ):
            causes.append(
                _invalid(
                    f"{path}",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return causes


def validate_metadata(kind: str, meta: Any) -> list[Cause]:
    if not isinstance(meta, dict):
        return [_required("metadata")]
    causes: list[Cause] = []
    name = meta.get("name")
    if not name:
        causes.append(("metadata.name", "FieldValueRequired", "name or generateName is required"))
    elif not isinstance(name, str):
        causes.append(_invalid("metadata.name", name, "must be a string"))
    else:
        for message in name_errors(kind, name):
            causes.append(_invalid("metadata.name", name, message))
    causes += _labels("metadata.labels", meta.get("labels"))
    annotations = meta.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        causes.append(_invalid("metadata.annotations", "", "annotations must be a map of strings"))
    return causes


_PROTOCOLS = ("SCTP", "TCP", "UDP")


def _validate_container(path: str, container: Any, seen: set[str]) -> list[Cause]:
    if not isinstance(container, dict):
        return [_invalid(path, container, "must be an object")]
    causes: list[Cause] = []
    name = container.get("name")
    if not name:
        causes.append(_required(f"{path}.name"))
    elif not isinstance(name, str) or dns1123_label_errors(name):
        causes.append(
            _invalid(
                f"{path}.name",
                name,
                "a lowercase RFC 1123 label must consist of lower case "
                "alphanumeric characters or '-', and must start and end with an alphanumeric character",
            )
        )
    elif name in seen:
        causes.append(_duplicate(f"{path}.name", name))
    else:
        seen.add(name)
    if not container.get("image"):
        causes.append(_required(f"{path}.image"))
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        causes.append(_unsupported(f"{path}.imagePullPolicy", policy, ("Always", "IfNotPresent", "Never")))
    for i, port in enumerate(container.get("ports") or []):
        port_path = f"{path}.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(_invalid(port_path, port, "must be an object"))
            continue
        if "containerPort" not in port:
            causes.append(_required(f"{port_path}.containerPort"))
        elif not _port_ok(port["containerPort"]):
            causes.append(
                _invalid(f"{port_path}.containerPort", port["containerPort"], "must be between 1 and 65535, inclusive")
            )
        if port.get("protocol") not in (None, *_PROTOCOLS):
            causes.append(_unsupported(f"{port_path}.protocol", port["protocol"], _PROTOCOLS))
    for i, env in enumerate(container.get("env") or []):
        if not isinstance(env, dict) or not env.get("name"):
            causes.append(_required(f"{path}.env[{i}].name"))
    return causes


def validate_pod_spec(path: str, spec: Any) -> list[Cause]:
    if not isinstance(spec, dict):
        return [_required(path)]
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers or not isinstance(containers, list):
        causes.append(_required(f"{path}.containers"))
    seen: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field) or []):
            causes += _validate_container(f"{path}.{field}[{i}]", container, seen)
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in ("Always", "OnFailure", "Never"):
        causes.append(_unsupported(f"{path}.restartPolicy", restart, ("Always", "OnFailure", "Never")))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        causes.append(
            _unsupported(f"{path}.dnsPolicy", dns, ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"))
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(_invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"))
    volume_names: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name") if isinstance(volume, dict) else None
        if not name:
            causes.append(_required(f"{path}.volumes[{i}].name"))
        elif name in volume_names:
            causes.append(_duplicate(f"{path}.volumes[{i}].name", name))
        else:
            volume_names.add(name)
    return causes


def _validate_pod(obj: Object) -> list[Cause]:
    return validate_pod_spec("spec", obj.get("spec"))


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _validate_service(obj: Object) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        causes.append(_unsupported("spec.type", kind, _SERVICE_TYPES))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless and kind != "ExternalName":
        causes.append(_required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(_invalid(path, port, "must be an object"))
            continue
        name = port.get("name")
        if len(ports) > 1 and not name:
            causes.append(_required(f"{path}.name"))
        if name:
            if not _IANA_SVC_NAME.match(str(name)) or dns1123_label_errors(str(name)):
                causes.append(
                    _invalid(
                        f"{path}.name",
                        name,
                        "a DNS-1123 label must consist of lower case alphanumeric "
                        "characters or '-', and must start and end with an alphanumeric character",
                    )
                )
            elif name in names:
                causes.append(_duplicate(f"{path}.name", name))
            names.add(name)
        if "port" not in port:
            causes.append(_required(f"{path}.port"))
        elif not _port_ok(port["port"]):
            causes.append(_invalid(f"{path}.port", port["port"], "must be between 1 and 65535, inclusive"))
        if port.get("protocol") not in (None, *_PROTOCOLS):
            causes.append(_unsupported(f"{path}.protocol", port["protocol"], _PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, int) and not _port_ok(target):
            causes.append(_invalid(f"{path}.targetPort", target, "must be between 1 and 65535, inclusive"))
        node_port = port.get("nodePort")
        if node_port is not None and kind not in ("NodePort", "LoadBalancer"):
            causes.append(_invalid(f"{path}.nodePort", node_port, "may not be used when `type` is 'ClusterIP'"))
    if kind == "ExternalName" and not spec.get("externalName"):
        causes.append(_required("spec.externalName"))
    affinity = spec.get("sessionAffinity")
    if affinity is not None and affinity not in ("ClientIP", "None"):
        causes.append(_unsupported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    causes += _labels("spec.selector", spec.get("selector"))
    return causes


def _validate_workload(obj: Object) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(_invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(_required("spec.selector"))
        selector = None
    template = spec.get("template")
    if not isinstance(template, dict):
        causes.append(_required("spec.template"))
        return causes
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector is not None:
        try:
            ok = matches(from_label_selector(selector), labels)
        except ApiError:
            ok = False
            causes.append(_invalid("spec.selector", selector, "invalid label selector"))
        if not ok:
            causes.append(
                _invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
            )
    causes += validate_pod_spec("spec.template.spec", template.get("spec"))
    if isinstance(template.get("spec"), dict) and template["spec"].get("restartPolicy", "Always") != "Always":
        causes.append(_unsupported("spec.template.spec.restartPolicy", template["spec"]["restartPolicy"], ("Always",)))
    return causes


def _validate_data(obj: Object) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("data", "binaryData"):
        data = obj.get(field)
        if data is None:
            continue
        if not isinstance(data, dict):
            causes.append(_invalid(field, data, "must be a map"))
            continue
        for key, value in data.items():
            if not _CONFIG_KEY.match(key) or len(key) > 253:
                causes.append(
                    _invalid(
                        f"{field}[{key}]",
                        key,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    )
                )
            if obj.get("kind") == "Secret" or field == "binaryData":
                try:
                    base64.b64decode(str(value), validate=True)
                except (binascii.Error, ValueError):
                    causes.append(_invalid(f"{field}[{key}]", "<value>", "must be base64-encoded"))
            elif not isinstance(value, str):
                causes.append(_invalid(f"{field}[{key}]", value, "must be a string"))
    return causes


def _validate_endpoints(obj: Object) -> list[Cause]:
    causes: list[Cause] = []
    for i, subset in enumerate(obj.get("subsets") or []):
        for field in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(subset.get(field) or []):
                if not isinstance(address, dict) or not address.get("ip"):
                    causes.append(_required(f"subsets[{i}].{field}[{j}].ip"))
        for j, port in enumerate(subset.get("ports") or []):
            if not isinstance(port, dict) or not _port_ok(port.get("port")):
                causes.append(
                    _invalid(
                        f"subsets[{i}].ports[{j}].port",
                        (port or {}).get("port"),
                        "must be between 1 and 65535, inclusive",
                    )
                )
    return causes


_ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")


def _validate_endpoint_slice(obj: Object) -> list[Cause]:
    causes: list[Cause] = []
    address_type = obj.get("addressType")
    if address_type is None:
        causes.append(_required("addressType"))
    elif address_type not in _ADDRESS_TYPES:
        causes.append(_unsupported("addressType", address_type, _ADDRESS_TYPES))
    endpoints = obj.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        return causes + [_invalid("endpoints", endpoints, "must be a list")]
    for i, endpoint in enumerate(endpoints or []):
        addresses = endpoint.get("addresses") if isinstance(endpoint, dict) else None
        if not isinstance(addresses, list) or not addresses:
            causes.append(_required(f"endpoints[{i}].addresses"))
            continue
        for j, address in enumerate(addresses):
            if address_type in ("IPv4", "IPv6"):
                try:
                    parsed = ipaddress.ip_address(address)
                except (ValueError, TypeError):
                    causes.append(_invalid(f"endpoints[{i}].addresses[{j}]", address, "must be a valid IP address"))
                    continue
                if parsed.version != (4 if address_type == "IPv4" else 6):
                    why = f"must be an {address_type} address"
                    causes.append(_invalid(f"endpoints[{i}].addresses[{j}]", address, why))
    ports = obj.get("ports")
    if ports is not None and not isinstance(ports, list):
        return causes + [_invalid("ports", ports, "must be a list")]
    for i, port in enumerate(ports or []):
        number = port.get("port") if isinstance(port, dict) else None
        if number is not None and not _port_ok(number):
            causes.append(_invalid(f"ports[{i}].port", number, "must be between 1 and 65535, inclusive"))
    return causes


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _validate_hpa(obj: Object) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    target = spec.get("scaleTargetRef")
    if not isinstance(target, dict):
        causes.append(_required("spec.scaleTargetRef"))
    else:
        for field in ("kind", "name"):
            if not isinstance(target.get(field), str) or not target.get(field):
                causes.append(_required(f"spec.scaleTargetRef.{field}"))
    maximum = spec.get("maxReplicas")
    if not _positive_int(maximum):
        causes.append(_invalid("spec.maxReplicas", maximum, "must be greater than or equal to 1"))
    minimum = spec.get("minReplicas", 1)
    if not _positive_int(minimum):
        causes.append(_invalid("spec.minReplicas", minimum, "must be greater than or equal to 1"))
    elif _positive_int(maximum) and minimum > maximum:
        causes.append(_invalid("spec.maxReplicas", maximum, "must be greater than or equal to `minReplicas`"))
    if spec.get("metrics") is not None and not isinstance(spec.get("metrics"), list):
        causes.append(_invalid("spec.metrics", spec.get("metrics"), "must be a list"))
    return causes


def _int_or_percent_ok(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    return isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) <= 100


def _validate_pdb(obj: Object) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.append(_invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for field in ("minAvailable", "maxUnavailable"):
        if field in spec and not _int_or_percent_ok(spec[field]):
            causes.append(_invalid(f"spec.{field}", spec[field], "must be a non-negative integer or a percentage"))
    if spec.get("selector") is not None and not isinstance(spec.get("selector"), dict):
        causes.append(_invalid("spec.selector", spec.get("selector"), "must be a label selector"))
    return causes


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _validate_rules(rules: Any, namespaced: bool) -> list[Cause]:
    """ValidatePolicyRule for each rule: verbs always; resource rules or non-resource URLs, never both."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [_invalid("rules", rules, "must be a list of policy rules")]
    causes: list[Cause] = []
    for index, rule in enumerate(rules):
        path = f"rules[{index}]"
        if not isinstance(rule, dict):
            causes.append(_invalid(path, rule, "must be a policy rule object"))
            continue
        for field in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
            if rule.get(field) is not None and not _string_list(rule[field]):
                causes.append(_invalid(f"{path}.{field}", rule[field], "must be a list of strings"))
        if not rule.get("verbs"):
            causes.append(
                (f"{path}.verbs", "FieldValueRequired", "Required value: verbs must contain at least one value")
            )
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                causes.append(
                    _invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
                )
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(
                    _invalid(
                        f"{path}.nonResourceURLs",
                        urls,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.get("apiGroups"):
            causes.append(
                (
                    f"{path}.apiGroups",
                    "FieldValueRequired",
                    "Required value: resource rules must supply at least one api group",
                )
            )
        if not rule.get("resources"):
            causes.append(
                (
                    f"{path}.resources",
                    "FieldValueRequired",
                    "Required value: resource rules must supply at least one resource",
                )
            )
    return causes


def _validate_role(obj: Object) -> list[Cause]:
    return _validate_rules(obj.get("rules"), namespaced=True)


def _validate_cluster_role(obj: Object) -> list[Cause]:
    causes = _validate_rules(obj.get("rules"), namespaced=False)
    aggregation = obj.get("aggregationRule")
    if aggregation is None:
        return causes
    selectors = aggregation.get("clusterRoleSelectors") if isinstance(aggregation, dict) else None
    if not isinstance(selectors, list):
        return causes + [
            _invalid("aggregationRule.clusterRoleSelectors", selectors, "must be a list of label selectors")
        ]
    for index, selector in enumerate(selectors):
        try:
            from_label_selector(selector if isinstance(selector, dict) else None)
        except ApiError as err:
            causes.append(_invalid(f"aggregationRule.clusterRoleSelectors[{index}]", selector, str(err)))
    return causes


SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _validate_binding(obj: Object, role_kinds: tuple[str, ...], namespaced: bool) -> list[Cause]:
    """ValidateRoleBinding / ValidateClusterRoleBinding: the roleRef and each subject."""
    causes: list[Cause] = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        causes.append(_required("roleRef"))
    else:
        if ref.get("apiGroup") != RBAC_GROUP:
            causes.append(_unsupported("roleRef.apiGroup", ref.get("apiGroup", ""), (RBAC_GROUP,)))
        if ref.get("kind") not in role_kinds:
            causes.append(_unsupported("roleRef.kind", ref.get("kind", ""), role_kinds))
        name = ref.get("name")
        if not name or not isinstance(name, str):
            causes.append(_required("roleRef.name"))
        else:
            causes += [_invalid("roleRef.name", name, why) for why in path_segment_name_errors(name)]
    subjects = obj.get("subjects")
    if subjects is not None and not isinstance(subjects, list):
        return causes + [_invalid("subjects", subjects, "must be a list of subjects")]
    for index, subject in enumerate(subjects or []):
        path = f"subjects[{index}]"
        if not isinstance(subject, dict):
            causes.append(_invalid(path, subject, "must be a subject object"))
            continue
        name, kind, group = subject.get("name"), subject.get("kind"), subject.get("apiGroup", "")
        if not name or not isinstance(name, str):
            causes.append(_required(f"{path}.name"))
        if kind == "ServiceAccount":
            if group != "":
                causes.append(_unsupported(f"{path}.apiGroup", group, ("",)))
            if isinstance(name, str) and name:
                causes += [_invalid(f"{path}.name", name, why) for why in dns1123_subdomain_errors(name)]
            if not subject.get("namespace") and not namespaced:
                causes.append(_required(f"{path}.namespace"))
        elif kind in ("User", "Group"):
            if group != RBAC_GROUP:
                causes.append(_unsupported(f"{path}.apiGroup", group, (RBAC_GROUP,)))
        else:
            causes.append(_unsupported(f"{path}.kind", kind or "", SUBJECT_KINDS))
    return causes


VALIDATORS: dict[str, Callable[[Object], list[Cause]]] = {
    "Pod": _validate_pod,
    "Service": _validate_service,
    "Deployment": _validate_workload,
    "ReplicaSet": _validate_workload,
    "ConfigMap": _validate_data,
    "Secret": _validate_data,
    "Endpoints": _validate_endpoints,
    "EndpointSlice": _validate_endpoint_slice,
    "HorizontalPodAutoscaler": _validate_hpa,
    "PodDisruptionBudget": _validate_pdb,
    "Role": _validate_role,
    "ClusterRole": _validate_cluster_role,
    "RoleBinding": lambda obj: _validate_binding(obj, ("Role", "ClusterRole"), namespaced=True),
    "ClusterRoleBinding": lambda obj: _validate_binding(obj, ("ClusterRole",), namespaced=False),
}


def validate(kind: str, obj: Object) -> list[Cause]:
    causes = validate_metadata(kind, obj.get("metadata"))
    validator = VALIDATORS.get(kind)
    if validator is not None:
        causes += validator(obj)
    return causes


# -- strict field validation -------------------------------------------------

_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_COMMON = frozenset({"apiVersion", "kind", "metadata"})
TOP_LEVEL_FIELDS: dict[str, frozenset[str]] = {
    "Namespace": _COMMON | {"spec", "status"},
    "Node": _COMMON | {"spec", "status"},
    "Pod": _COMMON | {"spec", "status"},
    "Service": _COMMON | {"spec", "status"},
    "Endpoints": _COMMON | {"subsets"},
    "Event": _COMMON
    | {
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "series",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    },
    "ConfigMap": _COMMON | {"data", "binaryData", "immutable"},
    "Secret": _COMMON | {"data", "stringData", "type", "immutable"},
    "Deployment": _COMMON | {"spec", "status"},
    "ReplicaSet": _COMMON | {"spec", "status"},
    "Lease": _COMMON | {"spec"},
    "EndpointSlice": _COMMON | {"addressType", "endpoints", "ports"},
    "HorizontalPodAutoscaler": _COMMON | {"spec", "status"},
    "PodDisruptionBudget": _COMMON | {"spec", "status"},
    "Eviction": _COMMON | {"deleteOptions"},
    "Role": _COMMON | {"rules"},
    "ClusterRole": _COMMON | {"rules", "aggregationRule"},
    "RoleBinding": _COMMON | {"subjects", "roleRef"},
    "ClusterRoleBinding": _COMMON | {"subjects", "roleRef"},
    "SelfSubjectAccessReview": _COMMON | {"spec", "status"},
    "SelfSubjectRulesReview": _COMMON | {"spec", "status"},
    "SubjectAccessReview": _COMMON | {"spec", "status"},
    "LocalSubjectAccessReview": _COMMON | {"spec", "status"},
}
_CONTAINER_FIELDS = frozenset(
    {
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
    }
)
_POD_SPEC_FIELDS = frozenset(
    {
        "volumes",
        "initContainers",
        "containers",
        "ephemeralContainers",
        "restartPolicy",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "dnsPolicy",
        "nodeSelector",
        "serviceAccountName",
        "serviceAccount",
        "automountServiceAccountToken",
        "nodeName",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "shareProcessNamespace",
        "securityContext",
        "imagePullSecrets",
        "hostname",
        "subdomain",
        "affinity",
        "schedulerName",
        "tolerations",
        "hostAliases",
        "priorityClassName",
        "priority",
        "dnsConfig",
        "readinessGates",
        "runtimeClassName",
        "enableServiceLinks",
        "preemptionPolicy",
        "overhead",
        "topologySpreadConstraints",
        "setHostnameAsFQDN",
        "os",
        "hostUsers",
        "schedulingGates",
        "resourceClaims",
        "resources",
    }
)
_WORKLOAD_SPEC_FIELDS = frozenset(
    {
        "replicas",
        "selector",
        "template",
        "strategy",
        "minReadySeconds",
        "revisionHistoryLimit",
        "paused",
        "progressDeadlineSeconds",
    }
)
_SERVICE_SPEC_FIELDS = frozenset(
    {
        "ports",
        "selector",
        "clusterIP",
        "clusterIPs",
        "type",
        "externalIPs",
        "sessionAffinity",
        "loadBalancerIP",
        "loadBalancerSourceRanges",
        "externalName",
        "externalTrafficPolicy",
        "healthCheckNodePort",
        "publishNotReadyAddresses",
        "sessionAffinityConfig",
        "ipFamilies",
        "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts",
        "loadBalancerClass",
        "internalTrafficPolicy",
        "trafficDistribution",
    }
)


def _unknown_in(obj: Any, allowed: frozenset[str], path: str) -> list[str]:
    if not isinstance(obj, dict):
        return []
    return [f"{path}{key}" for key in obj if key not in allowed]


def _containers_unknown(spec: Any, path: str) -> list[str]:
    if not isinstance(spec, dict):
        return []
    found = _unknown_in(spec, _POD_SPEC_FIELDS, path)
    for field in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(field) or []):
            found += _unknown_in(container, _CONTAINER_FIELDS, f"{path}{field}[{i}].")
    return found


def unknown_fields(kind: str, obj: Object) -> list[str]:
    """Dotted paths of fields Kubernetes' strict decoding would reject."""
    found = _unknown_in(obj, TOP_LEVEL_FIELDS.get(kind, _COMMON), "")
    found += _unknown_in(obj.get("metadata"), _META_FIELDS, "metadata.")
    spec = obj.get("spec")
    if kind == "Pod":
        found += _containers_unknown(spec, "spec.")
    elif kind in ("Deployment", "ReplicaSet") and isinstance(spec, dict):
        found += _unknown_in(spec, _WORKLOAD_SPEC_FIELDS, "spec.")
        template = spec.get("template")
        if isinstance(template, dict):
            found += _unknown_in(template, frozenset({"metadata", "spec"}), "spec.template.")
            found += _unknown_in(template.get("metadata"), _META_FIELDS, "spec.template.metadata.")
            found += _containers_unknown(template.get("spec"), "spec.template.spec.")
    elif kind == "Service":
        found += _unknown_in(spec, _SERVICE_SPEC_FIELDS, "spec.")
    return found
