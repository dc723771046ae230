"""`python -m kubelet` as the bring-up runs it: inside a node namespace with its own dockerd, against a real API
server and etcd (all inside the same `pkt-kubelet-*` namespace), driven with the real kubectl.

Covers the CLI wiring the other tests cannot: registration, waiting for the podCIDR, the pod informer, status
writes, `kubectl logs` through the apiserver to the kubelet's server, graceful deletion, and a restarted kubelet
adopting the pod it left running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from pocket.images import import_images
from tests.kubelet.dockerd import Dockerd, start_dockerd, stop_dockerd

pytestmark = pytest.mark.root

NODE_IP = "192.168.56.11"
API = "http://127.0.0.1:6443"
WAIT_SECONDS = 60.0


class NodeProcesses:
    def __init__(self, dockerd: Dockerd):
        self.dockerd = dockerd
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *command: str) -> None:
        log = open(self.dockerd.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.processes[name] = subprocess.Popen(
            ["nsenter", f"--net={self.dockerd.netns_path}", *command], stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, name: str) -> int:
        """SIGTERM (SIGKILL if that is ignored for 10 s); the exit code."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(10)

    def start_kubelet(self) -> None:
        w = self.dockerd.workdir
        self.spawn(
            "kubelet", sys.executable, "-m", "kubelet", "-v",
            "--api-server", API, "--node-name", "worker1", "--node-ip", NODE_IP,
            "--docker-host", self.dockerd.base_url, "--root-dir", str(w / "kubelet"),
            "--cluster-dns", "10.96.0.10", "--cluster-domain", "cluster.local",
            "--resolv-conf", str(w / "resolv.conf"), "--pod-infra-image", "pocketkube/pause:latest",
            "--port", "10250", "--node-labels", "tier=test", "--register-with-taints", "",
            "--heartbeat-interval", "1", "--backoff-initial", "1", "--backoff-max", "2",
        )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.dockerd.workdir / f"{name}.log").read_text(errors="replace")[-3000:]

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", f"--net={self.dockerd.netns_path}", "/usr/bin/kubectl", "--server", API, *args],
            capture_output=True, text=True, timeout=60, input=stdin,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}\nkubelet log:\n{self.log('kubelet')}")
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def eventually(self, check: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\nkubelet log:\n{self.log('kubelet')}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcesses]:
    daemon = start_dockerd()
    procs = NodeProcesses(daemon)
    try:
        client = docker.DockerClient(base_url=daemon.base_url)
        import_images(client)
        client.close()
        for command in (
            ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "pkt-peer"],
            ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "link", "set", "pkt-peer", "up"],
            ["ip", "link", "set", "lo", "up"],
        ):
            result = daemon.in_netns(*command)
            assert result.returncode == 0, result.stderr
        (daemon.workdir / "resolv.conf").write_text("nameserver 192.168.56.1\nsearch corp.internal\n")
        procs.spawn(
            "etcd", "etcd", "--name", "pkt", "--data-dir", str(daemon.workdir / "etcd"),
            "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "pkt=http://127.0.0.1:2380",
        )  # fmt: skip
        procs.spawn(
            "apiserver", sys.executable, "-m", "control.apiserver", "--etcd-servers", "http://127.0.0.1:2379",
            "--bind-address", "127.0.0.1", "--port", "6443", "--advertise-address", NODE_IP,
        )  # fmt: skip
        procs.eventually(lambda: procs.kubectl("get", "--raw", "/healthz", check=False).returncode == 0, "apiserver")
        procs.start_kubelet()
        yield procs
    finally:
        for name in list(procs.processes):
            procs.stop(name)
        stop_dockerd(daemon)


POD = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: worker1
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: talker
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while true; do echo tick-$MY_POD_IP; sleep 1; done"]
    env:
    - name: MY_POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
"""


def test_kubelet_runs_pods_from_the_api(node: NodeProcesses) -> None:
    registered = node.eventually(lambda: node.kubectl("get", "node", "worker1", check=False).returncode == 0, "node")
    assert registered
    node_obj = node.get("node", "worker1")
    assert node_obj["metadata"]["labels"]["tier"] == "test"
    ready = {c["type"]: c["status"] for c in node_obj["status"]["conditions"]}["Ready"]
    assert ready == "False"  # no podCIDR yet, so no pod network
    node.kubectl("patch", "node", "worker1", "-p", '{"spec":{"podCIDR":"10.244.1.0/24"}}')

    def node_ready() -> bool:
        conditions = node.get("node", "worker1")["status"]["conditions"]
        return {c["type"]: c["status"] for c in conditions}["Ready"] == "True"

    node.eventually(node_ready, "node Ready")
    lease = node.get("lease", "worker1", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "worker1"

    node.kubectl("apply", "-f", "-", stdin=POD)

    def running() -> Any:
        pod = node.get("pod", "web")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return pod if len(statuses) == 2 and all(s["ready"] for s in statuses) else None

    pod = node.eventually(running, "pod web running")
    table = node.kubectl("get", "pod", "web", "--no-headers").stdout.split()
    assert table[1:4] == ["2/2", "Running", "0"]
    ip = pod["status"]["podIP"]
    assert ip.startswith("10.244.1.") and pod["status"]["hostIP"] == NODE_IP
    assert pod["status"]["phase"] == "Running"
    page = node.dockerd.in_netns("timeout", "5", "busybox", "wget", "-qO-", f"http://{ip}:8080/")
    assert page.stdout.strip() == "hello-web"

    logs = node.eventually(lambda: node.kubectl("logs", "web", "-c", "talker", check=False).stdout, "logs")
    assert f"tick-{ip}" in logs

    # a restarted kubelet adopts the running pod: same containers, still Running
    before = {s["name"]: s["containerID"] for s in pod["status"]["containerStatuses"]}
    assert node.stop("kubelet") == 0  # a clean stop on SIGTERM
    node.start_kubelet()
    # make the new kubelet act: kill one container; it must restart that one and leave the other alone
    client = docker.DockerClient(base_url=node.dockerd.base_url)
    try:
        client.containers.get(before["talker"].removeprefix("docker://")).kill()
    finally:
        client.close()

    def talker_restarted() -> Any:
        pod = node.get("pod", "web")
        talker = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "talker")
        return pod if talker["restartCount"] == 1 and "running" in talker["state"] else None

    synced = node.eventually(talker_restarted, "the new kubelet to restart the killed container")
    after = {s["name"]: s["containerID"] for s in synced["status"]["containerStatuses"]}
    assert after["server"] == before["server"] and after["talker"] != before["talker"]
    assert synced["status"]["phase"] == "Running" and synced["status"]["podIP"] == ip

    node.kubectl("delete", "pod", "web", "--wait=true", "--timeout=60s")
    assert node.kubectl("get", "pod", "web", check=False).returncode != 0
    client = docker.DockerClient(base_url=node.dockerd.base_url)
    try:
        assert client.containers.list(all=True) == []
    finally:
        client.close()
    assert not (node.dockerd.workdir / "kubelet" / "pods" / pod["metadata"]["uid"]).exists()
