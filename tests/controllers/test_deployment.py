"""Deployment arithmetic: template hash, maxSurge/maxUnavailable rounding, rollout steps, status, history."""

from __future__ import annotations

import copy

import pytest

from control.controllers.deployment import (
    HASH_LABEL,
    REVISION,
    SAFE_ALPHABET,
    deployment_status,
    fnv32a,
    history_to_delete,
    new_replicaset_target,
    old_replicaset_targets,
    pod_template_hash,
    replicaset_for,
    scaled_value,
    surge_and_unavailable,
    templates_equal,
)

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def deployment(replicas=3, surge=None, unavailable=None, template=TEMPLATE, **spec):
    rolling = {}
    if surge is not None:
        rolling["maxSurge"] = surge
    if unavailable is not None:
        rolling["maxUnavailable"] = unavailable
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            **spec,
        },
    }


def rs(name, replicas, available=None, created="2026-01-01T00:00:00Z", revision=1, status_replicas=None):
    available = replicas if available is None else available
    return {
        "metadata": {"name": name, "creationTimestamp": created, "annotations": {REVISION: str(revision)}},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas if status_replicas is None else status_replicas,
            "readyReplicas": available,
            "availableReplicas": available,
        },
    }


def test_fnv32a_known_vectors():
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


def test_template_hash_is_stable_safe_and_sensitive():
    first = pod_template_hash(TEMPLATE)
    assert first == pod_template_hash(copy.deepcopy(TEMPLATE))
    assert set(first) <= set(SAFE_ALPHABET) and 1 <= len(first) <= 10
    changed = copy.deepcopy(TEMPLATE)
    changed["spec"]["containers"][0]["image"] = "nginx:2"
    assert pod_template_hash(changed) != first
    assert pod_template_hash(TEMPLATE, 1) != first


def test_replicaset_carries_hash_in_selector_template_and_labels():
    d = deployment()
    h = pod_template_hash(TEMPLATE)
    made = replicaset_for(d, h, 2, 4)
    assert made["metadata"]["name"] == f"web-{h}"
    assert made["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    assert made["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert made["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    assert made["metadata"]["annotations"][REVISION] == "4"
    assert made["metadata"]["ownerReferences"][0]["uid"] == "d-uid"
    assert TEMPLATE["metadata"]["labels"] == {"app": "web"}
    assert templates_equal(made["spec"]["template"], TEMPLATE)


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("50%", 3, True, 2),
        ("50%", 3, False, 1),
        (2, 10, True, 2),
        ("4", 10, False, 4),
    ],
)
def test_int_or_percent_rounding(value, total, up, expected):
    assert scaled_value(value, total, up, "25%") == expected


@pytest.mark.parametrize("bad", ["abc", "10.5%", "-1%", True])
def test_bad_int_or_percent_is_named(bad):
    with pytest.raises(ValueError, match="invalid value"):
        scaled_value(bad, 10, True, "25%")


def test_fenceposts_default_and_never_both_zero():
    assert surge_and_unavailable(deployment(replicas=1)) == (1, 0)
    assert surge_and_unavailable(deployment(replicas=10)) == (3, 2)
    assert surge_and_unavailable(deployment(replicas=3, surge=0, unavailable="10%")) == (0, 1)


def test_new_replicaset_scale_up_is_bounded_by_surge():
    assert new_replicaset_target(desired=3, max_surge=1, total_replicas=3, new_replicas=0) == 1
    assert new_replicaset_target(desired=3, max_surge=1, total_replicas=4, new_replicas=1) == 1
    assert new_replicaset_target(desired=3, max_surge=5, total_replicas=3, new_replicas=0) == 3
    assert new_replicaset_target(desired=2, max_surge=1, total_replicas=5, new_replicas=5) == 2  # scaled down


def test_old_replicasets_shrink_only_as_far_as_availability_allows():
    old = [rs("old", 3)]
    assert old_replicaset_targets(3, 0, rs("new", 1, available=0), old) == {}
    assert old_replicaset_targets(3, 0, rs("new", 1, available=1), old) == {"old": 2}
    # unavailable old pods go first, but total pods never drop below desired - maxUnavailable
    assert old_replicaset_targets(3, 0, rs("new", 1, available=1), [rs("old", 3, available=1)]) == {"old": 2}
    assert old_replicaset_targets(3, 1, rs("new", 1, available=1), [rs("old", 3, available=1)]) == {"old": 1}
    # oldest first
    two = [rs("older", 1, created="2026-01-01T00:00:00Z"), rs("younger", 2, created="2026-01-02T00:00:00Z")]
    assert old_replicaset_targets(3, 1, rs("new", 1, available=1), two) == {"older": 0, "younger": 1}


