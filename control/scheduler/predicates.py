"""The scheduler's decisions as pure functions: which nodes fit, which is best, and why none did.

Filters run in kube-scheduler's plugin order and stop at the first failing
one per node, so the reasons (and the FailedScheduling message built from
them) read like the upstream scheduler's.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable, Mapping

from control.api.selectors import Requirement, from_label_selector, matches
from control.api.quantity import milli_value, whole_value
from control.scheduler.taints import first_untolerated, format_taint, tolerated

Object = dict[str, Any]

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NOT_READY = "node(s) were not ready"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_AFFINITY_RULES = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"

# Preemption could only help where a filter failed for lack of room; every
# other failure is UnschedulableAndUnresolvable upstream.
_RESOLVABLE_PREFIXES = (
    "Insufficient ",
    REASON_TOO_MANY_PODS,
    REASON_PORTS,
    REASON_ANTI_AFFINITY,
    REASON_EXISTING_ANTI_AFFINITY,
)
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
PREEMPTION_NO_VICTIMS = "No preemption victims found for incoming pod"
NO_NODES = "no nodes available to schedule pods"

# Scoring counts a pod without requests as this much, as kube-scheduler's
# non-zero defaults do, so empty pods still spread by allocation.
_SCORING_DEFAULT_CPU_MILLI = 100
_SCORING_DEFAULT_MEMORY = 200 * 1024 * 1024

_AFFINITY_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", "Gt": ">", "Lt": "<"}


def is_terminated(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def condition(obj: Mapping[str, Any], kind: str) -> Object | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def node_is_ready(node: Mapping[str, Any]) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """cpu (millicores) and memory (bytes) the pod asks for.

    Containers add up; each init container runs alone, so the pod needs the
    larger of the two. A container with only limits requests its limits, as
    API defaulting makes it.
    """
    spec = pod.get("spec") or {}

    def container_requests(container: Mapping[str, Any]) -> dict[str, int]:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        out = {"cpu": 0, "memory": 0}
        if "cpu" in wanted:
            out["cpu"] = milli_value(wanted["cpu"])
        if "memory" in wanted:
            out["memory"] = whole_value(wanted["memory"])
        return out

    total = {"cpu": 0, "memory": 0}
    for container in spec.get("containers") or []:
        for name, amount in container_requests(container).items():
            total[name] += amount
    for container in spec.get("initContainers") or []:
        for name, amount in container_requests(container).items():
            total[name] = max(total[name], amount)
    return total


def node_allocatable(node: Mapping[str, Any]) -> dict[str, int]:
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return {
        "cpu": milli_value(allocatable.get("cpu", 0)),
        "memory": whole_value(allocatable.get("memory", 0)),
        "pods": whole_value(allocatable.get("pods", 0)),
    }


def _host_ports(pod: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    ports = set()
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ports.add((port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", int(port["hostPort"])))
    return ports


def _ports_conflict(wanted: set[tuple[str, str, int]], used: set[tuple[str, str, int]]) -> bool:
    for ip, protocol, port in wanted:
        for used_ip, used_protocol, used_port in used:
            same_address = ip == used_ip or "0.0.0.0" in (ip, used_ip)
            if port == used_port and protocol == used_protocol and same_address:
                return True
    return False


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One nodeSelectorTerm: all its expressions and fields hold (an empty term matches nothing)."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    for expr in expressions:
        op = _AFFINITY_OPERATORS.get(expr.get("operator", ""))
        if op is None:
            return False
        if not Requirement(expr.get("key", ""), op, tuple(str(v) for v in expr.get("values") or ())).matches(labels):
            return False
    node_fields = {"metadata.name": str((node.get("metadata") or {}).get("name", ""))}
    for expr in fields:
        op = _AFFINITY_OPERATORS.get(expr.get("operator", ""))
        if op not in ("in", "notin") or expr.get("key") != "metadata.name":
            return False
        if not Requirement("metadata.name", op, tuple(expr.get("values") or ())).matches(node_fields):
            return False
    return True


def matches_node_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector (every label equal) and required node affinity (any term)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


@dataclass
class NodeInfo:
    """A node and the (non-terminated) pods bound to it, with the sums filters and scores need.

    The sums are kept up to date by `add`, so a scheduler can assume a
    binding without rebuilding every node's totals (kube-scheduler's cache).
    """

    node: Object
    pods: list[Object] = field(default_factory=list)
    allocatable: dict[str, int] = field(init=False)
    requested: dict[str, int] = field(init=False)
    scoring_requested: dict[str, int] = field(init=False)  # request-less pods counted at the scoring defaults
    used_ports: set[tuple[str, str, int]] = field(init=False)
    owners: Counter[str] = field(init=False)  # controller uid -> pods here
    repelling: list[Object] = field(init=False)  # pods here with required anti-affinity terms

    def __post_init__(self) -> None:
        self.allocatable = node_allocatable(self.node)
        self.requested = {"cpu": 0, "memory": 0}
        self.scoring_requested = {"cpu": 0, "memory": 0}
        self.used_ports = set()
        self.owners = Counter()
        self.repelling = []
        pods, self.pods = self.pods, []
        for pod in pods:
            self.add(pod)

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])

    def add(self, pod: Object) -> None:
        self.pods.append(pod)
        wanted = pod_requests(pod)
        defaults = {"cpu": _SCORING_DEFAULT_CPU_MILLI, "memory": _SCORING_DEFAULT_MEMORY}
        for name in ("cpu", "memory"):
            self.requested[name] += wanted[name]
            self.scoring_requested[name] += wanted[name] or defaults[name]
        self.used_ports |= _host_ports(pod)
        owner = _controller_uid(pod)
        if owner is not None:
            self.owners[owner] += 1
        if _affinity_terms(pod, "podAntiAffinity"):
            self.repelling.append(pod)


@dataclass(frozen=True)
class PodFacts:
    """What filters and scores need from the incoming pod, worked out once per attempt rather than per node."""

    requests: dict[str, int]
    host_ports: set[tuple[str, str, int]]
    owner: str | None

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodFacts:
        return cls(pod_requests(pod), _host_ports(pod), _controller_uid(pod))


def _affinity_terms(pod: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """Required pod (anti-)affinity terms; kind is "podAffinity" or "podAntiAffinity"."""
    section = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    return list(section.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _term_selects(term: Mapping[str, Any], owner: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether `other` is a pod the term (written on `owner`) is about: namespace and labels."""
    namespaces = term.get("namespaces") or [(owner.get("metadata") or {}).get("namespace")]
    if (other.get("metadata") or {}).get("namespace") not in namespaces:
        return False
    selector = term.get("labelSelector")
    if selector is None:
        return False
    return matches(from_label_selector(selector), (other.get("metadata") or {}).get("labels") or {})


