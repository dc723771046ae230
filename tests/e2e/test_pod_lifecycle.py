"""Pod lifecycle on the local cluster, as Kubernetes users see it (issue 5).

Probes decide traffic and restarts, crashes back off, deletion is graceful,
memory limits hold and are reported, env/DNS/ConfigMap volumes reach the
container, images follow imagePullPolicy, and a killed kubelet disturbs
nothing. Every object carries the label `e2e=pod-lifecycle` and is deleted
at the end of the module; every loop is bounded.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import get_json, pod_exec, wait_for

pytestmark = pytest.mark.e2e

LABEL = {"e2e": "pod-lifecycle"}
SELECTOR = "e2e=pod-lifecycle"
CLIENT = "lc-client"

# A busybox HTTP server answering with its pod name; on SIGTERM it says so and keeps serving for 8 s.
GRACEFUL_SERVER = """mkdir -p /www && echo "$POD_NAME" > /www/index.html
httpd -f -p 8080 -h /www & server=$!
trap 'echo "SIGTERM received, serving 8 more seconds"; sleep 8; kill $server; exit 0' TERM
echo "serving $POD_NAME"
while true; do sleep 1 & wait $!; done
"""
POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def apply(cluster: Any, tmp_path: Path, *objects: dict[str, Any]) -> None:
    """kubectl apply of these objects (labelled for cleanup)."""
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(LABEL)
    manifest = tmp_path / f"objects-{time.monotonic_ns()}.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    cluster.kubectl("apply", "-f", str(manifest))


def pod(name: str, *containers: dict[str, Any], labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": list(containers), **spec},
    }


def service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def web_container(**fields: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "image": "busybox",
        "command": ["sh", "-c", GRACEFUL_SERVER],
        "env": [POD_NAME_ENV],
        "ports": [{"name": "http", "containerPort": 8080}],
        **fields,
    }


def phase(cluster: Any, name: str) -> str:
    return str(get_json(cluster, "pod", name).get("status", {}).get("phase", ""))


def container_status(cluster: Any, name: str) -> dict[str, Any]:
    statuses = get_json(cluster, "pod", name).get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def is_ready(cluster: Any, name: str) -> bool:
    conditions = get_json(cluster, "pod", name).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def endpoint_ips(cluster: Any, name: str) -> set[str]:
    endpoints = get_json(cluster, "endpoints", name)
    return {a["ip"] for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []}


def pod_ip(cluster: Any, name: str) -> str:
    return str(get_json(cluster, "pod", name)["status"]["podIP"])


def wait_running(cluster: Any, name: str, ready: bool = False) -> None:
    wait_for(
        f"pod {name} running{' and ready' if ready else ''}",
        lambda: phase(cluster, name) == "Running" and (not ready or is_ready(cluster, name)),
    )


def finished_logs(cluster: Any, name: str) -> str:
    wait_for(f"pod {name} to succeed", lambda: phase(cluster, name) == "Succeeded", timeout=90)
    return str(cluster.kubectl("logs", name))


def watch_waiting_reasons(cluster: Any, name: str, wanted: set[str], timeout: float) -> dict[str, str]:
    """Waiting reasons of the pod's first container in the order a watch shows them (reason -> message)."""
    waiting = ".status.containerStatuses[0].state.waiting"
    template = f'{{{waiting}.reason}}{{"|"}}{{{waiting}.message}}{{"\\n"}}'
    argv = [
        "kubectl",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "get",
        "pod",
        name,
        "--watch",
        "-o",
        f"jsonpath={template}",
    ]
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as watch:
        assert watch.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(watch.stdout, selectors.EVENT_READ)
            while not wanted <= seen.keys() and time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                line = watch.stdout.readline()
                if not line:
                    break
                reason, _, message = line.rstrip("\n").partition("|")
                reason = reason.strip()  # kubectl's tab writer pads columns
                if reason:
                    seen.setdefault(reason, message)
        watch.kill()
    assert wanted <= seen.keys(), f"a watch of pod {name} showed waiting reasons {seen}, not all of {wanted}"
    return seen


