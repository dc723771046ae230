"""Scheduling, rolling updates and node failure on the local cluster (issue 4's acceptance).

Each test applies its own manifest (tests/e2e/manifests/wl-*.yaml, every
object named `wl-...`) and deletes it afterwards, also on failure.  Waits
are bounded; times are printed, never asserted.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_node_failure as node_failure
from tests.e2e.helpers import MANIFESTS, get_json, pod_exec, running_pods, wait_for

pytestmark = pytest.mark.e2e

ALL_NODES = {"control-plane", "worker1", "worker2"}
WORKERS = {"worker1", "worker2"}


@contextmanager
def applied(cluster: Any, manifest: str, *selectors: str) -> Iterator[Path]:
    """Apply a manifest; delete it afterwards and wait until the pods it made are gone."""
    path = MANIFESTS / manifest
    cluster.kubectl("apply", "-f", str(path))
    try:
        yield path
    finally:
        cluster.kubectl("delete", "-f", str(path), "--ignore-not-found", "--wait=false")
        wait_for(f"pods {selectors} to be gone", lambda: not any(pods_of(cluster, s) for s in selectors), timeout=120)


def pods_of(cluster: Any, selector: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "pods", "-l", selector)["items"])


def nodes_of(pods: list[dict[str, Any]]) -> list[str]:
    return sorted(p["spec"]["nodeName"] for p in pods)


def n_running(cluster: Any, selector: str, count: int) -> list[dict[str, Any]] | None:
    pods = running_pods(cluster, selector)
    return pods if len(pods) == count else None


def failed_scheduling_messages(cluster: Any, pod: str) -> list[str]:
    events = get_json(cluster, "events", "--field-selector", f"involvedObject.name={pod}")["items"]
    return [e["message"] for e in events if e["reason"] == "FailedScheduling" and e["type"] == "Warning"]


# -- placement --------------------------------------------------------------------


def test_required_pod_affinity_puts_followers_on_the_anchors_node(cluster: Any) -> None:
    with applied(cluster, "wl-affinity.yaml", "app=wl-anchor", "app=wl-follower"):
        (anchor,) = wait_for("the anchor pod", lambda: n_running(cluster, "app=wl-anchor", 1), timeout=120)
        followers = wait_for("3 follower pods", lambda: n_running(cluster, "app=wl-follower", 3), timeout=120)
        assert anchor["spec"]["nodeName"] in WORKERS
        assert nodes_of(followers) == [anchor["spec"]["nodeName"]] * 3


def test_required_anti_affinity_spreads_replicas_over_the_three_nodes(cluster: Any) -> None:
    with applied(cluster, "wl-spread.yaml", "app=wl-spread"):
        pods = wait_for("3 spread pods", lambda: n_running(cluster, "app=wl-spread", 3), timeout=120)
        assert set(nodes_of(pods)) == ALL_NODES
        # A fourth replica has nowhere to go, and the scheduler says why.
        cluster.kubectl("scale", "deployment", "wl-spread", "--replicas=4")

        def pending_pod() -> str | None:
            pending = [p for p in pods_of(cluster, "app=wl-spread") if not p["spec"].get("nodeName")]
            return pending[0]["metadata"]["name"] if pending else None

        name = wait_for("a pending fourth replica", pending_pod, timeout=60)
        messages = wait_for("its FailedScheduling event", lambda: failed_scheduling_messages(cluster, name))
        # Every node fails on anti-affinity (which of the two wordings is the unit tests' business).
        anti_affinity = r"0/3 nodes are available: 3 node\(s\) didn't (match pod|satisfy existing pods) anti-affinity"
        assert re.match(anti_affinity, messages[-1]), messages


def test_pod_too_big_for_any_node_stays_pending_with_a_readable_event(cluster: Any) -> None:
    with applied(cluster, "wl-too-big.yaml"):
        messages = wait_for("a FailedScheduling event", lambda: failed_scheduling_messages(cluster, "wl-too-big"))
        expected = (
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
            "2 Insufficient cpu."
        )
        assert messages[-1].startswith(expected), messages
        pod = get_json(cluster, "pod", "wl-too-big")
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
        scheduled = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
        assert [(c["status"], c["reason"]) for c in scheduled] == [("False", "Unschedulable")]
        described = cluster.kubectl("describe", "pod", "wl-too-big")
        assert "FailedScheduling" in described and "Insufficient cpu" in described, described
        print(f"\nFailedScheduling: {messages[-1]}")


def test_cordon_and_drain_move_pods_off_a_worker(cluster: Any) -> None:
    with applied(cluster, "wl-drain.yaml", "app=wl-drain"):
        pods = wait_for("4 drain pods", lambda: n_running(cluster, "app=wl-drain", 4), timeout=120)
        victim = max(set(nodes_of(pods)) & WORKERS, key=nodes_of(pods).count)
        other = (WORKERS - {victim}).pop()
        cluster.kubectl("cordon", victim)
        try:
            assert get_json(cluster, "node", victim)["spec"].get("unschedulable") is True
            # Only this test's pods are evicted, so other tests' pods on the node are left alone.
            out = cluster.kubectl(
                "drain",
                victim,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--pod-selector",
                "app=wl-drain",
                "--timeout=120s",
                timeout=180,
            )
            assert f"node/{victim} drained" in out, out

            def moved() -> list[dict[str, Any]] | None:
                running = n_running(cluster, "app=wl-drain", 4)
                everyone = pods_of(cluster, "app=wl-drain")
                return running if running and all(p["spec"].get("nodeName") != victim for p in everyone) else None

            after = wait_for("all 4 pods running off the drained node", moved, timeout=120)
            assert nodes_of(after) == [other] * 4
        finally:
            cluster.kubectl("uncordon", victim)
        assert not get_json(cluster, "node", victim)["spec"].get("unschedulable")


# -- rolling update under traffic ----------------------------------------------------


class ClientLoop:
    """A bounded request loop in the client pod, run from a thread while the test rolls the Deployment."""

    MAX_REQUESTS = 3000  # ~0.1 s each: at most about 5 minutes, however the test goes
    # (no `wget -T`: busybox-static's wget segfaults with it here; `timeout` bounds each request instead)

    def __init__(self, cluster: Any, url: str):
        self.cluster = cluster
        self.script = (
            "rm -f /tmp/stop; i=0; "
            f"while [ ! -f /tmp/stop ] && [ $i -lt {self.MAX_REQUESTS} ]; do "
            f"timeout 3 wget -qO- {url} || echo FAILED; i=$((i+1)); sleep 0.05; done"
        )
        self.lines: list[str] = []
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name="wl-client-loop", daemon=True)

    def _run(self) -> None:
        try:
            self.lines = pod_exec(self.cluster, "wl-rolling-client", ["sh", "-c", self.script]).splitlines()
        except Exception as err:  # reported by stop()
            self.error = err

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> list[str]:
        pod_exec(self.cluster, "wl-rolling-client", ["touch", "/tmp/stop"])
        self.thread.join(60)
        assert not self.thread.is_alive(), "the client loop did not stop"
        if self.error is not None:
            raise self.error
        return self.lines


def template_hashes(pods: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["labels"]["pod-template-hash"] for p in pods}


def serving(cluster: Any, version: str) -> list[dict[str, Any]] | None:
    """3 Ready pods, all of `version`, and exactly they are the Service's ready endpoints."""
    pods = running_pods(cluster, "app=wl-rolling")
    versions = {e["value"] for p in pods for e in p["spec"]["containers"][0]["env"] if e["name"] == "VERSION"}
    if len(pods) != 3 or versions != {version} or len(pods_of(cluster, "app=wl-rolling")) != 3:
        return None
    endpoints = get_json(cluster, "endpoints", "wl-rolling")
    ips = {a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []}
    return pods if ips == {p["status"]["podIP"] for p in pods} else None


