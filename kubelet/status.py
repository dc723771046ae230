"""Pod status from what the runtime reports, by Kubernetes' rules (`pkg/kubelet/kubelet_pods.go`).

Pure functions: the pod workers gather one `ContainerView` per container and
this module turns them into `containerStatuses`, the phase and conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelet.runtime import ContainerState

Object = dict[str, Any]


@dataclass
class ContainerView:
    """One spec container: its newest runtime instance, the one before, and why it waits (if it does)."""

    spec: Object
    current: ContainerState | None = None
    previous: ContainerState | None = None
    waiting_reason: str = ""
    waiting_message: str = ""
    probe_ready: bool = True
    startup_done: bool = True  # the startupProbe (if any) has succeeded

    @property
    def ready(self) -> bool:
        running = self.current is not None and self.current.running and not self.waiting_reason
        return running and self.startup_done and self.probe_ready


def restart_wanted(restart_policy: str, exit_code: int) -> bool:
    """Whether an exited container is started again under the pod's restartPolicy."""
    if restart_policy == "Never":
        return False
    if restart_policy == "OnFailure":
        return exit_code != 0
    return True


def terminated_reason(state: ContainerState) -> str:
    if state.start_failed:
        return "StartError"
    if state.oom_killed:
        return "OOMKilled"
    return "Completed" if state.exit_code == 0 else "Error"


def _terminated(state: ContainerState) -> Object:
    terminated: Object = {
        "exitCode": state.exit_code,
        "reason": terminated_reason(state),
        "startedAt": state.started_at or None,
        "finishedAt": state.finished_at or None,
        "containerID": f"docker://{state.id}",
    }
    if state.error:
        terminated["message"] = state.error
    return terminated


def container_status(view: ContainerView) -> Object:
    """One entry of `status.containerStatuses`."""
    spec, current = view.spec, view.current
    status: Object = {
        "name": spec["name"],
        "image": spec.get("image", ""),
        "imageID": "",
        "ready": view.ready,
        "started": bool(current and current.running) and view.startup_done,
        "restartCount": current.restart_count if current else (view.previous.restart_count if view.previous else 0),
        "state": {},
        "lastState": {},
    }
    last = view.previous
    if current is not None:
        status["containerID"] = f"docker://{current.id}"
        status["imageID"] = f"docker://{current.image_id}"
    if view.waiting_reason:
        waiting: Object = {"reason": view.waiting_reason}
        if view.waiting_message:
            waiting["message"] = view.waiting_message
        status["state"] = {"waiting": waiting}
        if current is not None and not current.running and not current.pending_start:
            last = current
    elif current is None or current.pending_start:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    elif current.running:
        status["state"] = {"running": {"startedAt": current.started_at or None}}
    else:
        status["state"] = {"terminated": _terminated(current)}
    if last is not None and (last is not current or view.waiting_reason):
        status["lastState"] = {"terminated": _terminated(last)}
    return status


def pod_phase(statuses: list[Object], restart_policy: str) -> str:
    """Kubernetes' getPhase over the container statuses."""
    waiting = running = stopped = succeeded = unknown = 0
    for status in statuses:
        state = status.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in (status.get("lastState") or {}):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, previous: list[Object], now: str, reason: str = "", message: str = "") -> Object:
    status = "True" if ok else "False"
    since = now
    for old in previous:
        if old.get("type") == kind and old.get("status") == status and old.get("lastTransitionTime"):
            since = old["lastTransitionTime"]
    condition: Object = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def init_completed(status: Object) -> bool:
    return (status.get("state") or {}).get("terminated", {}).get("exitCode") == 0


def init_failed(status: Object) -> bool:
    """Terminated non-zero now, or waiting to be retried after such a failure."""
    state, last = status.get("state") or {}, status.get("lastState") or {}
    if "terminated" in state:
        return bool(state["terminated"].get("exitCode"))
    return "waiting" in state and bool(last.get("terminated", {}).get("exitCode"))


def pod_conditions(
    phase: str, statuses: list[Object], previous: list[Object], now: str, init_statuses: list[Object] | None = None
) -> list[Object]:
    """PodScheduled, Initialized, ContainersReady and Ready (no readiness gates)."""
    incomplete = [s["name"] for s in init_statuses or [] if not init_completed(s)]
    init_reason, init_message = ("PodCompleted", "") if phase == "Succeeded" else ("", "")
    if incomplete:
        init_reason = "ContainersNotInitialized"
        init_message = f"containers with incomplete status: [{' '.join(incomplete)}]"
    unready = [s["name"] for s in statuses if not s.get("ready")]
    ready = not unready
    reason = message = ""
    if not ready:
        if phase == "Succeeded":
            reason = "PodCompleted"
        else:
            reason, message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    return [
        _condition("PodScheduled", True, previous, now),
        _condition("Initialized", not incomplete, previous, now, init_reason, init_message),
        _condition("ContainersReady", ready, previous, now, reason, message),
        _condition("Ready", ready, previous, now, reason, message),
    ]


def qos_class(containers: list[Object]) -> str:
    """Guaranteed (limits = requests for cpu and memory everywhere), BestEffort (none set), else Burstable."""
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        any_set = any_set or bool(limits) or bool(requests)
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_status(
    pod: Object,
    views: list[ContainerView],
    *,
    init_views: list[ContainerView] | None = None,
    pod_ip: str,
    host_ip: str,
    start_time: str,
    now: str,
) -> Object:
    """The whole `status` the kubelet writes for a pod."""
    spec = pod.get("spec", {})
    statuses = [container_status(v) for v in views]
    init_statuses = [container_status(v) for v in init_views or []]
    restart_policy = spec.get("restartPolicy") or "Always"
    if all(init_completed(s) for s in init_statuses):
        phase = pod_phase(statuses, restart_policy)
    elif restart_policy == "Never" and any(init_failed(s) for s in init_statuses):
        phase = "Failed"
    else:
        phase = "Pending"
    previous = (pod.get("status") or {}).get("conditions") or []
    status: Object = {
        "phase": phase,
        "conditions": pod_conditions(phase, statuses, previous, now, init_statuses),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
        "qosClass": qos_class((spec.get("initContainers") or []) + (spec.get("containers") or [])),
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