def _topology(node: Mapping[str, Any], key: str) -> str | None:
    return ((node.get("metadata") or {}).get("labels") or {}).get(key)


@dataclass(frozen=True)
class AffinityState:
    """kube-scheduler's InterPodAffinity PreFilter: topology domains worked out once per pod, not per node.

    affinity: per own required affinity term, its topology key, the values where a matching pod runs,
    and whether it is the first pod of a self-matching group (then any node will do);
    anti_affinity: per own required anti-affinity term, its key and the values where a matching pod runs;
    existing: (key, value) domains the incoming pod is kept out of by existing pods' anti-affinity.
    """

    affinity: list[tuple[str, set[str], bool]]
    anti_affinity: list[tuple[str, set[str]]]
    existing: set[tuple[str, str]]


def affinity_state(pod: Mapping[str, Any], everyone: Iterable[NodeInfo]) -> AffinityState:
    own_affinity = _affinity_terms(pod, "podAffinity")
    own_anti = _affinity_terms(pod, "podAntiAffinity")
    everyone = list(everyone)
    placed = [(other, i.node) for i in everyone for other in i.pods] if own_affinity or own_anti else []
    affinity = []
    for term in own_affinity:
        key = term.get("topologyKey", "")
        matching = [node for other, node in placed if _term_selects(term, pod, other)]
        values = {v for v in (_topology(node, key) for node in matching) if v is not None}
        affinity.append((key, values, not matching and _term_selects(term, pod, pod)))
    anti = []
    for term in own_anti:
        key = term.get("topologyKey", "")
        repelled = [node for other, node in placed if _term_selects(term, pod, other)]
        anti.append((key, {v for v in (_topology(node, key) for node in repelled) if v is not None}))
    existing = set()
    for info in everyone:
        for other in info.repelling:
            for term in _affinity_terms(other, "podAntiAffinity"):
                key = term.get("topologyKey", "")
                value = _topology(info.node, key)
                if value is not None and _term_selects(term, other, pod):
                    existing.add((key, value))
    return AffinityState(affinity, anti, existing)


