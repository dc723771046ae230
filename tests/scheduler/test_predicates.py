"""Pure scheduling decisions: quantities, tolerations, filters, scoring and the FailedScheduling text."""

from __future__ import annotations

import random

import pytest

from control.scheduler.nodeinfo import NodeInfo, PodFacts, build_node_infos
from control.scheduler.predicates import (
    failed_scheduling_message,
    feasible_nodes_to_find,
    filter_reasons,
    schedule,
)
from control.scheduler.scheduler import scheduling_properties
from control.api.quantity import milli_value, parse_quantity, whole_value
from control.scheduler.taints import first_untolerated, tolerates


def make_node(name, cpu="2", memory="4Gi", pods="110", ready="True", taints=None, labels=None, unschedulable=False):
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def make_pod(name, cpu=None, memory=None, node=None, owner=None, tolerations=None, phase="Pending", **spec):
    requests = {}
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = memory
    meta = {"name": name, "namespace": "default"}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": f"uid-{owner}", "controller": True}]
    return {
        "metadata": meta,
        "spec": {
            "containers": [{"name": "c", "resources": {"requests": requests}}],
            "tolerations": tolerations or [],
            **({"nodeName": node} if node else {}),
            **spec,
        },
        "status": {"phase": phase},
    }


CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("text", "milli"),
    [("1", 1000), ("250m", 250), ("0.5", 500), ("1.5", 1500), ("100u", 1), ("2e3", 2_000_000), (2, 2000)],
)
def test_cpu_quantities_in_millicores(text, milli):
    assert milli_value(text) == milli


@pytest.mark.parametrize(
    ("text", "value"),
    [("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1Ki", 1024), ("1k", 1000), ("1M", 10**6), ("1G", 10**9), ("110", 110)],
)
def test_memory_quantities_in_bytes(text, value):
    assert whole_value(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "1Qi", "1.2.3", "Mi", "--1"])
def test_bad_quantities_name_the_text(bad):
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(bad)


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            {"key": "k", "value": "v", "effect": "NoSchedule"},
            True,
        ),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "other", "effect": "NoSchedule"}, False),
        ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "anything", "effect": "NoExecute"}, True),
        ({"operator": "Exists"}, {"key": "any", "value": "x", "effect": "NoSchedule"}, True),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"}, False),
        ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
        ({"key": "k", "operator": "Equal"}, {"key": "k", "effect": "NoSchedule"}, True),
    ],
)
def test_toleration_matching(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


def test_prefer_no_schedule_taints_do_not_block():
    taints = [{"key": "soft", "effect": "PreferNoSchedule"}, CONTROL_PLANE_TAINT]
    assert first_untolerated(taints, []) == CONTROL_PLANE_TAINT
    assert first_untolerated(taints[:1], []) is None


def test_requests_sum_containers_and_take_max_of_init_containers():
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}],
        }
    }
    facts = PodFacts.of(pod)
    assert (facts.cpu, facts.memory) == (1000, 64 * 2**20)
    # scoring counts a container without a memory request (b) as 200Mi
    assert (facts.scoring_cpu, facts.scoring_memory) == (1000, 64 * 2**20 + 200 * 2**20)


def test_filters_explain_each_node():
    pod = make_pod("p", cpu="1500m")
    assert filter_reasons(pod, NodeInfo(make_node("n", taints=[CONTROL_PLANE_TAINT]))) == [
        "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
    ]
    assert filter_reasons(pod, NodeInfo(make_node("n", ready="False"))) == ["node(s) were not ready"]
    assert filter_reasons(pod, NodeInfo(make_node("n", unschedulable=True))) == ["node(s) were unschedulable"]
    busy = NodeInfo(make_node("n"), [make_pod("q", cpu="1", node="n")])
    assert filter_reasons(pod, busy) == ["Insufficient cpu"]
    full = NodeInfo(make_node("n", pods="1", memory="1Mi"), [make_pod("q", node="n")])
    assert filter_reasons(make_pod("p", memory="2Mi"), full) == ["Too many pods", "Insufficient memory"]
    assert filter_reasons(pod, NodeInfo(make_node("n"))) == []


def test_toleration_lets_a_pod_onto_a_tainted_node():
    pod = make_pod("p", tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}])
    assert filter_reasons(pod, NodeInfo(make_node("cp", taints=[CONTROL_PLANE_TAINT]))) == []


