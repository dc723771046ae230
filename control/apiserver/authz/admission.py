"""NodeRestriction admission: a node may change only its own Node, its own Leases and pods bound to it.

The Node authorizer decides on URL attributes; this plugin sees the objects
(the request body, the stored object, and for a patch the object it would
produce), as upstream's NodeRestriction does:

- Nodes: a node creates, updates and patches only the Node named after it,
  never changes its own taints once registered, and never sets, changes or
  removes a `node-restriction.kubernetes.io/` label (taints and those labels
  are for administrators to steer workloads by).
- Pods: status writes, evictions and the kubelet's final delete only for pods
  whose `spec.nodeName` is the node.
- Leases: in kube-node-lease only the node's own; the LoadBalancer speaker's
  `kproxy-lb.*` Leases in kube-system only with the node itself (or nobody) as
  holder.
- Service-account tokens: a token bound to an object must be bound to a pod
  on the node.
"""

from __future__ import annotations

import json
from typing import Any

from control.api import errors
from control.api.errors import ApiError
from control.api.resources import resource
from control.apiserver.authz.attributes import Attributes
from control.apiserver.authz.node import (
    NODE_LEASE_NAMESPACE,
    SPEAKER_LEASE_NAMESPACE,
    SPEAKER_LEASE_PREFIX,
    PodGraph,
    node_name,
)
from control.apiserver.registry import Registry, apply_patch

Object = dict[str, Any]

PLUGINS = ("NodeRestriction",)
RESTRICTED_LABEL_PREFIX = "node-restriction.kubernetes.io/"
_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


def parse_plugins(text: str) -> tuple[str, ...]:
    """`--enable-admission-plugins`: a comma list of plugins this server has; ValueError names an unknown one."""
    plugins = tuple(p.strip() for p in text.split(",") if p.strip())
    for plugin in plugins:
        if plugin not in PLUGINS:
            raise ValueError(f"--enable-admission-plugins: unknown plugin {plugin!r} (known: {', '.join(PLUGINS)})")
    return plugins


