"""Preferred scheduling terms change placement on the local cluster: node affinity and pod anti-affinity.

The pods name their own scheduler (`spec.schedulerName`), an instance of this checkout's Scheduler run by
the test against the shared cluster's API server, so the test exercises the code under test whichever build
the cluster's own scheduler runs; the kubelets then start the pods for real. Everything lives in one
namespace made for this file and deleted at the end, also on failure. Waits are bounded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control.client import Client
from control.scheduler.scheduler import Scheduler
from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e

HOST = "kubernetes.io/hostname"


class SchedulerThread:
    """The scheduler under test on its own event loop in a thread, until `stop`."""

    def __init__(self, kubeconfig: Path, name: str):
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(self._run(kubeconfig, name))
        self.thread = threading.Thread(target=self._main, name=f"scheduler-{name}", daemon=True)

    @staticmethod
    async def _run(kubeconfig: Path, name: str) -> None:
        async with Client.from_kubeconfig(kubeconfig, user_agent="pkt-prefs-scheduler") as client:
            await Scheduler(client, scheduler_name=name, retry_interval=5).run()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:
            self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the test scheduler did not stop"


@pytest.fixture(scope="module")
def placement(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A fresh namespace and a running scheduler of our own; both removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"pkt-sched-prefs-{suffix}"
    scheduler_name = f"pkt-prefs-{suffix}"
    cluster.kubectl("create", "namespace", namespace)
    scheduler = SchedulerThread(cluster.kubeconfig, scheduler_name)
    scheduler.thread.start()
    try:
        yield {
            "cluster": cluster,
            "namespace": namespace,
            "scheduler": scheduler_name,
            "dir": tmp_path_factory.mktemp("pods"),
        }
    finally:
        scheduler.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        wait_for(
            f"namespace {namespace} to be gone",
            lambda: namespace not in cluster.kubectl("get", "namespaces", "-o", "name"),
            timeout=120,
        )


def run_pod(ctx: dict[str, Any], name: str, labels: dict[str, str], **spec: Any) -> str:
    """Create a small busybox pod for our scheduler; wait until it is bound and running; return its node."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ctx["namespace"], "labels": labels},
        "spec": {
            "schedulerName": ctx["scheduler"],
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "sleep",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
            **spec,
        },
    }
    path: Path = ctx["dir"] / f"{name}.json"
    path.write_text(json.dumps(pod))
    cluster = ctx["cluster"]
    cluster.kubectl("create", "-f", str(path))

    def running() -> dict[str, Any] | None:
        got = get_json(cluster, "pod", name, "-n", ctx["namespace"])
        return got if got["status"].get("phase") == "Running" else None

    return str(wait_for(f"pod {name} running", running, timeout=120)["spec"]["nodeName"])


def prefer_node(node: str, weight: int = 10) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": HOST, "operator": "In", "values": [node]}]}
    preferred = [{"weight": weight, "preference": term}]
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}


def pod_term(weight: int, **match_labels: str) -> dict[str, Any]:
    return {"weight": weight, "podAffinityTerm": {"labelSelector": {"matchLabels": match_labels}, "topologyKey": HOST}}


def test_preferred_node_affinity_picks_the_preferred_worker(placement: dict[str, Any]) -> None:
    placed = {
        (target, i): run_pod(placement, f"to-{target}-{i}", {"test": "node-affinity"}, affinity=prefer_node(target))
        for target in ("worker2", "worker1")
        for i in range(2)
    }
    assert placed == {(target, i): target for target, i in placed}


def test_preferred_anti_affinity_sends_the_second_replica_to_the_other_worker(placement: dict[str, Any]) -> None:
    anchor = run_pod(placement, "anchor", {"role": "anchor"}, nodeSelector={HOST: "worker1"})
    assert anchor == "worker1"
    near_anchor = {"preferredDuringSchedulingIgnoredDuringExecution": [pod_term(20, role="anchor")]}
    # Without anti-affinity, the preference for the anchor's node puts both pods there ...
    together = [
        run_pod(placement, f"together-{i}", {"group": "together"}, affinity={"podAffinity": near_anchor})
        for i in range(2)
    ]
    assert together == ["worker1", "worker1"]
    # ... with a stronger preference to stay apart, the second one goes to the other worker.
    apart_affinity = {
        "podAffinity": near_anchor,
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pod_term(100, group="apart")]},
    }
    apart = [run_pod(placement, f"apart-{i}", {"group": "apart"}, affinity=apart_affinity) for i in range(2)]
    assert apart == ["worker1", "worker2"]