@pytest.mark.parametrize(
    ("desired", "surge", "unavailable"), [(3, 1, 0), (3, 0, 1), (10, "25%", "25%"), (5, 2, 2), (1, 1, 0)]
)
def test_rolling_update_converges_within_bounds(desired, surge, unavailable):
    """Step the controller's arithmetic with pods that become available at once."""
    d = deployment(replicas=desired, surge=surge, unavailable=unavailable)
    max_surge, max_unavailable = surge_and_unavailable(d)
    new, old = rs("new", 0), rs("old", desired)
    for _ in range(50):
        target = new_replicaset_target(
            desired, max_surge, new["spec"]["replicas"] + old["spec"]["replicas"], new["spec"]["replicas"]
        )
        new = rs("new", target)
        cut = old_replicaset_targets(desired, max_unavailable, new, [old]).get("old")
        if cut is not None:
            old = rs("old", cut)
        total = new["spec"]["replicas"] + old["spec"]["replicas"]
        assert total <= desired + max_surge
        assert new["status"]["availableReplicas"] + old["status"]["availableReplicas"] >= desired - max_unavailable
        if new["spec"]["replicas"] == desired and old["spec"]["replicas"] == 0:
            break
    else:
        pytest.fail("rollout did not finish")


def test_history_keeps_revision_history_limit_idle_replicasets():
    old = [rs(f"r{i}", 0, revision=i) for i in range(1, 6)] + [rs("busy", 2, revision=6)]
    assert [r["metadata"]["name"] for r in history_to_delete(old, 2)] == ["r1", "r2", "r3"]
    assert history_to_delete(old, 10) == []
    draining = [rs("r1", 0, revision=1, status_replicas=1)]
    assert history_to_delete(draining, 0) == []


def test_status_and_conditions():
    d = deployment(replicas=3, surge=1, unavailable=0)
    new, old = rs("web-new", 3), rs("web-old", 0)
    status = deployment_status(d, new, [new, old], "2026-01-01T00:00:00Z")
    conds = {c["type"]: c for c in status["conditions"]}
    assert {k: status[k] for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")} == {
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
    }
    assert status["unavailableReplicas"] == 0 and status["observedGeneration"] == 2
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == 'ReplicaSet "web-new" has successfully progressed.'

    rolling_new, rolling_old = rs("web-new", 1, available=0), rs("web-old", 3, available=2)
    status = deployment_status(d, rolling_new, [rolling_new, rolling_old], "2026-01-01T00:00:00Z")
    conds = {c["type"]: c for c in status["conditions"]}
    assert status["unavailableReplicas"] == 2
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("False", "MinimumReplicasUnavailable")
    assert conds["Progressing"]["reason"] == "ReplicaSetUpdated"


def test_condition_transition_time_survives_unchanged_status():
    d = deployment(replicas=1)
    new = rs("web-new", 1)
    first = deployment_status(d, new, [new], "2026-01-01T00:00:00Z")
    later = deployment_status({**d, "status": first}, new, [new], "2026-01-01T01:00:00Z")
    assert [c["lastTransitionTime"] for c in later["conditions"]] == ["2026-01-01T00:00:00Z"] * 2


def test_templates_compare_semantically():
    undone = copy.deepcopy(TEMPLATE)
    undone["metadata"]["creationTimestamp"] = None  # as `kubectl rollout undo` sends it
    undone["spec"]["containers"][0]["resources"] = {}
    assert templates_equal(undone, TEMPLATE)
    assert pod_template_hash(undone) == pod_template_hash(TEMPLATE)
    other = copy.deepcopy(TEMPLATE)
    other["spec"]["containers"][0]["args"] = ["x"]
    assert not templates_equal(other, TEMPLATE)


def test_progress_deadline():
    d = deployment(replicas=3, surge=1, unavailable=0, progressDeadlineSeconds=600)
    new, old = rs("web-new", 1, available=0), rs("web-old", 3)
    t0 = "2026-01-01T00:00:00Z"
    epoch0 = 1767225600  # t0 in seconds
    first = deployment_status(d, new, [new, old], t0)
    progressing = {c["type"]: c for c in first["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"], progressing["lastUpdateTime"]) == (
        "True",
        "ReplicaSetUpdated",
        t0,
    )

    d_stuck = {**d, "status": first}
    waiting = deployment_status(d_stuck, new, [new, old], "2026-01-01T00:09:59Z", now=epoch0 + 599)
    assert {c["type"]: c for c in waiting["conditions"]}["Progressing"]["status"] == "True"
    stuck = deployment_status(d_stuck, new, [new, old], "2026-01-01T00:10:01Z", now=epoch0 + 601)
    cond = {c["type"]: c for c in stuck["conditions"]}["Progressing"]
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        "ProgressDeadlineExceeded",
        'ReplicaSet "web-new" has timed out progressing.',
    )
    still = deployment_status({**d, "status": stuck}, new, [new, old], "2026-01-01T00:11:00Z")
    assert {c["type"]: c for c in still["conditions"]}["Progressing"]["reason"] == "ProgressDeadlineExceeded"

    moved = rs("web-new", 1, available=1)
    resumed = deployment_status({**d, "status": stuck}, moved, [moved, old], "2026-01-01T00:12:00Z", now=epoch0 + 720)
    cond = {c["type"]: c for c in resumed["conditions"]}["Progressing"]
    assert (cond["status"], cond["reason"], cond["lastUpdateTime"]) == (
        "True",
        "ReplicaSetUpdated",
        "2026-01-01T00:12:00Z",
    )
