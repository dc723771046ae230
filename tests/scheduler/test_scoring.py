"""Scoring as kube-scheduler does it: each plugin's normalised scores on fixed nodes and pods, and the node chosen.

Expected numbers are worked out by hand from upstream's formulas (see the comments), not by the code under test.
"""

from __future__ import annotations

from control.scheduler.nodeinfo import build_node_infos
from control.scheduler.predicates import schedule
from tests.scheduler.test_predicates import make_node, make_pod

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def plugin(result, name):
    """One plugin's score per node, from an explained result."""
    return {node: scores[name] for node, scores in result.scores.items()}


def labelled(name, zone, **labels):
    return make_node(name, cpu="4", memory="8Gi", labels={HOST: name, ZONE: zone, **labels})


def with_labels(pod, **labels):
    pod["metadata"]["labels"] = labels
    return pod


def preferred_node_term(weight, key, *values):
    return {"weight": weight, "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}}


def pod_term(weight, topology_key, **match_labels):
    return {
        "weight": weight,
        "podAffinityTerm": {"labelSelector": {"matchLabels": match_labels}, "topologyKey": topology_key},
    }


def test_preferred_node_affinity_sums_matching_weights_scaled_to_the_best_node():
    infos = build_node_infos(
        [labelled("a", "z1", disk="ssd"), labelled("b", "z1", disk="hdd"), labelled("c", "z2")], []
    )
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                preferred_node_term(80, "disk", "ssd"),
                preferred_node_term(20, ZONE, "z2"),
            ]
        }
    }
    result = schedule(make_pod("p", affinity=affinity), infos, explain=True)
    # sums a=80, b=0, c=20; scaled by 100/80
    assert plugin(result, "NodeAffinity") == {"a": 100, "b": 0, "c": 25}
    assert result.node == "a"


def test_preferred_node_affinity_outweighs_a_less_loaded_node():
    nodes = [make_node("busy", cpu="4", labels={"disk": "ssd"}), make_node("idle", cpu="4")]
    infos = build_node_infos(nodes, [make_pod("load", cpu="3", node="busy")])
    affinity = {
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [preferred_node_term(1, "disk", "ssd")]}
    }
    assert schedule(make_pod("free"), infos).node == "idle"
    assert schedule(make_pod("p", affinity=affinity), infos).node == "busy"  # weight 2 x 100 beats the resource scores


def test_prefer_no_schedule_taints_count_against_a_node_unless_tolerated():
    soft = {"key": "k1", "value": "v", "effect": "PreferNoSchedule"}
    softer = {"key": "k2", "effect": "PreferNoSchedule"}
    hard = {"key": "k3", "effect": "NoSchedule"}
    nodes = [make_node("a", taints=[soft]), make_node("b", taints=[soft, softer]), make_node("c", taints=[])]
    infos = build_node_infos(nodes, [])
    result = schedule(make_pod("p"), infos, explain=True)
    # untolerated counts a=1, b=2, c=0; reversed: 100 - 100 * count / 2
    assert plugin(result, "TaintToleration") == {"a": 50, "b": 0, "c": 100}
    assert result.node == "c"

    tolerate_k1 = [{"key": "k1", "operator": "Equal", "value": "v", "effect": "PreferNoSchedule"}]
    result = schedule(make_pod("p", tolerations=tolerate_k1), infos, explain=True)
    assert plugin(result, "TaintToleration") == {"a": 100, "b": 0, "c": 100}
    assert result.node == "a"  # a and c tie, first name wins

    # a toleration for another effect does not count; nor do NoSchedule taints (they are the filter's business)
    no_schedule_only = [
        {"key": "k1", "operator": "Exists", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoSchedule"},
    ]
    infos = build_node_infos([*nodes, make_node("d", taints=[hard])], [])
    result = schedule(make_pod("p", tolerations=no_schedule_only), infos, explain=True)
    assert plugin(result, "TaintToleration") == {"a": 50, "b": 0, "c": 100, "d": 100}


def test_preferred_pod_anti_affinity_and_affinity_score_by_topology_domain():
    nodes = [labelled("n1", "z1"), labelled("n2", "z1"), labelled("n3", "z2")]
    placed = [with_labels(make_pod("web-0", node="n1"), app="web"), with_labels(make_pod("db-0", node="n2"), app="db")]
    infos = build_node_infos(nodes, placed)
    away_from_web = {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pod_term(100, ZONE, app="web")]}
    }
    result = schedule(with_labels(make_pod("web-1", affinity=away_from_web), app="web"), infos, explain=True)
    # zone z1 holds a web pod: n1, n2 at -100, n3 at 0; min-max scaled
    assert plugin(result, "InterPodAffinity") == {"n1": 0, "n2": 0, "n3": 100}
    assert result.node == "n3"

    near_db = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pod_term(50, HOST, app="db")]}}
    result = schedule(make_pod("cache", affinity=near_db), infos, explain=True)
    assert plugin(result, "InterPodAffinity") == {"n1": 0, "n2": 100, "n3": 0}
    assert result.node == "n2"

    both = {**away_from_web, **near_db}
    result = schedule(with_labels(make_pod("web-2", affinity=both), app="web"), infos, explain=True)
    # n1 -100, n2 -100 + 50, n3 0: scaled from -100..0
    assert plugin(result, "InterPodAffinity") == {"n1": 0, "n2": 50, "n3": 100}


