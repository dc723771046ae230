"""What filters and scores read, worked out once: per node as pods are added, per pod once per attempt.

kube-scheduler keeps a NodeInfo per node (allocatable, requested sums, ports,
pods with affinity) and parses each pod's affinity terms once (its PodInfo);
this module is that cache, so the per-node work of one scheduling attempt is
a handful of attribute reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from collections.abc import Iterable, Mapping

from control.api.quantity import milli_value, whole_value
from control.api.selectors import Requirement, Selector, from_label_selector, matches

Object = dict[str, Any]
HostPort = tuple[str, str, int]  # (hostIP, protocol, hostPort)

# Scoring counts a container without requests as this much, as kube-scheduler's
# non-zero defaults do, so empty pods still spread by allocation.
SCORING_DEFAULT_CPU_MILLI = 100
SCORING_DEFAULT_MEMORY = 200 * 1024 * 1024

BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
PREFER_NO_SCHEDULE = "PreferNoSchedule"

# Pods repeat a few quantity strings ("100m", "128Mi") thousands of times; parsing is exact but not cheap.
_milli = lru_cache(maxsize=1024)(milli_value)
_whole = lru_cache(maxsize=1024)(whole_value)

_AFFINITY_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", "Gt": ">", "Lt": "<"}


def is_terminated(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def node_is_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _container_requests(container: Mapping[str, Any]) -> tuple[int, int]:
    """(cpu millicores, memory bytes); a container with only limits requests its limits, as API defaulting makes it."""
    resources = container.get("resources") or {}
    wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    cpu = _milli(wanted["cpu"]) if "cpu" in wanted else 0
    memory = _whole(wanted["memory"]) if "memory" in wanted else 0
    return cpu, memory


def _sum_requests(spec: Mapping[str, Any], non_zero: bool) -> tuple[int, int]:
    """Containers add up; each init container runs alone, so the pod needs the larger of the two.

    With non_zero, a container asking for no cpu (memory) counts as the scoring default, as upstream's
    NonZeroRequested does for the resource scores.
    """
    cpu = memory = 0
    for container in spec.get("containers") or []:
        c, m = _container_requests(container)
        if non_zero:
            c, m = c or SCORING_DEFAULT_CPU_MILLI, m or SCORING_DEFAULT_MEMORY
        cpu, memory = cpu + c, memory + m
    for container in spec.get("initContainers") or []:
        c, m = _container_requests(container)
        if non_zero:
            c, m = c or SCORING_DEFAULT_CPU_MILLI, m or SCORING_DEFAULT_MEMORY
        cpu, memory = max(cpu, c), max(memory, m)
    return cpu, memory


def host_ports(pod: Mapping[str, Any]) -> frozenset[HostPort]:
    ports = set()
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ports.add((port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", int(port["hostPort"])))
    return frozenset(ports)


def controller_uid(pod: Mapping[str, Any]) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def node_term_matches(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """One nodeSelectorTerm: all its expressions and fields hold (an empty term matches nothing)."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    for expr in expressions:
        op = _AFFINITY_OPERATORS.get(expr.get("operator", ""))
        if op is None:
            return False
        if not Requirement(expr.get("key", ""), op, tuple(str(v) for v in expr.get("values") or ())).matches(labels):
            return False
    for expr in fields:
        op = _AFFINITY_OPERATORS.get(expr.get("operator", ""))
        if op not in ("in", "notin") or expr.get("key") != "metadata.name":
            return False
        if not Requirement("metadata.name", op, tuple(expr.get("values") or ())).matches({"metadata.name": name}):
            return False
    return True


@dataclass(frozen=True, slots=True)
class PodAffinityTerm:
    """A pod (anti-)affinity term parsed once: which pods it is about, the topology key, and its weight.

    namespaces default to the namespace of the pod that carries the term; a term without labelSelector
    selects nothing. Required terms carry weight 1 (upstream's hardPodAffinityWeight, used when scoring
    existing pods' required affinity).
    """

    namespaces: frozenset[str]
    selector: Selector | None
    topology_key: str
    weight: int = 1

    @classmethod
    def parse(cls, term: Mapping[str, Any], owner_namespace: str, weight: int = 1) -> PodAffinityTerm:
        selector = term.get("labelSelector")
        return cls(
            frozenset(term.get("namespaces") or [owner_namespace]),
            None if selector is None else from_label_selector(selector),
            str(term.get("topologyKey", "")),
            weight,
        )

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        return self.selector is not None and namespace in self.namespaces and matches(self.selector, labels)


