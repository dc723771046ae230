"""The scheduler's decisions as pure functions: which nodes fit, which is best, and why none did.

Filters run in kube-scheduler's plugin order and stop at the first failing
one per node, so the reasons (and the FailedScheduling message built from
them) read like the upstream scheduler's. Feasible nodes are then scored
by `control.scheduler.scoring`.
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import chain
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from control.scheduler.nodeinfo import HostPort, NodeInfo, PodFacts
from control.scheduler.scoring import best_nodes, node_scores, score_nodes, weighted_total
from control.scheduler.taints import first_untolerated, format_taint, tolerated

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


def _ports_conflict(wanted: Iterable[HostPort], used: Iterable[HostPort]) -> bool:
    for ip, protocol, port in wanted:
        for used_ip, used_protocol, used_port in used:
            same_address = ip == used_ip or "0.0.0.0" in (ip, used_ip)
            if port == used_port and protocol == used_protocol and same_address:
                return True
    return False


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

    @property
    def constrains(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.existing)


def affinity_state(facts: PodFacts, everyone: Iterable[NodeInfo]) -> AffinityState:
    """`everyone`: the nodes whose pods matter: all when the pod has required terms, else those with
    pods that have affinity terms."""
    everyone = list(everyone)
    affinity = []
    for term in facts.affinity:
        values = set()
        matched = False
        for info in everyone:
            if any(term.selects(other.namespace, other.labels) for other in info.pods.values()):
                matched = True
                value = info.topology(term.topology_key)
                if value is not None:
                    values.add(value)
        affinity.append((term.topology_key, values, not matched and term.selects(facts.namespace, facts.labels)))
    anti = []
    for term in facts.anti_affinity:
        values = set()
        for info in everyone:
            value = info.topology(term.topology_key)
            if value is not None and any(term.selects(other.namespace, other.labels) for other in info.pods.values()):
                values.add(value)
        anti.append((term.topology_key, values))
    existing = set()
    for info in everyone:
        for other in info.with_affinity.values():
            for term in other.anti_affinity:
                value = info.topology(term.topology_key)
                if value is not None and term.selects(facts.namespace, facts.labels):
                    existing.add((term.topology_key, value))
    return AffinityState(affinity, anti, existing)


def inter_pod_affinity_reason(info: NodeInfo, state: AffinityState) -> str | None:
    """kube-scheduler's InterPodAffinity filter for required terms (None when the node passes).

    Checked in upstream's order: the pod's affinity, its anti-affinity, then existing pods' anti-affinity.
    """
    for key, values, first_of_group in state.affinity:
        if not first_of_group and info.topology(key) not in values:
            return REASON_AFFINITY_RULES
    for key, values in state.anti_affinity:
        if info.topology(key) in values:
            return REASON_ANTI_AFFINITY
    for key, value in state.existing:
        if info.topology(key) == value:
            return REASON_EXISTING_ANTI_AFFINITY
    return None


def _filter(facts: PodFacts, info: NodeInfo, state: AffinityState) -> list[str]:
    """Why the pod cannot run on this node (empty when it can), in kube-scheduler's plugin order:
    NodeUnschedulable, TaintToleration, node readiness, NodeAffinity, NodePorts, NodeResourcesFit,
    InterPodAffinity."""
    if not info.plain:
        if info.unschedulable and not tolerated(facts.tolerations, UNSCHEDULABLE_TAINT):
            return [REASON_UNSCHEDULABLE]
        taint = first_untolerated(info.taints, facts.tolerations)
        if taint is not None:
            return [f"node(s) had untolerated taint {format_taint(taint)}"]
        if not info.ready:
            return [REASON_NOT_READY]
    if not facts.matches_node_selection(info.labels, info.name):
        return [REASON_AFFINITY]
    if facts.host_ports and _ports_conflict(facts.host_ports, info.used_ports):
        return [REASON_PORTS]
    reasons = []
    if info.free_pods < 1:
        reasons.append(REASON_TOO_MANY_PODS)
    if facts.cpu and facts.cpu > info.free_cpu:
        reasons.append("Insufficient cpu")
    if facts.memory and facts.memory > info.free_memory:
        reasons.append("Insufficient memory")
    if reasons:
        return reasons
    affinity = inter_pod_affinity_reason(info, state)
    return [affinity] if affinity else []


def filter_reasons(pod: Mapping[str, Any], info: NodeInfo, everyone: list[NodeInfo] | None = None) -> list[str]:
    """Why the pod cannot run on this node (empty when it can); pod affinity looks at the pods on `everyone`
    (default just this node)."""
    facts = PodFacts.of(pod)
    return _filter(facts, info, affinity_state(facts, everyone if everyone is not None else [info]))


@dataclass
class ScheduleResult:
    node: str | None
    reasons: dict[str, list[str]]  # node name -> why it was filtered out
    num_nodes: int
    processed: int = 0  # nodes looked at, from the start index (all of them when none fits)
    scores: dict[str, dict[str, int]] | None = None  # node -> plugin -> normalised score (before weights)
    totals: dict[str, int] | None = None  # node -> weighted sum, the number the choice maximised

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


def schedule(
    pod: Mapping[str, Any],
    infos: Sequence[NodeInfo],
    rng: random.Random | None = None,
    start: int = 0,
    facts: PodFacts | None = None,
    explain: bool = False,
) -> ScheduleResult:
    """Pick the feasible node with the highest weighted score; ties go to the first name, or a random one
    when rng is given. With explain, the result carries every scored node's scores.

    Nodes are visited from index `start` round the list, stopping once `feasible_nodes_to_find` fit;
    the caller moves `start` on by `processed`, as kube-scheduler's nextStartNodeIndex, so every node
    gets its turn.
    """
    facts = facts or PodFacts.of(pod)
    with_affinity = [info for info in infos if info.with_affinity]
    state = affinity_state(facts, infos if facts.affinity or facts.anti_affinity else with_affinity)
    reasons: dict[str, list[str]] = {}
    feasible: list[NodeInfo] = []
    wanted = feasible_nodes_to_find(len(infos))
    count = len(infos)
    # The common pod (no node selection, host ports or pod affinity) on a plain node only needs room.
    simple = not (facts.node_selector or facts.required_node_terms is not None or facts.host_ports or state.constrains)
    cpu, memory = facts.cpu, facts.memory
    processed = 0
    for info in chain(infos[start:], infos[:start]):
        processed += 1
        if simple and info.plain and info.free_pods > 0 and info.free_cpu >= cpu and info.free_memory >= memory:
            why = None
        else:
            why = _filter(facts, info, state)
        if why:
            reasons[info.name] = why
            continue
        feasible.append(info)
        if len(feasible) >= wanted:
            break
    if not feasible:
        return ScheduleResult(None, reasons, count, processed)
    scores = score_nodes(facts, feasible, infos if facts.has_preferred_pod_affinity else with_affinity)
    tied = [info.name for info in best_nodes(scores, feasible)]
    result = ScheduleResult(rng.choice(sorted(tied)) if rng else min(tied), reasons, count, processed)
    if explain:
        result.scores = {info.name: node_scores(scores, feasible, i) for i, info in enumerate(feasible)}
        result.totals = {name: weighted_total(plugin_scores) for name, plugin_scores in result.scores.items()}
    return result


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
