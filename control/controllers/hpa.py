"""HorizontalPodAutoscaler controller (autoscaling/v2) on Resource and ContainerResource metrics.

Kubernetes' algorithm, as pkg/controller/podautoscaler does it:

- per metric, desired = ceil(ready pods * usage / target), unless the ratio
  is within the tolerance; pods without metrics and not-yet-ready pods are
  counted conservatively (`resource_replicas`, `average_value_replicas`);
- the largest proposal over all metrics wins, then it is stabilised against
  the recent recommendations (`stabilize`) and limited by the behavior's
  scaling policies and min/max (`limit_rate`);
- the target is scaled through its `scale` subresource, and the HPA's status
  (conditions with upstream reasons) and Events say what happened and why.

Pure functions take the data and the time; `HorizontalController` applies
them.  Metrics come through `PodMetricsSource`, so tests can feed their own.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from control.api.errors import ApiError
from control.api.quantity import milli_value
from control.api.resources import METRICS_RESOURCES, RESOURCES, Resource
from control.api.selectors import matches, parse_label_selector
from control.api.timestamps import now_rfc3339, parse_duration, parse_time
from control.client import Client, Informer, Object, key_of, name_of
from control.clock import Clock, RealClock
from control.controllers.base import Controller, condition
from control.events import NORMAL, WARNING, EventRecorder

log = logging.getLogger(__name__)

DEFAULT_SYNC_PERIOD = 15.0
DEFAULT_TOLERANCE = 0.1
DEFAULT_DOWNSCALE_STABILIZATION = 300.0
DEFAULT_CPU_INITIALIZATION_PERIOD = 300.0
DEFAULT_INITIAL_READINESS_DELAY = 30.0

PODS_POLICY = "Pods"
PERCENT_POLICY = "Percent"
SELECT_MAX = "Max"
SELECT_MIN = "Min"
SELECT_DISABLED = "Disabled"


class MetricsError(Exception):
    """Metrics (or the pods and requests they are compared with) could not give a proposal.

    `reason` is the upstream reason for the HPA's ScalingActive=False condition and its Event.
    """

    def __init__(self, message: str, reason: str = "FailedGetResourceMetric"):
        super().__init__(message)
        self.reason = reason


# -- metrics ---------------------------------------------------------------


@dataclass(frozen=True)
class PodMetric:
    """One pod's usage of one resource: milli-units, sampled at `timestamp` (epoch seconds) over `window`."""

    value: int
    timestamp: float
    window: float


class PodMetricsSource(Protocol):
    """Where per-pod resource usage comes from (the resource metrics API, or a test double)."""

    async def pod_usage(
        self, namespace: str, selector: str, resource_name: str, container: str | None = None
    ) -> dict[str, PodMetric]:
        """Usage by pod name (of one container, if named); MetricsError when none can be had."""


def pod_metrics_from_list(
    items: Iterable[Object], resource_name: str, container: str | None = None
) -> dict[str, PodMetric]:
    """Per-pod sums over containers (or the one named); a pod any of whose containers lacks the resource, or
    without the named container, is left out, as upstream."""
    out: dict[str, PodMetric] = {}
    for item in items:
        containers = [c for c in item.get("containers") or [] if container is None or c.get("name") == container]
        usages: list[str | None] = [(c.get("usage") or {}).get(resource_name) for c in containers]
        present = [u for u in usages if u is not None]
        if not containers or len(present) < len(usages):
            continue
        out[name_of(item)] = PodMetric(
            value=sum(milli_value(u) for u in present),
            timestamp=parse_time(item.get("timestamp")),
            window=parse_duration(item.get("window") or "0s"),
        )
    return out


class ApiPodMetricsSource:
    """The resource metrics API: GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector=..."""

    def __init__(self, client: Client):
        self.client = client
        self.pods = next(r for r in METRICS_RESOURCES if r.plural == "pods")

    async def pod_usage(
        self, namespace: str, selector: str, resource_name: str, container: str | None = None
    ) -> dict[str, PodMetric]:
        try:
            listed = await self.client.request("GET", self.pods.path(namespace), params={"labelSelector": selector})
        except ApiError as err:
            raise MetricsError(f"unable to fetch metrics from resource metrics API: {err}") from err
        items = listed.get("items") or []
        if not items:
            raise MetricsError("no metrics returned from resource metrics API")
        return pod_metrics_from_list(items, resource_name, container)


