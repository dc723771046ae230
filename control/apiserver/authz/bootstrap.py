"""The bootstrap policy: Kubernetes' default ClusterRoles and bindings, reconciled at API server start.

As kube-apiserver's `rbac/bootstrap-roles` post-start hook does: a missing
role or binding is created; an existing one whose
`rbac.authorization.kubernetes.io/autoupdate` annotation is not "false" gets
the rules, labels, annotations, aggregation selectors and subjects it lacks
added (never removed: user additions stay); a binding whose roleRef changed
is recreated.  Component roles grant what pocketkube's components actually
call (see docs/rbac.md), named as upstream names them.

Aggregated ClusterRoles (admin, edit, view, and any user-made one with an
`aggregationRule`) get the union of the rules of the ClusterRoles their
selectors match, kept current by `aggregate_forever` (the clusterrole-aggregation
controller, run here because the API server owns the policy it depends on).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from control.api.errors import ApiError
from control.api.resources import resource
from control.api.selectors import from_label_selector, matches
from control.apiserver.registry import Registry, WriteOptions

log = logging.getLogger(__name__)

Object = dict[str, Any]

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
RBAC_GROUP = "rbac.authorization.k8s.io"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ_WRITE = READ + WRITE


def rule(verbs: Sequence[str], groups: Sequence[str], resources: Sequence[str], names: Sequence[str] = ()) -> Object:
    out: Object = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def url_rule(verbs: Sequence[str], urls: Sequence[str]) -> Object:
    return {"verbs": list(verbs), "nonResourceURLs": list(urls)}


def _event_rules() -> list[Object]:
    return [rule(("create", "patch", "update"), ("", "events.k8s.io"), ("events",))]


# What the kubelet and kproxy of a node may do; the Node authorizer narrows each to the node's own objects.
NODE_RULES: list[Object] = [
    rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
    rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews", "localsubjectaccessreviews")),
    rule(READ, ("",), ("services", "endpoints", "nodes", "pods")),
    rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
    rule(("create", "update", "patch"), ("",), ("nodes",)),
    rule(("update", "patch"), ("",), ("nodes/status",)),
    *_event_rules(),
    rule(("delete",), ("",), ("pods",)),
    rule(("update", "patch"), ("",), ("pods/status",)),
    rule(("create",), ("",), ("pods/eviction",)),
    rule(READ, ("",), ("configmaps", "secrets")),
    rule(("get",), ("",), ("persistentvolumeclaims", "persistentvolumes")),
    rule(("create",), ("",), ("serviceaccounts/token",)),
    rule(("create", "get", "list", "watch"), ("certificates.k8s.io",), ("certificatesigningrequests",)),
    rule(("get", "create", "update", "patch", "delete"), ("coordination.k8s.io",), ("leases",)),
]

_DISCOVERY_URLS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
)
_PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")

_VIEW_RULES = [
    rule(
        READ,
        ("",),
        (
            "pods",
            "pods/status",
            "pods/log",
            "services",
            "services/status",
            "endpoints",
            "configmaps",
            "serviceaccounts",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "limitranges",
            "resourcequotas",
            "bindings",
        ),
    ),
    rule(READ, ("",), ("namespaces", "namespaces/status")),
    rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
    rule(
        READ,
        ("apps",),
        (
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "daemonsets",
            "controllerrevisions",
        ),
    ),
    rule(READ, ("autoscaling",), ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
    rule(READ, ("batch",), ("jobs", "cronjobs")),
    rule(READ, ("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    rule(READ, ("networking.k8s.io",), ("ingresses", "networkpolicies")),
]
_EDIT_RULES = [
    rule(("impersonate",), ("",), ("serviceaccounts",)),
    rule(READ_WRITE, ("",), ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/eviction")),
    rule(
        READ_WRITE,
        ("",),
        ("services", "services/proxy", "endpoints", "configmaps", "secrets", "events", "persistentvolumeclaims"),
    ),
    rule(READ_WRITE, ("",), ("serviceaccounts", "replicationcontrollers", "replicationcontrollers/scale")),
    rule(("create",), ("",), ("serviceaccounts/token",)),
    rule(
        READ_WRITE,
        ("apps",),
        ("deployments", "deployments/scale", "deployments/rollback", "replicasets", "replicasets/scale"),
    ),
    rule(READ_WRITE, ("apps",), ("statefulsets", "statefulsets/scale", "daemonsets")),
    rule(READ_WRITE, ("autoscaling",), ("horizontalpodautoscalers",)),
    rule(READ_WRITE, ("batch",), ("jobs", "cronjobs")),
    rule(READ_WRITE, ("policy",), ("poddisruptionbudgets",)),
    rule(READ_WRITE, ("networking.k8s.io",), ("ingresses", "networkpolicies")),
    rule(READ_WRITE, ("discovery.k8s.io",), ("endpointslices",)),
    rule(READ_WRITE, ("coordination.k8s.io",), ("leases",)),
]
_ADMIN_RULES = [
    rule(("create",), ("authorization.k8s.io",), ("localsubjectaccessreviews",)),
    rule(READ_WRITE, (RBAC_GROUP,), ("roles", "rolebindings")),
]

_SCHEDULER_RULES = [
    *_event_rules(),
    rule(("create",), ("coordination.k8s.io",), ("leases",)),
    rule(("get", "update"), ("coordination.k8s.io",), ("leases",), ("kube-scheduler",)),
    rule(READ, ("",), ("nodes", "namespaces", "services", "persistentvolumeclaims", "persistentvolumes")),
    rule(READ + ("delete",), ("",), ("pods",)),
    rule(("create",), ("",), ("bindings", "pods/binding")),
    rule(("patch", "update"), ("",), ("pods/status",)),
    rule(READ, ("policy",), ("poddisruptionbudgets",)),
    rule(READ, ("apps",), ("replicasets", "statefulsets")),
    rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
    rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
]

# One identity runs every controller here (upstream gives each controller its own service account).
_CONTROLLER_MANAGER_RULES = [
    *_event_rules(),
    rule(("create",), ("coordination.k8s.io",), ("leases",)),
    rule(("get", "update"), ("coordination.k8s.io",), ("leases",), ("kube-controller-manager",)),
    rule(READ, ("coordination.k8s.io",), ("leases",)),
    rule(READ + ("patch", "update"), ("",), ("nodes",)),
    rule(("patch", "update"), ("",), ("nodes/status",)),
    rule(READ_WRITE, ("",), ("pods",)),
    rule(("patch", "update"), ("",), ("pods/status",)),
    rule(READ + ("patch", "update"), ("",), ("services",)),
    rule(("patch", "update"), ("",), ("services/status",)),
    rule(READ_WRITE, ("",), ("endpoints", "serviceaccounts", "configmaps")),
    rule(READ, ("",), ("namespaces", "secrets")),
    rule(READ_WRITE, ("discovery.k8s.io",), ("endpointslices",)),
    rule(READ_WRITE, ("apps",), ("replicasets", "deployments")),
    rule(("patch", "update"), ("apps",), ("replicasets/status", "deployments/status")),
    rule(("get", "patch", "update"), ("apps",), ("replicasets/scale", "deployments/scale")),
    rule(READ, ("autoscaling",), ("horizontalpodautoscalers",)),
    rule(("patch", "update"), ("autoscaling",), ("horizontalpodautoscalers/status",)),
    rule(("get", "list"), ("metrics.k8s.io",), ("pods", "nodes")),
    rule(READ, ("policy",), ("poddisruptionbudgets",)),
    rule(READ + ("delete",), ("certificates.k8s.io",), ("certificatesigningrequests",)),
    rule(
        ("update",),
        ("certificates.k8s.io",),
        ("certificatesigningrequests/approval", "certificatesigningrequests/status"),
    ),
    rule(
        ("approve", "sign"),
        ("certificates.k8s.io",),
        ("signers",),
        (
            "kubernetes.io/kube-apiserver-client-kubelet",
            "kubernetes.io/kubelet-serving",
            "kubernetes.io/kube-apiserver-client",
        ),
    ),
    rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
    rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
    rule(("create",), ("",), ("serviceaccounts/token",)),
]


def _cluster_role(name: str, rules: list[Object], labels: dict[str, str] | None = None) -> Object:
    return {
        "metadata": {
            "name": name,
            "labels": {**BOOTSTRAP_LABEL, **(labels or {})},
            "annotations": {AUTOUPDATE: "true"},
        },
        "rules": rules,
    }


def _aggregated(name: str, into: str | None) -> Object:
    role = _cluster_role(name, [], {f"{AGGREGATE_TO}{into}": "true"} if into else None)
    role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {f"{AGGREGATE_TO}{name}": "true"}}]}
    return role


def _subject(kind: str, name: str) -> Object:
    if kind == "ServiceAccount":
        namespace, _, account = name.partition("/")
        return {"kind": kind, "name": account, "namespace": namespace}
    return {"kind": kind, "apiGroup": RBAC_GROUP, "name": name}


def _binding(name: str, role: str, subjects: Iterable[tuple[str, str]]) -> Object:
    return {
        "metadata": {"name": name, "labels": dict(BOOTSTRAP_LABEL), "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [_subject(kind, subject) for kind, subject in subjects],
    }


def cluster_roles() -> list[Object]:
    """The default ClusterRoles, in creation order (aggregation sources before the roles that gather them)."""
    return [
        _cluster_role("cluster-admin", [rule(("*",), ("*",), ("*",)), url_rule(("*",), ("*",))]),
        _cluster_role("system:aggregate-to-view", _VIEW_RULES, {f"{AGGREGATE_TO}view": "true"}),
        _cluster_role("system:aggregate-to-edit", _EDIT_RULES, {f"{AGGREGATE_TO}edit": "true"}),
        _cluster_role("system:aggregate-to-admin", _ADMIN_RULES, {f"{AGGREGATE_TO}admin": "true"}),
        _cluster_role(
            "system:aggregated-metrics-reader",
            [rule(READ, ("metrics.k8s.io",), ("pods", "nodes"))],
            {f"{AGGREGATE_TO}{r}": "true" for r in ("view", "edit", "admin")},
        ),
        _aggregated("view", "edit"),
        _aggregated("edit", "admin"),
        _aggregated("admin", None),
        _cluster_role(
            "system:basic-user",
            [rule(("create",), ("authorization.k8s.io",), ("selfsubjectaccessreviews", "selfsubjectrulesreviews"))],
        ),
        _cluster_role("system:discovery", [url_rule(("get",), _DISCOVERY_URLS)]),
        _cluster_role("system:public-info-viewer", [url_rule(("get",), _PUBLIC_URLS)]),
        _cluster_role("system:monitoring", [url_rule(("get",), ("/metrics", "/livez", "/readyz", "/healthz"))]),
        _cluster_role(
            "system:auth-delegator",
            [
                rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
            ],
        ),
        _cluster_role("system:node", copy.deepcopy(NODE_RULES)),
        _cluster_role(
            "system:node-proxier",
            [
                rule(("list", "watch"), ("",), ("services", "endpoints")),
                rule(READ, ("",), ("nodes",)),
                rule(("list", "watch"), ("discovery.k8s.io",), ("endpointslices",)),
                *_event_rules(),
            ],
        ),
        _cluster_role(
            "system:kube-dns",
            [
                rule(("list", "watch"), ("",), ("services", "endpoints", "namespaces")),
                rule(("list", "watch"), ("discovery.k8s.io",), ("endpointslices",)),
                # kdns moves a peer that stops answering to notReadyAddresses of its own Service's Endpoints
                rule(("get", "update"), ("",), ("endpoints",), ("kube-dns",)),
            ],
        ),
        _cluster_role("system:kube-scheduler", _SCHEDULER_RULES),
        _cluster_role("system:kube-controller-manager", _CONTROLLER_MANAGER_RULES),
        _cluster_role(
            "system:node-bootstrapper",
            [rule(("create", "get", "list", "watch"), ("certificates.k8s.io",), ("certificatesigningrequests",))],
        ),
        _cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [rule(("create",), ("certificates.k8s.io",), ("certificatesigningrequests/nodeclient",))],
        ),
        _cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [rule(("create",), ("certificates.k8s.io",), ("certificatesigningrequests/selfnodeclient",))],
        ),
    ]


def namespaced_roles() -> list[Object]:
    """Upstream's namespaced defaults we need: the token cleaner deletes expired bootstrap tokens in kube-system."""
    role = _cluster_role(
        "system:controller:token-cleaner",
        [rule(("delete", "get", "list", "watch"), ("",), ("secrets",)), *_event_rules()],
    )
    role["metadata"]["namespace"] = "kube-system"
    return [role]