def inter_pod_affinity_reason(node: Mapping[str, Any], state: AffinityState) -> str | None:
    """kube-scheduler's InterPodAffinity filter for required terms (None when the node passes).

    Checked in upstream's order: the pod's affinity, its anti-affinity, then existing pods' anti-affinity.
    """
    for key, values, first_of_group in state.affinity:
        if not first_of_group and _topology(node, key) not in values:
            return REASON_AFFINITY_RULES
    for key, values in state.anti_affinity:
        if _topology(node, key) in values:
            return REASON_ANTI_AFFINITY
    for key, value in state.existing:
        if _topology(node, key) == value:
            return REASON_EXISTING_ANTI_AFFINITY
    return None


def filter_reasons(
    pod: Mapping[str, Any],
    info: NodeInfo,
    everyone: list[NodeInfo] | None = None,
    state: AffinityState | None = None,
    facts: PodFacts | None = None,
) -> list[str]:
    """Why the pod cannot run on this node (empty when it can).

    Plugin order and wording follow kube-scheduler: NodeUnschedulable,
    TaintToleration, node readiness, NodeAffinity, NodePorts, NodeResourcesFit,
    InterPodAffinity (which looks at the pods on `everyone`, default just this
    node, unless the caller worked out `state` once for all nodes).
    """
    facts = facts or PodFacts.of(pod)
    node = info.node
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not tolerated(tolerations, UNSCHEDULABLE_TAINT):
        return [REASON_UNSCHEDULABLE]
    taint = first_untolerated((node.get("spec") or {}).get("taints") or [], tolerations)
    if taint is not None:
        return [f"node(s) had untolerated taint {format_taint(taint)}"]
    if not node_is_ready(node):
        return [REASON_NOT_READY]
    if not matches_node_affinity(pod, node):
        return [REASON_AFFINITY]
    if facts.host_ports and _ports_conflict(facts.host_ports, info.used_ports):
        return [REASON_PORTS]
    allocatable = info.allocatable
    wanted = facts.requests
    reasons = []
    if len(info.pods) + 1 > allocatable["pods"]:
        reasons.append(REASON_TOO_MANY_PODS)
    for name in ("cpu", "memory"):
        if wanted[name] and info.requested[name] + wanted[name] > allocatable[name]:
            reasons.append(f"Insufficient {name}")
    if reasons:
        return reasons
    if state is None:
        state = affinity_state(pod, everyone if everyone is not None else [info])
    affinity = inter_pod_affinity_reason(node, state)
    return [affinity] if affinity else []


def _controller_uid(pod: Mapping[str, Any]) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _least_allocated(wanted: dict[str, int], info: NodeInfo) -> float:
    """Free fraction of cpu and memory after placing a pod requesting `wanted` (higher is emptier)."""
    defaults = {"cpu": _SCORING_DEFAULT_CPU_MILLI, "memory": _SCORING_DEFAULT_MEMORY}
    free = []
    for name in ("cpu", "memory"):
        total = info.allocatable[name]
        if total <= 0:
            free.append(0.0)
            continue
        used = info.scoring_requested[name] + (wanted[name] or defaults[name])
        free.append(max(total - used, 0) / total)
    return sum(free) / len(free)