# -- replica proposals -------------------------------------------------------


@dataclass(frozen=True)
class PodGroups:
    """How the pods behind a target count: ready with metrics, unready, missing metrics, ignored."""

    ready: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def group_pods(
    pods: Iterable[Object],
    metrics: dict[str, PodMetric],
    resource_name: str,
    now: float,
    cpu_initialization_period: float = DEFAULT_CPU_INITIALIZATION_PERIOD,
    initial_readiness_delay: float = DEFAULT_INITIAL_READINESS_DELAY,
) -> PodGroups:
    """Sort pods the way upstream's groupPods does (now: epoch seconds).

    Terminating and failed pods are ignored; pending pods are unready; pods
    without a sample are missing.  For cpu, a pod still starting up is
    unready while not Ready or until one metric window has passed since it
    became Ready (start-up cpu is not load), and later only if it has never
    been Ready since it started.
    """
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        name = name_of(pod)
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource_name == "cpu" and _unready_for_cpu(
            pod, metric, now, cpu_initialization_period, initial_readiness_delay
        ):
            unready.add(name)
            continue
        ready += 1
    return PodGroups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def _unready_for_cpu(
    pod: Object, metric: PodMetric, now: float, cpu_initialization_period: float, initial_readiness_delay: float
) -> bool:
    cond = condition(pod, "Ready")
    start = parse_time((pod.get("status") or {}).get("startTime"))
    if cond is None or not start:
        return True
    transition = parse_time(cond.get("lastTransitionTime"))
    if start + cpu_initialization_period > now:
        return cond.get("status") == "False" or metric.timestamp < transition + metric.window
    return cond.get("status") == "False" and start + initial_readiness_delay > transition


def pod_requests(pods: Iterable[Object], resource_name: str, only: str | None = None) -> dict[str, int]:
    """Each pod's request (milli-units, summed over its containers or of the one named); each must have one."""
    requests: dict[str, int] = {}
    for pod in pods:
        total = 0
        for container in (pod.get("spec") or {}).get("containers") or []:
            if only is not None and container.get("name") != only:
                continue
            value = ((container.get("resources") or {}).get("requests") or {}).get(resource_name)
            if value is None:
                raise MetricsError(
                    f"missing request for {resource_name} in container {container.get('name')} of Pod {name_of(pod)}"
                )
            total += milli_value(value)
        requests[name_of(pod)] = total
    return requests


def utilization_ratio(
    values: dict[str, int], requests: dict[str, int], target_utilization: int
) -> tuple[float, int, int]:
    """(usage / target, utilization in percent of requests, average raw usage) over pods with a request."""
    used = [(values[name], requests[name]) for name in values if name in requests]
    total_request = sum(r for _, r in used)
    if total_request == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = sum(v for v, _ in used) * 100 // total_request
    return utilization / target_utilization, utilization, sum(v for v, _ in used) // len(used)


def average_ratio(values: dict[str, int], target_average: int) -> tuple[float, int]:
    """(usage / target, average usage) for an AverageValue target."""
    average = sum(values.values()) // len(values)
    return average / target_average, average


def within_tolerance(ratio: float, tolerance: float) -> bool:
    return abs(1.0 - ratio) <= tolerance


def _proposal(
    current: int,
    groups: PodGroups,
    values: dict[str, int],
    ratio_of: Callable[[dict[str, int]], float],
    missing_on_scale_down: Callable[[str], int],
    tolerance: float,
) -> int:
    """The shared tail of upstream's replica calculation once pods are grouped.

    Unready pods count only against a scale up (as using nothing); missing
    pods count as using nothing on a scale up and `missing_on_scale_down` on
    a scale down; if that reverses the direction or lands within the
    tolerance, the count stays.
    """
    ratio = ratio_of(values)
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if within_tolerance(ratio, tolerance):
            return current
        return math.ceil(ratio * groups.ready)
    filled = dict(values)
    for name in groups.missing:
        if ratio < 1.0:
            filled[name] = missing_on_scale_down(name)
        elif ratio > 1.0:
            filled[name] = 0
    if scale_up_with_unready:
        for name in groups.unready:
            filled[name] = 0
    new_ratio = ratio_of(filled)
    if within_tolerance(new_ratio, tolerance) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def _usable(
    pods: list[Object], metrics: dict[str, PodMetric], resource_name: str, now: float, settings: HpaSettings
) -> tuple[PodGroups, dict[str, int]]:
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    groups = group_pods(
        pods, metrics, resource_name, now, settings.cpu_initialization_period, settings.initial_readiness_delay
    )
    values = {name: m.value for name, m in metrics.items() if name not in groups.ignored and name not in groups.unready}
    if not values:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    return groups, values