def namespaced_role_bindings() -> list[Object]:
    """Bound to the controller manager's one identity (upstream: the token-cleaner service account)."""
    binding = _binding(
        "system:controller:token-cleaner",
        "system:controller:token-cleaner",
        [("User", "system:kube-controller-manager")],
    )
    binding["metadata"]["namespace"] = "kube-system"
    binding["roleRef"]["kind"] = "Role"
    return [binding]


def cluster_role_bindings() -> list[Object]:
    """The default ClusterRoleBindings (upstream's, plus kubeadm's for node bootstrap)."""
    return [
        _binding("cluster-admin", "cluster-admin", [("Group", "system:masters")]),
        _binding("system:basic-user", "system:basic-user", [("Group", "system:authenticated")]),
        _binding("system:discovery", "system:discovery", [("Group", "system:authenticated")]),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
        ),
        _binding("system:monitoring", "system:monitoring", [("Group", "system:monitoring")]),
        _binding("system:node-proxier", "system:node-proxier", [("User", "system:kube-proxy")]),
        _binding("system:kube-dns", "system:kube-dns", [("User", "system:kube-dns")]),
        _binding("system:kube-scheduler", "system:kube-scheduler", [("User", "system:kube-scheduler")]),
        _binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            [("User", "system:kube-controller-manager")],
        ),
        _binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", [("Group", "system:bootstrappers")]),
        _binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [("Group", "system:bootstrappers")],
        ),
        _binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [("Group", "system:nodes")],
        ),
    ]