def test_node_selector_and_required_affinity():
    node = make_node("n", labels={"disk": "ssd", "gen": "5"})
    assert filter_reasons(make_pod("p", nodeSelector={"disk": "ssd"}), NodeInfo(node)) == []
    assert filter_reasons(make_pod("p", nodeSelector={"disk": "hdd"}), NodeInfo(node)) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]

    def affinity(*expressions):
        return {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]
                }
            }
        }

    fits = [
        {"key": "disk", "operator": "In", "values": ["ssd", "nvme"]},
        {"key": "gen", "operator": "Gt", "values": ["4"]},
        {"key": "gpu", "operator": "DoesNotExist"},
    ]
    assert filter_reasons(make_pod("p", affinity=affinity(*fits)), NodeInfo(node)) == []
    for bad in (
        {"key": "disk", "operator": "NotIn", "values": ["ssd"]},
        {"key": "gen", "operator": "Lt", "values": ["5"]},
        {"key": "gpu", "operator": "Exists"},
    ):
        assert filter_reasons(make_pod("p", affinity=affinity(bad)), NodeInfo(node)) != []


def test_host_port_conflicts():
    def with_port(name, port, node=None, host_ip=None):
        pod = make_pod(name, node=node)
        entry = {"containerPort": 80, "hostPort": port, **({"hostIP": host_ip} if host_ip else {})}
        pod["spec"]["containers"][0]["ports"] = [entry]
        return pod

    info = NodeInfo(make_node("n"), [with_port("a", 8080, "n", "10.0.0.1")])
    assert filter_reasons(with_port("b", 8080), info) == ["node(s) didn't have free ports for the requested pod ports"]
    assert filter_reasons(with_port("b", 8080, host_ip="10.0.0.2"), info) == []
    assert filter_reasons(with_port("b", 8081), info) == []


def test_scoring_spreads_pods_of_one_owner_before_packing():
    nodes = [make_node("a", cpu="4"), make_node("b", cpu="4")]
    bound = [make_pod("x1", node="a", owner="web"), make_pod("big", cpu="3", node="b")]
    infos = build_node_infos(nodes, bound)
    assert schedule(make_pod("x2", owner="web"), infos).node == "b"
    assert schedule(make_pod("other"), infos).node == "a"  # least allocated when no owner


def test_terminated_pods_free_their_resources():
    infos = build_node_infos([make_node("a", cpu="1")], [make_pod("done", cpu="1", node="a", phase="Succeeded")])
    assert schedule(make_pod("p", cpu="1"), infos).node == "a"


def test_ties_break_by_name_or_seeded_rng():
    infos = build_node_infos([make_node(n) for n in ("c", "a", "b")], [])
    assert schedule(make_pod("p"), infos).node == "a"
    picks = {schedule(make_pod("p"), infos, random.Random(seed)).node for seed in range(20)}
    assert picks == {"a", "b", "c"}
    first, again = (schedule(make_pod("p"), infos, random.Random(7)).node for _ in range(2))
    assert first == again


def test_failed_scheduling_message_matches_kube_scheduler():
    nodes = [
        make_node("cp", taints=[CONTROL_PLANE_TAINT]),
        make_node("w1", cpu="1"),
        make_node("w2", cpu="1"),
    ]
    result = schedule(make_pod("p", cpu="2"), build_node_infos(nodes, []))
    assert result.node is None
    assert result.message() == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod."
    )


def test_failed_scheduling_message_sorts_histogram_and_handles_no_nodes():
    reasons = {"a": ["node(s) were not ready"], "b": ["node(s) were not ready"], "c": ["Insufficient memory"]}
    assert failed_scheduling_message(3, reasons) == (
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) were not ready. preemption: 0/3 nodes are "
        "available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    )
    assert failed_scheduling_message(0, {}) == "no nodes available to schedule pods"


