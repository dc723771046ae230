"""A PodWorkers harness over FakeRuntime, FakeNetwork, FakeApi and FakeClock, shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

from control.clock import FakeClock
from kubelet.pods import NodeSettings, PodWorkers
from kubelet.runtime import FakeRuntime
from tests.kubelet.fakes import FakeApi, FakeNetwork

KUBERNETES_SVC = {
    "metadata": {"name": "kubernetes", "namespace": "default"},
    "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
}


def make_pod(*containers: dict, uid: str = "uid-1", restart: str = "Always", **spec: object) -> dict:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": uid, "resourceVersion": "1"},
        "spec": {"nodeName": "worker1", "restartPolicy": restart, "containers": list(containers), **spec},
        "status": {"phase": "Pending"},
    }


def c(name: str = "app", **fields: object) -> dict:
    return {"name": name, "image": "busybox:latest", "imagePullPolicy": "IfNotPresent", **fields}


class Harness:
    def __init__(self, tmp_path: Path, runtime: FakeRuntime | None = None, network: FakeNetwork | None = None):
        self.api, self.runtime = FakeApi(), runtime or FakeRuntime()
        self.network, self.clock = network or FakeNetwork(), FakeClock()
        settings = NodeSettings(
            node_name="worker1",
            node_ip="192.168.56.11",
            root_dir=tmp_path,
            cluster_dns=["10.96.0.10"],
            node_resolv_conf="nameserver 192.168.56.1\n",
            backoff_initial=10,
            backoff_max=40,
        )
        self.workers = PodWorkers(self.api, self.runtime, self.network, settings, lambda: [KUBERNETES_SVC], self.clock)

    async def sync(self, pod: dict) -> dict:
        """One sync, then the pod as the API now holds it (status included)."""
        await self.workers.sync_pod(pod)
        stored = self.api.pods.get(("default", pod["metadata"]["name"]))
        if stored is not None:
            pod["status"] = stored["status"]
        return pod

    def app_status(self, name: str = "app") -> dict:
        return next(s for s in self.api.last_status["containerStatuses"] if s["name"] == name)
