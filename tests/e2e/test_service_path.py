"""The thin end-to-end path: a Deployment behind a Service, reached by VIP and by name.

The backends run on the workers; the client pod runs on the control-plane
node, so every request crosses nodes through kproxy's rules, and every name
is resolved by kdns through the kube-dns Service.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import MANIFESTS, get_json, pod_exec, pod_exec_status, running_pods, wait_for

pytestmark = pytest.mark.e2e

REQUESTS = 30


@pytest.fixture(scope="module")
def web(cluster: Any) -> Iterator[dict[str, Any]]:
    """Apply the web Deployment + Service and the client pod; delete them afterwards."""
    cluster.kubectl("apply", "-f", str(MANIFESTS / "web.yaml"))
    # The client starts after the Service exists, so it gets its env vars.
    cluster.kubectl("apply", "-f", str(MANIFESTS / "client.yaml"))
    try:
        wait_for("3 ready web pods", lambda: len(running_pods(cluster, "app=web")) == 3, timeout=120)
        wait_for("the client pod to run", lambda: _client_running(cluster))
        service = get_json(cluster, "service", "web")
        wait_for(
            "3 ready addresses in the web Endpoints",
            lambda: (
                _ready_endpoint_ips(cluster, "web") == {p["status"]["podIP"] for p in running_pods(cluster, "app=web")}
            ),
        )
        yield service
    finally:
        cluster.kubectl("delete", "-f", str(MANIFESTS / "client.yaml"), "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "-f", str(MANIFESTS / "web.yaml"), "--ignore-not-found", "--wait=false")
        wait_for("web pods to be gone", lambda: not get_json(cluster, "pods", "-l", "app=web")["items"], timeout=120)


def _client_running(cluster: Any) -> bool:
    pod = get_json(cluster, "pod", "client")
    return pod.get("status", {}).get("phase") == "Running"


def _ready_endpoint_ips(cluster: Any, name: str) -> set[str]:
    endpoints = get_json(cluster, "endpoints", name)
    return {a["ip"] for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []}


def _fetch_many(cluster: Any, url: str, count: int) -> list[str]:
    """`count` HTTP requests from the client pod, one answer line each."""
    script = f"for i in $(seq {count}); do timeout 5 wget -qO- {url} || echo FAILED; done"
    return pod_exec(cluster, "client", ["sh", "-c", script]).split()


def test_backends_spread_over_workers_and_client_on_control_plane(cluster: Any, web: dict[str, Any]) -> None:
    backend_nodes = {p["spec"]["nodeName"] for p in running_pods(cluster, "app=web")}
    assert backend_nodes <= {"worker1", "worker2"}, backend_nodes
    assert len(backend_nodes) == 2, f"3 replicas should spread over both workers, got {backend_nodes}"
    assert get_json(cluster, "pod", "client")["spec"]["nodeName"] == "control-plane"


def test_cluster_ip_balances_across_pods(cluster: Any, web: dict[str, Any]) -> None:
    cluster_ip = web["spec"]["clusterIP"]
    assert re.fullmatch(r"10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+", cluster_ip), cluster_ip
    pod_names = {p["metadata"]["name"] for p in running_pods(cluster, "app=web")}
    answers = _fetch_many(cluster, f"http://{cluster_ip}:80/", REQUESTS)
    assert len(answers) == REQUESTS, answers
    assert set(answers) <= pod_names, f"answers {set(answers)} not all from pods {pod_names}"
    assert len(set(answers)) >= 2, f"{REQUESTS} requests all reached {set(answers)}"


def test_service_name_resolves_to_cluster_ip(cluster: Any, web: dict[str, Any]) -> None:
    cluster_ip = web["spec"]["clusterIP"]
    for name in ("web.default.svc.cluster.local", "web"):
        # busybox's nslookup walks the whole search list for A and AAAA and exits 1
        # when a later domain is NXDOMAIN (as it does against CoreDNS), so judge
        # the answers it printed, not its exit status.
        _, output = pod_exec_status(cluster, "client", ["nslookup", name])
        answers = re.findall(r"Name:\s*(\S+)\s*\nAddress:\s*(\S+)", output)
        assert answers == [("web.default.svc.cluster.local", cluster_ip)], f"nslookup {name}: {output}"
    # The short name works where the IP did: fetch through the search path.
    answers = _fetch_many(cluster, "http://web/", 3)
    assert "FAILED" not in answers, answers


def test_unknown_name_is_nxdomain(cluster: Any, web: dict[str, Any]) -> None:
    exit_code, output = pod_exec_status(cluster, "client", ["nslookup", "no-such-service.default.svc.cluster.local"])
    assert exit_code != 0
    assert "NXDOMAIN" in output or "can't find" in output, output


def test_service_environment_variables(cluster: Any, web: dict[str, Any]) -> None:
    ip = web["spec"]["clusterIP"]
    env = dict(line.split("=", 1) for line in pod_exec(cluster, "client", ["env"]).splitlines() if "=" in line)
    expected = {
        "WEB_SERVICE_HOST": ip,
        "WEB_SERVICE_PORT": "80",
        "WEB_SERVICE_PORT_HTTP": "80",
        "WEB_PORT": f"tcp://{ip}:80",
        "WEB_PORT_80_TCP": f"tcp://{ip}:80",
        "WEB_PORT_80_TCP_PROTO": "tcp",
        "WEB_PORT_80_TCP_PORT": "80",
        "WEB_PORT_80_TCP_ADDR": ip,
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    }
    assert {k: env.get(k) for k in expected} == expected


def test_resolv_conf(cluster: Any, web: dict[str, Any]) -> None:
    text = pod_exec(cluster, "client", ["cat", "/etc/resolv.conf"])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert "nameserver 10.96.0.10" in lines
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in lines
    assert "options ndots:5" in lines


def test_kubectl_get_and_logs(cluster: Any, web: dict[str, Any]) -> None:
    table = cluster.kubectl("get", "deployment", "web")
    assert re.search(r"^web\s+3/3\s", table, re.MULTILINE), table
    assert "web" in cluster.kubectl("get", "service", "web")
    pod = running_pods(cluster, "app=web")[0]["metadata"]["name"]
    logs = cluster.kubectl("logs", pod)
    assert f"serving {pod}" in logs, logs


def test_deleted_backend_is_replaced_and_service_answers(cluster: Any, web: dict[str, Any]) -> None:
    before = {p["metadata"]["name"] for p in running_pods(cluster, "app=web")}
    victim = min(before)
    cluster.kubectl("delete", "pod", victim, "--wait=true", "--timeout=60s")

    def replaced() -> set[str] | None:
        now = {p["metadata"]["name"] for p in running_pods(cluster, "app=web")}
        return now if len(now) == 3 and victim not in now else None

    after = wait_for("a replacement backend", replaced, timeout=90)
    assert len(after - before) == 1
    wait_for(
        "Endpoints to follow the replacement",
        lambda: _ready_endpoint_ips(cluster, "web") == {p["status"]["podIP"] for p in running_pods(cluster, "app=web")},
    )
    answers = _fetch_many(cluster, f"http://{web['spec']['clusterIP']}:80/", 10)
    assert set(answers) <= after, f"answers {set(answers)} include pods outside {after}"


def test_node_exec_reaches_the_nodes_own_docker(cluster: Any, web: dict[str, Any]) -> None:
    """`pocket node exec NODE -- docker ...` talks to that node's engine, as `vagrant ssh` would."""
    pod = running_pods(cluster, "app=web")[0]
    proc = subprocess.run(
        [sys.executable, "-m", "pocket.cli", "node", "exec", pod["spec"]["nodeName"], "--",
         "docker", "ps", "--format", "{{.Label \"io.kubernetes.pod.name\"}}"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert pod["metadata"]["name"] in proc.stdout.split(), proc.stdout