def test_required_pod_anti_affinity_and_affinity():
    def labelled(node_name, zone):
        return make_node(node_name, labels={"kubernetes.io/hostname": node_name, "zone": zone})

    nodes = [labelled("a", "z1"), labelled("b", "z1"), labelled("c", "z2")]
    db = make_pod("db-0", node="a")
    db["metadata"]["labels"] = {"app": "db"}
    infos = build_node_infos(nodes, [db])

    def with_affinity(kind, topology, app):
        pod = make_pod("p")
        pod["metadata"]["labels"] = {"app": "web"}
        term = {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": topology}
        pod["spec"]["affinity"] = {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
        return pod

    away_host = with_affinity("podAntiAffinity", "kubernetes.io/hostname", "db")
    assert [filter_reasons(away_host, i, infos) for i in infos] == [
        ["node(s) didn't match pod anti-affinity rules"],
        [],
        [],
    ]
    away_zone = with_affinity("podAntiAffinity", "zone", "db")
    assert schedule(away_zone, infos).node == "c"
    near_zone = with_affinity("podAffinity", "zone", "db")
    assert [bool(filter_reasons(near_zone, i, infos)) for i in infos] == [False, False, True]
    assert filter_reasons(near_zone, infos[2], infos) == ["node(s) didn't match pod affinity rules"]
    lonely = with_affinity("podAffinity", "zone", "nobody")
    assert all(filter_reasons(lonely, i, infos) for i in infos)
    first_of_group = with_affinity("podAffinity", "zone", "web")  # matches itself and no pod exists yet
    assert not any(filter_reasons(first_of_group, i, infos) for i in infos)


def test_existing_pods_anti_affinity_keeps_newcomers_away():
    nodes = [make_node(n, labels={"kubernetes.io/hostname": n}) for n in ("a", "b")]
    loner = make_pod("loner", node="a")
    term = {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
    loner["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    infos = build_node_infos(nodes, [loner])
    web = make_pod("web")
    web["metadata"]["labels"] = {"app": "web"}
    assert filter_reasons(web, infos[0], infos) == ["node(s) didn't satisfy existing pods anti-affinity rules"]
    result = schedule(web, infos[:1])
    assert result.message() == (
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )
    assert schedule(web, infos).node == "b"


def test_own_anti_affinity_is_reported_before_existing_pods_anti_affinity():
    """Replicas that repel each other: kube-scheduler names the incoming pod's own rule first."""
    nodes = [make_node(n, labels={"kubernetes.io/hostname": n}) for n in ("a", "b")]
    term = {"labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": "kubernetes.io/hostname"}

    def replica(name, node=None):
        pod = make_pod(name, node=node)
        pod["metadata"]["labels"] = {"app": "spread"}
        pod["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
        return pod

    infos = build_node_infos(nodes, [replica("r0", "a"), replica("r1", "b")])
    assert (
        schedule(replica("r2"), infos)
        .message()
        .startswith("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")
    )


@pytest.mark.parametrize(("nodes", "expected"), [(3, 3), (99, 99), (100, 100), (1000, 420), (5000, 500), (6000, 300)])
def test_feasible_nodes_to_find_follows_kube_scheduler(nodes, expected):
    assert feasible_nodes_to_find(nodes) == expected


def test_big_clusters_stop_after_enough_feasible_nodes_and_rotate_the_start():
    infos = build_node_infos([make_node(f"n{i:03d}") for i in range(300)], [])
    assert feasible_nodes_to_find(300) == 144  # 48% of 300
    first = schedule(make_pod("p"), infos, start=0)
    assert first.processed == 144 and first.node == "n000"
    second = schedule(make_pod("q"), infos, start=first.processed)
    assert second.processed == 144 and second.node == "n144"
    wrapped = schedule(make_pod("r"), infos, start=250)
    assert wrapped.processed == 144 and wrapped.node == "n000"  # n250..n299 then n000..n093: ties by name
    nowhere = schedule(make_pod("big", cpu="64"), infos, start=123)
    assert nowhere.node is None and nowhere.processed == 300
    assert nowhere.message().startswith("0/300 nodes are available: 300 Insufficient cpu.")


def test_only_scheduling_relevant_node_changes_retry_unschedulable_pods():
    node = make_node("n")
    node["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:00Z"
    heartbeat = {**node, "status": {**node["status"], "conditions": [dict(node["status"]["conditions"][0])]}}
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:05Z"
    assert scheduling_properties(heartbeat) == scheduling_properties(node)
    for changed in (
        make_node("n", cpu="8"),
        make_node("n", ready="False"),
        make_node("n", unschedulable=True),
        make_node("n", taints=[CONTROL_PLANE_TAINT]),
        make_node("n", labels={"disk": "ssd"}),
    ):
        assert scheduling_properties(changed) != scheduling_properties(node)