def resource_replicas(
    current: int,
    target_utilization: int,
    resource_name: str,
    pods: list[Object],
    metrics: dict[str, PodMetric],
    now: float,
    settings: HpaSettings,
    container: str | None = None,
) -> tuple[int, int, int]:
    """(proposed replicas, utilization %, average raw usage) for a Utilization target (of one container's
    requests, if named)."""
    groups, values = _usable(pods, metrics, resource_name, now, settings)
    requests = pod_requests(pods, resource_name, container)
    _, utilization, raw = utilization_ratio(values, requests, target_utilization)
    fallback = max(100, target_utilization)
    replicas = _proposal(
        current,
        groups,
        values,
        lambda v: utilization_ratio(v, requests, target_utilization)[0],
        lambda name: requests[name] * fallback // 100,
        settings.tolerance,
    )
    return replicas, utilization, raw


def average_value_replicas(
    current: int,
    target_average: int,
    resource_name: str,
    pods: list[Object],
    metrics: dict[str, PodMetric],
    now: float,
    settings: HpaSettings,
) -> tuple[int, int]:
    """(proposed replicas, average usage) for an AverageValue target (milli-units)."""
    groups, values = _usable(pods, metrics, resource_name, now, settings)
    _, average = average_ratio(values, target_average)
    replicas = _proposal(
        current,
        groups,
        values,
        lambda v: average_ratio(v, target_average)[0],
        lambda _name: target_average,
        settings.tolerance,
    )
    return replicas, average


# -- behavior: stabilisation and scaling policies -------------------------------


@dataclass(frozen=True)
class ScalingPolicy:
    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window: float
    select_policy: str
    policies: tuple[ScalingPolicy, ...]

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)


def _int_field(obj: dict[str, Any], key: str, path: str, minimum: int) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{path}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def scaling_rules(behavior: dict[str, Any] | None, direction: str, downscale_stabilization: float) -> ScalingRules:
    """One direction's rules with autoscaling/v2's defaults filled in; ValueError names a bad field.

    Defaults: scale up at once by the larger of 4 pods or 100% per 15 s;
    scale down by up to 100% per 15 s after the stabilisation window
    (`--horizontal-pod-autoscaler-downscale-stabilization` unless set).
    """
    path = f"spec.behavior.{direction}"
    rules = (behavior or {}).get(direction) or {}
    if not isinstance(rules, dict):
        raise ValueError(f"{path} must be an object")
    if direction == "scaleUp":
        default_window = 0.0
        default_policies: tuple[ScalingPolicy, ...] = (
            ScalingPolicy(PODS_POLICY, 4, 15),
            ScalingPolicy(PERCENT_POLICY, 100, 15),
        )
    else:
        default_window = downscale_stabilization
        default_policies = (ScalingPolicy(PERCENT_POLICY, 100, 15),)
    window = (
        float(_int_field(rules, "stabilizationWindowSeconds", path, 0))
        if rules.get("stabilizationWindowSeconds") is not None
        else default_window
    )
    select = rules.get("selectPolicy") or SELECT_MAX
    if select not in (SELECT_MAX, SELECT_MIN, SELECT_DISABLED):
        raise ValueError(f'{path}.selectPolicy must be one of Max, Min, Disabled, got "{select}"')
    policies = []
    for i, policy in enumerate(rules.get("policies") or []):
        where = f"{path}.policies[{i}]"
        if not isinstance(policy, dict) or policy.get("type") not in (PODS_POLICY, PERCENT_POLICY):
            raise ValueError(f"{where}.type must be Pods or Percent")
        policies.append(
            ScalingPolicy(
                policy["type"], _int_field(policy, "value", where, 1), _int_field(policy, "periodSeconds", where, 1)
            )
        )
    return ScalingRules(window, select, tuple(policies) or default_policies)


