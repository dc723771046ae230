"""Issue 10's fault suite: one fault at a time while a client sends requests through the `web` Service.

For each fault: requests sent and failed (VIP and DNS name separately), the
time until traffic is fully healthy again, and every stored object compared
before and after. Goals asserted: no object lost or changed beyond the
controllers' own work, for every fault; zero failed requests for everything
but a worker's death or partition (whose cost is reported, and whose pods
must leave the Endpoints and be replaced).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pocket import network
from tests.e2e.chaos.conftest import FULL, NAMESPACE, endpoint_ips, wait_ready_backends
from tests.e2e.chaos.support import (
    SYSTEM_NAMESPACES,
    FaultResult,
    Traffic,
    compare,
    listable_resources,
    pocket_argv,
    snapshot,
    summarize,
)
from tests.e2e.conftest import cluster_under_test
from tests.e2e.helpers import get_json, running_pods, wait_for

pytestmark = pytest.mark.e2e

VICTIM = "worker2"  # the worker that dies or is cut off (worker1 runs the second kdns)
INTERVAL = 0.1
SETTLE = 8.0 if FULL else 1.0  # traffic after the cluster says it has recovered
HEALTHY_SPAN = 3.0 if FULL else 2.0  # this long with every request answered counts as recovered
BASELINE = 3.0 if FULL else 1.0
RECOVERY_TIMEOUT = 120.0


@dataclass
class Context:
    """What a fault acts on, and what it leaves for the report and the checks."""

    cluster: Any
    fault_at: float = 0.0
    notes: list[str] = field(default_factory=list)
    changed_by_fault: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)


def pocket_ok(*args: str, timeout: float = 180) -> str:
    proc = subprocess.run(pocket_argv(*args), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"pocket {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def elapsed(ctx: Context) -> float:
    return time.time() - ctx.fault_at


# -- the faults ------------------------------------------------------------------------------------


def delete_backend_pods(ctx: Context) -> None:
    """Delete two of the three backends (graceful, as `kubectl delete pod` does)."""
    pods = running_pods(ctx.cluster, "app=web", NAMESPACE)[:2]
    ctx.cluster.kubectl("delete", "pod", "-n", NAMESPACE, "--wait=false", *[p["metadata"]["name"] for p in pods])


def rolling_update(ctx: Context) -> None:
    ctx.cluster.kubectl("rollout", "restart", "deployment/web", "-n", NAMESPACE)
    ctx.changed_by_fault.add(f"apps/v1/Deployment/{NAMESPACE}/web")  # its template: the update itself
    ctx.cluster.kubectl("rollout", "status", "deployment/web", "-n", NAMESPACE, "--timeout=120s", timeout=130)


def restart(node: str, component: str) -> Callable[[Context], None]:
    def fault(ctx: Context) -> None:
        pocket_ok("restart", node, component)

    fault.__doc__ = f"`pocket restart {node} {component}`"
    return fault


def containers_on(cluster: Any, node: str) -> dict[str, tuple[str, int]]:
    """Each container of the backends on `node`: (container id, restart count)."""
    found = {}
    for pod in get_json(cluster, "pods", "-n", NAMESPACE, "-l", "app=web")["items"]:
        if pod["spec"].get("nodeName") != node:
            continue
        for status in pod.get("status", {}).get("containerStatuses") or []:
            key = f"{pod['metadata']['name']}/{status['name']}"
            found[key] = (status.get("containerID", ""), status["restartCount"])
    return found


def restart_kubelet(ctx: Context) -> None:
    """The kubelet of worker1; its containers must keep running (same ids, no restarts)."""
    before = containers_on(ctx.cluster, "worker1")
    assert before, "no backend runs on worker1 to watch through the kubelet restart"
    pocket_ok("restart", "worker1", "kubelet")
    ctx.state["containers"] = (before, lambda: containers_on(ctx.cluster, "worker1"))


def victim_pod_ips(ctx: Context) -> set[str]:
    pods = running_pods(ctx.cluster, "app=web", NAMESPACE)
    return {p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == VICTIM}


def wait_victim_pods_handled(ctx: Context) -> None:
    """The victim's backends leave the Endpoints, then replacements run elsewhere; note both times."""
    gone = ctx.state["victim_ips"]
    assert gone, f"no backend ran on {VICTIM}: its fault would show nothing"
    wait_for(f"{VICTIM}'s backends to leave the Endpoints", lambda: not endpoint_ips(ctx.cluster) & gone,
             timeout=RECOVERY_TIMEOUT, interval=0.2)
    out_of_endpoints = elapsed(ctx)
    wait_for("3 backends Running and Ready off the victim", lambda: len(
        [p for p in running_pods(ctx.cluster, "app=web", NAMESPACE) if p["spec"]["nodeName"] != VICTIM]) == 3,
        timeout=RECOVERY_TIMEOUT, interval=0.5)
    replaced = elapsed(ctx)
    ctx.notes.append(f"{len(gone)} backends on {VICTIM}: out of Endpoints after {out_of_endpoints:.1f} s "
                     f"(goal 10), replacements Running after {replaced:.1f} s (goal 30)")