def test_existing_pods_terms_score_the_incoming_pod():
    nodes = [labelled("n1", "z1"), labelled("n2", "z1"), labelled("n3", "z2")]
    wants_web = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [pod_term(1, HOST, app="web")["podAffinityTerm"]]
        }
    }
    likes_web = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pod_term(30, HOST, app="web")]}}
    shuns_web = {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pod_term(40, HOST, app="web")]}
    }
    placed = [
        make_pod("e1", node="n1", affinity=wants_web),  # required: hardPodAffinityWeight 1
        make_pod("e2", node="n2", affinity=likes_web),
        make_pod("e3", node="n3", affinity=shuns_web),
    ]
    infos = build_node_infos(nodes, placed)
    result = schedule(with_labels(make_pod("web"), app="web"), infos, explain=True)
    # raw n1 +1, n2 +30, n3 -40; scaled from -40..30: n1 = int(100 * 41 / 70)
    assert plugin(result, "InterPodAffinity") == {"n1": 58, "n2": 100, "n3": 0}
    assert result.node == "n2"

    other_namespace = with_labels(make_pod("web"), app="web")
    other_namespace["metadata"]["namespace"] = "elsewhere"  # the terms default to their own pod's namespace
    result = schedule(other_namespace, infos, explain=True)
    assert plugin(result, "InterPodAffinity") == {"n1": 0, "n2": 0, "n3": 0}


def test_resource_scores_and_weighted_totals():
    infos = build_node_infos([make_node("a", cpu="2", memory="4Gi"), make_node("b", cpu="4", memory="4Gi")], [])
    result = schedule(make_pod("p", cpu="500m", memory="1Gi"), infos, explain=True)
    # LeastAllocated: a cpu 1500*100//2000 = 75, memory 75 -> 75; b cpu 3500*100//4000 = 87, memory 75 -> 81
    assert plugin(result, "NodeResourcesFit") == {"a": 75, "b": 81}
    # BalancedAllocation: a fractions .25/.25 -> 100; b .125/.25 -> (1 - .0625) * 100 -> 93
    assert plugin(result, "NodeResourcesBalancedAllocation") == {"a": 100, "b": 93}
    # weights: TaintToleration 3 x 100, OwnerSpread 2 x 100 (no owner), NodeAffinity and InterPodAffinity 0
    assert result.totals == {"a": 300 + 200 + 75 + 100, "b": 300 + 200 + 81 + 93}
    assert result.node == "a"  # the balanced node wins by a point over the emptier one

    best_effort = schedule(make_pod("be"), infos, explain=True)
    # non-zero defaults 100m / 200Mi: a cpu 1900*100//2000 = 95, memory 95; b cpu 97, memory 95 -> 96
    assert plugin(best_effort, "NodeResourcesFit") == {"a": 95, "b": 96}
    assert plugin(best_effort, "NodeResourcesBalancedAllocation") == {"a": 0, "b": 0}  # skipped for best effort
    assert best_effort.node == "b"


def test_owner_spread_scores_fewer_replicas_higher():
    nodes = [make_node(n, cpu="8") for n in ("a", "b", "c")]
    placed = [
        make_pod("r1", node="a", owner="web"),
        make_pod("r2", node="a", owner="web"),
        make_pod("r3", node="b", owner="web"),
    ]
    result = schedule(make_pod("r4", owner="web"), build_node_infos(nodes, placed), explain=True)
    # counts a=2, b=1, c=0; reversed: 100 - 100 * count / 2
    assert plugin(result, "OwnerSpread") == {"a": 0, "b": 50, "c": 100}
    assert result.node == "c"