def _forbidden(attrs: Attributes, why: str) -> ApiError:
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return ApiError(
        errors.status_failure(
            403,
            "Forbidden",
            f"{subject} is forbidden: {why}",
            {k: v for k, v in {"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource}.items() if v},
        )
    )


def _labels(obj: Any) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def _taints(obj: Any) -> Any:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return (spec.get("taints") if isinstance(spec, dict) else None) or []


def _restricted_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = {k for k in (*old, *new) if k.startswith(RESTRICTED_LABEL_PREFIX)}
    return sorted(k for k in keys if old.get(k) != new.get(k))


class NodeRestriction:
    """Checks one node request's objects; `admit` raises a 403 ApiError when the node oversteps."""

    def __init__(self, registry: Registry, graph: PodGraph):
        self.registry = registry
        self.graph = graph

    async def admit(self, attrs: Attributes, content_type: str, body: Any) -> None:
        node = node_name(attrs.user)
        if node is None or not attrs.resource_request or attrs.read_only:
            return
        if attrs.api_group == "" and attrs.resource == "nodes":
            await self._node(node, attrs, content_type, body)
        elif attrs.api_group == "" and attrs.resource == "pods":
            await self._pod(node, attrs)
        elif attrs.api_group == "coordination.k8s.io" and attrs.resource == "leases":
            await self._lease(node, attrs, content_type, body)
        elif attrs.api_group == "" and attrs.resource == "serviceaccounts" and attrs.subresource == "token":
            await self._token(node, attrs, body)

    async def _new_object(self, attrs: Attributes, content_type: str, body: Any) -> tuple[Object | None, Any]:
        """(stored object or None, the object the write would store) for create, update and patch."""
        if attrs.verb == "create" or not attrs.name:
            return None, body
        res = resource(attrs.resource)
        try:
            current = await self.registry.get(res, attrs.namespace or None, attrs.name)
        except ApiError as err:
            if err.code == 404:
                return None, body
            raise
        if attrs.verb == "patch":
            patch_type = _PATCH_TYPES.get(content_type)
            if patch_type is None:
                return current, current  # the handler refuses the media type
            return current, apply_patch(res.kind, current, patch_type, body)
        if attrs.verb == "update":
            return current, body
        return current, current

    async def _node(self, node: str, attrs: Attributes, content_type: str, body: Any) -> None:
        if attrs.verb == "create":
            target = str(((body or {}).get("metadata") or {}).get("name", "")) if isinstance(body, dict) else ""
        else:
            target = attrs.name
        if target != node:
            raise _forbidden(attrs, f'node "{node}" is not allowed to modify node "{target}"')
        if attrs.subresource:
            return
        current, new = await self._new_object(attrs, content_type, body)
        if current is not None and _taints(current) != _taints(new):  # a node must not steer workloads to itself
            raise _forbidden(attrs, f'node "{node}" is not allowed to modify taints')
        changed = _restricted_changes(_labels(current), _labels(new))
        if changed:
            if current is None:
                raise _forbidden(
                    attrs, f'node "{node}" is not allowed to set the following labels: {", ".join(changed)}'
                )
            raise _forbidden(attrs, f"is not allowed to modify labels: {', '.join(changed)}")

    async def _pod(self, node: str, attrs: Attributes) -> None:
        if not attrs.name:
            raise _forbidden(attrs, f'node "{node}" can only act on pods bound to it, one at a time')
        bound = await self.graph.pod_bound(attrs.namespace, attrs.name)
        if bound == node:
            return
        try:
            pod = await self.registry.get(resource("pods"), attrs.namespace, attrs.name)
        except ApiError as err:
            if err.code == 404:
                return  # the handler answers 404, revealing nothing a node may not list anyway
            raise
        if str((pod.get("spec") or {}).get("nodeName") or "") == node:
            return
        what = {
            "status": "update pod status for pods",
            "eviction": "evict pods",
        }.get(attrs.subresource, "delete pods" if attrs.verb == "delete" else f"{attrs.verb} pods")
        raise _forbidden(attrs, f'node "{node}" can only {what} with spec.nodeName set to itself')

    async def _lease(self, node: str, attrs: Attributes, content_type: str, body: Any) -> None:
        current, new = await self._new_object(attrs, content_type, body)
        meta = (new or {}).get("metadata") if isinstance(new, dict) else None
        name = attrs.name or (str(meta.get("name", "")) if isinstance(meta, dict) else "")
        if attrs.namespace == NODE_LEASE_NAMESPACE:
            if name != node:
                raise _forbidden(attrs, "can only access node lease with the same name as the requesting node")
            return
        if attrs.namespace != SPEAKER_LEASE_NAMESPACE or not name.startswith(SPEAKER_LEASE_PREFIX):
            raise _forbidden(attrs, f"node '{node}' can only access its own node lease and kproxy-lb.* leases")
        if attrs.verb == "delete":
            return
        holder = ((new or {}).get("spec") or {}).get("holderIdentity") if isinstance(new, dict) else None
        if holder not in (None, "", node):
            raise _forbidden(attrs, f"node '{node}' cannot make {json.dumps(holder)} the holder of lease {name}")

    async def _token(self, node: str, attrs: Attributes, body: Any) -> None:
        spec = body.get("spec") if isinstance(body, dict) else None
        ref = spec.get("boundObjectRef") if isinstance(spec, dict) else None
        if not isinstance(ref, dict):
            return
        if ref.get("kind") != "Pod":
            raise _forbidden(attrs, "node requested token not bound to a pod")
        bound = await self.graph.pod_bound(attrs.namespace, str(ref.get("name", "")))
        if bound != node:
            raise _forbidden(attrs, "node requested token bound to a pod scheduled on a different node")