def test_rolling_update_drops_no_request_and_undo_restores_the_old_pods(cluster: Any) -> None:
    with applied(cluster, "wl-rolling.yaml", "app=wl-rolling"):
        wait_for(
            "the client pod to run",
            lambda: get_json(cluster, "pod", "wl-rolling-client")["status"].get("phase") == "Running",
            timeout=120,
        )
        v1_pods = wait_for("3 v1 pods serving", lambda: serving(cluster, "v1"), timeout=120)
        v1_hash = template_hashes(v1_pods)
        service_ip = get_json(cluster, "service", "wl-rolling")["spec"]["clusterIP"]

        loop = ClientLoop(cluster, f"http://{service_ip}:80/")
        loop.start()
        try:
            cluster.kubectl("set", "env", "deployment/wl-rolling", "VERSION=v2")
            cluster.kubectl("rollout", "status", "deployment/wl-rolling", "--timeout=180s", timeout=200)
            v2_pods = wait_for("3 v2 pods serving", lambda: serving(cluster, "v2"), timeout=120)
        finally:
            answers = loop.stop()
        assert answers, "the client loop made no request"
        failed = answers.count("FAILED")
        versions = {line.split()[0] for line in answers if line != "FAILED"}
        print(f"\nrolling update: {len(answers)} requests, {failed} failed, versions seen {sorted(versions)}")
        assert failed == 0, f"{failed} of {len(answers)} requests failed during the rollout"
        assert versions == {"v1", "v2"}, f"the loop should span the rollout, saw {versions}"
        assert template_hashes(v2_pods).isdisjoint(v1_hash)

        cluster.kubectl("rollout", "undo", "deployment/wl-rolling")
        cluster.kubectl("rollout", "status", "deployment/wl-rolling", "--timeout=180s", timeout=200)
        restored = wait_for("3 v1 pods serving again", lambda: serving(cluster, "v1"), timeout=120)
        assert template_hashes(restored) == v1_hash, "undo should bring back the first ReplicaSet's template"
        replicasets = get_json(cluster, "replicasets", "-l", "app=wl-rolling")["items"]
        scaled = {rs["metadata"]["labels"]["pod-template-hash"]: rs["spec"]["replicas"] for rs in replicasets}
        assert scaled == {next(iter(v1_hash)): 3, next(iter(template_hashes(v2_pods))): 0}, scaled


