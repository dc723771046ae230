"""`pods/eviction` (policy/v1 Eviction), what `kubectl drain` posts: a delete that respects PodDisruptionBudgets.

Kubernetes reads a budget's `status.disruptionsAllowed` as kept by the
disruption controller; pocketkube has no such controller, so the budget is
evaluated here at eviction time from the pods it selects (Ready and not
terminating count as healthy).  Admitting an eviction writes the pod into
the budget's `status.disruptedPods` with a compare-and-swap on the budget,
so two concurrent evictions cannot both spend the last allowed disruption;
a pod stays counted as disrupted until it is gone or two minutes pass
(Kubernetes' DeletionTimeout).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from control.api import errors
from control.api.errors import ApiError
from control.api.resources import resource
from control.api.selectors import from_label_selector, matches
from control.apiserver.registry import MAX_RETRIES, DeleteOptions, ListOptions, Registry, now_rfc3339
from control.apiserver.storage import RevisionConflict

Object = dict[str, Any]

DISRUPTION_TIMEOUT = 120.0
PODS = resource("pods")
BUDGETS = resource("poddisruptionbudgets")


def check_eviction_body(body: Any, name: str) -> Object:
    """The Eviction object kubectl drain sends; its name must be the pod's."""
    if not isinstance(body, dict):
        raise errors.bad_request("the body of an eviction must be a policy/v1 Eviction object")
    api_version = body.get("apiVersion")
    if body.get("kind") not in (None, "Eviction") or api_version not in (None, "policy/v1", "policy/v1beta1"):
        raise errors.bad_request(
            f"expected an Eviction (policy/v1), got kind {body.get('kind')!r} apiVersion {body.get('apiVersion')!r}"
        )
    given = (body.get("metadata") or {}).get("name")
    if given and given != name:
        raise errors.bad_request(f"name in URL does not match name in Eviction object ({name!r} != {given!r})")
    options = body.get("deleteOptions") or {}
    if not isinstance(options, dict):
        raise errors.bad_request("deleteOptions must be a DeleteOptions object")
    return options


def _healthy(pod: Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not pod["metadata"].get("deletionTimestamp")


def _scaled(value: int | str, expected: int) -> int:
    if isinstance(value, str):
        return math.ceil(int(value.rstrip("%")) * expected / 100)
    return value


def _desired_healthy(spec: Object, expected: int) -> int:
    if "minAvailable" in spec:
        return _scaled(spec["minAvailable"], expected)
    if "maxUnavailable" in spec:
        return max(0, expected - _scaled(spec["maxUnavailable"], expected))
    return 0


def _recently_disrupted(budget: Object, now: float) -> set[str]:
    marked = (budget.get("status") or {}).get("disruptedPods") or {}
    recent = set()
    for pod_name, when in marked.items():
        try:
            stamp = datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        if now - stamp < DISRUPTION_TIMEOUT:
            recent.add(pod_name)
    return recent


async def evict(registry: Registry, namespace: str, name: str, options: DeleteOptions) -> Object:
    """Delete the pod unless a budget forbids it (429 TooManyRequests, as Kubernetes)."""
    pod = await registry.get(PODS, namespace, name)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
        await registry.delete(PODS, namespace, name, options)
        return errors.status_success(201)
    for _ in range(MAX_RETRIES):
        budgets = [
            b
            for b in (await registry.list(BUDGETS, namespace, ListOptions()))["items"]
            if matches(from_label_selector((b.get("spec") or {}).get("selector") or {}), pod["metadata"].get("labels"))
        ]
        if len(budgets) > 1:
            raise errors.internal_error(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            )
        if budgets and not await _spend_disruption(registry, budgets[0], pod, options.dry_run):
            continue
        await registry.delete(PODS, namespace, name, options)
        return errors.status_success(201)
    raise errors.conflict("poddisruptionbudgets", "", "the budget kept changing; try again", "policy")


async def _spend_disruption(registry: Registry, budget: Object, pod: Object, dry_run: bool) -> bool:
    """Admit one disruption under the budget (False: it changed meanwhile, retry); 429 when none is allowed."""
    namespace, budget_name = budget["metadata"]["namespace"], budget["metadata"]["name"]
    spec = budget.get("spec") or {}
    selector = from_label_selector(spec.get("selector") or {})
    pods = [
        p
        for p in (await registry.list(PODS, namespace, ListOptions()))["items"]
        if matches(selector, p["metadata"].get("labels"))
    ]
    now = time.time()
    disrupted = _recently_disrupted(budget, now) & {p["metadata"]["name"] for p in pods}
    healthy = sum(1 for p in pods if _healthy(p) and p["metadata"]["name"] not in disrupted)
    desired = _desired_healthy(spec, len(pods))
    allowed = healthy - desired
    if allowed < 1 and _healthy(pod) and pod["metadata"]["name"] not in disrupted:
        raise ApiError(
            errors.status_failure(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": f"The disruption budget {budget_name} needs {desired} healthy pods "
                            f"and has {healthy} currently",
                        }
                    ]
                },
            )
        )
    if dry_run:
        return True
    status = dict(budget.get("status") or {})
    status["disruptedPods"] = {
        **{n: t for n, t in (status.get("disruptedPods") or {}).items() if n in disrupted},
        pod["metadata"]["name"]: now_rfc3339(),
    }
    status.update(
        currentHealthy=healthy,
        desiredHealthy=desired,
        expectedPods=len(pods),
        disruptionsAllowed=max(0, allowed - 1),
        observedGeneration=budget["metadata"].get("generation", 1),
    )
    try:
        await registry.storage.update(
            registry.key(BUDGETS, namespace, budget_name),
            {**budget, "status": status},
            int(budget["metadata"]["resourceVersion"]),
        )
    except RevisionConflict:
        return False
    return True
