"""Cluster DNS on the local cluster: busybox nslookup through kube-dns, programming latency, one kdns dying.

One namespace per module holds a busybox client pod, a pod `web-0` (with
hostname and subdomain), a ClusterIP Service and a headless Service over
it; it is deleted at the end.  kdns runs on the control plane and worker1
behind 10.96.0.10; the last test SIGKILLs worker1's kdns, checks lookups
keep working, and brings it back with `pocket up`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocket.netns import nsenter_argv
from pocket.processes import read_pid
from tests.e2e.helpers import get_json, pod_exec_status, running_pods, wait_for

pytestmark = pytest.mark.e2e

KDNS_NODES = {"control-plane": "192.168.56.10", "worker1": "192.168.56.11"}
LOOKUPS_AFTER_FAILOVER = 20

MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: dns-client, labels: {app: dns-client}}
spec:
  containers:
    - {name: sh, image: busybox, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: dns-web}}
spec:
  hostname: web-0
  subdomain: dns-headless
  containers:
    - {name: sh, image: busybox, imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: dns-web}
spec:
  selector: {app: dns-web}
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns-headless}
spec:
  clusterIP: None
  selector: {app: dns-web}
  ports: [{name: http, port: 80, protocol: TCP}]
"""

# Polls a DNS server from a node's namespace until a name answers NOERROR with an address;
# prints the wall-clock time it first did (bounded by argv[3] seconds).
FIRST_ANSWER = """
import random, socket, struct, sys, time
server, name, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
question = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\\x00\\x00\\x01\\x00\\x01"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.2)
print("polling", flush=True)
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    qid = random.randrange(65536)
    try:
        sock.sendto(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question, (server, 53))
        reply = sock.recv(4096)
    except OSError:
        continue
    if reply[:2] == struct.pack("!H", qid) and reply[3] & 0x0F == 0 and struct.unpack("!H", reply[6:8])[0] > 0:
        print(f"{time.time():.6f}", flush=True)
        break
    time.sleep(0.005)
"""