# -- reconciliation ----------------------------------------------------------


def _breakdown(r: Object) -> list[tuple[str, ...]]:
    """A rule as single (verb, group, resource, name) or (verb, url) grants, for coverage checks."""
    if r.get("nonResourceURLs"):
        return [(v, u) for v in r.get("verbs") or [] for u in r["nonResourceURLs"]]
    names = r.get("resourceNames") or [""]
    return [
        (v, g, res, n)
        for v in r.get("verbs") or []
        for g in r.get("apiGroups") or []
        for res in r.get("resources") or []
        for n in names
    ]


def _covered(grant: tuple[str, ...], rules: Iterable[Object]) -> bool:
    for r in rules:
        verbs = r.get("verbs") or []
        if grant[0] not in verbs and "*" not in verbs:
            continue
        if len(grant) == 2:
            urls = r.get("nonResourceURLs") or []
            if any(u == grant[1] or u == "*" or (u.endswith("*") and grant[1].startswith(u[:-1])) for u in urls):
                return True
            continue
        _, group, res, name = grant
        if r.get("nonResourceURLs"):
            continue
        if not any(g in ("*", group) for g in r.get("apiGroups") or []):
            continue
        if not any(x in ("*", res) for x in r.get("resources") or []):
            continue
        names = r.get("resourceNames") or []
        if names and name not in names:
            continue
        return True
    return False


