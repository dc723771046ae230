"""Pod phase and conditions by Kubernetes' rules, from container statuses alone."""

from __future__ import annotations

import pytest

from control.api.quantity import milli_value, whole_value
from kubelet.status import pod_conditions, pod_phase, qos_class

RUNNING = {"name": "r", "state": {"running": {}}, "lastState": {}, "ready": True}
WAITING = {"name": "w", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
OK = {"name": "ok", "state": {"terminated": {"exitCode": 0}}, "lastState": {}}
FAILED = {"name": "bad", "state": {"terminated": {"exitCode": 1}}, "lastState": {}}
BACKOFF = {
    "name": "b",
    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    "lastState": {"terminated": {"exitCode": 1}},
}
UNKNOWN = {"name": "u", "state": {}, "lastState": {}}


@pytest.mark.parametrize(
    "statuses, policy, phase",
    [
        ([WAITING], "Always", "Pending"),
        ([RUNNING, WAITING], "Always", "Pending"),
        ([RUNNING], "Always", "Running"),
        ([RUNNING, OK], "Never", "Running"),
        ([BACKOFF], "Always", "Running"),
        ([OK], "Always", "Running"),  # will be restarted
        ([OK, OK], "OnFailure", "Succeeded"),
        ([OK, OK], "Never", "Succeeded"),
        ([OK, FAILED], "Never", "Failed"),
        ([OK, FAILED], "OnFailure", "Running"),
        ([BACKOFF], "OnFailure", "Running"),
        ([RUNNING, UNKNOWN], "Always", "Pending"),
    ],
)
def test_phase(statuses: list[dict], policy: str, phase: str) -> None:
    assert pod_phase(statuses, policy) == phase


def test_conditions_keep_transition_times_and_explain() -> None:
    before = pod_conditions("Running", [RUNNING], [], "T1")
    assert {c["type"]: (c["status"], c["lastTransitionTime"]) for c in before} == {
        "PodScheduled": ("True", "T1"), "Initialized": ("True", "T1"),
        "ContainersReady": ("True", "T1"), "Ready": ("True", "T1"),
    }  # fmt: skip
    after = pod_conditions("Running", [RUNNING, WAITING], before, "T2")
    ready = next(c for c in after if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"], ready["reason"]) == ("False", "T2", "ContainersNotReady")
    assert ready["message"] == "containers with unready status: [w]"
    assert next(c for c in after if c["type"] == "PodScheduled")["lastTransitionTime"] == "T1"


def test_qos_classes() -> None:
    assert qos_class([{"name": "a"}]) == "BestEffort"
    same = {"cpu": "1", "memory": "1Gi"}
    assert qos_class([{"resources": {"limits": same, "requests": same}}]) == "Guaranteed"
    assert qos_class([{"resources": {"limits": same}}]) == "Guaranteed"  # requests default to limits
    assert qos_class([{"resources": {"requests": {"cpu": "100m"}}}]) == "Burstable"


def test_quantities() -> None:
    assert [milli_value(q) for q in ("500m", "2", "0.25", "1.5")] == [500, 2000, 250, 1500]
    assert [whole_value(q) for q in ("64Mi", "1G", "1e3", "128974848")] == [64 * 2**20, 10**9, 1000, 128974848]
    with pytest.raises(ValueError, match="invalid quantity '12Q'"):
        whole_value("12Q")
