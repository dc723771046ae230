"""The suite's before/after comparison: what counts as lost or changed, and what is the controllers' own work."""

from __future__ import annotations

import copy
from typing import Any

from tests.e2e.chaos.support import compare, object_key, summarize, Request


def obj(kind: str, name: str, namespace: str = "", api_version: str = "v1", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": "1", "uid": f"uid-{name}"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def by_key(*objects: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {object_key(o): o for o in objects}


OWNED = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": True}]


def state() -> dict[str, dict[str, Any]]:
    pod = obj("Pod", "web-1-abc", "app", spec={"containers": [{"name": "c", "image": "busybox"}]})
    pod["metadata"]["ownerReferences"] = OWNED
    return by_key(
        obj("Namespace", "app"),
        obj("ConfigMap", "settings", "app", data={"k": "v"}),
        obj("Pod", "bare", "app", spec={"containers": [{"name": "c", "image": "busybox"}]}),
        pod,
        obj("Node", "worker1", spec={"podCIDR": "10.244.1.0/24"}, status={"conditions": []}),
    )


def test_nothing_changed_is_clean() -> None:
    assert compare(state(), state()) == ([], [])


def test_a_missing_object_is_lost() -> None:
    after = state()
    del after["v1/ConfigMap/app/settings"]
    assert compare(state(), after) == (["v1/ConfigMap/app/settings"], [])


def test_a_bare_pod_gone_is_lost_but_a_replaced_controlled_pod_is_not() -> None:
    after = state()
    del after["v1/Pod/app/bare"], after["v1/Pod/app/web-1-abc"]
    assert compare(state(), after) == (["v1/Pod/app/bare"], [])


def test_status_and_versions_and_taints_are_the_controllers_work() -> None:
    after = copy.deepcopy(state())
    node = after["v1/Node//worker1"]
    node["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    node["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    node["metadata"]["resourceVersion"] = "99"
    assert compare(state(), after) == ([], [])


def test_a_changed_spec_or_data_is_reported_unless_the_fault_made_it() -> None:
    after = copy.deepcopy(state())
    after["v1/ConfigMap/app/settings"]["data"] = {"k": "other"}
    assert compare(state(), after) == ([], ["v1/ConfigMap/app/settings"])
    assert compare(state(), after, {"v1/ConfigMap/app/settings"}) == ([], [])


def test_objects_of_a_deleted_namespace_are_not_lost() -> None:
    after = {k: v for k, v in state().items() if k.startswith("v1/Node/")}
    assert compare(state(), after) == ([], [])


def test_summary_counts_failures_per_path_and_recovery_after_the_last_failure() -> None:
    requests = [
        Request("vip", 10.0, True), Request("dns", 10.1, True),
        Request("vip", 11.0, False, "timed out"), Request("dns", 11.1, False, "refused"),
        Request("vip", 12.0, False, "timed out"), Request("dns", 13.5, True), Request("vip", 13.6, True),
    ]
    result = summarize("fault", requests, fault_at=10.5)
    assert (result.sent, result.failed_vip, result.failed_dns) == (7, 2, 1)
    assert result.recovery_s == 13.5 - 10.5
    assert result.errors == ["refused", "timed out"]


def test_a_watched_namespace_gone_is_lost_with_its_objects() -> None:
    after = {k: v for k, v in state().items() if k.startswith("v1/Node/")}
    lost, changed = compare(state(), after, watched_namespaces={"app"})
    assert sorted(lost) == ["v1/ConfigMap/app/settings", "v1/Namespace//app", "v1/Pod/app/bare"]
    assert changed == []
