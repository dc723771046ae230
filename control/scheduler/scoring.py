"""Score plugins: how much each feasible node suits a pod, 0-100 per plugin, summed with upstream's weights.

Each plugin follows its kube-scheduler namesake (pkg/scheduler/framework/plugins): raw scores per node,
then the plugin's NormalizeScore over the nodes being scored, then the weighted sum; the highest total
wins. Weights are kube-scheduler's defaults. OwnerSpread stands in for PodTopologySpread's system
default constraints (spreading a controller's replicas over nodes) and takes its weight.
"""

from __future__ import annotations

from collections.abc import Sequence

from control.scheduler.nodeinfo import PREFER_NO_SCHEDULE, NodeInfo, PodFacts, node_term_matches
from control.scheduler.taints import tolerated

MAX_NODE_SCORE = 100

TAINT_TOLERATION = "TaintToleration"
NODE_AFFINITY = "NodeAffinity"
OWNER_SPREAD = "OwnerSpread"
INTER_POD_AFFINITY = "InterPodAffinity"
LEAST_ALLOCATED = "NodeResourcesFit"
BALANCED_ALLOCATION = "NodeResourcesBalancedAllocation"

# kube-scheduler's default plugin weights (pkg/scheduler/apis/config/v1/default_plugins.go).
WEIGHTS = {
    TAINT_TOLERATION: 3,
    NODE_AFFINITY: 2,
    OWNER_SPREAD: 2,
    INTER_POD_AFFINITY: 2,
    LEAST_ALLOCATED: 1,
    BALANCED_ALLOCATION: 1,
}


ResourceState = str  # NodeInfo.resource_state
# A plugin's scores: per node, in the order of the nodes scored; one int when every node scores the same;
# or per resource state, for the resource plugins (nodes in the same state score the same).
Scores = list[int] | int | dict[ResourceState, int]


