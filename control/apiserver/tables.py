"""Server-side printing: `meta.k8s.io/v1` Table responses for `kubectl get`.

kubectl asks for `as=Table` and prints the columns it is given, so the
columns and cell formats here follow Kubernetes' own printers
(pkg/printers/internalversion): the same headers, the same STATUS and
AGE strings, the same `-o wide` (priority 1) columns.
"""

from __future__ import annotations

import calendar
import time
from typing import Any
from collections.abc import Callable

Object = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, description, priority

_NAME: Column = ("Name", "string", "Name must be unique within a namespace.", 0)
_AGE: Column = (
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
)


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: 45s, 5m3s, 3h12m, 5d, 2y10d."""
    if seconds < -1:
        return "<invalid>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // (24 * 365)}y"


def _since(timestamp: Any) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = calendar.timegm(time.strptime(str(timestamp)[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<unknown>"
    return human_duration(time.time() - then)


def _age(obj: Object) -> str:
    return _since((obj.get("metadata") or {}).get("creationTimestamp"))


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _or_none(value: str) -> str:
    return value if value else "<none>"


# -- pods --------------------------------------------------------------------

POD_COLUMNS: list[Column] = [
    _NAME,
    ("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
    ("Status", "string", "The aggregate status of the containers in this pod.", 0),
    (
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container "
        "in this pod has restarted.",
        0,
    ),
    _AGE,
    (
        "IP",
        "string",
        "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        1,
    ),
    ("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
    ("Nominated Node", "string", "nominatedNodeName is set when this pod preempts other pods on the node.", 1),
    ("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
]


def pod_status_reason(pod: Object) -> str:
    """The STATUS column: phase, refined by container states, then Terminating."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        total = len((pod.get("spec") or {}).get("initContainers") or [])
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{total}"
        break
    else:
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            state = container.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated"):
                terminated = state["terminated"]
                reason = terminated.get("reason") or (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode')}"
                )
            elif state.get("running") and container.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod_row(pod: Object) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    last_restart = None
    for container in statuses:
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished
    restarts_text = f"{restarts} ({_since(last_restart)} ago)" if restarts and last_restart else str(restarts)
    gates = spec.get("readinessGates") or []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_text = (
        f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}/{len(gates)}"
        if gates
        else "<none>"
    )
    return [
        _name(pod),
        f"{ready}/{total}",
        pod_status_reason(pod),
        restarts_text,
        _age(pod),
        _or_none(status.get("podIP", "")),
        _or_none(spec.get("nodeName", "")),
        _or_none(status.get("nominatedNodeName", "")),
        gates_text,
    ]


# -- workloads ---------------------------------------------------------------

_CONTAINERS: Column = ("Containers", "string", "Names of each container in the template.", 1)
_IMAGES: Column = ("Images", "string", "Images referenced by each container in the template.", 1)
_SELECTOR: Column = ("Selector", "string", "Label selector for pods.", 1)


def _template_columns(obj: Object) -> list[str]:
    spec = obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = spec.get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{expr.get('key')} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr.get('key')} notin ({values})")
        elif op == "Exists":
            parts.append(str(expr.get("key")))
        else:
            parts.append(f"!{expr.get('key')}")
    return [
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        ",".join(parts) or "<none>",
    ]


DEPLOYMENT_COLUMNS: list[Column] = [
    _NAME,
    ("Ready", "string", "Number of the pod with ready state", 0),
    (
        "Up-to-date",
        "integer",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        0,
    ),
    (
        "Available",
        "integer",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        0,
    ),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
]


def _deployment_row(obj: Object) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        _name(obj),
        f"{int(status.get('readyReplicas') or 0)}/{int(spec.get('replicas') or 0)}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        _age(obj),
        *_template_columns(obj),
    ]


REPLICASET_COLUMNS: list[Column] = [
    _NAME,
    ("Desired", "integer", "Number of desired pods.", 0),
    ("Current", "integer", "Number of actual replicas.", 0),
    ("Ready", "integer", "The number of ready replicas for this replica set.", 0),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _SELECTOR,
]


def _replicaset_row(obj: Object) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        _name(obj),
        int(spec.get("replicas") or 0),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        _age(obj),
        *_template_columns(obj),
    ]