def kill_worker(ctx: Context) -> None:
    """`pocket node stop` (SIGKILL everything, eth0 down), wait for the controllers to react, then start it."""
    pocket_ok("node", "stop", VICTIM)
    wait_victim_pods_handled(ctx)
    pocket_ok("node", "start", VICTIM, timeout=240)


def partition_worker(ctx: Context) -> None:
    """The victim's eth0 down in its namespace (its processes live on), then back up with its routes."""
    config = cluster_under_test()
    netns = config.node_netns(VICTIM)
    network.set_link(netns, "eth0", up=False)
    try:
        wait_victim_pods_handled(ctx)
    finally:
        network.ensure_host_link(config, netns, config.node(VICTIM).ip)
        network.ensure_node_routing(netns)
    wait_for(f"{VICTIM} Ready again", lambda: node_ready(ctx.cluster, VICTIM), timeout=RECOVERY_TIMEOUT)


def node_ready(cluster: Any, node: str) -> bool:
    conditions = get_json(cluster, "node", node)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


OOM_POD = "memory-hog"


def oom_kill(ctx: Context) -> None:
    """A pod limited to 32Mi on worker1 (beside backends) buffers /dev/zero until the kernel kills it."""
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": OOM_POD, "namespace": NAMESPACE},
        "spec": {
            "nodeName": "worker1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "hog", "image": "busybox", "command": ["tail", "/dev/zero"],
                            "resources": {"limits": {"memory": "32Mi"}}}],
        },
    }
    subprocess.run(["kubectl", "--kubeconfig", str(ctx.cluster.kubeconfig), "apply", "-f", "-"],
                   input=json.dumps(manifest), text=True, check=True, capture_output=True)

    def terminated_reason() -> str | None:
        statuses = get_json(ctx.cluster, "pod", OOM_POD, "-n", NAMESPACE).get("status", {}).get("containerStatuses")
        terminated = ((statuses or [{}])[0].get("state") or {}).get("terminated")
        return terminated.get("reason") if terminated else None

    reason = wait_for("the memory hog to be killed", terminated_reason, timeout=RECOVERY_TIMEOUT)
    ctx.notes.append(f"hog terminated: {reason}")
    ctx.state["oom_reason"] = reason
    ctx.cluster.kubectl("delete", "pod", OOM_POD, "-n", NAMESPACE, "--wait=false")


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Context], None]
    zero_failures: bool  # the goal: not one failed request
    short: bool  # part of the shortened form `make test` runs
    on_victim: bool = False  # needs a backend on the victim worker first