def score_key(pod: Mapping[str, Any], info: NodeInfo, facts: PodFacts | None = None) -> tuple[int, float]:
    """Lower is better: fewest pods of the same controller, then least allocated."""
    facts = facts or PodFacts.of(pod)
    same_owner = info.owners[facts.owner] if facts.owner is not None else 0
    return (same_owner, -_least_allocated(facts.requests, info))


@dataclass
class ScheduleResult:
    node: str | None
    reasons: dict[str, list[str]]  # node name -> why it was filtered out
    num_nodes: int
    processed: int = 0  # nodes looked at, from the start index (all of them when none fits)

    def message(self) -> str:
        return failed_scheduling_message(self.num_nodes, self.reasons)


MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5


def feasible_nodes_to_find(num_nodes: int) -> int:
    """kube-scheduler's adaptive percentageOfNodesToScore: in big clusters stop after enough feasible nodes.

    50% minus 1% per 125 nodes, at least 5%, and never fewer than 100 nodes (1,000 nodes: 420).
    """
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_nodes
    percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def build_node_infos(nodes: Iterable[Object], pods: Iterable[Object]) -> list[NodeInfo]:
    """Pair each node with the non-terminated pods bound to it, sorted by node name."""
    by_name = {str(n["metadata"]["name"]): n for n in nodes}
    bound: dict[str, list[Object]] = {name: [] for name in by_name}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name in bound and not is_terminated(pod):
            bound[node_name].append(pod)
    return [NodeInfo(by_name[name], bound[name]) for name in sorted(by_name)]


def schedule(
    pod: Mapping[str, Any], infos: list[NodeInfo], rng: random.Random | None = None, start: int = 0
) -> ScheduleResult:
    """Pick the best feasible node; ties go to the first name, or a random one when rng is given.

    Nodes are visited from index `start` round the list, stopping once `feasible_nodes_to_find` fit;
    the caller moves `start` on by `processed`, as kube-scheduler's nextStartNodeIndex, so every node
    gets its turn.
    """
    reasons: dict[str, list[str]] = {}
    scored: list[tuple[tuple[int, float], str]] = []
    state = affinity_state(pod, infos)
    facts = PodFacts.of(pod)
    wanted = feasible_nodes_to_find(len(infos))
    processed = 0
    for offset in range(len(infos)):
        info = infos[(start + offset) % len(infos)]
        processed += 1
        why = filter_reasons(pod, info, state=state, facts=facts)
        if why:
            reasons[info.name] = why
        else:
            scored.append((score_key(pod, info, facts), info.name))
            if len(scored) >= wanted:
                break
    if not scored:
        return ScheduleResult(None, reasons, len(infos), processed)
    best = min(key for key, _ in scored)
    tied = sorted(name for key, name in scored if key == best)
    return ScheduleResult(rng.choice(tied) if rng else tied[0], reasons, len(infos), processed)


def _histogram(reasons: Iterable[str]) -> str:
    counts = Counter(reasons)
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))


def failed_scheduling_message(num_nodes: int, reasons: Mapping[str, list[str]]) -> str:
    """kube-scheduler's FitError text plus its preemption post-filter summary.

    e.g. `0/3 nodes are available: 1 node(s) had untolerated taint {k: }, 2
    Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is
    not helpful for scheduling, 2 No preemption victims found for incoming pod.`
    Preemption is not implemented and all pods share one priority, so
    nodes that failed for lack of room report no victims.
    """
    if num_nodes == 0:
        return NO_NODES
    message = f"0/{num_nodes} nodes are available: {_histogram(r for why in reasons.values() for r in why)}."
    preemption = []
    for why in reasons.values():
        resolvable = all(r.startswith(_RESOLVABLE_PREFIXES) for r in why)
        preemption.append(PREEMPTION_NO_VICTIMS if resolvable else PREEMPTION_NOT_HELPFUL)
    return f"{message} preemption: 0/{num_nodes} nodes are available: {_histogram(preemption)}."