# -- services and endpoints --------------------------------------------------

SERVICE_COLUMNS: list[Column] = [
    _NAME,
    ("Type", "string", "The type of the service.", 0),
    ("Cluster-IP", "string", "The cluster IP of the service.", 0),
    ("External-IP", "string", "The external IP of the service.", 0),
    ("Port(s)", "string", "The ports of the service.", 0),
    _AGE,
    ("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
]


def _external_ip(spec: Object, status: Object) -> str:
    kind = spec.get("type", "ClusterIP")
    external = list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        ips = [ip for ip in ingress + external if ip]
        return ",".join(ips) if ips else "<pending>"
    return ",".join(external) if external else "<none>"


def _service_row(obj: Object) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ports = []
    for port in spec.get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    cluster_ip = spec.get("clusterIP") or ("<none>" if spec.get("type") == "ExternalName" else "")
    return [
        _name(obj),
        spec.get("type", "ClusterIP"),
        cluster_ip,
        _external_ip(spec, status),
        ",".join(ports) or "<none>",
        _age(obj),
        selector or "<none>",
    ]


ENDPOINTS_COLUMNS: list[Column] = [
    _NAME,
    ("Endpoints", "string", "Endpoints of the resource.", 0),
    _AGE,
]


def _endpoints_row(obj: Object) -> list[Any]:
    pairs = []
    for subset in obj.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for address in subset.get("addresses") or []:
            for port in ports:
                pairs.append(f"{address.get('ip')}:{port}" if port is not None else str(address.get("ip")))
    text = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
    return [_name(obj), text or "<none>", _age(obj)]


# -- nodes, namespaces, events and the rest ----------------------------------

NODE_COLUMNS: list[Column] = [
    _NAME,
    ("Status", "string", "The status of the node", 0),
    ("Roles", "string", "The roles of the node", 0),
    _AGE,
    ("Version", "string", "Kubelet Version reported by the node.", 0),
    ("Internal-IP", "string", "List of addresses reachable to the node.", 1),
    ("External-IP", "string", "List of addresses reachable to the node.", 1),
    ("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    ("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    ("Container-Runtime", "string", "Container runtime version reported by the node.", 1),
]


def _node_row(obj: Object) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else {"True": "Ready", "False": "NotReady"}.get(ready.get("status"), "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(
        {k[len("node-role.kubernetes.io/") :] for k in labels if k.startswith("node-role.kubernetes.io/")}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    addresses = status.get("addresses") or []
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        return ",".join(a.get("address", "") for a in addresses if a.get("type") == kind) or "<none>"

    return [
        _name(obj),
        state,
        ",".join(r for r in roles if r) or "<none>",
        _age(obj),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


NAMESPACE_COLUMNS: list[Column] = [
    _NAME,
    ("Status", "string", "The status of the namespace", 0),
    _AGE,
]


def _namespace_row(obj: Object) -> list[Any]:
    return [_name(obj), (obj.get("status") or {}).get("phase", ""), _age(obj)]


EVENT_COLUMNS: list[Column] = [
    ("Last Seen", "string", "Time since the most recent occurrence of this event.", 0),
    ("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
    (
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for this event being generated.",
        0,
    ),
    ("Object", "string", "The object that this event is about.", 0),
    ("Subobject", "string", "The subobject (e.g. container) this event is about.", 1),
    ("Source", "string", "The component reporting this event.", 1),
    ("Message", "string", "A human-readable description of the status of this operation.", 0),
    ("First Seen", "string", "The first time this event was seen.", 1),
    ("Count", "string", "The number of times this event has occurred.", 1),
    ("Name", "string", "Name must be unique within a namespace.", 1),
]


def _event_row(obj: Object) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    source = obj.get("source") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or (obj.get("metadata") or {}).get("creationTimestamp")
    first = obj.get("firstTimestamp") or obj.get("eventTime") or last
    source_text = source.get("component", "") + (f", {source['host']}" if source.get("host") else "")
    return [
        _since(last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        source_text or obj.get("reportingComponent", ""),
        str(obj.get("message", "")).strip(),
        _since(first),
        str(obj.get("count") or 1),
        _name(obj),
    ]


CONFIGMAP_COLUMNS: list[Column] = [_NAME, ("Data", "string", "Number of data keys.", 0), _AGE]
SECRET_COLUMNS: list[Column] = [
    _NAME,
    ("Type", "string", "The type of the secret.", 0),
    ("Data", "string", "The number of entries in the secret.", 0),
    _AGE,
]
LEASE_COLUMNS: list[Column] = [_NAME, ("Holder", "string", "The holder of the lease.", 0), _AGE]
GENERIC_COLUMNS: list[Column] = [_NAME, _AGE]
SERVICE_ACCOUNT_COLUMNS: list[Column] = [_NAME, ("Secrets", "string", "The number of secrets.", 0), _AGE]
CSR_COLUMNS: list[Column] = [
    _NAME,
    _AGE,
    ("SignerName", "string", "The name of the signer that is requested to sign the certificate.", 0),
    ("Requestor", "string", "Name of the user who requested the CSR.", 0),
    ("RequestedDuration", "string", "The requested duration of the certificate.", 0),
    ("Condition", "string", "The decision and whether a certificate was issued.", 0),
]


def _csr_row(obj: Object) -> list[Any]:
    """kubectl's CSR columns: Condition is Denied, Approved or Pending, then ",Failed" and ",Issued" as they apply."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    held = {c.get("type", "") for c in status.get("conditions") or [] if c.get("status", "True") == "True"}
    condition = "Denied" if "Denied" in held else "Approved" if "Approved" in held else "Pending"
    if "Failed" in held:
        condition += ",Failed"
    if status.get("certificate"):
        condition += ",Issued"
    seconds = spec.get("expirationSeconds")
    duration = human_duration(seconds) if isinstance(seconds, int) else "<none>"
    return [_name(obj), _age(obj), spec.get("signerName", ""), spec.get("username", ""), duration, condition]


ROLE_COLUMNS: list[Column] = [
    _NAME,
    (
        "Created At",
        "date",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    ),
]
ROLE_BINDING_COLUMNS: list[Column] = [
    _NAME,
    (
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        0,
    ),
    _AGE,
    ("Users", "string", "Users in the roleBinding", 1),
    ("Groups", "string", "Groups in the roleBinding", 1),
    ("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", 1),
]


def _role_binding_row(obj: Object) -> list[Any]:
    """ROLE as Kind/name; -o wide lists the subjects by kind (service accounts as namespace/name)."""
    ref = obj.get("roleRef") or {}
    subjects = [s for s in obj.get("subjects") or [] if isinstance(s, dict)]

    def named(kind: str) -> str:
        return ", ".join(
            f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount" else str(s.get("name", ""))
            for s in subjects
            if s.get("kind") == kind
        )

    return [
        _name(obj),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _age(obj),
        named("User"),
        named("Group"),
        named("ServiceAccount"),
    ]


HPA_COLUMNS: list[Column] = [
    _NAME,
    ("Reference", "string", "Reference to the object whose scale this autoscaler controls.", 0),
    ("Targets", "string", "Current and target value of each metric.", 0),
    ("MinPods", "string", "Lower limit for the number of pods that can be set by the autoscaler, default 1.", 0),
    ("MaxPods", "integer", "Upper limit for the number of pods that can be set by the autoscaler.", 0),
    ("Replicas", "integer", "Current number of replicas of pods managed by this autoscaler.", 0),
    _AGE,
]


def _metric_value(target: Object) -> str:
    if "averageUtilization" in target:
        return f"{target['averageUtilization']}%"
    for field in ("averageValue", "value"):
        if field in target:
            return str(target[field])
    return "<unknown>"


def _hpa_targets(spec: Object, status: Object) -> str:
    """`cpu: 45%/50%` per metric, as kubectl shows them; a metric not measured yet is `<unknown>`."""
    current = {
        (m.get("resource") or m.get("containerResource") or {}).get("name"): m
        for m in status.get("currentMetrics") or []
        if isinstance(m, dict)
    }
    shown = []
    for metric in spec.get("metrics") or []:
        source = metric.get("resource") or metric.get("containerResource")
        if not isinstance(source, dict):
            shown.append(f"{metric.get('type', '')}: <unknown>")
            continue
        name = source.get("name", "")
        measured = (current.get(name) or {}).get("resource") or (current.get(name) or {}).get("containerResource")
        now = _metric_value((measured or {}).get("current") or {}) if measured else "<unknown>"
        shown.append(f"{name}: {now}/{_metric_value(source.get('target') or {})}")
    if len(shown) > 2:
        return f"{', '.join(shown[:2])} + {len(shown) - 2} more..."
    return ", ".join(shown) or "<none>"


def _hpa_row(obj: Object) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [
        _name(obj),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_targets(spec, status),
        "<unset>" if min_pods is None else str(min_pods),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _age(obj),
    ]


ENDPOINT_SLICE_COLUMNS: list[Column] = [
    _NAME,
    ("AddressType", "string", "The address type of this EndpointSlice.", 0),
    ("Ports", "string", "The ports of this EndpointSlice.", 0),
    ("Endpoints", "string", "The addresses of the endpoints of this EndpointSlice.", 0),
    _AGE,
]


def _endpoint_slice_row(obj: Object) -> list[Any]:
    """Ports and up to three addresses, then `+ N more...`, as kubectl shows them."""
    ports = [str(p.get("port")) for p in obj.get("ports") or [] if isinstance(p, dict) and p.get("port") is not None]
    addresses = [a for e in obj.get("endpoints") or [] if isinstance(e, dict) for a in e.get("addresses") or []]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [_name(obj), obj.get("addressType", ""), ",".join(ports) or "<unset>", shown or "<unset>", _age(obj)]


PRINTERS: dict[str, tuple[list[Column], Callable[[Object], list[Any]]]] = {
    "Pod": (POD_COLUMNS, _pod_row),
    "Deployment": (DEPLOYMENT_COLUMNS, _deployment_row),
    "ReplicaSet": (REPLICASET_COLUMNS, _replicaset_row),
    "Service": (SERVICE_COLUMNS, _service_row),
    "Endpoints": (ENDPOINTS_COLUMNS, _endpoints_row),
    "Node": (NODE_COLUMNS, _node_row),
    "Namespace": (NAMESPACE_COLUMNS, _namespace_row),
    "Event": (EVENT_COLUMNS, _event_row),
    "ConfigMap": (
        CONFIGMAP_COLUMNS,
        lambda o: [_name(o), str(len(o.get("data") or {}) + len(o.get("binaryData") or {})), _age(o)],
    ),
    "Secret": (SECRET_COLUMNS, lambda o: [_name(o), o.get("type", ""), str(len(o.get("data") or {})), _age(o)]),
    "Lease": (LEASE_COLUMNS, lambda o: [_name(o), (o.get("spec") or {}).get("holderIdentity", ""), _age(o)]),
    "Role": (ROLE_COLUMNS, lambda o: [_name(o), (o.get("metadata") or {}).get("creationTimestamp", "")]),
    "ClusterRole": (ROLE_COLUMNS, lambda o: [_name(o), (o.get("metadata") or {}).get("creationTimestamp", "")]),
    "RoleBinding": (ROLE_BINDING_COLUMNS, _role_binding_row),
    "ClusterRoleBinding": (ROLE_BINDING_COLUMNS, _role_binding_row),
    "ServiceAccount": (SERVICE_ACCOUNT_COLUMNS, lambda o: [_name(o), str(len(o.get("secrets") or [])), _age(o)]),
    "CertificateSigningRequest": (CSR_COLUMNS, _csr_row),
    "HorizontalPodAutoscaler": (HPA_COLUMNS, _hpa_row),
    "EndpointSlice": (ENDPOINT_SLICE_COLUMNS, _endpoint_slice_row),
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _row_object(obj: Object, include: str) -> Object | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def to_table(kind: str, objects: list[Object], list_metadata: Object, include_object: str = "Metadata") -> Object:
    """A Table of `objects`; `include_object` is the `?includeObject=` value."""
    columns, row_of = PRINTERS.get(kind, (GENERIC_COLUMNS, lambda o: [_name(o), _age(o)]))
    rows = []
    for obj in objects:
        row: Object = {"cells": row_of(obj)}
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": [
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": description,
                "priority": priority,
            }
            for name, type_, description, priority in columns
        ],
        "rows": rows,
    }