def _required_terms(affinity: Mapping[str, Any], kind: str, namespace: str) -> tuple[PodAffinityTerm, ...]:
    section = affinity.get(kind) or {}
    return tuple(
        PodAffinityTerm.parse(t, namespace) for t in section.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    )


def _preferred_terms(affinity: Mapping[str, Any], kind: str, namespace: str) -> tuple[PodAffinityTerm, ...]:
    section = affinity.get(kind) or {}
    return tuple(
        PodAffinityTerm.parse(t.get("podAffinityTerm") or {}, namespace, int(t.get("weight") or 0))
        for t in section.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        if t.get("weight")
    )


@dataclass(frozen=True, slots=True)
class PodFacts:
    """Everything filters and scores need from one pod, parsed once (upstream's PodInfo)."""

    key: str  # namespace/name
    namespace: str
    labels: Mapping[str, str]
    cpu: int  # requests: millicores
    memory: int  # requests: bytes
    scoring_cpu: int  # requests with the non-zero defaults, for the resource scores
    scoring_memory: int
    host_ports: frozenset[HostPort]
    owner: str | None  # controller uid
    tolerations: tuple[Mapping[str, Any], ...]
    node_selector: Mapping[str, str]
    required_node_terms: tuple[Mapping[str, Any], ...] | None  # None: no required node affinity
    preferred_node_terms: tuple[tuple[int, Mapping[str, Any]], ...]  # (weight, nodeSelectorTerm)
    affinity: tuple[PodAffinityTerm, ...]  # required pod affinity
    anti_affinity: tuple[PodAffinityTerm, ...]  # required pod anti-affinity
    preferred_affinity: tuple[PodAffinityTerm, ...]
    preferred_anti_affinity: tuple[PodAffinityTerm, ...]

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodFacts:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        namespace = str(meta.get("namespace") or "")
        affinity = spec.get("affinity") or {}
        node_affinity = affinity.get("nodeAffinity") or {}
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        cpu, memory = _sum_requests(spec, non_zero=False)
        scoring_cpu, scoring_memory = _sum_requests(spec, non_zero=True)
        return cls(
            key=f"{namespace}/{meta.get('name', '')}",
            namespace=namespace,
            labels=meta.get("labels") or {},
            cpu=cpu,
            memory=memory,
            scoring_cpu=scoring_cpu,
            scoring_memory=scoring_memory,
            host_ports=host_ports(pod),
            owner=controller_uid(pod),
            tolerations=tuple(spec.get("tolerations") or ()),
            node_selector=spec.get("nodeSelector") or {},
            required_node_terms=None if required is None else tuple(required.get("nodeSelectorTerms") or ()),
            preferred_node_terms=tuple(
                (int(t.get("weight") or 0), t.get("preference") or {})
                for t in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
                if t.get("weight")
            ),
            affinity=_required_terms(affinity, "podAffinity", namespace),
            anti_affinity=_required_terms(affinity, "podAntiAffinity", namespace),
            preferred_affinity=_preferred_terms(affinity, "podAffinity", namespace),
            preferred_anti_affinity=_preferred_terms(affinity, "podAntiAffinity", namespace),
        )

    @property
    def has_pod_affinity(self) -> bool:
        """Any pod (anti-)affinity term, required or preferred: upstream's PodsWithAffinity membership."""
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti_affinity)

    @property
    def has_preferred_pod_affinity(self) -> bool:
        return bool(self.preferred_affinity or self.preferred_anti_affinity)

    def matches_node_selection(self, labels: Mapping[str, str], name: str) -> bool:
        """nodeSelector (every label equal) and required node affinity (any term)."""
        for key, value in self.node_selector.items():
            if labels.get(key) != value:
                return False
        if self.required_node_terms is None:
            return True
        return any(node_term_matches(term, labels, name) for term in self.required_node_terms)