def missing_rules(existing: list[Object], wanted: list[Object]) -> list[Object]:
    """The wanted rules some part of which the existing rules do not cover."""
    return [w for w in wanted if not all(_covered(g, existing) for g in _breakdown(w))]


def _merge_meta(current: Object, wanted: Object) -> bool:
    """Add the labels and annotations `current` lacks; True if it changed."""
    changed = False
    meta, wanted_meta = current.setdefault("metadata", {}), wanted["metadata"]
    for field in ("labels", "annotations"):
        have = meta.setdefault(field, {})
        for key, value in wanted_meta.get(field, {}).items():
            if key not in have:
                have[key] = value
                changed = True
    return changed


def reconcile_role(current: Object, wanted: Object) -> Object | None:
    """The role with what it lacks added, or None when nothing is to change (or autoupdate is off)."""
    if ((current.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) == "false":
        return None
    merged = copy.deepcopy(current)
    changed = _merge_meta(merged, wanted)
    if "aggregationRule" in wanted:
        selectors = (merged.setdefault("aggregationRule", {})).setdefault("clusterRoleSelectors", [])
        for selector in wanted["aggregationRule"]["clusterRoleSelectors"]:
            if selector not in selectors:
                selectors.append(selector)
                changed = True
    else:
        extra = missing_rules(merged.get("rules") or [], wanted["rules"])
        if extra:
            merged["rules"] = (merged.get("rules") or []) + extra
            changed = True
    return merged if changed else None


def reconcile_binding(current: Object, wanted: Object) -> Object | None:
    """The binding with missing subjects added; None when nothing is to change. roleRef changes recreate."""
    if ((current.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) == "false":
        return None
    merged = copy.deepcopy(current)
    changed = _merge_meta(merged, wanted)
    subjects = merged.setdefault("subjects", [])
    for subject in wanted["subjects"]:
        if not any(
            s.get("kind") == subject["kind"]
            and s.get("name") == subject["name"]
            and s.get("namespace", "") == subject.get("namespace", "")
            for s in subjects
        ):
            subjects.append(subject)
            changed = True
    return merged if changed else None


async def _ensure(registry: Registry, plural: str, wanted: Object) -> None:
    res = resource(plural)
    name = wanted["metadata"]["name"]
    namespace = wanted["metadata"].get("namespace")
    binding = plural in ("clusterrolebindings", "rolebindings")
    try:
        current = await registry.get(res, namespace, name)
    except ApiError as err:
        if err.code != 404:
            raise
        await registry.create(res, namespace, copy.deepcopy(wanted), WriteOptions())
        log.info("created bootstrap %s", plural[:-1], extra={"object": name})
        return
    if binding and current.get("roleRef") != wanted["roleRef"]:
        if ((current.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) != "false":
            key = res.storage_key(name, namespace)
            await registry.storage.delete(key, int(current["metadata"]["resourceVersion"]))
            await registry.create(res, namespace, copy.deepcopy(wanted), WriteOptions())
            log.info("recreated bootstrap binding with its default roleRef", extra={"object": name})
        return
    merged = (reconcile_binding if binding else reconcile_role)(current, wanted)
    if merged is not None:
        await registry.update(res, namespace, name, merged, WriteOptions())
        log.info("reconciled bootstrap %s", plural[:-1], extra={"object": name})


async def reconcile_policy(registry: Registry) -> None:
    """Create or top up every default role and binding, then aggregate once."""
    for role in cluster_roles():
        await _ensure(registry, "clusterroles", role)
    for binding in cluster_role_bindings():
        await _ensure(registry, "clusterrolebindings", binding)
    for role in namespaced_roles():
        await _ensure(registry, "roles", role)
    for binding in namespaced_role_bindings():
        await _ensure(registry, "rolebindings", binding)
    await aggregate_once(registry)


# -- aggregation -------------------------------------------------------------


def aggregated_rules(role: Object, roles: Iterable[Object]) -> list[Object]:
    """The union of the rules of every other ClusterRole a selector of `role` matches, in name order."""
    selectors = [
        from_label_selector(s)
        for s in ((role.get("aggregationRule") or {}).get("clusterRoleSelectors") or [])
        if isinstance(s, dict)
    ]
    name = (role.get("metadata") or {}).get("name")
    rules: list[Object] = []
    for other in sorted(roles, key=lambda r: str((r.get("metadata") or {}).get("name"))):
        meta = other.get("metadata") or {}
        if meta.get("name") == name or not any(matches(s, meta.get("labels")) for s in selectors):
            continue
        for r in other.get("rules") or []:
            if r not in rules:
                rules.append(r)
    return rules


async def aggregate_once(registry: Registry) -> int:
    """Write aggregated rules where they differ; the number of roles changed."""
    res = resource("clusterroles")
    cache = await registry.cache.resource(res.storage_prefix(None))
    roles = list(cache.objects.values())
    changed = 0
    for role in roles:
        if not isinstance(role.get("aggregationRule"), dict):
            continue
        try:
            rules = aggregated_rules(role, roles)
        except ApiError as err:  # a selector validation let through cannot be evaluated
            log.warning("cannot aggregate", extra={"role": role["metadata"]["name"], "error": str(err)})
            continue
        if rules != (role.get("rules") or []):
            try:
                await registry.update(res, None, role["metadata"]["name"], {**role, "rules": rules}, WriteOptions())
                changed += 1
            except ApiError as err:
                if err.code not in (404, 409):
                    raise
    return changed


async def aggregate_forever(registry: Registry) -> None:
    """Re-aggregate after every change to ClusterRoles (one pass per batch of changes)."""
    res = resource("clusterroles")
    while True:
        cache = await registry.cache.resource(res.storage_prefix(None))
        subscription = cache.subscribe(cache.revision)
        if subscription is None:
            await asyncio.sleep(1.0)
            continue
        try:
            await aggregate_once(registry)
            while await subscription.next() is not None:
                await aggregate_once(registry)
        except Exception as err:  # etcd may be away for a while; aggregation must outlive it
            log.warning("clusterrole aggregation failed", extra={"error": str(err)})
            await asyncio.sleep(1.0)
        finally:
            cache.unsubscribe(subscription)