FAULTS = [
    Fault("delete 2 of 3 backend pods", delete_backend_pods, True, True),
    Fault("rolling update (rollout restart)", rolling_update, True, True),
    Fault("restart kproxy (client's node)", restart("control-plane", "kproxy"), True, True),
    Fault("restart kproxy (backends' node)", restart("worker1", "kproxy"), True, False),
    Fault("restart kdns (control-plane)", restart("control-plane", "kdns"), True, True),
    Fault("restart kdns (worker1)", restart("worker1", "kdns"), True, False),
    Fault("restart kubelet (worker1)", restart_kubelet, True, True),
    Fault("restart scheduler", restart("control-plane", "scheduler"), True, False),
    Fault("restart controller-manager", restart("control-plane", "controller-manager"), True, False),
    Fault("restart apiserver", restart("control-plane", "apiserver"), True, False),
    Fault("restart etcd", restart("control-plane", "etcd"), True, False),
    Fault("OOM kill in a memory-limited pod", oom_kill, True, False),
    Fault(f"partition {VICTIM} (eth0 down), heal", partition_worker, False, False, on_victim=True),
    Fault(f"kill {VICTIM} (node stop), start", kill_worker, False, True, on_victim=True),
]
SELECTED = [f for f in FAULTS if FULL or f.short]


def spread_onto_victim(cluster: Any) -> None:
    """Backends on the victim too (a previous node fault moved them all away): a rollout spreads them again."""
    for _ in range(3):
        if any(p["spec"]["nodeName"] == VICTIM for p in wait_ready_backends(cluster)):
            return
        cluster.kubectl("rollout", "restart", "deployment/web", "-n", NAMESPACE)
        cluster.kubectl("rollout", "status", "deployment/web", "-n", NAMESPACE, "--timeout=120s", timeout=130)
    raise AssertionError(f"no web backend lands on {VICTIM}, so its fault would hit no backend")


@pytest.mark.parametrize("fault", SELECTED, ids=[f.name for f in SELECTED])
def test_fault(cluster: Any, web: dict[str, Any], results: list[FaultResult], fault: Fault) -> None:
    if fault.on_victim:
        spread_onto_victim(cluster)
    wait_ready_backends(cluster)
    ctx = Context(cluster)
    ctx.state["victim_ips"] = victim_pod_ips(ctx)
    resources = listable_resources(cluster.kubectl)
    before = snapshot(cluster.kubectl, resources)
    vip = web["spec"]["clusterIP"]
    traffic = Traffic(vip, f"web.{NAMESPACE}.svc.cluster.local", INTERVAL)
    try:
        wait_for("the client's first answers", lambda: traffic.healthy_since(0, BASELINE), timeout=30, interval=0.2)
        time.sleep(BASELINE)
        ctx.fault_at = time.time()
        fault.inject(ctx)
        wait_ready_backends(cluster, timeout=RECOVERY_TIMEOUT)
        wait_for("every request to succeed again", lambda: traffic.healthy_since(ctx.fault_at, HEALTHY_SPAN),
                 timeout=RECOVERY_TIMEOUT, interval=0.2)
        time.sleep(SETTLE)
    finally:
        requests = traffic.stop()
    wait_for("every node Ready", lambda: all(node_ready(cluster, n) for n in ("control-plane", "worker1", VICTIM)))
    lost, changed = compare(
        before, snapshot(cluster.kubectl, resources), ctx.changed_by_fault, SYSTEM_NAMESPACES | {NAMESPACE}
    )
    result = summarize(fault.name, [r for r in requests if r.t >= ctx.fault_at - BASELINE], ctx.fault_at)
    result.objects_lost, result.objects_changed = len(lost), len(changed)
    result.notes = "; ".join(ctx.notes + [f"lost: {k}" for k in lost] + [f"changed: {k}" for k in changed])
    results.append(result)

    assert not lost, f"{fault.name}: objects lost: {lost}"
    assert not changed, f"{fault.name}: objects changed beyond the controllers' work: {changed}"
    if fault.zero_failures:
        assert result.failed_vip == 0 and result.failed_dns == 0, (
            f"{fault.name}: {result.failed_vip} failed VIP and {result.failed_dns} failed DNS requests "
            f"of {result.sent}: {result.errors}")
    if "containers" in ctx.state:
        before_containers, now = ctx.state["containers"]
        assert now() == before_containers, "the kubelet restart restarted or replaced containers"
    if "oom_reason" in ctx.state:
        assert ctx.state["oom_reason"] == "OOMKilled"