def default_normalize(scores: list[int], reverse: bool = False) -> Scores:
    """Upstream's helper.DefaultNormalizeScore: scale so the highest is 100 (reverse: subtract from 100)."""
    highest = max(scores, default=0)
    if highest == 0:
        return MAX_NODE_SCORE if reverse else 0
    scaled = [MAX_NODE_SCORE * s // highest for s in scores]
    return [MAX_NODE_SCORE - s for s in scaled] if reverse else scaled


def min_max_normalize(scores: list[int]) -> Scores:
    """InterPodAffinity's NormalizeScore: the lowest (possibly negative) maps to 0, the highest to 100."""
    lowest, highest = min(scores, default=0), max(scores, default=0)
    if highest == lowest:
        return 0
    return [int(MAX_NODE_SCORE * (s - lowest) / (highest - lowest)) for s in scores]


def taint_toleration(facts: PodFacts, nodes: Sequence[NodeInfo]) -> Scores:
    """Fewer untolerated PreferNoSchedule taints is better (only tolerations with that effect, or none, count)."""
    if not any(info.prefer_no_schedule for info in nodes):
        return MAX_NODE_SCORE
    tolerations = [t for t in facts.tolerations if (t.get("effect") or PREFER_NO_SCHEDULE) == PREFER_NO_SCHEDULE]
    counts = [len([taint for taint in info.prefer_no_schedule if not tolerated(tolerations, taint)]) for info in nodes]
    return default_normalize(counts, reverse=True)


def node_affinity(facts: PodFacts, nodes: Sequence[NodeInfo]) -> Scores:
    """Sum of the weights of the preferred node affinity terms each node matches, scaled to the best node."""
    if not facts.preferred_node_terms:
        return 0
    sums = [
        sum(weight for weight, term in facts.preferred_node_terms if node_term_matches(term, info.labels, info.name))
        for info in nodes
    ]
    return default_normalize(sums)


def owner_spread(facts: PodFacts, nodes: Sequence[NodeInfo]) -> Scores:
    """Fewer pods of the same controller on the node is better (100 where it has none of the most)."""
    if facts.owner is None:
        return MAX_NODE_SCORE
    return default_normalize([info.owners[facts.owner] for info in nodes], reverse=True)


def topology_scores(facts: PodFacts, everyone: Sequence[NodeInfo]) -> dict[str, dict[str, int]]:
    """InterPodAffinity's PreScore: weight per (topology key, value) from every pod already placed.

    The incoming pod's preferred affinity (+weight) and anti-affinity (-weight) terms count for each
    pod they select; each placed pod's required affinity (+1, hardPodAffinityWeight), preferred affinity
    (+weight) and preferred anti-affinity (-weight) terms count when they select the incoming pod.
    A term counts at the placed pod's node's value of its topology key, if the node has that label.
    """
    scores: dict[str, dict[str, int]] = {}

    def credit(term_key: str, info: NodeInfo, amount: int) -> None:
        value = info.labels.get(term_key)
        if value is not None:
            per_value = scores.setdefault(term_key, {})
            per_value[value] = per_value.get(value, 0) + amount

    own = facts.has_preferred_pod_affinity
    for info in everyone:
        if not info.labels:
            continue
        if own:
            for other in info.pods.values():
                for term in facts.preferred_affinity:
                    if term.selects(other.namespace, other.labels):
                        credit(term.topology_key, info, term.weight)
                for term in facts.preferred_anti_affinity:
                    if term.selects(other.namespace, other.labels):
                        credit(term.topology_key, info, -term.weight)
        for other in info.with_affinity.values():
            signed = ((other.affinity, 1), (other.preferred_affinity, 1), (other.preferred_anti_affinity, -1))
            for terms, sign in signed:
                for term in terms:
                    if term.selects(facts.namespace, facts.labels):
                        credit(term.topology_key, info, sign * term.weight)
    return scores


def inter_pod_affinity(facts: PodFacts, nodes: Sequence[NodeInfo], everyone: Sequence[NodeInfo]) -> Scores:
    """Sum of the topology scores of each node's domains, normalised between the lowest and highest node.

    `everyone`: the nodes PreScore looks at: all of them when the pod has preferred terms, else those with
    pods that have affinity terms (upstream's HavePodsWithAffinityList).
    """
    scores = topology_scores(facts, everyone)
    if not scores:
        return 0
    raw = [
        sum(per_value.get(info.labels[key], 0) for key, per_value in scores.items() if key in info.labels)
        for info in nodes
    ]
    return min_max_normalize(raw)


def _resource_scores(facts: PodFacts, info: NodeInfo) -> tuple[int, int]:
    """(LeastAllocated, BalancedAllocation) of one node; see resource_scores."""
    fractions = []
    score_sum = weight_sum = 0
    total_cpu, total_memory = info.allocatable_cpu, info.allocatable_memory
    if total_cpu > 0:
        used = info.scoring_cpu + facts.scoring_cpu
        score_sum += (total_cpu - used) * MAX_NODE_SCORE // total_cpu if used <= total_cpu else 0
        weight_sum += 1
        fractions.append(min((info.requested_cpu + facts.cpu) / total_cpu, 1.0))
    if total_memory > 0:
        used = info.scoring_memory + facts.scoring_memory
        score_sum += (total_memory - used) * MAX_NODE_SCORE // total_memory if used <= total_memory else 0
        weight_sum += 1
        fractions.append(min((info.requested_memory + facts.memory) / total_memory, 1.0))
    least = score_sum // weight_sum if weight_sum else 0
    if not facts.cpu and not facts.memory:
        return least, 0
    deviation = abs(fractions[0] - fractions[1]) / 2 if len(fractions) == 2 else 0.0
    return least, int((1 - deviation) * MAX_NODE_SCORE)


def resource_scores(facts: PodFacts, nodes: Sequence[NodeInfo]) -> tuple[Scores, Scores]:
    """NodeResourcesFit (LeastAllocated) and NodeResourcesBalancedAllocation over cpu and memory, weight 1 each.

    LeastAllocated: free share after placing the pod, containers without requests counted at the non-zero
    defaults. BalancedAllocation: 100 x (1 - the standard deviation of the cpu and memory fractions
    requested), on real requests; a pod requesting neither gets 0 everywhere (upstream skips best-effort
    pods, so they do not pile onto one node). A resource a node has none of is left out of both.
    Both depend only on a node's resource state, so they are worked out once per state (in a big even
    cluster, a handful for hundreds of nodes).
    """
    least: dict[ResourceState, int] = {}
    balanced: dict[ResourceState, int] = {}
    for info in nodes:
        if info.resource_state not in least:
            least[info.resource_state], balanced[info.resource_state] = _resource_scores(facts, info)
    return least, balanced


def score_nodes(facts: PodFacts, nodes: Sequence[NodeInfo], everyone: Sequence[NodeInfo]) -> dict[str, Scores]:
    """Each plugin's normalised (unweighted) scores for `nodes`; `everyone` as inter_pod_affinity takes it."""
    least, balanced = resource_scores(facts, nodes)
    return {
        TAINT_TOLERATION: taint_toleration(facts, nodes),
        NODE_AFFINITY: node_affinity(facts, nodes),
        OWNER_SPREAD: owner_spread(facts, nodes),
        INTER_POD_AFFINITY: inter_pod_affinity(facts, nodes, everyone),
        LEAST_ALLOCATED: least,
        BALANCED_ALLOCATION: balanced,
    }


def best_nodes(scores: dict[str, Scores], nodes: Sequence[NodeInfo]) -> list[NodeInfo]:
    """The nodes with the highest weighted total (every plugin's score times its weight, summed)."""
    base = sum(WEIGHTS[name] * values for name, values in scores.items() if isinstance(values, int))
    per_state = [(WEIGHTS[name], values) for name, values in scores.items() if isinstance(values, dict)]
    per_node = [(WEIGHTS[name], values) for name, values in scores.items() if isinstance(values, list)]
    states = set().union(*(values.keys() for _, values in per_state))  # the resource plugins saw every node
    state_totals = {state: base + sum(weight * values[state] for weight, values in per_state) for state in states}
    if not per_node:  # the totals depend on the resource state alone
        best = max(state_totals.values())
        return [info for info in nodes if state_totals[info.resource_state] == best]
    totals = [state_totals[info.resource_state] for info in nodes]
    for weight, values in per_node:
        totals = [total + weight * value for total, value in zip(totals, values, strict=True)]
    best = max(totals)
    return [info for info, total in zip(nodes, totals, strict=True) if total == best]


def node_scores(scores: dict[str, Scores], nodes: Sequence[NodeInfo], index: int) -> dict[str, int]:
    """The scores of nodes[index] per plugin (before weights)."""
    info = nodes[index]
    out = {}
    for name, values in scores.items():
        if isinstance(values, int):
            out[name] = values
        elif isinstance(values, dict):
            out[name] = values[info.resource_state]
        else:
            out[name] = values[index]
    return out


def weighted_total(plugin_scores: dict[str, int]) -> int:
    return sum(WEIGHTS[name] * score for name, score in plugin_scores.items())