READY = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
"""


def kubectl_quiet(cluster: Any, *args: str) -> None:
    subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def ns(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"dns-{uuid.uuid4().hex[:6]}"
    manifest = tmp_path_factory.mktemp("dns") / "dns.yaml"
    manifest.write_text(MANIFEST)
    cluster.kubectl("create", "namespace", name)
    try:
        cluster.kubectl("apply", "-n", name, "-f", str(manifest))
        wait_for("the client pod", lambda: running_pods(cluster, "app=dns-client", name))
        wait_for("web-0", lambda: running_pods(cluster, "app=dns-web", name))
        yield name
    finally:
        kubectl_quiet(cluster, "delete", "namespace", name, "--wait=false")


def nslookup(cluster: Any, ns: str, *args: str) -> tuple[int, str]:
    return pod_exec_status(cluster, "dns-client", ["nslookup", *args], namespace=ns)


def pod_ip(cluster: Any, ns: str, pod: str) -> str:
    return str(get_json(cluster, "pod", pod, "-n", ns)["status"]["podIP"])


def test_cluster_ip_service_by_full_and_short_name(cluster: Any, ns: str) -> None:
    ip = get_json(cluster, "service", "dns-web", "-n", ns)["spec"]["clusterIP"]
    code, out = nslookup(cluster, ns, f"dns-web.{ns}.svc.cluster.local")
    assert code == 0 and ip in out, out
    # Through the pod's search path; busybox also asks the later search domains (NXDOMAIN) and
    # then exits 1, so the answer found through the first one is what is checked.
    _, out = nslookup(cluster, ns, "dns-web")
    assert f"Name:\tdns-web.{ns}.svc.cluster.local\nAddress: {ip}" in out, out


def test_headless_service_and_its_endpoint_name(cluster: Any, ns: str) -> None:
    web_ip = wait_for("web-0's IP", lambda: pod_ip(cluster, ns, "web-0"))
    code, out = nslookup(cluster, ns, f"dns-headless.{ns}.svc.cluster.local")
    assert code == 0 and web_ip in out, out
    code, out = nslookup(cluster, ns, f"web-0.dns-headless.{ns}.svc.cluster.local")
    assert code == 0 and web_ip in out, out


def test_srv_record_of_a_named_port(cluster: Any, ns: str) -> None:
    code, out = nslookup(cluster, ns, "-type=SRV", f"_http._tcp.dns-web.{ns}.svc.cluster.local")
    assert code == 0, out
    assert f"dns-web.{ns}.svc.cluster.local" in out and " 80 " in out, out


def test_unknown_name_is_nxdomain(cluster: Any, ns: str) -> None:
    code, out = nslookup(cluster, ns, f"no-such-service.{ns}.svc.cluster.local")
    assert code != 0 and "NXDOMAIN" in out, out


def test_dns_programming_latency(cluster: Any, ns: str) -> None:
    """From `kubectl create service` returning to each kdns answering the name (printed, not asserted)."""
    name = f"lat.{ns}.svc.cluster.local"
    pollers = {
        node: subprocess.Popen(
            nsenter_argv(cluster.config.node_netns("worker2"), [sys.executable, "-c", FIRST_ANSWER, ip, name, "60"]),
            stdout=subprocess.PIPE,
            text=True,
        )
        for node, ip in KDNS_NODES.items()
    }
    try:
        for poller in pollers.values():
            assert poller.stdout is not None and poller.stdout.readline().strip() == "polling"
        created = time.time()
        cluster.kubectl("create", "service", "clusterip", "lat", "--tcp=80:80", "-n", ns)
        for node, poller in pollers.items():
            out, _ = poller.communicate(timeout=90)
            assert out.strip(), f"kdns on {node} never answered {name}"
            print(f"DNS programming latency, kdns on {node}: {(float(out) - created) * 1000:.0f} ms")
    finally:
        for poller in pollers.values():
            if poller.poll() is None:
                poller.kill()
                poller.wait()


def test_each_kdns_reads_its_own_nodes_resolv_conf_and_is_ready(cluster: Any) -> None:
    for node, ip in KDNS_NODES.items():
        pid = read_pid(Path(cluster.config.pid_file(node, "kdns")))
        assert pid is not None, f"kdns is not running on {node}"
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        resolv = str(cluster.config.resolv_conf(node))
        assert argv[argv.index("--resolv-conf") + 1] == resolv and argv[argv.index("--listen") + 1] == ip
        assert Path(resolv).read_text().startswith("nameserver "), resolv
        ready = cluster.node_exec(node, "python3", "-c", READY, f"http://{ip}:9153/ready")
        assert ready.stdout.strip() == "200", ready.stdout + ready.stderr


def kube_dns_split(cluster: Any) -> tuple[set[str], set[str]]:
    """(ready, not ready) addresses of the kube-dns Endpoints."""
    subsets = get_json(cluster, "endpoints", "kube-dns", "-n", "kube-system").get("subsets") or []
    ready = {a["ip"] for s in subsets for a in s.get("addresses") or []}
    not_ready = {a["ip"] for s in subsets for a in s.get("notReadyAddresses") or []}
    return ready, not_ready


def test_lookups_survive_one_kdns_dying(cluster: Any, ns: str) -> None:
    assert kube_dns_split(cluster)[0] == set(KDNS_NODES.values())
    pid_file = Path(cluster.config.pid_file("worker1", "kdns"))
    pid = read_pid(pid_file)
    assert pid is not None, "kdns is not running on worker1"
    name = f"dns-web.{ns}.svc.cluster.local"
    try:
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        during = [nslookup(cluster, ns, name)[0] for _ in range(5)]
        wait_for(
            "worker1's kdns to leave the ready kube-dns addresses",
            lambda: kube_dns_split(cluster) == ({KDNS_NODES["control-plane"]}, {KDNS_NODES["worker1"]}),
            timeout=30,
            interval=0.2,
        )
        print(
            f"kube-dns failover: {time.monotonic() - killed:.1f}s to drop the dead kdns; "
            f"{sum(code != 0 for code in during)}/5 lookups failed before it"
        )
        failures = [out for code, out in (nslookup(cluster, ns, name) for _ in range(LOOKUPS_AFTER_FAILOVER)) if code]
        assert not failures, failures[:2]
    finally:
        up = subprocess.run([sys.executable, "-m", "pocket.cli", "up"], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for(
        "worker1's kdns back among the ready kube-dns addresses",
        lambda: kube_dns_split(cluster) == (set(KDNS_NODES.values()), set()),
        timeout=30,
    )
    code, out = nslookup(cluster, ns, name)
    assert code == 0, out
