"""Node failure on the local cluster: how fast a crashed worker's pods leave a Service and are replaced.

A Deployment of 4 HTTP replicas (tests/e2e/manifests/wl-failover.yaml) is
spread over both workers; `pocket node stop worker2` SIGKILLs everything on
the node as a crash would.  Measured from just before that command: the
time until none of worker2's pod IPs is a ready address of the Service's
Endpoints, and the time until 4 Ready pods run on other nodes.  Then
`pocket node start worker2` brings it back, and the run waits until the
pods that moved away are gone from it.  The same functions drive the e2e
test (tests/e2e/test_workloads.py).

Issue 4's targets: pods leave endpoints within 10 s and replacements run
within 30 s (Kubernetes' defaults take about 40 s and 5 minutes).  Both
depend on the controller manager's `--node-monitor-grace-period` and
`--pod-eviction-timeout`, read here from the running process.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import Distribution, Figure, Reference, Section
from pocket.cluster import is_up
from pocket.config import ClusterConfig

MANIFEST = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "manifests" / "wl-failover.yaml"
APP = "wl-failover"
REPLICAS = 4
VICTIM = "worker2"
RUNS = 3
POLL = 0.25  # seconds between looks at the API while measuring
TIMEOUT = 240.0  # seconds any one phase may take before the run fails

Kubectl = Callable[..., str]


@dataclass(frozen=True)
class Failover:
    stop_command: float  # seconds `pocket node stop` took
    endpoints_gone: float  # seconds from the stop until no victim IP was a ready endpoint
    replaced: float  # seconds from the stop until REPLICAS Ready pods ran off the victim node
    moved: tuple[str, ...]  # the pods that were on the victim node


def pocket(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pocket.cli", *args], capture_output=True, text=True, timeout=timeout)


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def wait_until(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT, interval: float = POLL) -> Any:
    """Poll until `probe` returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as err:  # the cluster is converging
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error}")


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
    return (
        pod.get("status", {}).get("phase") == "Running"
        and conditions.get("Ready") == "True"
        and not pod["metadata"].get("deletionTimestamp")
    )


def app_pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    return list(get_json(kubectl, "pods", "-l", f"app={APP}")["items"])


def ready_endpoint_ips(kubectl: Kubectl) -> set[str]:
    endpoints = get_json(kubectl, "endpoints", APP)
    return {a["ip"] for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []}


def deploy(kubectl: Kubectl) -> list[dict[str, Any]]:
    """Apply the workload; return its pods once all are Ready, spread over both workers, and in the Endpoints."""
    kubectl("apply", "-f", str(MANIFEST))

    def settled() -> list[dict[str, Any]] | None:
        ready = [p for p in app_pods(kubectl) if is_ready(p)]
        nodes = {p["spec"]["nodeName"] for p in ready}
        if len(ready) == REPLICAS and VICTIM in nodes and len(nodes) > 1:
            return ready if ready_endpoint_ips(kubectl) == {p["status"]["podIP"] for p in ready} else None
        return None

    return list(wait_until(f"{REPLICAS} ready {APP} pods on both workers, in the Endpoints", settled))


def remove(kubectl: Kubectl) -> None:
    kubectl("delete", "-f", str(MANIFEST), "--ignore-not-found", "--wait=false")
    wait_until(f"{APP} pods to be gone", lambda: not app_pods(kubectl))


def crash_and_measure(kubectl: Kubectl, pods: list[dict[str, Any]]) -> Failover:
    """Stop the victim node and time the two things issue 4 sets targets for."""
    victims = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == VICTIM}
    started = time.monotonic()
    stopped = pocket("node", "stop", VICTIM, timeout=120)
    stop_took = time.monotonic() - started
    if stopped.returncode != 0:
        raise AssertionError(f"pocket node stop {VICTIM} failed: {stopped.stdout}{stopped.stderr}")
    endpoints_gone: float | None = None
    replaced: float | None = None
    deadline = started + TIMEOUT
    while (endpoints_gone is None or replaced is None) and time.monotonic() < deadline:
        now = time.monotonic() - started
        if endpoints_gone is None and not ready_endpoint_ips(kubectl) & set(victims.values()):
            endpoints_gone = now
        if replaced is None:
            elsewhere = [p for p in app_pods(kubectl) if is_ready(p) and p["spec"]["nodeName"] != VICTIM]
            if len(elsewhere) == REPLICAS:
                replaced = now
        time.sleep(POLL)
    if endpoints_gone is None or replaced is None:
        raise AssertionError(
            f"after {TIMEOUT:.0f}s: endpoints_gone={endpoints_gone}, replaced={replaced} (pods {sorted(victims)})"
        )
    return Failover(stop_took, endpoints_gone, replaced, tuple(sorted(victims)))