class NodeInfo:
    """A node and the (non-terminated) pods bound or assumed to it, with the sums filters and scores need.

    The node's own facts are read once per node update (`set_node`); `add` and `remove` keep the pod sums
    current, so the scheduler's cache follows informer events and assumed bindings without rebuilding
    anything (kube-scheduler's cache). `plain` marks a Ready, schedulable node without NoSchedule/NoExecute
    taints, which every pod passes the first filters on without looking further.
    """

    __slots__ = (
        "node",
        "name",
        "labels",
        "ready",
        "unschedulable",
        "taints",
        "prefer_no_schedule",
        "plain",
        "allocatable_cpu",
        "allocatable_memory",
        "allocatable_pods",
        "pods",
        "requested_cpu",
        "requested_memory",
        "scoring_cpu",
        "scoring_memory",
        "used_ports",
        "owners",
        "with_affinity",
        "resource_state",
        "free_pods",
        "free_cpu",
        "free_memory",
    )

    def __init__(self, node: Object, pods: Iterable[Object] = ()):
        self.pods: dict[str, PodFacts] = {}  # pod key -> its facts
        self.requested_cpu = self.requested_memory = 0
        self.scoring_cpu = self.scoring_memory = 0
        self.used_ports: Counter[HostPort] = Counter()
        self.owners: Counter[str] = Counter()  # controller uid -> pods here
        self.with_affinity: dict[str, PodFacts] = {}  # pods here with any pod (anti-)affinity term
        self.set_node(node)
        for pod in pods:
            self.add(PodFacts.of(pod))

    def set_node(self, node: Object) -> None:
        """Take the node's (new) labels, taints, readiness and allocatable; the pods stay."""
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        self.node = node
        self.name = str(meta.get("name", ""))
        self.labels: Mapping[str, str] = meta.get("labels") or {}
        self.ready = node_is_ready(node)
        self.unschedulable = bool(spec.get("unschedulable"))
        taints = list(spec.get("taints") or [])
        self.taints = [t for t in taints if t.get("effect") in BLOCKING_EFFECTS]
        self.prefer_no_schedule = [t for t in taints if t.get("effect") == PREFER_NO_SCHEDULE]
        self.plain = self.ready and not self.unschedulable and not self.taints
        self.allocatable_cpu = _milli(allocatable.get("cpu", 0))
        self.allocatable_memory = _whole(allocatable.get("memory", 0))
        self.allocatable_pods = _whole(allocatable.get("pods", 0))
        self._update_sums()

    def add(self, facts: PodFacts) -> None:
        """Count a pod bound (or assumed) here; a pod counted already is replaced."""
        self.remove(facts.key)
        self.pods[facts.key] = facts
        self._count(facts, 1)
        if facts.has_pod_affinity:
            self.with_affinity[facts.key] = facts
        self._update_sums()

    def remove(self, key: str) -> None:
        """Stop counting a pod (gone, finished, or its assumed binding failed); unknown keys are ignored."""
        facts = self.pods.pop(key, None)
        if facts is None:
            return
        self._count(facts, -1)
        self.with_affinity.pop(key, None)
        self._update_sums()

    def _count(self, facts: PodFacts, sign: int) -> None:
        self.requested_cpu += sign * facts.cpu
        self.requested_memory += sign * facts.memory
        self.scoring_cpu += sign * facts.scoring_cpu
        self.scoring_memory += sign * facts.scoring_memory
        for port in facts.host_ports:
            self.used_ports[port] += sign
            if self.used_ports[port] <= 0:
                del self.used_ports[port]
        if facts.owner is not None:
            self.owners[facts.owner] += sign
            if self.owners[facts.owner] <= 0:
                del self.owners[facts.owner]

    def _update_sums(self) -> None:
        """Room left (a pod requesting nothing still fits an overcommitted node: see _filter) and the
        resource state: all the resource scores depend on, so nodes with equal states score any pod equally."""
        self.free_pods = self.allocatable_pods - len(self.pods)
        self.free_cpu = self.allocatable_cpu - self.requested_cpu
        self.free_memory = self.allocatable_memory - self.requested_memory
        # A string, whose hash Python caches: scoring looks it up once per node per attempt.
        self.resource_state = (
            f"{self.allocatable_cpu} {self.allocatable_memory} {self.requested_cpu} {self.requested_memory}"
            f" {self.scoring_cpu} {self.scoring_memory}"
        )

    def topology(self, key: str) -> str | None:
        return self.labels.get(key)


def build_node_infos(nodes: Iterable[Object], pods: Iterable[Object]) -> list[NodeInfo]:
    """Pair each node with the non-terminated pods bound to it, sorted by node name."""
    by_name = {str(n["metadata"]["name"]): n for n in nodes}
    bound: dict[str, list[Object]] = {name: [] for name in by_name}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name in bound and not is_terminated(pod):
            bound[node_name].append(pod)
    return [NodeInfo(by_name[name], bound[name]) for name in sorted(by_name)]
