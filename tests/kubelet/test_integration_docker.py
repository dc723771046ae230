"""The pod workers with the real DockerRuntime and real pod networking, against a dockerd in a test namespace.

One dockerd (in `pkt-kubelet-<random>`) serves the whole module; pods come
from an in-memory API double, but containers, veths, the bridge, addresses
and routes are real, and logs come back through the kubelet's HTTP server.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import aiohttp
import docker
import pytest

from control.clock import RealClock
from kubelet.network import NodeNetwork, veth_name
from kubelet.pods import NodeSettings, PodWorkers
from kubelet.runtime import LABEL_POD_UID, LABEL_TYPE, TYPE_CONTAINER, TYPE_SANDBOX, DockerRuntime
from kubelet.server import KubeletServer
from pocket.images import import_images
from tests.kubelet.dockerd import Dockerd, start_dockerd, stop_dockerd
from tests.kubelet.fakes import FakeApi

pytestmark = pytest.mark.root

POD_CIDR = "10.244.7.0/24"
WAIT_SECONDS = 40.0


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    daemon = start_dockerd()
    try:
        client = docker.DockerClient(base_url=daemon.base_url)
        import_images(client)
        client.close()
        yield daemon
    finally:
        stop_dockerd(daemon)


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubelet-root")


class Node:
    """One kubelet's pod side, wired to the test's dockerd and namespace."""

    def __init__(self, dockerd: Dockerd, root: Path):
        self.dockerd = dockerd
        self.api = FakeApi()
        self.runtime = DockerRuntime(dockerd.base_url)
        self.network = NodeNetwork(root, netns_path=dockerd.netns_path)
        settings = NodeSettings(
            node_name="worker1",
            node_ip="192.168.56.11",
            root_dir=root,
            cluster_dns=["10.96.0.10"],
            node_resolv_conf="nameserver 192.168.56.1\nsearch corp.internal\n",
            backoff_initial=1,
            backoff_max=2,
        )
        services = [
            {
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
            },
        ]
        self.workers = PodWorkers(self.api, self.runtime, self.network, settings, lambda: services, RealClock())
        self.server = KubeletServer(self.runtime, self.workers.known_pods, "worker1")

    async def run_until(self, pod: dict, done: Callable[[dict], bool]) -> dict:
        """Hand the pod to the workers, as the pod informer does, and wait (bounded) until `done(status)`."""
        self.workers.update(pod)
        deadline = time.monotonic() + WAIT_SECONDS
        status: dict = {}
        while time.monotonic() < deadline:
            stored = self.api.pods.get((pod["metadata"]["namespace"], pod["metadata"]["name"]))
            if stored:
                status = stored["status"]
                if done(status):
                    return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"pod {pod['metadata']['name']} never got there; last status: {status}")

    async def wait_deleted(self, name: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while ("default", name, 0) not in self.api.deleted:
            assert time.monotonic() < deadline, f"pod {name} was never deleted; deletions: {self.api.deleted}"
            await asyncio.sleep(0.2)


@pytest.fixture
async def node(dockerd: Dockerd, node_dir: Path) -> AsyncIterator[Node]:
    n = Node(dockerd, node_dir)
    await n.network.ensure_bridge(POD_CIDR)
    await n.server.start("127.0.0.1", 0)
    try:
        yield n
    finally:
        await n.workers.close()
        for pod in list(n.workers.known_pods().values()):
            quick = {**pod, "spec": {**pod["spec"], "terminationGracePeriodSeconds": 0}}
            await n.workers.terminate_pod(quick, delete_from_api=False)
        await n.server.stop()
        await n.network.close()
        await n.runtime.close()


def server_url(n: Node) -> str:
    site = next(iter(n.server._runner.sites))  # type: ignore[union-attr]
    return site.name  # "http://127.0.0.1:<port>"


def make_pod(name: str, uid: str, *containers: dict, restart: str = "Always") -> dict:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"nodeName": "worker1", "restartPolicy": restart, "containers": list(containers)},
        "status": {},
    }


def busybox(name: str, script: str) -> dict:
    return {"name": name, "image": "busybox:latest", "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", script]}


def all_running(status: dict) -> bool:
    return status.get("phase") == "Running" and all("running" in s["state"] for s in status["containerStatuses"])


def restarted(status: dict, times: int) -> bool:
    """Running again after exactly `times` restarts of its (only) container."""
    return all_running(status) and status["containerStatuses"][0]["restartCount"] == times


SERVE = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"
FETCH = "while true; do timeout 3 wget -qO- http://127.0.0.1:8080/ && echo fetched; sleep 1; done"


async def test_pod_gets_an_address_and_its_containers_share_localhost(node: Node) -> None:
    pod = make_pod("web", "uid-web", busybox("server", SERVE), busybox("client", FETCH))
    status = await node.run_until(pod, all_running)
    ip = status["podIP"]
    assert re.fullmatch(r"10\.244\.7\.\d+", ip) and ip != "10.244.7.1"
    assert status["conditions"][3] == status["conditions"][3] | {"type": "Ready", "status": "True"}

    bridge = node.dockerd.in_netns("ip", "-4", "-o", "addr", "show", "dev", "cbr0").stdout
    assert "10.244.7.1/24" in bridge
    port = node.dockerd.in_netns("bridge", "-d", "link", "show", "dev", veth_name("uid-web")).stdout
    assert "master cbr0" in port and "hairpin on" in port
    assert node.dockerd.in_netns("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"

    ping = node.dockerd.in_netns("busybox", "ping", "-c", "1", "-W", "3", ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    page = node.dockerd.in_netns("timeout", "5", "busybox", "wget", "-qO-", f"http://{ip}:8080/")
    assert page.stdout.strip() == "hello-from-web", page.stderr

    client = docker.DockerClient(base_url=node.dockerd.base_url)
    try:
        inside = client.containers.get(status["containerStatuses"][1]["containerID"].removeprefix("docker://"))
        resolv = inside.exec_run(["cat", "/etc/resolv.conf"]).output.decode()
        assert resolv.startswith("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local")
        assert "corp.internal" in resolv and "options ndots:5" in resolv
        hosts = inside.exec_run(["cat", "/etc/hosts"]).output.decode()
        assert f"{ip}\tweb\n" in hosts
        env = inside.exec_run(["env"]).output.decode()
        assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env and "KUBERNETES_PORT_443_TCP_PORT=443" in env
        route = inside.exec_run(["ip", "route"]).output.decode()
        assert "default via 10.244.7.1 dev eth0" in route
    finally:
        client.close()

    # the client container reached the server over the pod's localhost; its logs say so, via the kubelet's server
    deadline = time.monotonic() + WAIT_SECONDS
    async with aiohttp.ClientSession() as http:
        text = ""
        while time.monotonic() < deadline and "hello-from-web" not in text:
            async with http.get(f"{server_url(node)}/containerLogs/default/web/client") as resp:
                assert resp.status == 200
                text = await resp.text()
            await asyncio.sleep(0.5)
        assert "hello-from-web\nfetched" in text
        async with http.get(f"{server_url(node)}/containerLogs/default/web/client", params={"tailLines": "1"}) as resp:
            assert (await resp.text()).splitlines() == ["fetched"]
        async with http.get(
            f"{server_url(node)}/containerLogs/default/web/client", params={"tailLines": "1", "timestamps": "true"}
        ) as resp:
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z fetched$", (await resp.text()).strip())
        async with http.get(f"{server_url(node)}/containerLogs/default/nope/client") as resp:
            assert resp.status == 404 and "nope" in await resp.text()
        async with http.get(f"{server_url(node)}/containerLogs/default/web/nope") as resp:
            assert resp.status == 404 and 'container "nope" not found' in await resp.text()
        async with http.get(f"{server_url(node)}/containerLogs/default/web/client", params={"tailLines": "x"}) as resp:
            assert resp.status == 400 and "tailLines" in await resp.text()
        # follow streams lines as they come; read a few and hang up
        async with http.get(
            f"{server_url(node)}/containerLogs/default/web/client", params={"follow": "true", "tailLines": "0"}
        ) as resp:
            first = await asyncio.wait_for(resp.content.readline(), WAIT_SECONDS)
            assert first in (b"hello-from-web\n", b"fetched\n")

    # deletion: stop, tear down, release, remove, finish in the API
    deleting = {
        **pod,
        "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 2},
    }
    node.workers.update(deleting)
    await node.wait_deleted("web")
    assert node.api.deleted == [("default", "web", 0)]
    assert await node.runtime.list_containers({"io.kubernetes.pod.uid": "uid-web"}) == []
    assert veth_name("uid-web") not in node.dockerd.in_netns("ip", "-o", "link").stdout
    assert node.network.pod_ip("uid-web") is None


async def test_exited_container_restarts_with_count_and_previous_logs(node: Node) -> None:
    pod = make_pod("crash", "uid-crash", busybox("app", "echo attempt-$(date +%s%N); exit 3"))
    status = await node.run_until(pod, lambda s: s["containerStatuses"][0]["restartCount"] >= 2)
    app = status["containerStatuses"][0]
    assert app["lastState"]["terminated"]["exitCode"] == 3
    assert app["lastState"]["terminated"]["reason"] == "Error"
    assert status["phase"] == "Running"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server_url(node)}/containerLogs/default/crash/app", params={"previous": "true"}) as resp:
            assert resp.status == 200
            assert (await resp.text()).startswith("attempt-")


async def test_on_failure_pod_that_succeeds_completes(node: Node) -> None:
    pod = make_pod("job", "uid-job", busybox("app", "echo done"), restart="OnFailure")
    status = await node.run_until(pod, lambda s: s.get("phase") == "Succeeded")
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert status["containerStatuses"][0]["restartCount"] == 0


async def test_routes_to_other_nodes_follow_the_node_list(node: Node) -> None:
    setup = [
        ["ip", "link", "add", "pkt-n0", "type", "veth", "peer", "name", "pkt-n1"],
        ["ip", "addr", "add", "192.168.56.11/24", "dev", "pkt-n0"],
        ["ip", "link", "set", "pkt-n0", "up"],
        ["ip", "link", "set", "pkt-n1", "up"],
    ]
    for command in setup:
        assert node.dockerd.in_netns(*command).returncode == 0
    try:
        await node.network.sync_routes({"10.244.8.0/24": "192.168.56.12", "10.244.9.0/24": "192.168.56.13"})
        routes = node.dockerd.in_netns("ip", "-4", "route").stdout
        assert "10.244.8.0/24 via 192.168.56.12 dev pkt-n0" in routes
        assert "10.244.9.0/24 via 192.168.56.13 dev pkt-n0" in routes
        await node.network.sync_routes({"10.244.8.0/24": "192.168.56.14"})
        routes = node.dockerd.in_netns("ip", "-4", "route").stdout
        assert "10.244.8.0/24 via 192.168.56.14 dev pkt-n0" in routes
        assert "10.244.9.0/24" not in routes
        assert "10.244.7.0/24 dev cbr0" in routes  # the bridge's own route is not ours to remove
    finally:
        node.dockerd.in_netns("ip", "link", "del", "pkt-n0")


async def test_exec_readiness_probe_flips_ready(node: Node) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
    app = busybox("app", "sleep 2; touch /tmp/ready; exec sleep 3600") | {"readinessProbe": probe}
    pod = make_pod("probed", "uid-probed", app)
    status = await node.run_until(pod, lambda s: s.get("containerStatuses", [{}])[0].get("ready") is True)
    assert {x["type"]: x["status"] for x in status["conditions"]}["Ready"] == "True"
    seen = [s["containerStatuses"][0] for s in node.api.statuses if s.get("containerStatuses")]
    assert any("running" in s["state"] and not s["ready"] for s in seen)  # running but not yet ready, first


async def test_containers_share_an_empty_dir(node: Node) -> None:
    mount = [{"name": "shared", "mountPath": "/shared"}]
    writer = busybox("writer", "echo from-writer > /shared/note; exec sleep 3600") | {"volumeMounts": mount}
    reader = busybox("reader", "while ! cat /shared/note; do sleep 0.2; done; exec sleep 3600") | {
        "volumeMounts": mount
    }
    pod = make_pod("shared", "uid-shared", writer, reader)
    pod["spec"]["volumes"] = [{"name": "shared", "emptyDir": {}}]
    await node.run_until(pod, all_running)
    deadline = time.monotonic() + WAIT_SECONDS
    async with aiohttp.ClientSession() as http:
        text = ""
        while "from-writer" not in text and time.monotonic() < deadline:
            async with http.get(f"{server_url(node)}/containerLogs/default/shared/reader") as resp:
                text = await resp.text()
            await asyncio.sleep(0.3)
    assert text.strip() == "from-writer"


async def test_missing_executable_is_a_start_error(node: Node) -> None:
    broken = {"name": "app", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent", "command": ["/no/such/bin"]}
    failed = await node.run_until(
        make_pod("nobin", "uid-nobin", broken, restart="Never"), lambda s: s["phase"] == "Failed"
    )
    terminated = failed["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "StartError" and terminated["exitCode"] != 0

    def backing_off(status: dict) -> bool:
        app = status["containerStatuses"][0]
        return app["restartCount"] >= 1 and app["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"

    looping = await node.run_until(make_pod("nobin2", "uid-nobin2", broken), backing_off)
    assert looping["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "StartError"


async def test_limits_reach_docker_and_an_oom_kill_is_reported(node: Node) -> None:
    limited = busybox("app", "exec sleep 3600") | {
        "resources": {"requests": {"cpu": "250m", "memory": "16Mi"}, "limits": {"cpu": "500m", "memory": "32Mi"}}
    }
    await node.run_until(make_pod("limited", "uid-limited", limited), all_running)
    container = node.runtime.client.containers.list(filters={"label": "io.kubernetes.pod.uid=uid-limited"})
    host_config = next(c for c in container if c.labels["io.kubernetes.docker.type"] == "container").attrs["HostConfig"]
    got = {k: host_config[k] for k in ("Memory", "MemorySwap", "CpuQuota", "CpuPeriod", "CpuShares")}
    assert got == {
        "Memory": 32 * 2**20,
        "MemorySwap": 32 * 2**20,
        "CpuQuota": 50_000,
        "CpuPeriod": 100_000,
        "CpuShares": 256,
    }
    hog = busybox("hog", 'x=$(head -c 200m /dev/zero | tr "\\0" a); echo "survived ${#x}"') | {
        "resources": {"limits": {"memory": "32Mi"}}
    }
    failed = await node.run_until(make_pod("hog", "uid-hog", hog, restart="Never"), lambda s: s["phase"] == "Failed")
    terminated = failed["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


async def test_stats_summary_shows_real_cpu_and_memory(node: Node) -> None:
    burner = busybox("burner", "x=$(head -c 20m /dev/zero | tr '\\0' a); while true; do :; done") | {
        "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}}
    }
    await node.run_until(make_pod("busy", "uid-busy", burner), all_running)
    deadline = time.monotonic() + WAIT_SECONDS
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{server_url(node)}/stats/summary") as resp:
                assert resp.status == 200
                summary = await resp.json()
            pod = next(p for p in summary["pods"] if p["podRef"]["uid"] == "uid-busy")
            container = pod["containers"][0]
            if container["memory"]["workingSetBytes"] >= 20 * 2**20 and "usageNanoCores" in container["cpu"]:
                break
            assert time.monotonic() < deadline, f"no usage in {summary}"
            await asyncio.sleep(0.5)
    assert container["name"] == "burner" and container["cpu"]["usageCoreNanoSeconds"] > 0
    assert 0 < container["cpu"]["usageNanoCores"] <= 300_000_000  # held near its 200m limit
    assert pod["memory"]["workingSetBytes"] == container["memory"]["workingSetBytes"]


async def test_sandbox_killed_again_and_again_leaves_no_pile_and_serves_on_its_new_address(node: Node) -> None:
    """A node reboot kills the sandbox; each time the pod comes back, and only the previous sandbox is kept."""
    pod = make_pod("phoenix", "uid-phoenix", busybox("server", SERVE))
    await node.run_until(pod, all_running)
    client = docker.DockerClient(base_url=node.dockerd.base_url)
    try:
        for kill in range(1, 4):
            mine = [f"{LABEL_POD_UID}=uid-phoenix", f"{LABEL_TYPE}={TYPE_SANDBOX}"]
            (sandbox,) = client.containers.list(filters={"label": mine})
            sandbox.kill()
            status = await node.run_until(pod, partial(restarted, times=kill))
        everything = client.containers.list(all=True, filters={"label": f"{LABEL_POD_UID}=uid-phoenix"})
        kinds = sorted((c.labels[LABEL_TYPE], c.status) for c in everything)
        expected = [(kind, state) for kind in (TYPE_CONTAINER, TYPE_SANDBOX) for state in ("exited", "running")]
        assert kinds == expected
    finally:
        client.close()
    ip = status["podIP"]
    assert node.network.pod_ip("uid-phoenix") == ip
    assert node.network.allocated_pods() >= {"uid-phoenix"}
    page = node.dockerd.in_netns("timeout", "5", "busybox", "wget", "-qO-", f"http://{ip}:8080/")
    assert page.stdout.strip() == "hello-from-phoenix", page.stderr