def restart_and_wait_clean(kubectl: Kubectl, moved: tuple[str, ...]) -> float:
    """`pocket node start` the victim; return seconds until the pods that moved away are gone from the API."""
    started = time.monotonic()
    proc = pocket("node", "start", VICTIM, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"pocket node start {VICTIM} failed: {proc.stdout}{proc.stderr}")

    def cleaned() -> bool:
        left = {p["metadata"]["name"] for p in app_pods(kubectl)} & set(moved)
        return not left

    wait_until(f"the moved pods {moved} to be removed from {VICTIM}", cleaned)
    return time.monotonic() - started


def controller_manager_flags(config: ClusterConfig) -> str:
    """The running controller manager's node-failure flags, from its command line (or its defaults)."""
    pid_file = config.pid_dir / "control-plane-controller-manager.pid"
    try:
        pid = pid_file.read_text().split()[0]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (OSError, IndexError):
        return "unknown (controller manager pid file unreadable)"
    wanted = ("--node-monitor-grace-period", "--pod-eviction-timeout", "--node-monitor-period")
    shown = [f"{flag} {argv[i + 1]}" for i, flag in enumerate(argv[:-1]) if flag in wanted]
    return " ".join(shown) or "the defaults"


def run() -> Section:
    config = ClusterConfig()
    was_up = is_up(config)
    if not was_up:
        proc = pocket("up")
        if proc.returncode != 0:
            raise RuntimeError(f"pocket up failed: {proc.stdout}{proc.stderr}")

    def kubectl(*args: str) -> str:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(config.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    results: list[Failover] = []
    cleanups: list[float] = []
    try:
        flags = controller_manager_flags(config)
        for _ in range(RUNS):
            pods = deploy(kubectl)
            on_victim = tuple(sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == VICTIM))
            try:
                results.append(crash_and_measure(kubectl, pods))
            finally:  # the node comes back even when a measurement failed
                cleanups.append(restart_and_wait_clean(kubectl, on_victim))
            remove(kubectl)
    finally:
        remove(kubectl)
        if not was_up:
            pocket("down")
    return Section(report(results, cleanups, flags), figures(results), distributions(results))


# Kubernetes' kube-controller-manager defaults: --node-monitor-grace-period 40 s (pods leave Endpoints once
# the node is marked unhealthy) and 300 s until pods on an unreachable node are evicted.
DEFAULTS_SOURCE = ("https://github.com/kubernetes/kubernetes/blob/master/"
                   "pkg/controller/nodelifecycle/config/v1alpha1/defaults.go")


def figures(results: list[Failover]) -> tuple[Figure, ...]:
    return (
        Figure("out of Endpoints after a worker crash, median", statistics.median(r.endpoints_gone for r in results),
               "s", Reference(40.0, f"Kubernetes default node-monitor-grace-period 40 s ({DEFAULTS_SOURCE})")),
        Figure(f"{REPLICAS} Ready elsewhere after a worker crash, median",
               statistics.median(r.replaced for r in results), "s",
               Reference(300.0, f"Kubernetes default eviction of an unreachable node's pods, 300 s "
                                f"({DEFAULTS_SOURCE})")),
    )


def distributions(results: list[Failover]) -> tuple[Distribution, ...]:
    return (
        Distribution("out of Endpoints", "s", tuple(r.endpoints_gone for r in results)),
        Distribution(f"{REPLICAS} Ready elsewhere", "s", tuple(r.replaced for r in results)),
    )


def report(results: list[Failover], cleanups: list[float], flags: str) -> str:
    rows = "\n".join(
        f"| {i + 1} | {r.stop_command:.1f} | {r.endpoints_gone:.1f} | {r.replaced:.1f} | {c:.1f} | {len(r.moved)} |"
        for i, (r, c) in enumerate(zip(results, cleanups, strict=True))
    )
    median_endpoints = statistics.median(r.endpoints_gone for r in results)
    median_replaced = statistics.median(r.replaced for r in results)
    return f"""## Node failure (`pocket node stop {VICTIM}`)

{REPLICAS} replicas of `{APP}` over both workers; {VICTIM} is crashed (SIGKILL of everything on it, eth0 down).
Times in seconds from just before `pocket node stop`; controller manager running with `{flags}`.

| run | stop command | out of Endpoints | {REPLICAS} Ready elsewhere | node back, moved pods cleaned | pods moved |
|---|---|---|---|---|---|
{rows}

Median: out of Endpoints **{median_endpoints:.1f} s** (issue 4 target: 10 s; Kubernetes' defaults about 40 s),
replacements Running **{median_replaced:.1f} s** (target 30 s; Kubernetes' defaults about 5 min).

Command: `python -m benchmarks bench_node_failure` (or `make bench`), as root, on the local cluster
(brought up and down again if it was not running).
"""
