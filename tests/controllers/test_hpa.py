"""The HPA's decisions as pure functions, case by case from upstream's documented behaviour.

Replica proposals (tolerance, missing metrics, unready pods), the behavior
rules (defaults, Pods/Percent policies, periods, selectPolicy) and the
stabilisation windows on a FakeClock.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from control.clock import FakeClock
from control.controllers.cli import add_arguments, settings_from
from control.controllers.hpa import (
    HpaSettings,
    MetricsError,
    PodMetric,
    ScaleHistory,
    ScalingPolicy,
    ScalingRules,
    average_value_replicas,
    format_milli,
    group_pods,
    limit_rate,
    pod_metrics_from_list,
    resource_replicas,
    scalable_resource,
    scaling_rules,
    stabilize,
)
from control.api.timestamps import parse_duration, parse_time

NOW = parse_time("2026-01-01T01:00:00Z")
LONG_AGO = "2026-01-01T00:00:00Z"  # an hour before NOW: past every initialisation period
SETTINGS = HpaSettings()


def pod(
    name: str,
    *,
    request: str | None = "1000m",
    phase: str = "Running",
    ready: str | None = "True",
    started: str | None = LONG_AGO,
    ready_since: str = LONG_AGO,
    deleting: bool = False,
) -> dict[str, Any]:
    resources = {"requests": {"cpu": request}} if request is not None else {}
    status: dict[str, Any] = {"phase": phase}
    if started:
        status["startTime"] = started
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "lastTransitionTime": ready_since}]
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if deleting:
        meta["deletionTimestamp"] = LONG_AGO
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "resources": resources}]}, "status": status}


def usage(**values: int) -> dict[str, PodMetric]:
    return {name: PodMetric(value, NOW - 5, 15.0) for name, value in values.items()}


def replicas(current: int, target: int, pods: list[dict[str, Any]], metrics: dict[str, PodMetric]) -> int:
    return resource_replicas(current, target, "cpu", pods, metrics, NOW, SETTINGS)[0]


# -- replica proposals ---------------------------------------------------------


def test_ratio_of_usage_to_target_scales_the_ready_pods() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    # 100% of request against a 50% target: twice the pods.
    assert replicas(3, 50, pods, usage(a=1000, b=1000, c=1000)) == 6
    result = resource_replicas(3, 50, "cpu", pods, usage(a=1000, b=900, c=800), NOW, SETTINGS)
    assert result == (6, 90, 900)  # ceil(3 * 90/50) = ceil(5.4)


def test_scale_down_rounds_up() -> None:
    pods = [pod(n) for n in "abcd"]
    assert replicas(4, 50, pods, usage(a=200, b=200, c=200, d=200)) == 2  # ceil(4 * 0.4) = ceil(1.6)


@pytest.mark.parametrize(
    ("per_pod", "expected"),
    [
        (540, 4),  # ratio 1.08: within the 10% tolerance
        (460, 4),  # ratio 0.92: within it the other way
        (549, 4),  # 54.9% truncates to 54%, as upstream's integer utilization does
        (560, 5),  # ratio 1.12: ceil(4 * 1.12) = 5
        (440, 4),  # ratio 0.88: ceil(4 * 0.88) = ceil(3.52) = 4
        (370, 3),  # ratio 0.74: ceil(2.96) = 3
    ],
)
def test_tolerance(per_pod: int, expected: int) -> None:
    pods = [pod(n) for n in "abcd"]
    # per_pod millicores used of a 1000m request, against a 50% target
    assert replicas(4, 50, pods, usage(**{n: per_pod for n in "abcd"})) == expected


def test_tolerance_is_configurable() -> None:
    pods = [pod(n) for n in "abcd"]
    loose = HpaSettings(tolerance=0.3)
    metrics = usage(**{n: 1200 for n in "abcd"})  # 120% against 100%
    assert resource_replicas(4, 100, "cpu", pods, metrics, NOW, loose)[0] == 4
    assert resource_replicas(4, 100, "cpu", pods, metrics, NOW, SETTINGS)[0] == 5


def test_missing_metrics_count_as_idle_on_a_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    # Two pods at 90% (ratio 1.8); the pod without a sample counts as 0%:
    # (900 + 900 + 0) / 3000 = 60% -> ratio 1.2 -> ceil(3.6) = 4, not ceil(2 * 1.8) = 4 of only the pods seen.
    assert replicas(3, 50, pods, usage(a=900, b=900)) == 4
    assert replicas(3, 50, pods, usage(a=600, b=600)) == 3  # 40% with the idle pod: ratio 0.8 reverses the direction


def test_missing_metrics_count_as_full_request_on_a_scale_down() -> None:
    pods = [pod(n) for n in "abcd"]
    # Three pods at 10%, one missing counted at 100%: 32% -> ratio 0.64 -> ceil(2.56) = 3 (not 1).
    assert replicas(4, 50, pods, usage(a=100, b=100, c=100)) == 3
    # A target above 100% counts the missing pod at the target: 3 x 10% + 150% = 45% of 4000 -> 0.3 -> 2.
    assert replicas(4, 150, pods, usage(a=100, b=100, c=100)) == 2


def test_missing_metrics_never_reverse_the_direction() -> None:
    pods = [pod("a"), pod("b")]
    # One pod at 40% of a 50% target would scale down; counting the missing one at 100% would scale up: stay.
    assert replicas(2, 50, pods, usage(a=400)) == 2


def test_unready_pods_count_as_idle_only_on_a_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready="False", started="2026-01-01T00:59:00Z", ready_since=LONG_AGO)]
    # Two ready pods at 80% (ratio 1.6); the starting pod counts as 0%: 53% -> 1.06, within tolerance.
    assert replicas(3, 50, pods, usage(a=800, b=800, c=1000)) == 3
    # On a scale down the unready pod is left out altogether: two pods at 10% -> ceil(2 * 0.2) = 1.
    assert replicas(3, 50, pods, usage(a=100, b=100, c=1000)) == 1


def test_pending_terminating_and_failed_pods() -> None:
    pods = [
        pod("a"),
        pod("b"),
        pod("pending", phase="Pending", ready=None, started=None),
        pod("leaving", deleting=True),
        pod("failed", phase="Failed"),
    ]
    groups = group_pods(pods, usage(a=1, b=1, leaving=1, failed=1), "cpu", NOW)
    assert (groups.ready, groups.unready, groups.ignored, groups.missing) == (
        2,
        frozenset({"pending"}),
        frozenset({"leaving", "failed"}),
        frozenset(),
    )
    # The terminating pod's high usage does not count.
    assert replicas(2, 50, pods, usage(a=500, b=500, leaving=5000)) == 2


def test_cpu_of_a_starting_pod_counts_once_a_window_has_passed_since_ready() -> None:
    started = "2026-01-01T00:59:00Z"  # within the 5 minute cpu initialisation period
    fresh = pod("a", started=started, ready_since="2026-01-01T00:59:50Z")  # Ready 10 s ago
    settled = pod("b", started=started, ready_since="2026-01-01T00:59:10Z")  # Ready 50 s ago
    metrics = usage(a=500, b=500)  # sampled 5 s ago over 15 s
    groups = group_pods([fresh, settled], metrics, "cpu", NOW)
    assert groups.unready == frozenset({"a"}) and groups.ready == 1


def test_after_initialisation_only_never_ready_pods_are_unready() -> None:
    # Started long ago, Ready went False much later: it was ready once, so its sample counts.
    flapped = pod("a", ready="False", ready_since="2026-01-01T00:50:00Z")
    # Ready False since (nearly) its start: never ready.
    never = pod("b", ready="False", started="2026-01-01T00:10:00Z", ready_since="2026-01-01T00:10:05Z")
    groups = group_pods([flapped, never], usage(a=1, b=1), "cpu", NOW)
    assert groups.unready == frozenset({"b"}) and groups.ready == 1


def test_without_requests_or_metrics_there_is_no_proposal() -> None:
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod a"):
        replicas(1, 50, [pod("a", request=None)], usage(a=100))
    with pytest.raises(MetricsError, match="pods might be unready"):
        replicas(1, 50, [pod("a", phase="Pending")], usage(a=100))
    with pytest.raises(MetricsError, match="no pods returned by selector"):
        replicas(1, 50, [], usage(a=100))


def test_average_value_target() -> None:
    pods = [pod("a"), pod("b")]
    # Average 200m against 100m: twice the pods; status reports the average.
    assert average_value_replicas(2, 100, "cpu", pods, usage(a=300, b=100), NOW, SETTINGS) == (4, 200)
    assert average_value_replicas(2, 100, "cpu", pods, usage(a=105, b=100), NOW, SETTINGS) == (2, 102)
    # A missing pod on a scale down counts as using exactly the target.
    pods3 = [pod("a"), pod("b"), pod("c")]
    assert average_value_replicas(3, 100, "cpu", pods3, usage(a=10, b=10), NOW, SETTINGS)[0] == 2


# -- metrics API items ---------------------------------------------------------------


def test_pod_metrics_from_the_metrics_api() -> None:
    items: list[dict[str, Any]] = [
        {
            "metadata": {"name": "a", "namespace": "n"},
            "timestamp": "2026-01-01T00:59:55Z",
            "window": "15.002s",
            "containers": [{"name": "x", "usage": {"cpu": "250000000n"}}, {"name": "y", "usage": {"cpu": "5m"}}],
        },
        # A container without cpu usage leaves the pod out (it counts as missing).
        {
            "metadata": {"name": "b"},
            "timestamp": "2026-01-01T00:59:55Z",
            "window": "1m0s",
            "containers": [{"usage": {}}],
        },
    ]
    metrics = pod_metrics_from_list(items, "cpu")
    assert metrics == {"a": PodMetric(255, NOW - 5, 15.002)}


def test_one_container_of_each_pod() -> None:
    items: list[dict[str, Any]] = [
        {
            "metadata": {"name": "a"},
            "timestamp": "2026-01-01T00:59:55Z",
            "window": "15s",
            "containers": [{"name": "app", "usage": {"cpu": "300m"}}, {"name": "sidecar", "usage": {"cpu": "1"}}],
        },
        {"metadata": {"name": "b"}, "timestamp": "2026-01-01T00:59:55Z", "window": "15s", "containers": []},
    ]
    metrics = pod_metrics_from_list(items, "cpu", "app")
    assert metrics == {"a": PodMetric(300, NOW - 5, 15.0)}
    # The sidecar has no request: only the app container's counts (300m of 200m against 50%: ratio 3).
    with_sidecar = pod("a", request="200m")
    with_sidecar["spec"]["containers"].append({"name": "sidecar"})
    with_sidecar["spec"]["containers"][0]["name"] = "app"
    assert resource_replicas(1, 50, "cpu", [with_sidecar], metrics, NOW, SETTINGS, "app") == (3, 150, 300)
    with pytest.raises(MetricsError, match="missing request for cpu in container sidecar of Pod a"):
        resource_replicas(1, 50, "cpu", [with_sidecar], metrics, NOW, SETTINGS)


def test_durations_and_quantities() -> None:
    assert parse_duration("1m30s") == 90.0 and parse_duration("500ms") == 0.5 and parse_duration("15s") == 15.0
    with pytest.raises(ValueError, match="invalid duration '15 seconds'"):
        parse_duration("15 seconds")
    assert [format_milli(v) for v in (250, 1000, 1500, 2_000_000, 0)] == ["250m", "1", "1500m", "2k", "0"]


def test_scale_targets_are_resources_with_a_scale_subresource() -> None:
    assert scalable_resource({"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}).plural == "deployments"
    assert scalable_resource({"kind": "ReplicaSet", "name": "x"}).plural == "replicasets"
    with pytest.raises(ValueError, match="no scale subresource for v1 Pod"):
        scalable_resource({"apiVersion": "v1", "kind": "Pod", "name": "x"})


# -- behavior rules -------------------------------------------------------------------

DEFAULT_UP = scaling_rules(None, "scaleUp", 300.0)
DEFAULT_DOWN = scaling_rules(None, "scaleDown", 300.0)


def rules(window: float = 0.0, select: str = "Max", *policies: tuple[str, int, int]) -> ScalingRules:
    return ScalingRules(window, select, tuple(ScalingPolicy(*p) for p in policies))


def test_behavior_defaults() -> None:
    assert DEFAULT_UP == rules(0.0, "Max", ("Pods", 4, 15), ("Percent", 100, 15))
    assert DEFAULT_DOWN == rules(300.0, "Max", ("Percent", 100, 15))
    assert scaling_rules({"scaleDown": {"stabilizationWindowSeconds": 5}}, "scaleDown", 300.0).stabilization_window == 5
    assert scaling_rules({"scaleDown": {"stabilizationWindowSeconds": 0}}, "scaleDown", 300.0).stabilization_window == 0


@pytest.mark.parametrize(
    ("behavior", "message"),
    [
        (
            {"scaleUp": {"selectPolicy": "Most"}},
            'spec.behavior.scaleUp.selectPolicy must be one of Max, Min, Disabled, got "Most"',
        ),
        (
            {"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 1}]}},
            r"policies\[0\].type must be Pods or Percent",
        ),
        (
            {"scaleDown": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 1}]}},
            r"policies\[0\].value must be an integer >= 1",
        ),
        ({"scaleDown": {"stabilizationWindowSeconds": -1}}, "stabilizationWindowSeconds must be an integer >= 0"),
    ],
)
def test_bad_behavior_is_named(behavior: dict[str, Any], message: str) -> None:
    direction = next(iter(behavior))
    with pytest.raises(ValueError, match=message):
        scaling_rules(behavior, direction, 300.0)


def limited(
    current: int,
    desired: int,
    up: ScalingRules = DEFAULT_UP,
    down: ScalingRules = DEFAULT_DOWN,
    *,
    history: ScaleHistory | None = None,
    now: float = 0.0,
    lo: int = 1,
    hi: int = 100,
) -> tuple[int, str]:
    result = limit_rate(history or ScaleHistory(), now, current, desired, lo, hi, up, down)
    return result[0], result[1]


def test_default_scale_up_rate() -> None:
    assert limited(1, 10) == (5, "ScaleUpLimit")  # larger of +4 pods and +100%
    assert limited(10, 30) == (20, "ScaleUpLimit")
    assert limited(10, 30, hi=15) == (15, "TooManyReplicas")
    assert limited(10, 12) == (12, "DesiredWithinRange")


def test_select_policy() -> None:
    both = ("Pods", 4, 15), ("Percent", 100, 15)
    assert limited(10, 30, rules(0, "Min", *both)) == (14, "ScaleUpLimit")
    assert limited(10, 30, rules(0, "Disabled", *both)) == (10, "ScaleUpLimit")
    down = ("Percent", 50, 60), ("Pods", 1, 60)
    assert limited(8, 1, down=rules(0, "Max", *down)) == (4, "ScaleDownLimit")  # the biggest change
    assert limited(8, 1, down=rules(0, "Min", *down)) == (7, "ScaleDownLimit")  # the smallest change
    assert limited(8, 1, down=rules(0, "Disabled", *down)) == (8, "ScaleDownLimit")
    assert limited(5, 1, lo=3) == (3, "TooFewReplicas")


def test_policy_periods_count_recent_rescales() -> None:
    one_per_minute = rules(0, "Max", ("Pods", 1, 60))
    history = ScaleHistory()
    history.record_rescale(0.0, 2, 3, one_per_minute, DEFAULT_DOWN)
    # 30 s later the period started at 2 replicas: 2 + 1 = 3 allowed, so no change yet.
    assert limited(3, 5, one_per_minute, history=history, now=30.0) == (3, "ScaleUpLimit")
    # Once the scale-up event is out of the period, one more pod.
    assert limited(3, 5, one_per_minute, history=history, now=61.0) == (4, "ScaleUpLimit")
    # A scale down within the period gives its pods back to the scale-up budget.
    history.record_rescale(70.0, 4, 2, one_per_minute, rules(0, "Max", ("Pods", 2, 60)))
    assert limited(2, 6, one_per_minute, history=history, now=80.0) == (5, "ScaleUpLimit")


async def test_scale_down_stabilisation_window_on_a_fake_clock() -> None:
    clock = FakeClock()
    down = rules(300, "Max", ("Percent", 100, 15))
    history = ScaleHistory(recommendations=[(clock.now(), 4)])

    async def step(seconds: float, current: int, desired: int) -> tuple[int, str]:
        await clock.advance(seconds)
        result = stabilize(history, clock.now(), current, desired, DEFAULT_UP, down)
        return result[0], result[1]

    assert await step(15, 4, 1) == (4, "ScaleDownStabilized")  # the initial 4 is still in the window
    assert await step(185, 4, 2) == (4, "ScaleDownStabilized")
    assert await step(101, 4, 1) == (2, "ScaleDownStabilized")  # 301 s: the 4 has left; the highest since is 2
    assert await step(200, 4, 1) == (1, "ScaleDownStabilized")  # 501 s: only 1s in the last 300 s
    assert await step(10, 1, 3) == (3, "ScaleUpStabilized")  # going up is not held back by the down window


async def test_scale_up_stabilisation_window() -> None:
    clock = FakeClock()
    up = rules(60, "Max", ("Pods", 4, 15))
    history = ScaleHistory(recommendations=[(clock.now(), 2)])
    await clock.advance(10)
    assert stabilize(history, clock.now(), 2, 5, up, DEFAULT_DOWN)[0] == 2  # the 2 of 10 s ago holds it
    await clock.advance(51)
    assert stabilize(history, clock.now(), 2, 5, up, DEFAULT_DOWN)[0] == 5  # only 5s in the last minute


# -- flags ---------------------------------------------------------------------------


def parse_flags(*argv: str) -> HpaSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from(parser.parse_args(list(argv))).hpa


def test_hpa_flags_take_go_durations_or_seconds() -> None:
    assert parse_flags() == HpaSettings(15.0, 0.1, 300.0, 300.0, 30.0)
    assert parse_flags(
        "--horizontal-pod-autoscaler-sync-period",
        "5s",
        "--horizontal-pod-autoscaler-downscale-stabilization",
        "1m30s",
        "--horizontal-pod-autoscaler-tolerance",
        "0.05",
        "--horizontal-pod-autoscaler-cpu-initialization-period",
        "60",
        "--horizontal-pod-autoscaler-initial-readiness-delay",
        "0s",
    ) == HpaSettings(5.0, 0.05, 90.0, 60.0, 0.0)


def test_bad_hpa_flags_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--horizontal-pod-autoscaler-sync-period must be positive, got 0.0"):
        parse_flags("--horizontal-pod-autoscaler-sync-period", "0s")
    with pytest.raises(SystemExit, match="--horizontal-pod-autoscaler-tolerance must not be negative"):
        parse_flags("--horizontal-pod-autoscaler-tolerance", "-0.1")
    with pytest.raises(SystemExit):
        parse_flags("--horizontal-pod-autoscaler-downscale-stabilization", "5 minutes")
    assert "invalid duration '5 minutes'" in capsys.readouterr().err


def test_memory_utilization_skips_the_cpu_start_up_rules() -> None:
    starting = pod("a", started="2026-01-01T00:59:50Z", ready_since="2026-01-01T00:59:55Z")
    starting["spec"]["containers"][0]["resources"] = {"requests": {"memory": "100Mi"}}
    metrics = usage(a=200 * 2**20 * 1000)  # 200Mi in milli-units, sampled before a window since Ready
    # For cpu this sample would not count yet; for memory it does: 200% of the request against 80% -> ceil(2.5).
    assert resource_replicas(1, 80, "memory", [starting], metrics, NOW, SETTINGS)[:2] == (3, 200)