@dataclass
class ScaleHistory:
    """One HPA's recent unstabilised recommendations and its rescales, on the controller's clock."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)
    scale_downs: list[tuple[float, int]] = field(default_factory=list)

    def record_rescale(self, now: float, current: int, new: int, up: ScalingRules, down: ScalingRules) -> None:
        """Remember a rescale for the rate limits; drop events older than every policy period."""
        if new > current:
            self.scale_ups.append((now, new - current))
        elif new < current:
            self.scale_downs.append((now, current - new))
        self.scale_ups = [(t, n) for t, n in self.scale_ups if t > now - up.longest_period]
        self.scale_downs = [(t, n) for t, n in self.scale_downs if t > now - down.longest_period]


def stabilize(
    history: ScaleHistory, now: float, current: int, desired: int, up: ScalingRules, down: ScalingRules
) -> tuple[int, str, str]:
    """Clamp `desired` between the lowest recommendation of the scale-up window and the highest of the
    scale-down window (each including `desired`), then record `desired`; (replicas, reason, message)."""
    up_cutoff = now - up.stabilization_window
    down_cutoff = now - down.stabilization_window
    up_bound = min([desired, *(r for t, r in history.recommendations if t > up_cutoff)])
    down_bound = max([desired, *(r for t, r in history.recommendations if t > down_cutoff)])
    recommendation = min(max(current, up_bound), down_bound)
    oldest_kept = min(up_cutoff, down_cutoff)
    history.recommendations = [(t, r) for t, r in history.recommendations if t >= oldest_kept]
    history.recommendations.append((now, desired))
    if desired >= current:
        return (
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    return (
        recommendation,
        "ScaleDownStabilized",
        "recent recommendations were higher than current one, applying the highest recent recommendation",
    )


def _changed_within(events: list[tuple[float, int]], now: float, period: int) -> int:
    return sum(n for t, n in events if t > now - period)


def _period_start(history: ScaleHistory, now: float, current: int, policy: ScalingPolicy) -> int:
    """The replica count at the start of the policy's period."""
    return (
        current
        - _changed_within(history.scale_ups, now, policy.period_seconds)
        + _changed_within(history.scale_downs, now, policy.period_seconds)
    )


def scale_up_limit(history: ScaleHistory, now: float, current: int, rules: ScalingRules) -> int:
    if rules.select_policy == SELECT_DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(history, now, current, policy)
        if policy.type == PODS_POLICY:
            proposals.append(start + policy.value)
        else:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    return min(proposals) if rules.select_policy == SELECT_MIN else max(proposals)


def scale_down_limit(history: ScaleHistory, now: float, current: int, rules: ScalingRules) -> int:
    if rules.select_policy == SELECT_DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(history, now, current, policy)
        if policy.type == PODS_POLICY:
            proposals.append(start - policy.value)
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # Min selects the smallest change, which on the way down is the largest count.
    return max(proposals) if rules.select_policy == SELECT_MIN else min(proposals)


