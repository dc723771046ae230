"""What the fault suite measures: traffic through a Service while a fault happens, and etcd's objects around it.

Every `pocket` command here goes through tests.e2e.conftest's CLUSTER_FLAGS,
so POCKET_E2E_CLUSTER points the whole suite at another local cluster.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.conftest import CLUSTER_FLAGS

TRAFFIC_SCRIPT = Path(__file__).with_name("traffic.py")
CLIENT_NODE = "control-plane"  # the backends run on the workers, so every request crosses nodes
TRAFFIC_MAX_SECONDS = 240.0
# The controllers' own bookkeeping: rewritten all the time, never "lost" by a fault.
CONTROLLER_BOOKKEEPING = {"events", "leases", "endpoints", "endpointslices"}
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def pocket_argv(command: str, *args: str) -> list[str]:
    """A `pocket` command line on the cluster under test (flags right after the subcommand)."""
    return [sys.executable, "-m", "pocket.cli", command, *CLUSTER_FLAGS, *args]


@dataclass
class Request:
    kind: str  # "vip" or "dns"
    t: float
    ok: bool
    error: str = ""


class Traffic:
    """The bounded client (traffic.py) running in a node's namespace for the length of one fault."""

    def __init__(self, vip: str, name: str, interval: float) -> None:
        self._stop_dir = tempfile.TemporaryDirectory(prefix="pkt-chaos-")
        self.stop_file = Path(self._stop_dir.name) / "stop"
        argv = pocket_argv(
            "node", "exec", CLIENT_NODE, "--", sys.executable, str(TRAFFIC_SCRIPT),
            "--vip", vip, "--name", name, "--interval", str(interval),
            "--stop-file", str(self.stop_file), "--max-seconds", str(TRAFFIC_MAX_SECONDS),
        )
        self.out = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, text=True)

    def requests(self) -> list[Request]:
        self.out.flush()
        self.out.seek(0)
        found = []
        for line in self.out.read().splitlines():
            try:
                found.append(Request(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut short while being written, or the client's own error output
        return found

    def healthy_since(self, since: float, span: float) -> bool:
        """Both paths answered every request started in the last `span` seconds (and some were sent)."""
        recent = [r for r in self.requests() if r.t >= max(since, time.time() - span)]
        kinds = {r.kind for r in recent}
        return kinds == {"vip", "dns"} and all(r.ok for r in recent)

    def stop(self) -> list[Request]:
        self.stop_file.touch()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        requests = self.requests()
        self.out.close()
        self._stop_dir.cleanup()
        if not requests:
            raise AssertionError(f"the traffic client sent nothing (exit {self.proc.returncode})")
        return requests


@dataclass
class FaultResult:
    fault: str
    sent: int
    failed_vip: int
    failed_dns: int
    recovery_s: float
    objects_lost: int
    objects_changed: int
    notes: str = ""
    errors: list[str] = field(default_factory=list)


def summarize(fault: str, requests: list[Request], fault_at: float) -> FaultResult:
    """Counts, and the time from the fault to the first success after the last failure (0 if none failed)."""
    failures = [r for r in requests if not r.ok]
    recovery = 0.0
    if failures:
        last_failure = max(r.t for r in failures)
        later = [r.t for r in requests if r.ok and r.t > last_failure]
        recovery = (min(later) if later else last_failure) - fault_at
    return FaultResult(
        fault=fault,
        sent=len(requests),
        failed_vip=sum(1 for r in failures if r.kind == "vip"),
        failed_dns=sum(1 for r in failures if r.kind == "dns"),
        recovery_s=max(0.0, recovery),
        objects_lost=0,
        objects_changed=0,
        errors=sorted({r.error for r in failures})[:5],
    )


# -- the cluster's state ---------------------------------------------------------------------------


def listable_resources(kubectl: Any) -> list[str]:
    """Every stored resource the API lists (metrics are computed, not stored; bookkeeping is left out)."""
    names = kubectl("api-resources", "--verbs=list", "-o", "name").split()
    return [n for n in names if n.split(".")[0] not in CONTROLLER_BOOKKEEPING and not n.endswith("metrics.k8s.io")]


def _controlled(obj: dict[str, Any]) -> bool:
    return any(ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what controllers and agents legitimately rewrite (status, versions, counters, taints)."""
    obj = json.loads(json.dumps(obj))
    obj.pop("status", None)
    meta = obj["metadata"]
    for key in ("resourceVersion", "generation", "managedFields"):
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in [k for k in annotations if k.startswith("deployment.kubernetes.io/")]:
        del annotations[key]
    if obj["kind"] == "Node":
        obj.get("spec", {}).pop("taints", None)  # the node lifecycle controller's (un)reachable taints
        meta.pop("annotations", None)  # the kubelet's own, refreshed on registration
    if obj["kind"] == "ReplicaSet" and _controlled(obj):
        obj["spec"].pop("replicas", None)  # the deployment controller scales its ReplicaSets
    return obj


def object_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['apiVersion']}/{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def snapshot(kubectl: Any, resources: list[str]) -> dict[str, dict[str, Any]]:
    """Every stored object (one list of all resources, as etcd holds them), by apiVersion/kind/namespace/name."""
    listing = json.loads(kubectl("get", ",".join(resources), "-A", "-o", "json"))
    return {object_key(item): item for item in listing["items"]}


def _closing_namespaces(after: dict[str, dict[str, Any]]) -> set[str]:
    """Namespaces that are gone or terminating: their objects go by the namespace controller's work."""
    present = {obj["metadata"]["name"]: obj for obj in after.values() if obj["kind"] == "Namespace"}
    closing = {name for name, ns in present.items() if ns["metadata"].get("deletionTimestamp")}
    referenced = {obj["metadata"].get("namespace") for obj in after.values()} - {None, ""}
    return closing | (referenced - set(present))


def compare(
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    changed_by_fault: AbstractSet[str] = frozenset(),
    watched_namespaces: AbstractSet[str] = SYSTEM_NAMESPACES,
) -> tuple[list[str], list[str]]:
    """(lost, changed): objects gone or altered beyond the controllers' own work and the fault's intended edit.

    A namespace being deleted (another test cleaning up on a shared cluster) takes its objects with it;
    only for `watched_namespaces` is that never excused, so a namespace lost there is reported.
    """
    lost, changed = [], []
    before_namespaces = {o["metadata"]["name"] for o in before.values() if o["kind"] == "Namespace"}
    closing = _closing_namespaces(after) | {
        name for name in before_namespaces if f"v1/Namespace//{name}" not in after
    }
    closing -= set(watched_namespaces)
    for key, old in before.items():
        if old["metadata"].get("deletionTimestamp") or old["metadata"].get("namespace") in closing:
            continue  # already on its way out, or its namespace is being deleted (another test's cleanup)
        if old["kind"] == "Namespace" and old["metadata"]["name"] in closing and key not in after:
            continue  # a namespace someone deleted, finished by the namespace controller
        new = after.get(key)
        if new is None:
            if old["kind"] == "Pod" and _controlled(old):
                continue  # replaced by its ReplicaSet: the controllers' work
            lost.append(key)
        elif key not in changed_by_fault and not (old["kind"] == "Pod" and new["metadata"].get("deletionTimestamp")):
            if normalized(old) != normalized(new):
                changed.append(key)
    return lost, changed


# -- the report --------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{platform.node()}: {os.cpu_count()} CPUs ({model}), {mem_kb // 1024} MiB RAM, Linux {platform.release()}"


def write_report(
    path: Path, results: list[FaultResult], command: str, goals: dict[str, str], findings: list[str]
) -> None:
    lines = [
        "# Reliability under faults",
        "",
        "Produced by the fault suite (tests/e2e/chaos, issue 10). A bounded client in the control-plane",
        "node's namespace sends, every 0.1 s, one HTTP request to the `web` Service's virtual IP and one to",
        "`web.<ns>.svc.cluster.local` (resolved by a fresh query to the cluster DNS: two 1 s attempts, the",
        "second also after SERVFAIL, as glibc's resolver does), each on a new connection with a 2 s timeout;",
        "the 3 backends (busybox httpd, readiness probe every 1 s) run on the workers. One fault at a time.",
        "*Recovery* is the time from the fault to the first success after the last failed request (0: none",
        "failed). *Objects lost/changed*: every stored object listed through the API before the fault, compared",
        "after it, allowing only the controllers' own work (status, resourceVersion, generation, pods replaced",
        "by their ReplicaSet, node taints, ReplicaSet scale; events, leases, endpoints are bookkeeping).",
        "",
        f"- command: `{command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine()}",
        "",
        "| fault | requests sent | failed VIP | failed DNS | recovery (s) | objects lost | objects changed | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.fault} | {r.sent} | {r.failed_vip} | {r.failed_dns} | {r.recovery_s:.1f} | {r.objects_lost} "
            f"| {r.objects_changed} | {r.notes} |"
        )
    errors = [(r.fault, e) for r in results for e in r.errors]
    if errors:
        lines += ["", "## Failed requests: what the client saw", ""]
        lines += [f"- {fault}: `{error}`" for fault, error in errors]
    if goals:
        lines += ["", "## Goals", ""]
        lines += [f"- {name}: {text}" for name, text in goals.items()]
    if findings:
        lines += ["", "## Found while building the suite", ""]
        lines += [f"- {text}" for text in findings]
    path.write_text("\n".join(lines) + "\n")
