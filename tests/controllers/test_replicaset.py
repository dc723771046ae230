"""ReplicaSet decisions: claiming, naming, which pods go first, status, expectations."""

from __future__ import annotations

import random

import pytest

from control.api.errors import ApiError, status_failure
from control.clock import FakeClock
from control.controllers.base import WorkQueue
from control.controllers.replicaset import (
    NAME_ALPHABET,
    Expectations,
    ReplicaSetController,
    claim_pods,
    pod_for,
    pods_to_delete,
    random_suffix,
    replicaset_status,
)
from tests.controllers.helpers import make_pod

RS = {
    "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 3},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [{"name": "c"}]}},
    },
}


def test_pod_from_template_is_named_and_owned():
    suffix = random_suffix(random.Random(1))
    assert len(suffix) == 5 and set(suffix) <= set(NAME_ALPHABET)
    pod = pod_for(RS, f"web-{suffix}")
    assert pod["metadata"]["name"] == f"web-{suffix}"
    assert pod["metadata"]["generateName"] == "web-"
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": "rs-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert pod["spec"] == RS["spec"]["template"]["spec"]
    pod["spec"]["containers"].append({"name": "x"})
    assert len(RS["spec"]["template"]["spec"]["containers"]) == 1  # the template is not shared


def test_claim_adopts_matching_orphans_and_releases_mismatches():
    owned = make_pod("a", owner_uid="rs-uid")
    orphan = make_pod("b")
    terminating_orphan = make_pod("c", deleting=True)
    foreign = make_pod("d", owner_uid="other")
    relabelled = make_pod("e", owner_uid="rs-uid", labels={"app": "db"})
    unrelated = make_pod("f", labels={"app": "db"})
    got = claim_pods(RS, [owned, orphan, terminating_orphan, foreign, relabelled, unrelated])
    assert got == ([owned], [orphan], [relabelled])


def test_scale_down_order_follows_kubernetes_preference():
    unscheduled = make_pod("unscheduled", phase="Pending", ready=False)
    pending = make_pod("pending", node="n1", phase="Pending", ready=False)
    not_ready = make_pod("not-ready", node="n1", ready=False)
    crowded = make_pod("crowded", node="n1", ready_since="2026-01-01T00:00:10Z")
    alone_new = make_pod("alone-new", node="n2", created="2026-01-02T00:00:00Z", ready_since="2026-01-01T00:00:10Z")
    alone_old = make_pod("alone-old", node="n3", created="2026-01-01T00:00:00Z", ready_since="2026-01-01T00:00:10Z")
    pods = [alone_old, crowded, alone_new, not_ready, pending, unscheduled]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, len(pods))]
    assert order == ["unscheduled", "pending", "not-ready", "crowded", "alone-new", "alone-old"]
    assert [p["metadata"]["name"] for p in pods_to_delete(pods, 2)] == ["unscheduled", "pending"]


def test_scale_down_prefers_recently_ready_and_restarting_pods():
    long_ready = make_pod("long", node="a", ready_since="2026-01-01T00:00:00Z")
    just_ready = make_pod("just", node="b", ready_since="2026-01-01T05:00:00Z")
    restarting = make_pod("restarting", node="c", ready_since="2026-01-01T00:00:00Z", restarts=4)
    order = [p["metadata"]["name"] for p in pods_to_delete([long_ready, restarting, just_ready], 3)]
    assert order == ["just", "restarting", "long"]


def test_status_counts_only_active_pods():
    pods = [
        make_pod("ready", owner_uid="rs-uid", labels={"app": "web", "tier": "fe"}),
        make_pod("not-ready", owner_uid="rs-uid", ready=False),
        make_pod("terminating", owner_uid="rs-uid", deleting=True),
        make_pod("done", owner_uid="rs-uid", phase="Succeeded"),
    ]
    status = replicaset_status(RS, pods, now=0)
    assert status == {
        "replicas": 2,
        "fullyLabeledReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "observedGeneration": 3,
    }


def test_min_ready_seconds_delays_availability():
    rs = {**RS, "spec": {**RS["spec"], "minReadySeconds": 60}}
    pod = make_pod("p", owner_uid="rs-uid", ready_since="2026-01-01T00:00:00Z")
    ready_at = 1767225600  # 2026-01-01T00:00:00Z
    assert replicaset_status(rs, [pod], now=ready_at + 30)["availableReplicas"] == 0
    assert replicaset_status(rs, [pod], now=ready_at + 61)["availableReplicas"] == 1


async def test_expectations_hold_until_observed_or_timed_out():
    clock = FakeClock()
    exp = Expectations(clock, timeout=300)
    assert exp.satisfied("default/web")
    exp.expect("default/web", creates=["web-a", "web-b"])
    assert not exp.satisfied("default/web")
    exp.observed("default/web", "web-a")
    assert not exp.satisfied("default/web")
    exp.lower("default/web", "web-b")
    assert exp.satisfied("default/web")
    exp.expect("default/web", deletes=["web-c"])
    await clock.advance(299)
    assert not exp.satisfied("default/web")
    await clock.advance(2)
    assert exp.satisfied("default/web")


async def test_work_queue_coalesces_and_requeues_keys_changed_while_processing():
    queue = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    first = await queue.get()
    assert first == "a"
    queue.add("a")  # changed while being processed: not handed out twice at once
    assert len(queue) == 1
    assert await queue.get() == "b"
    queue.done("a")
    assert await queue.get() == "a"


class CountingClient:
    """Creates succeed until `fail_after` calls, then fail with 422; records names in call order."""

    def __init__(self, fail_after: int):
        self.fail_after = fail_after
        self.created: list[str] = []

    async def create(self, plural, obj, namespace=None):
        if plural == "events":
            return obj
        if len(self.created) >= self.fail_after:
            raise ApiError(status_failure(422, "Invalid", "pods is invalid"))
        self.created.append(obj["metadata"]["name"])
        return obj


class NoInformer:
    def add_handler(self, handler):
        pass


@pytest.mark.parametrize(("fail_after", "attempted"), [(0, 0), (100, 7), (2, 2)])
async def test_creation_slow_starts_and_stops_at_the_first_failure(fail_after, attempted):
    client = CountingClient(fail_after)
    ctl = ReplicaSetController(client, NoInformer(), NoInformer(), rng=random.Random(0))  # type: ignore[arg-type]
    names = [f"web-{i}" for i in range(7)]
    ctl.expectations.expect("default/web", creates=names)
    if fail_after < len(names):
        with pytest.raises(ApiError):
            await ctl._create_slow_start("default/web", RS, list(names))
    else:
        await ctl._create_slow_start("default/web", RS, list(names))
    assert len(client.created) == attempted
    # batches of 1, 2, 4; failed and skipped creations are no longer expected, created ones are until seen
    assert ctl.expectations.satisfied("default/web") == (attempted == 0)
    for name in client.created:
        ctl.expectations.observed("default/web", name)
    assert ctl.expectations.satisfied("default/web")
