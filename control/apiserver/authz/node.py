"""The `Node` authorization mode: what a node's credentials (`system:node:<name>` in `system:nodes`) may do.

As upstream's node authorizer: the request must first fall under the
`system:node` rules (NODE_RULES, the kubelet's and here also kproxy's needs),
then objects that hold data are narrowed by the graph of pods bound to the
node: a Secret, ConfigMap or PersistentVolumeClaim only when a pod on the
node refers to it, a service-account token only for an account a pod on the
node runs as.  Leases: the node's own heartbeat Lease in kube-node-lease and
the LoadBalancer speaker's `kproxy-lb.*` Leases in kube-system.  Writes to
Nodes and pods pass here and are narrowed to the node's own by the
NodeRestriction admission plugin (admission.py), which sees the objects.

The graph is an index over the API server's pod watch cache, brought up to
the cache's revision from the cache's change history on each question (so it
is never behind what the cache serves); a "no relationship" answer first makes
the cache current, so a pod bound a moment ago counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from control.api.resources import resource
from control.apiserver.authn import UserInfo
from control.apiserver.authz.attributes import Attributes
from control.apiserver.authz.authorizer import ALLOW, NO_OPINION, Decision
from control.apiserver.authz.bootstrap import NODE_RULES
from control.apiserver.authz.rbac import rule_covers
from control.apiserver.cache import ResourceCache, WatchCache
from control.apiserver.storage import Change

Object = dict[str, Any]

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"
SPEAKER_LEASE_NAMESPACE = "kube-system"
SPEAKER_LEASE_PREFIX = "kproxy-lb."

Ref = tuple[str, str, str]  # (kind: secret | configmap | pvc | serviceaccount, namespace, name)


def node_name(user: UserInfo) -> str | None:
    """The node a user is, when it is one (name prefix and group, as upstream's NodeIdentifier)."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX) :] or None


def pod_refs(pod: Object) -> set[Ref]:
    """Every Secret, ConfigMap, claim and service account a pod needs its node to read."""
    spec = pod.get("spec") or {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    refs: set[Ref] = set()

    def add(kind: str, name: Any) -> None:
        if isinstance(name, str) and name:
            refs.add((kind, namespace, name))

    add("serviceaccount", spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    for secret in spec.get("imagePullSecrets") or []:
        if isinstance(secret, dict):
            add("secret", secret.get("name"))
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        add("secret", (volume.get("secret") or {}).get("secretName"))
        add("configmap", (volume.get("configMap") or {}).get("name"))
        add("pvc", (volume.get("persistentVolumeClaim") or {}).get("claimName"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if isinstance(source, dict):
                add("secret", (source.get("secret") or {}).get("name"))
                add("configmap", (source.get("configMap") or {}).get("name"))
    for container in _containers(spec):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}) if isinstance(env, dict) else {}
            add("secret", (ref.get("secretKeyRef") or {}).get("name"))
            add("configmap", (ref.get("configMapKeyRef") or {}).get("name"))
        for source in container.get("envFrom") or []:
            if isinstance(source, dict):
                add("secret", (source.get("secretRef") or {}).get("name"))
                add("configmap", (source.get("configMapRef") or {}).get("name"))
    return refs


def _containers(spec: Object) -> Iterator[Object]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                yield container


def _bound_node(pod: Object | None) -> str:
    return str(((pod or {}).get("spec") or {}).get("nodeName") or "")


class PodGraph:
    """Which node needs which object, from the pods bound to each node; reference-counted per pod."""

    def __init__(self, cache: WatchCache):
        self.cache = cache
        self._source: ResourceCache | None = None
        self._revision = 0
        self._pods: dict[str, tuple[str, tuple[str, str], frozenset[Ref]]] = {}  # key -> (node, (ns, name), refs)
        self._edges: dict[tuple[str, Ref], int] = {}
        self._bound: dict[tuple[str, str], str] = {}  # (namespace, name) -> node

    async def _cache(self) -> ResourceCache:
        return await self.cache.resource(resource("pods").storage_prefix(None))

    async def related(self, node: str, ref: Ref, fresh: bool = False) -> bool:
        """Whether a pod bound to `node` refers to `ref`."""
        source = await self._cache()
        if fresh:
            await source.wait_fresh()
            source = await self._cache()
        self._catch_up(source)
        return self._edges.get((node, ref), 0) > 0

    async def pod_bound(self, namespace: str, name: str) -> str:
        """The node a pod is bound to ("" if none or unknown), as the watch cache has it now."""
        self._catch_up(await self._cache())
        return self._bound.get((namespace, name), "")

    def _catch_up(self, source: ResourceCache) -> None:
        if source is not self._source or self._revision < source.oldest:
            self._rebuild(source)
            return
        pending: list[Change] = []
        for change in reversed(source.history):
            if change.revision <= self._revision:
                break
            pending.append(change)
        for change in reversed(pending):
            self._set(change.key, change.obj if change.kind != "DELETE" else None)
        self._revision = source.revision

    def _rebuild(self, source: ResourceCache) -> None:
        self._source, self._revision = source, source.revision
        self._pods, self._edges, self._bound = {}, {}, {}
        for key, obj in source.objects.items():
            self._set(key, obj)

    def _set(self, key: str, pod: Object | None) -> None:
        old = self._pods.pop(key, None)
        if old is not None:
            node, pod_name, refs = old
            self._bound.pop(pod_name, None)
            for ref in refs:
                edge = (node, ref)
                self._edges[edge] -= 1
                if not self._edges[edge]:
                    del self._edges[edge]
        node = _bound_node(pod)
        if pod is None or not node:
            return
        refs = frozenset(pod_refs(pod))
        meta = pod.get("metadata") or {}
        pod_name = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self._pods[key] = (node, pod_name, refs)
        self._bound[pod_name] = node
        for ref in refs:
            self._edges[(node, ref)] = self._edges.get((node, ref), 0) + 1


_GRAPH_KINDS = {"secrets": "secret", "configmaps": "configmap", "persistentvolumeclaims": "pvc"}


class NodeAuthorizer:
    """The `Node` mode: NODE_RULES for node identities, narrowed by the pod graph and Lease names."""

    name = "Node"

    def __init__(self, graph: PodGraph):
        self.graph = graph

    async def authorize(self, attrs: Attributes) -> Decision:
        node = node_name(attrs.user)
        if node is None:
            return NO_OPINION
        if not any(rule_covers(rule, attrs) for rule in NODE_RULES):
            return NO_OPINION
        if not attrs.resource_request or attrs.api_group not in ("", "coordination.k8s.io"):
            return ALLOW
        if attrs.api_group == "coordination.k8s.io":
            return self._lease(node, attrs)
        kind = _GRAPH_KINDS.get(attrs.resource)
        if attrs.resource == "serviceaccounts" and attrs.subresource == "token":
            kind = "serviceaccount"
        elif attrs.resource == "persistentvolumes":
            return Decision("", f"no relationship found between node '{node}' and this object")
        if kind is None:
            return ALLOW
        if not attrs.name:
            return Decision("", f"node '{node}' cannot {attrs.verb} all {attrs.resource}")
        ref = (kind, attrs.namespace, attrs.name)
        if await self.graph.related(node, ref) or await self.graph.related(node, ref, fresh=True):
            return ALLOW
        return Decision("", f"no relationship found between node '{node}' and this object")

    @staticmethod
    def _lease(node: str, attrs: Attributes) -> Decision:
        if attrs.resource != "leases" or attrs.subresource:
            return NO_OPINION
        if attrs.namespace == NODE_LEASE_NAMESPACE and (
            attrs.name == node or (not attrs.name and attrs.verb == "create")
        ):
            return ALLOW
        if attrs.namespace == SPEAKER_LEASE_NAMESPACE and (
            attrs.name.startswith(SPEAKER_LEASE_PREFIX) or (not attrs.name and attrs.verb == "create")
        ):
            return ALLOW
        return Decision("", "can only access node lease with the same name as the requesting node")