class Requests:
    """HTTP requests from the client pod to a URL, one every 0.2 s, in a background thread; bounded in count."""

    def __init__(self, cluster: Any, url: str, count: int):
        script = f"for i in $(seq {count}); do timeout 3 wget -qO- {url} || echo FAILED; sleep 0.2; done"
        self._thread = threading.Thread(target=self._run, args=(cluster, script), daemon=True)
        self.answers: list[str] = []
        self.error = ""

    def _run(self, cluster: Any, script: str) -> None:
        try:
            self.answers = pod_exec(cluster, CLIENT, ["sh", "-c", script]).split()
        except AssertionError as err:
            self.error = str(err)

    def __enter__(self) -> Requests:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=180)


@pytest.fixture(scope="module")
def objects(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A client pod for requests through Services; everything labelled e2e=pod-lifecycle is deleted after."""
    tmp = tmp_path_factory.mktemp("pod-lifecycle")
    apply(cluster, tmp, pod(CLIENT, {"name": "shell", "image": "busybox", "command": ["sleep", "3600"]}))
    try:
        wait_running(cluster, CLIENT)
        yield tmp
    finally:
        cluster.kubectl("delete", "pods,services,configmaps", "-l", SELECTOR, "--wait=false", "--ignore-not-found")
        wait_for(
            "the test's pods to be gone", lambda: not get_json(cluster, "pods", "-l", SELECTOR)["items"], timeout=120
        )


def test_failing_readiness_takes_the_pod_out_of_endpoints_and_traffic(cluster: Any, objects: Path) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
    apply(
        cluster,
        objects,
        service("lc-ready", "lc-ready"),
        *(
            pod(n, web_container(readinessProbe=probe), labels={"app": "lc-ready"})
            for n in ("lc-ready-a", "lc-ready-b")
        ),
    )
    for name in ("lc-ready-a", "lc-ready-b"):
        wait_running(cluster, name)
        assert not is_ready(cluster, name), "ready before its readiness file exists"
        pod_exec(cluster, name, ["touch", "/tmp/ready"])
    ips = {name: pod_ip(cluster, name) for name in ("lc-ready-a", "lc-ready-b")}
    wait_for("both pods in the Endpoints", lambda: endpoint_ips(cluster, "lc-ready") == set(ips.values()))
    vip = get_json(cluster, "service", "lc-ready")["spec"]["clusterIP"]

    pod_exec(cluster, "lc-ready-a", ["rm", "/tmp/ready"])
    wait_for("lc-ready-a to turn unready", lambda: not is_ready(cluster, "lc-ready-a"), timeout=30)
    wait_for("lc-ready-a out of the Endpoints", lambda: endpoint_ips(cluster, "lc-ready") == {ips["lc-ready-b"]})
    time.sleep(2)  # kproxy's next sync
    answers = pod_exec(
        cluster, CLIENT, ["sh", "-c", f"for i in $(seq 20); do timeout 3 wget -qO- http://{vip}/ || echo FAILED; done"]
    ).split()
    assert answers == ["lc-ready-b"] * 20, answers
    assert get_json(cluster, "pod", "lc-ready-a")["status"]["phase"] == "Running"
    assert container_status(cluster, "lc-ready-a")["restartCount"] == 0, "readiness must not restart"

    pod_exec(cluster, "lc-ready-a", ["touch", "/tmp/ready"])
    wait_for("lc-ready-a back in the Endpoints", lambda: endpoint_ips(cluster, "lc-ready") == set(ips.values()))


def test_failing_liveness_restarts_the_container(cluster: Any, objects: Path) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}
    container = {
        "name": "app",
        "image": "busybox",
        "command": ["sh", "-c", "touch /tmp/alive; while true; do sleep 1; done"],
        "livenessProbe": probe,
    }
    apply(cluster, objects, pod("lc-live", container))
    wait_running(cluster, "lc-live")
    first_id = container_status(cluster, "lc-live")["containerID"]
    pod_exec(cluster, "lc-live", ["rm", "/tmp/alive"])
    status = wait_for(
        "a restart after liveness failures",
        lambda: (
            (s := container_status(cluster, "lc-live")).get("restartCount", 0) >= 1 and "running" in s["state"] and s
        ),
        timeout=60,
    )
    assert status["containerID"] != first_id
    assert status["lastState"]["terminated"]["containerID"] == first_id
    events = get_json(cluster, "events", "--field-selector", "involvedObject.name=lc-live")["items"]
    reasons = {e["reason"] for e in events}
    assert {"Unhealthy", "Killing"} <= reasons, reasons
    unhealthy = next(e for e in events if e["reason"] == "Unhealthy")
    assert unhealthy["message"].startswith("Liveness probe failed"), unhealthy["message"]
    # The new container made its file again, so it stays up.
    time.sleep(4)
    assert container_status(cluster, "lc-live")["restartCount"] == status["restartCount"]


def test_crashing_container_backs_off_and_restart_count_grows(cluster: Any, objects: Path) -> None:
    container = {"name": "app", "image": "busybox", "command": ["sh", "-c", "echo crashing; exit 3"]}
    apply(cluster, objects, pod("lc-crash", container))

    def restarted_twice() -> bool:
        return int(container_status(cluster, "lc-crash").get("restartCount", 0)) >= 2

    wait_for("two restarts", restarted_twice, timeout=120, interval=0.5)
    status = wait_for(
        "CrashLoopBackOff",
        lambda: (
            (s := container_status(cluster, "lc-crash")).get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
            and s
        ),
        timeout=60,
        interval=0.5,
    )
    assert "back-off" in status["state"]["waiting"]["message"], status
    terminated = status["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error"), terminated
    assert phase(cluster, "lc-crash") == "Running"
    assert status["restartCount"] >= 2
    assert "crashing" in cluster.kubectl("logs", "lc-crash", "--previous")


def test_graceful_deletion_loses_no_request(cluster: Any, objects: Path) -> None:
    names = ("lc-grace-a", "lc-grace-b")
    apply(
        cluster,
        objects,
        service("lc-grace", "lc-grace"),
        *(pod(n, web_container(), labels={"app": "lc-grace"}, terminationGracePeriodSeconds=15) for n in names),
    )
    for name in names:
        wait_running(cluster, name, ready=True)
    ips = {pod_ip(cluster, n) for n in names}
    wait_for("both pods in the Endpoints", lambda: endpoint_ips(cluster, "lc-grace") == ips)
    vip = get_json(cluster, "service", "lc-grace")["spec"]["clusterIP"]
    time.sleep(2)  # kproxy's next sync
    with Requests(cluster, f"http://{vip}/", 70) as load:
        time.sleep(2)
        cluster.kubectl("delete", "pod", "lc-grace-a", "--wait=false")
        logs = wait_for(
            "lc-grace-a to log SIGTERM",
            lambda: "SIGTERM received" in (text := cluster.kubectl("logs", "lc-grace-a")) and text,
            timeout=8,
            interval=0.3,
        )
        wait_for(
            "lc-grace-a out of the Endpoints",
            lambda: (
                pod_ip(cluster, "lc-grace-b") in endpoint_ips(cluster, "lc-grace")
                and len(endpoint_ips(cluster, "lc-grace")) == 1
            ),
            timeout=8,
            interval=0.3,
        )
    assert not load.error, load.error
    assert len(load.answers) == 70, load.answers
    assert "FAILED" not in load.answers, f"{load.answers.count('FAILED')} of 70 requests failed"
    assert "lc-grace-a" in load.answers and load.answers[-1] == "lc-grace-b", load.answers
    assert "serving lc-grace-a" in logs
    wait_for("lc-grace-a to be gone", lambda: "lc-grace-a" not in cluster.kubectl("get", "pods", "-o", "name"))


def test_memory_limit_oomkills_and_is_reported(cluster: Any, objects: Path) -> None:
    container = {
        "name": "hog",
        "image": "busybox",
        # the shell keeps the command substitution's output in its own memory: 200 MiB against a 32 MiB limit
        "command": ["sh", "-c", 'x=$(head -c 200m /dev/zero | tr "\\0" a); echo "survived ${#x}"'],
        "resources": {"limits": {"memory": "32Mi", "cpu": "500m"}},
    }
    apply(cluster, objects, pod("lc-oom", container, restartPolicy="Never"))
    wait_for("lc-oom to fail", lambda: phase(cluster, "lc-oom") == "Failed", timeout=90)
    terminated = container_status(cluster, "lc-oom")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137), terminated
    node = get_json(cluster, "pod", "lc-oom")["spec"]["nodeName"]
    labels = ["io.kubernetes.pod.name=lc-oom", "io.kubernetes.container.name=hog"]
    (container,) = cluster.docker(node).containers.list(all=True, filters={"label": labels})
    host_config = container.attrs["HostConfig"]
    limits = {k: host_config[k] for k in ("Memory", "MemorySwap", "CpuQuota", "CpuPeriod")}
    assert limits == {"Memory": 32 * 2**20, "MemorySwap": 32 * 2**20, "CpuQuota": 50_000, "CpuPeriod": 100_000}


def test_env_precedence_and_expansion(cluster: Any, objects: Path) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "lc-env"},
        "data": {"A": "from-configmap", "B": "cm-b", "KUBERNETES_SERVICE_HOST": "shadowed"},
    }
    container = {
        "name": "app",
        "image": "busybox",
        "command": ["sh", "-c", "env | sort"],
        "envFrom": [{"configMapRef": {"name": "lc-env"}}, {"prefix": "P_", "configMapRef": {"name": "lc-env"}}],
        "env": [
            {"name": "A", "value": "explicit"},
            {"name": "C", "value": "$(A)-$(B)-$(POD)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "D", "value": "$$(A)"},
            {"name": "E", "value": "$(NOPE)"},
            {"name": "F", "value": "$(POD)"},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ],
        "resources": {"limits": {"memory": "64Mi"}},
    }
    apply(cluster, objects, config_map, pod("lc-env", container, restartPolicy="Never"))
    env = dict(line.split("=", 1) for line in finished_logs(cluster, "lc-env").splitlines() if "=" in line)
    assert env["A"] == "explicit"  # env beats envFrom
    assert env["B"] == "cm-b" and env["P_A"] == "from-configmap"
    assert env["KUBERNETES_SERVICE_HOST"] == "shadowed"  # envFrom beats service links
    assert env["C"] == "explicit-cm-b-$(POD)"  # only names defined earlier expand
    assert env["D"] == "$(A)" and env["E"] == "$(NOPE)"
    assert env["F"] == "lc-env"
    assert env["MEM_MI"] == "64"


def test_dns_policy_default_and_none(cluster: Any, objects: Path) -> None:
    cat = {"name": "app", "image": "busybox", "command": ["cat", "/etc/resolv.conf"]}
    dns_config = {
        "nameservers": ["192.0.2.53"],
        "searches": ["lc.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    apply(
        cluster,
        objects,
        pod("lc-dns-default", cat, restartPolicy="Never", dnsPolicy="Default"),
        pod("lc-dns-none", cat, restartPolicy="Never", dnsPolicy="None", dnsConfig=dns_config),
    )
    default = finished_logs(cluster, "lc-dns-default")
    node = get_json(cluster, "pod", "lc-dns-default")["spec"]["nodeName"]
    node_resolv = Path(cluster.config.resolv_conf(node)).read_text()

    def lines(text: str, key: str) -> list[str]:
        return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(key + " ")]

    assert lines(default, "nameserver") == lines(node_resolv, "nameserver") and "10.96.0.10" not in default
    assert "svc.cluster.local" not in default
    none = finished_logs(cluster, "lc-dns-none")
    assert lines(none, "nameserver") == ["192.0.2.53"]
    assert lines(none, "search") == ["lc.example"]
    assert sorted(" ".join(lines(none, "options")).split()) == ["edns0", "ndots:2"]


def test_configmap_volume(cluster: Any, objects: Path) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "lc-files"},
        "data": {"app.conf": "listen 8080\nworkers 2\n", "other": "x"},
    }
    container = {
        "name": "app",
        "image": "busybox",
        "command": ["sh", "-c", "cat /config/app.conf; ls /config; cat /items/renamed/conf; ls /items"],
        "volumeMounts": [{"name": "all", "mountPath": "/config"}, {"name": "some", "mountPath": "/items"}],
    }
    volumes = [
        {"name": "all", "configMap": {"name": "lc-files"}},
        {"name": "some", "configMap": {"name": "lc-files", "items": [{"key": "app.conf", "path": "renamed/conf"}]}},
    ]
    apply(cluster, objects, config_map, pod("lc-cm-volume", container, restartPolicy="Never", volumes=volumes))
    out = finished_logs(cluster, "lc-cm-volume").split("\n")
    assert out[:2] == ["listen 8080", "workers 2"]
    assert out[2:4] == ["app.conf", "other"]
    assert out[4:6] == ["listen 8080", "workers 2"]
    assert out[6] == "renamed"


def test_missing_image_is_err_image_pull_then_image_pull_back_off(cluster: Any, objects: Path) -> None:
    container = {"name": "app", "image": "pocketkube/no-such-image:1.0", "command": ["true"]}
    apply(cluster, objects, pod("lc-pull", container))
    seen = watch_waiting_reasons(cluster, "lc-pull", {"ErrImagePull", "ImagePullBackOff"}, timeout=60)
    assert list(seen)[:2] == ["ErrImagePull", "ImagePullBackOff"], seen
    assert "pocketkube/no-such-image:1.0" in seen["ErrImagePull"], seen
    assert seen["ImagePullBackOff"].startswith('Back-off pulling image "pocketkube/no-such-image:1.0"'), seen
    assert phase(cluster, "lc-pull") == "Pending"


def test_kubelet_stats_summary_reports_pod_usage(cluster: Any, objects: Path) -> None:
    client = get_json(cluster, "pod", CLIENT)
    node = client["spec"]["nodeName"]

    def client_stats() -> dict[str, Any] | None:
        summary = yaml.safe_load(cluster.kubelet_get(node, "/stats/summary"))  # JSON is YAML
        assert summary["node"]["nodeName"] == node
        return next((p for p in summary["pods"] if p["podRef"]["name"] == CLIENT), None)

    stats = wait_for("the client pod in the kubelet's summary", client_stats, timeout=30)
    assert stats["podRef"]["uid"] == client["metadata"]["uid"]
    (container,) = stats["containers"]
    assert container["name"] == "shell"
    assert container["cpu"]["usageCoreNanoSeconds"] > 0 and container["memory"]["workingSetBytes"] > 0


def _kubelet_pid(cluster: Any, node: str) -> int:
    text = cluster.config.pid_file(node, "kubelet").read_text().split()
    return int(text[0])


def test_killed_kubelet_disturbs_no_container_and_no_request(cluster: Any, objects: Path) -> None:
    names = ("lc-steady-a", "lc-steady-b")
    on_worker1 = {"kubernetes.io/hostname": "worker1"}
    apply(
        cluster,
        objects,
        service("lc-steady", "lc-steady"),
        *(pod(n, web_container(), labels={"app": "lc-steady"}, nodeSelector=on_worker1) for n in names),
    )
    for name in names:
        wait_running(cluster, name, ready=True)
    wait_for("both in the Endpoints", lambda: len(endpoint_ips(cluster, "lc-steady")) == 2)
    before = {n: container_status(cluster, n)["containerID"] for n in names}
    resource_versions = {n: get_json(cluster, "pod", n)["metadata"]["resourceVersion"] for n in names}
    vip = get_json(cluster, "service", "lc-steady")["spec"]["clusterIP"]
    time.sleep(2)  # kproxy's next sync
    old_pid = _kubelet_pid(cluster, "worker1")
    with Requests(cluster, f"http://{vip}/", 100) as load:
        time.sleep(2)
        os.kill(old_pid, signal.SIGKILL)
        wait_for("the kubelet to die", lambda: not Path(f"/proc/{old_pid}").exists() or _zombie(old_pid), timeout=10)
        up = subprocess.run([sys.executable, "-m", "pocket.cli", "up"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
    new_pid = _kubelet_pid(cluster, "worker1")
    assert new_pid != old_pid and Path(f"/proc/{new_pid}").exists()
    wait_for("the new kubelet healthy", lambda: cluster.kubelet_get("worker1", "/healthz") == b"ok", timeout=30)
    assert not load.error, load.error
    assert len(load.answers) == 100 and "FAILED" not in load.answers, load.answers
    assert set(load.answers) == set(names)
    time.sleep(3)  # a few syncs of the new kubelet
    for name in names:
        status = container_status(cluster, name)
        assert (status["containerID"], status["restartCount"]) == (before[name], 0), status
    after = {n: get_json(cluster, "pod", n)["metadata"]["resourceVersion"] for n in names}
    assert after == resource_versions, "the restarted kubelet rewrote an unchanged pod status"


def _zombie(pid: int) -> bool:
    try:
        return re.search(r"\) Z ", Path(f"/proc/{pid}/stat").read_text()) is not None
    except FileNotFoundError:
        return True