def limit_rate(
    history: ScaleHistory,
    now: float,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    up: ScalingRules,
    down: ScalingRules,
) -> tuple[int, str, str]:
    """Hold `desired` to the behavior's policies and to min/max; (replicas, reason, message)."""
    if desired > current:
        limit = max(scale_up_limit(history, now, current, up), current)
        if max_replicas > limit:
            allowed, reason, message = (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        else:
            allowed, reason, message = (
                max_replicas,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        if desired > allowed:
            return allowed, reason, message
    elif desired < current:
        limit = min(scale_down_limit(history, now, current, down), current)
        if min_replicas < limit:
            allowed, reason, message = (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        else:
            allowed, reason, message = (
                min_replicas,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        if desired < allowed:
            return allowed, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


# -- the controller ------------------------------------------------------------


@dataclass(frozen=True)
class HpaSettings:
    """The kube-controller-manager flags of the HPA controller (seconds)."""

    sync_period: float = DEFAULT_SYNC_PERIOD
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilization: float = DEFAULT_DOWNSCALE_STABILIZATION
    cpu_initialization_period: float = DEFAULT_CPU_INITIALIZATION_PERIOD
    initial_readiness_delay: float = DEFAULT_INITIAL_READINESS_DELAY


def format_milli(value: int) -> str:
    """A milli-value as resource.Quantity prints it in DecimalSI ("250m", "1", "1500m", "2k")."""
    if value % 1000:
        return f"{value}m"
    whole = value // 1000
    for suffix in ("", "k", "M", "G", "T", "P"):
        if whole % 1000 or whole == 0:
            return f"{whole}{suffix}"
        whole //= 1000
    return f"{whole}E"


def scalable_resource(ref: dict[str, Any]) -> Resource:
    """The resource behind scaleTargetRef, if it has a scale subresource; ValueError otherwise."""
    kind, api_version = ref.get("kind"), ref.get("apiVersion")
    for res in RESOURCES:
        if res.kind == kind and (not api_version or res.api_version == api_version) and "scale" in res.subresources:
            return res
    named = " ".join(str(part) for part in (api_version, kind) if part)
    raise ValueError(f"no scale subresource for {named or 'an empty scaleTargetRef'}")


def set_hpa_condition(conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str) -> None:
    """Set one HPA condition in place, keeping lastTransitionTime while the status stays the same."""
    old = next((c for c in conditions if c.get("type") == kind), None)
    stamp = (
        old["lastTransitionTime"]
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else now_rfc3339()
    )
    new = {"type": kind, "status": status, "lastTransitionTime": stamp, "reason": reason, "message": message}
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new


@dataclass
class Outcome:
    """What one reconcile decided: conditions, events, the new status values (None: keep the old)."""

    conditions: list[dict[str, Any]]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    current: int | None = None
    desired: int | None = None
    metrics: list[dict[str, Any]] | None = None
    rescaled: bool = False

    def condition(self, kind: str, status: str, reason: str, message: str) -> None:
        set_hpa_condition(self.conditions, kind, status, reason, message)

    def event(self, event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))


class HorizontalController(Controller):
    """Reconciles every HPA once per sync period and whenever its spec changes."""

    name = "horizontal-pod-autoscaler"

    def __init__(
        self,
        client: Client,
        hpas: Informer,
        pods: Informer,
        metrics: PodMetricsSource,
        settings: HpaSettings | None = None,
        *,
        clock: Clock | None = None,
        wall_time: Callable[[], float] = time.time,
    ):
        super().__init__()
        self.client = client
        self.hpas = hpas
        self.pods = pods
        self.metrics = metrics
        self.settings = settings or HpaSettings()
        self.clock = clock or RealClock()
        self.wall_time = wall_time
        self.events = EventRecorder(client, "horizontal-pod-autoscaler")
        self.histories: dict[str, ScaleHistory] = {}
        hpas.add_handler(self._on_hpa)

    def all_keys(self) -> Iterable[str]:
        return [key_of(h) for h in self.hpas.items()]

    def _on_hpa(self, kind: str, hpa: Object, prev: Object | None) -> None:
        """New HPAs and spec changes are reconciled at once; our own status writes are not events to act on."""
        if kind == "DELETED":
            self.histories.pop(key_of(hpa), None)
        elif prev is None or hpa.get("spec") != prev.get("spec"):
            self.queue.add(key_of(hpa))

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        hpa = self.hpas.get(name, namespace)
        if hpa is None:
            self.histories.pop(key, None)
            return
        outcome = await self.reconcile(key, hpa)
        for event_type, reason, message in outcome.events:
            await self.events.record("horizontalpodautoscalers", hpa, event_type, reason, message)
        await self._write_status(hpa, outcome)

    async def reconcile(self, key: str, hpa: Object) -> Outcome:
        """Decide and (if needed) rescale; the returned outcome says what to put in status."""
        spec = hpa.get("spec") or {}
        status = hpa.get("status") or {}
        outcome = Outcome(conditions=copy.deepcopy(status.get("conditions") or []))
        namespace = str(hpa["metadata"].get("namespace"))
        ref = spec.get("scaleTargetRef") or {}
        try:
            res = scalable_resource(ref)
            scale = await self.client.request("GET", res.path(namespace, ref.get("name"), "scale"))
        except (ValueError, ApiError) as err:
            outcome.event(WARNING, "FailedGetScale", str(err))
            outcome.condition(
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {err}",
            )
            return outcome
        outcome.condition(
            "AbleToScale", "True", "SucceededGetScale", "the HPA controller was able to get the target's current scale"
        )
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        outcome.current = current
        now = self.clock.now()
        history = self.histories.setdefault(key, ScaleHistory())
        if not history.recommendations:
            history.recommendations.append((now, current))
        min_replicas = int(spec.get("minReplicas") or 1)
        max_replicas = int(spec.get("maxReplicas") or 1)
        try:
            up = scaling_rules(spec.get("behavior"), "scaleUp", self.settings.downscale_stabilization)
            down = scaling_rules(spec.get("behavior"), "scaleDown", self.settings.downscale_stabilization)
        except ValueError as err:
            outcome.event(WARNING, "InvalidBehavior", str(err))
            outcome.condition("ScalingActive", "False", "InvalidBehavior", f"the HPA's behavior is invalid: {err}")
            return outcome

        if current == 0 and min_replicas != 0:
            desired = 0
            outcome.condition(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )
            reason = ""
        elif current > max_replicas:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", max_replicas
        elif current < min_replicas:
            reason, desired = "Current number of replicas below Spec.MinReplicas", min_replicas
        else:
            proposal = await self._replicas_for_metrics(hpa, scale, current, outcome)
            if proposal is None:
                return outcome
            desired, metric_name = proposal
            reason = f"{metric_name} above target" if desired > current else "All metrics below target"
            stabilized, why, message = stabilize(history, now, current, desired, up, down)
            if stabilized != desired:
                outcome.condition("AbleToScale", "True", why, message)
            else:
                outcome.condition("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
            desired, why, message = limit_rate(history, now, current, stabilized, min_replicas, max_replicas, up, down)
            outcome.condition("ScalingLimited", "False" if desired == stabilized else "True", why, message)

        if desired != current:
            try:
                await self.client.request(
                    "PUT",
                    res.path(namespace, ref.get("name"), "scale"),
                    body={**scale, "spec": {**(scale.get("spec") or {}), "replicas": desired}},
                )
            except ApiError as err:
                outcome.event(WARNING, "FailedRescale", f"New size: {desired}; reason: {reason}; error: {err}")
                outcome.condition(
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {err}",
                )
                outcome.desired = current
                return outcome
            outcome.condition(
                "AbleToScale",
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
            )
            outcome.event(NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            history.record_rescale(now, current, desired, up, down)
            outcome.rescaled = True
            log.info(
                "hpa %s: rescaled %s/%s from %d to %d (%s)",
                key,
                ref.get("kind"),
                ref.get("name"),
                current,
                desired,
                reason,
            )
        outcome.desired = desired
        return outcome

    async def _replicas_for_metrics(
        self, hpa: Object, scale: Object, current: int, outcome: Outcome
    ) -> tuple[int, str] | None:
        """The largest proposal over the metrics and its metric's name; None (conditions set) if none is trusted."""
        selector_text = (scale.get("status") or {}).get("selector") or ""
        if not selector_text:
            outcome.event(WARNING, "SelectorRequired", "selector is required")
            outcome.condition(
                "ScalingActive", "False", "InvalidSelector", "the HPA target's scale is missing a selector"
            )
            return None
        try:
            selector = parse_label_selector(selector_text)
        except ApiError as err:
            outcome.event(WARNING, "InvalidSelector", str(err))
            outcome.condition(
                "ScalingActive",
                "False",
                "InvalidSelector",
                f"couldn't convert selector into a corresponding internal selector object: {err}",
            )
            return None
        specs = (hpa.get("spec") or {}).get("metrics") or []
        namespace = str(hpa["metadata"].get("namespace"))
        pods = [p for p in self.pods.by_namespace(namespace) if matches(selector, (p["metadata"].get("labels") or {}))]
        statuses: list[dict[str, Any]] = []
        best: tuple[int, str] | None = None
        first_error: tuple[str, str] | None = None
        invalid = 0
        for metric_spec in specs:
            try:
                replicas, name, metric_status = await self._replicas_for_metric(
                    metric_spec, namespace, selector_text, pods, current
                )
            except MetricsError as err:
                invalid += 1
                first_error = first_error or (err.reason, str(err))
                continue
            statuses.append(metric_status)
            if best is None or replicas > best[0]:
                best = (replicas, name)
        outcome.metrics = statuses
        if first_error is not None and (invalid >= len(specs) or best is None or best[0] < current):
            reason, message = first_error
            outcome.event(WARNING, reason, message)
            outcome.condition(
                "ScalingActive", "False", reason, f"the HPA was unable to compute the replica count: {message}"
            )
            outcome.event(
                WARNING,
                "FailedComputeMetricsReplicas",
                f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {message}",
            )
            return None
        if best is None:
            outcome.condition(
                "ScalingActive",
                "False",
                "FailedGetResourceMetric",
                "the HPA has no metrics to compute a replica count from",
            )
            return None
        outcome.condition(
            "ScalingActive",
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best[1]}",
        )
        return best

    async def _replicas_for_metric(
        self, metric_spec: dict[str, Any], namespace: str, selector_text: str, pods: list[Object], current: int
    ) -> tuple[int, str, dict[str, Any]]:
        """One metric's proposal, its name for events, and its status entry; MetricsError if there is none."""
        kind = metric_spec.get("type")
        if kind == "Resource":
            source, container, failure = metric_spec.get("resource") or {}, None, "FailedGetResourceMetric"
        elif kind == "ContainerResource":
            source = metric_spec.get("containerResource") or {}
            container, failure = str(source.get("container") or ""), "FailedGetContainerResourceMetric"
            if not container:
                raise MetricsError("invalid container resource metric source: no container was set", failure)
        else:
            raise MetricsError(f'unknown metric source type "{kind}"', "InvalidMetricSourceType")
        resource_name = str(source.get("name") or "")
        target = source.get("target") or {}
        try:
            metrics = await self.metrics.pod_usage(namespace, selector_text, resource_name, container)
            now = self.wall_time()
            if target.get("type") == "AverageValue" and target.get("averageValue") is not None:
                replicas, average = average_value_replicas(
                    current, milli_value(target["averageValue"]), resource_name, pods, metrics, now, self.settings
                )
                current_status: dict[str, Any] = {"averageValue": format_milli(average)}
                name = f"{resource_name} resource"
            elif target.get("type") == "Utilization" and target.get("averageUtilization") is not None:
                replicas, utilization, raw = resource_replicas(
                    current,
                    int(target["averageUtilization"]),
                    resource_name,
                    pods,
                    metrics,
                    now,
                    self.settings,
                    container,
                )
                current_status = {"averageUtilization": utilization, "averageValue": format_milli(raw)}
                scope = "container resource" if container else "resource"
                name = f"{resource_name} {scope} utilization (percentage of request)"
            else:
                raise MetricsError(
                    "invalid resource metric source: neither an average utilization target nor an average value "
                    "(usage) target was set"
                )
        except MetricsError as err:
            kind_of_value = "usage" if target.get("type") == "AverageValue" else "utilization"
            raise MetricsError(f"failed to get {resource_name} {kind_of_value}: {err}", failure) from err
        except ValueError as err:
            raise MetricsError(f"invalid resource metric target: {err}", failure) from err
        if container:
            entry = {"name": resource_name, "container": container, "current": current_status}
            return replicas, name, {"type": "ContainerResource", "containerResource": entry}
        return replicas, name, {"type": "Resource", "resource": {"name": resource_name, "current": current_status}}

    async def _write_status(self, hpa: Object, outcome: Outcome) -> None:
        old = hpa.get("status") or {}
        new: dict[str, Any] = {
            "observedGeneration": hpa["metadata"].get("generation", 1),
            "currentReplicas": outcome.current if outcome.current is not None else old.get("currentReplicas", 0),
            "desiredReplicas": outcome.desired if outcome.desired is not None else old.get("desiredReplicas", 0),
            "conditions": outcome.conditions,
        }
        metrics = outcome.metrics if outcome.metrics is not None else old.get("currentMetrics")
        if metrics:
            new["currentMetrics"] = metrics
        last = now_rfc3339() if outcome.rescaled else old.get("lastScaleTime")
        if last:
            new["lastScaleTime"] = last
        if new == old:
            return
        updated = copy.deepcopy(hpa)
        updated["status"] = new
        await self.client.update_status("horizontalpodautoscalers", updated)