# -- node failure ------------------------------------------------------------------------


def test_crashed_worker_pods_leave_endpoints_are_replaced_and_cleaned_up_on_return(cluster: Any) -> None:
    kubectl = cluster.kubectl
    try:
        pods = node_failure.deploy(kubectl)
        on_victim = tuple(sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node_failure.VICTIM))
        try:
            failover = node_failure.crash_and_measure(kubectl, pods)
        finally:
            cleanup = node_failure.restart_and_wait_clean(kubectl, on_victim)
        print(
            f"\nnode failure ({node_failure.controller_manager_flags(cluster.config)}): "
            f"`pocket node stop` took {failover.stop_command:.1f}s; pods out of Endpoints after "
            f"{failover.endpoints_gone:.1f}s, {node_failure.REPLICAS} Ready elsewhere after {failover.replaced:.1f}s; "
            f"node back and moved pods cleaned up {cleanup:.1f}s after `pocket node start`"
        )
        assert failover.moved == on_victim and on_victim
        node = get_json(cluster, "node", node_failure.VICTIM)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert [c["status"] for c in ready] == ["True"]
        wait_for(
            "the unreachable taints to be lifted",
            lambda: (
                not {t["key"] for t in get_json(cluster, "node", node_failure.VICTIM)["spec"].get("taints") or []}
                & {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
            ),
            timeout=60,
        )
        # Nothing of the moved pods runs on the returned node's Docker either.
        leftovers = [
            c.name
            for c in cluster.docker(node_failure.VICTIM).containers.list()
            if c.labels.get("io.kubernetes.pod.name") in on_victim
        ]
        assert not leftovers, leftovers
        # The Deployment still has all its replicas Ready.
        assert len(running_pods(cluster, f"app={node_failure.APP}")) == node_failure.REPLICAS
    finally:
        node_failure.remove(kubectl)
