"""Node lifecycle on a FakeClock: heartbeats, Unknown, taints, not-ready pods, eviction, recovery.

The decisions are pure functions; the controller test drives them through
a recording client and dict-backed caches, so time moves only when the
test says so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from control.clock import FakeClock
from control.controllers.nodelifecycle import (
    NOT_READY,
    UNKNOWN_MESSAGE,
    UNREACHABLE,
    NodeHealth,
    NodeLifecycleController,
    eviction_time,
    fence_for,
    fence_taints,
    is_stale,
    observe,
    orphaned_pods,
    track_no_execute,
    unknown_conditions,
)
from control.controllers.manager import Settings
from tests.controllers.helpers import make_pod


def make_node(name="w1", heartbeat="t0", taints=None):
    return {
        "metadata": {"name": name},
        "spec": {"taints": taints or []},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}]},
    }


def make_lease(renew):
    return {"metadata": {"name": "w1", "namespace": "kube-node-lease"}, "spec": {"renewTime": renew}}


def test_observe_moves_probe_time_only_on_a_new_heartbeat():
    node = make_node()
    health = observe(None, node, make_lease("r1"), now=0)
    assert health == NodeHealth(probe_time=0, lease_renew="r1", heartbeat="t0")
    observe(health, node, make_lease("r1"), now=15)
    assert health.probe_time == 0
    observe(health, node, make_lease("r2"), now=16)
    assert health.probe_time == 16
    observe(health, make_node(heartbeat="t1"), make_lease("r2"), now=30)
    assert health.probe_time == 30
    assert not is_stale(health, 50, 20) and is_stale(health, 50.5, 20)


def test_unknown_conditions_keep_heartbeat_and_transition_once():
    node = make_node()
    conds = unknown_conditions(node, "T1")
    assert conds == [
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "message": UNKNOWN_MESSAGE,
            "lastHeartbeatTime": "t0",
            "lastTransitionTime": "T1",
        }
    ]
    again = unknown_conditions({"status": {"conditions": conds}}, "T2")
    assert again[0]["lastTransitionTime"] == "T1"


def test_fence_follows_silence_first_then_the_kubelets_own_verdict():
    health = NodeHealth(probe_time=0)
    assert fence_for(make_node(), health, now=10, grace=20) is None
    not_ready = make_node()
    not_ready["status"]["conditions"][0]["status"] = "False"
    assert fence_for(not_ready, health, now=10, grace=20) == NOT_READY
    assert fence_for(not_ready, health, now=21, grace=20) == UNREACHABLE


def test_fence_taints_keep_others_and_their_own_time_added():
    cp = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    tainted = fence_taints(make_node(taints=[cp]), UNREACHABLE, "T")
    assert tainted == [
        cp,
        {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": "T"},
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "T"},
    ]
    assert fence_taints(make_node(taints=tainted), UNREACHABLE, "T2") == tainted
    switched = fence_taints(make_node(taints=tainted), NOT_READY, "T3")
    assert switched == [
        cp,
        {"key": NOT_READY, "effect": "NoSchedule", "timeAdded": "T3"},
        {"key": NOT_READY, "effect": "NoExecute", "timeAdded": "T3"},
    ]
    assert fence_taints(make_node(taints=switched), None, "T4") == [cp]


def test_eviction_time_honours_toleration_seconds():
    fence = [({"key": UNREACHABLE, "effect": "NoExecute"}, 100.0)]
    assert eviction_time(make_pod("plain"), fence, default_timeout=30) == 130

    def tolerating(*tolerations):
        return make_pod("p", tolerations=list(tolerations))

    five = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    assert eviction_time(tolerating(five), fence, 30) == 105
    assert eviction_time(tolerating(five), [({"key": NOT_READY, "effect": "NoExecute"}, 100.0)], 30) == 130
    assert eviction_time(tolerating({"operator": "Exists"}), fence, 30) is None
    # mixed bounded and unbounded tolerations: the bound applies, as in upstream's getMinTolerationTime
    assert eviction_time(tolerating({"operator": "Exists"}, five), fence, 30) == 105
    assert eviction_time(tolerating({"key": "something-else", "operator": "Exists"}), fence, 30) == 130


def test_other_no_execute_taints_evict_at_once_unless_tolerated():
    taint = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
    assert eviction_time(make_pod("plain"), [(taint, 50.0)], 30) == 50
    ten = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute", "tolerationSeconds": 10}
    assert eviction_time(make_pod("p", tolerations=[ten]), [(taint, 50.0)], 30) == 60
    both = [(taint, 50.0), ({"key": UNREACHABLE, "effect": "NoExecute"}, 40.0)]
    assert eviction_time(make_pod("p", tolerations=[ten]), both, 30) == 60  # the earliest deadline wins


def test_no_execute_taints_are_timed_from_first_sight():
    seen: dict = {}
    node = make_node(
        taints=[{"key": "dedicated", "value": "db", "effect": "NoExecute"}, {"key": "soft", "effect": "NoSchedule"}]
    )
    assert [since for _, since in track_no_execute(seen, node, now=5)] == [5]
    assert [since for _, since in track_no_execute(seen, node, now=9)] == [5]
    assert track_no_execute(seen, make_node(), now=10) == [] and seen == {}


class Cache:
    """The part of Informer the controller reads, backed by a dict."""

    def __init__(self, objects: list[dict[str, Any]]):
        self.objects = {self._key(o): o for o in objects}
        self.synced = asyncio.Event()
        self.synced.set()

    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        ns = obj["metadata"].get("namespace")
        return f"{ns}/{obj['metadata']['name']}" if ns else obj["metadata"]["name"]

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get(f"{namespace}/{name}" if namespace else name)


class RecordingClient:
    """Applies writes to the caches and records them."""

    def __init__(self, nodes: Cache, pods: Cache):
        self.nodes, self.pods = nodes, pods
        self.calls: list[tuple[str, str]] = []

    async def update_status(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("update_status", obj["metadata"]["name"]))
        self.nodes.objects[obj["metadata"]["name"]] = obj
        return obj

    async def patch(self, plural, name, patch, namespace=None, *, subresource=None):
        self.calls.append((f"patch {plural}{'/' + subresource if subresource else ''}", name))
        cache = self.nodes if plural == "nodes" else self.pods
        key = f"{namespace}/{name}" if namespace else name
        obj = cache.objects[key]
        for section, fields in patch.items():
            obj[section] = {**obj.get(section, {}), **fields}
        return obj

    async def create(self, plural: str, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.calls.append((f"create {plural}", obj.get("reason", obj["metadata"]["name"])))
        return obj

    async def delete(self, plural, name, namespace=None, **_: Any):
        self.calls.append((f"delete {plural}", name))
        self.pods.objects[f"{namespace}/{name}"]["metadata"]["deletionTimestamp"] = "now"
        return {}


async def test_controller_fences_evicts_and_recovers_on_fake_clock():
    clock = FakeClock()
    nodes = Cache([make_node("w1"), make_node("w2")])
    leases = Cache([make_lease("r0"), {**make_lease("r0"), "metadata": {"name": "w2", "namespace": "kube-node-lease"}}])
    patient = make_pod(
        "patient",
        node="w1",
        tolerations=[
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 60,
            }
        ],
    )
    pods = Cache([make_pod("web", node="w1"), patient, make_pod("other", node="w2")])
    client = RecordingClient(nodes, pods)
    ctl = NodeLifecycleController(client, nodes, leases, pods, grace=20, eviction_timeout=30, clock=clock)  # type: ignore[arg-type]

    async def tick(seconds: float, renew_w2: bool = True) -> None:
        await clock.advance(seconds)
        if renew_w2:
            leases.objects["kube-node-lease/w2"]["spec"]["renewTime"] = f"r{clock.now()}"
        await ctl.monitor_once()

    await ctl.monitor_once()
    await tick(20)
    assert client.calls == []  # exactly at the grace period: still healthy
    await tick(1)
    w1 = nodes.get("w1")
    assert w1["status"]["conditions"][0]["status"] == "Unknown"
    assert {(t["key"], t["effect"]) for t in w1["spec"]["taints"]} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    assert {p["metadata"]["name"]: p["status"]["conditions"][0]["status"] for p in pods.items()} == {
        "web": "False",
        "patient": "False",
        "other": "True",
    }
    assert nodes.get("w2")["spec"]["taints"] == []
    assert not any(c[0].startswith("delete") for c in client.calls)
    assert ("create events", "NodeNotReady") in client.calls

    await tick(30)
    assert ("delete pods", "web") in client.calls and ("delete pods", "patient") not in client.calls
    assert ("create events", "TaintManagerEviction") in client.calls
    await tick(30)
    assert ("delete pods", "patient") in client.calls
    assert ("delete pods", "other") not in client.calls

    leases.objects["kube-node-lease/w1"]["spec"]["renewTime"] = "r-back"
    await tick(1)
    assert nodes.get("w1")["spec"]["taints"] == []


async def test_node_reporting_not_ready_is_tainted_and_emptied_then_untainted():
    clock = FakeClock()
    node = make_node("w1")
    node["status"]["conditions"][0]["status"] = "False"
    nodes = Cache([node])
    leases = Cache([make_lease("r0")])
    pods = Cache([make_pod("web", node="w1")])
    client = RecordingClient(nodes, pods)
    ctl = NodeLifecycleController(client, nodes, leases, pods, grace=20, eviction_timeout=30, clock=clock)  # type: ignore[arg-type]

    async def tick(seconds: float) -> None:
        await clock.advance(seconds)
        leases.objects["kube-node-lease/w1"]["spec"]["renewTime"] = f"r{clock.now()}"  # the kubelet is alive
        await ctl.monitor_once()

    await ctl.monitor_once()
    assert {(t["key"], t["effect"]) for t in nodes.get("w1")["spec"]["taints"]} == {
        (NOT_READY, "NoSchedule"),
        (NOT_READY, "NoExecute"),
    }
    assert nodes.get("w1")["status"]["conditions"][0]["status"] == "False"  # the kubelet's word stands
    assert pods.get("web", "default")["status"]["conditions"][0]["status"] == "False"
    await tick(29)
    assert ("delete pods", "web") not in client.calls
    await tick(2)
    assert ("delete pods", "web") in client.calls

    nodes.get("w1")["status"]["conditions"][0]["status"] = "True"
    await tick(1)
    assert nodes.get("w1")["spec"]["taints"] == []


async def test_user_no_execute_taint_evicts_untolerating_pods_on_fake_clock():
    clock = FakeClock()
    nodes = Cache([make_node("w1")])
    leases = Cache([make_lease("r0")])
    patient = make_pod(
        "patient",
        node="w1",
        tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}],
    )
    pods = Cache([make_pod("web", node="w1"), patient])
    client = RecordingClient(nodes, pods)
    ctl = NodeLifecycleController(client, nodes, leases, pods, grace=20, eviction_timeout=30, clock=clock)  # type: ignore[arg-type]
    await ctl.monitor_once()
    assert client.calls == []
    nodes.get("w1")["spec"]["taints"] = [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]
    await ctl.monitor_once()
    assert ("delete pods", "web") in client.calls and ("delete pods", "patient") not in client.calls
    await clock.advance(10)
    leases.objects["kube-node-lease/w1"]["spec"]["renewTime"] = "r1"
    await ctl.monitor_once()
    assert ("delete pods", "patient") in client.calls
    assert nodes.get("w1")["spec"]["taints"] == [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]


def test_pods_of_vanished_nodes_are_collected_after_quarantine():
    seen: dict = {}
    pods = [make_pod("on-live", node="w1"), make_pod("on-gone", node="w9"), make_pod("unbound")]
    assert orphaned_pods(pods, {"w1"}, seen, now=0, quarantine=40) == []
    assert orphaned_pods(pods, {"w1"}, seen, now=39, quarantine=40) == []
    assert [p["metadata"]["name"] for p in orphaned_pods(pods, {"w1"}, seen, now=40, quarantine=40)] == ["on-gone"]
    # the node came back: the clock restarts if it vanishes again
    assert orphaned_pods(pods, {"w1", "w9"}, seen, now=41, quarantine=40) == [] and seen == {}
    assert orphaned_pods(pods, {"w1"}, seen, now=50, quarantine=40) == []


async def test_default_timings_meet_issue_4_targets_for_a_kubelet_renewing_every_5s():
    """Crash right after a renewal (the worst case): not ready within 10 s, evicted in time to be replaced by 30 s.

    Before the crash the kubelet renews every 5 s with up to 2 s of lateness, which must never fence the node.
    """
    settings = Settings()
    clock = FakeClock()
    nodes = Cache([make_node("w1")])
    leases = Cache([make_lease("r0")])
    pods = Cache([make_pod("web", node="w1")])
    client = RecordingClient(nodes, pods)
    ctl = NodeLifecycleController(
        client,  # type: ignore[arg-type]
        nodes,  # type: ignore[arg-type]
        leases,  # type: ignore[arg-type]
        pods,  # type: ignore[arg-type]
        grace=settings.node_monitor_grace_period,
        eviction_timeout=settings.pod_eviction_timeout,
        monitor_period=settings.node_monitor_period,
        clock=clock,
    )
    await ctl.monitor_once()
    next_renewal, late, last_renewal = 5.0, 0, 0.0
    while clock.now() < 60:  # a healthy but sometimes late kubelet: 5, 7, 5, 7, ... seconds apart
        await clock.advance(settings.node_monitor_period)
        if clock.now() >= next_renewal:
            leases.objects["kube-node-lease/w1"]["spec"]["renewTime"] = f"r{clock.now()}"
            last_renewal = clock.now()
            late = 2 - late
            next_renewal = clock.now() + 5 + late
        await ctl.monitor_once()
    assert client.calls == []
    crashed = last_renewal  # the kubelet dies right after its last renewal
    not_ready_at = evicted_at = None
    while evicted_at is None and clock.now() < crashed + 60:
        await clock.advance(settings.node_monitor_period)
        await ctl.monitor_once()
        if not_ready_at is None and pods.get("web", "default")["status"]["conditions"][0]["status"] == "False":
            not_ready_at = clock.now() - crashed
        if ("delete pods", "web") in client.calls:
            evicted_at = clock.now() - crashed
    assert not_ready_at is not None and not_ready_at <= 10
    # Scheduling and starting the replacement take a few seconds more (measured by bench_node_failure).
    assert evicted_at is not None and evicted_at <= 20
