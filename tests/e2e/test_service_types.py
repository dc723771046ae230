"""Every Service type on the local cluster, reached from a pod, from a node and from pk-client.

One namespace per module holds st-web (one httpd per worker), a client pod,
a UDP echo and a Service of each type (manifests st-services.yaml and
st-udp.yaml); it is deleted at the end. The last test stops the node that
announces the LoadBalancer address and starts it again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pocket.commands import remembered_proxy_mode
from pocket.netns import nsenter_argv
from tests.e2e.helpers import MANIFESTS, get_json, pod_exec, running_pods, wait_for

pytestmark = pytest.mark.e2e

MANIFEST_FILES = [str(MANIFESTS / "st-services.yaml"), str(MANIFESTS / "st-udp.yaml")]
NODE_IPS = {"control-plane": "192.168.56.10", "worker1": "192.168.56.11", "worker2": "192.168.56.12"}
CLIENT_IP = "192.168.56.1"
POOL = {f"192.168.56.{n}" for n in range(240, 251)}

# Run with the host's python3 inside a node's or pk-client's namespace (busybox wget crashes there).
HTTP_GET = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())
except Exception as err:
    print("error", type(err).__name__, err)
"""

# Keeps one UDP flow (fixed source port) alive: one datagram every 0.3 s, printing each answer.
UDP_FLOW = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40053))
s.settimeout(0.3)
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        s.sendto(b"who", (sys.argv[1], int(sys.argv[2])))
        print(s.recv(512).decode(), flush=True)
    except socket.timeout:
        print("timeout", flush=True)
    except OSError as err:  # EPERM from the REJECT while the service has no endpoint
        print("error", err.errno, flush=True)
    time.sleep(0.3)
"""


def pocket_argv(cluster: Any, group: str) -> list[str]:
    """`pocket <group>` with this cluster's prefix and paths."""
    config = cluster.config
    return [
        sys.executable, "-m", "pocket.cli", group,
        "--prefix", config.prefix, "--state-dir", str(config.state_dir), "--run-dir", str(config.run_dir),
        "--kubeconfig", str(config.kubeconfig), "--api-port", str(config.api_port),
    ]  # fmt: skip


def from_client(cluster: Any, url: str) -> str:
    argv = pocket_argv(cluster, "client") + ["exec", "--", "python3", "-c", HTTP_GET, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()


def from_node(cluster: Any, node: str, url: str) -> str:
    return str(cluster.node_exec(node, "python3", "-c", HTTP_GET, url).stdout.strip())


def from_pod(cluster: Any, namespace: str, url: str) -> str:
    script = f"timeout 5 wget -qO- {url} || echo FAILED"
    return pod_exec(cluster, "st-client", ["sh", "-c", script], namespace=namespace).strip()


def web_pods(cluster: Any, namespace: str) -> dict[str, str]:
    """Running st-web pods by name -> node."""
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in running_pods(cluster, "app=st-web", namespace)}


def ingress_ip(cluster: Any, namespace: str) -> str | None:
    svc = get_json(cluster, "service", "st-lb", "-n", namespace)
    ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


def lease_holder(cluster: Any, namespace: str) -> str:
    lease = get_json(cluster, "lease", f"kproxy-lb.{namespace}.st-lb", "-n", "kube-system")
    return str(lease["spec"].get("holderIdentity") or "")


def node_port(cluster: Any, namespace: str, service: str) -> int:
    return int(get_json(cluster, "service", service, "-n", namespace)["spec"]["ports"][0]["nodePort"])


def cluster_ip(cluster: Any, namespace: str, service: str) -> str:
    return str(get_json(cluster, "service", service, "-n", namespace)["spec"]["clusterIP"])


@pytest.fixture(scope="module")
def ns(cluster: Any) -> Iterator[str]:
    name = f"st-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        for path in MANIFEST_FILES:
            cluster.kubectl("apply", "-n", name, "-f", path)
        wait_for("two st-web pods, one per worker", lambda: len(set(web_pods(cluster, name).values())) == 2)
        wait_for("the client pod", lambda: running_pods(cluster, "app=st-client", name))
        wait_for("the UDP echo pod", lambda: running_pods(cluster, "app=st-udp", name))
        yield name
    finally:
        for path in MANIFEST_FILES:
            subprocess.run(
                ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "delete", "-n", name, "-f", path, "--wait=false"],
                capture_output=True, timeout=120,
            )  # fmt: skip
        subprocess.run(
            ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "delete", "namespace", name, "--wait=false"],
            capture_output=True, timeout=120,
        )  # fmt: skip


def test_node_port_answers_on_every_node_ip_from_pod_node_and_client(cluster: Any, ns: str) -> None:
    pods = set(web_pods(cluster, ns))
    port = node_port(cluster, ns, "st-nodeport")
    assert 30000 <= port <= 32767
    for node, ip in NODE_IPS.items():
        url = f"http://{ip}:{port}/"
        other_node = "worker2" if node != "worker2" else "worker1"

        def reached(url: str = url) -> bool:
            return from_pod(cluster, ns, url) in pods

        assert wait_for(f"{url} from a pod", reached, timeout=30)
        assert from_node(cluster, other_node, url) in pods, f"{url} from node {other_node}"
        assert from_node(cluster, node, url) in pods, f"{url} from node {node} itself"
        assert from_client(cluster, url) in pods, f"{url} from pk-client"


def test_external_ip_answers_from_pod_node_and_client(cluster: Any, ns: str) -> None:
    pods = set(web_pods(cluster, ns))
    url = "http://192.168.56.11:8081/"
    assert wait_for("external IP from a pod", lambda: from_pod(cluster, ns, url) in pods, timeout=30)
    assert from_node(cluster, "worker2", url) in pods
    assert from_client(cluster, url) in pods
    # Port 8081 on another node's address is no Service.
    assert from_client(cluster, "http://192.168.56.12:8081/").startswith("error")


def test_load_balancer_gets_a_pool_address_reachable_everywhere_keeping_the_client_source(
    cluster: Any, ns: str
) -> None:
    address = wait_for("st-lb's ingress address", lambda: ingress_ip(cluster, ns), timeout=30)
    assert address in POOL
    pods = set(web_pods(cluster, ns))
    url = f"http://{address}/"
    assert wait_for("LB address from pk-client", lambda: from_client(cluster, url) in pods, timeout=30)
    assert from_pod(cluster, ns, url) in pods
    assert from_node(cluster, "control-plane", url) in pods
    # externalTrafficPolicy Local: the backend sees pk-client's own address.
    assert from_client(cluster, f"{url}cgi-bin/ip").strip("[]").removeprefix("::ffff:") == CLIENT_IP
    # Exactly one node holds the announcement, and it is one with a local endpoint.
    assert lease_holder(cluster, ns) in set(web_pods(cluster, ns).values())


def test_client_ip_affinity_keeps_a_client_on_one_pod(cluster: Any, ns: str) -> None:
    sticky = f"http://{cluster_ip(cluster, ns, 'st-sticky')}/"
    answers = {from_pod(cluster, ns, sticky) for _ in range(12)}
    assert len(answers) == 1 and answers <= set(web_pods(cluster, ns))
    # The same pods without affinity: twenty tries land on both (all on one: odds 2 in a million).
    spread = f"http://{cluster_ip(cluster, ns, 'st-nodeport')}/"
    assert {from_pod(cluster, ns, spread) for _ in range(20)} == set(web_pods(cluster, ns))


def test_headless_and_external_name_services_get_no_rules(cluster: Any, ns: str) -> None:
    headless = get_json(cluster, "service", "st-headless", "-n", ns)
    assert headless["spec"]["clusterIP"] == "None"
    external = get_json(cluster, "service", "st-extname", "-n", ns)
    assert not external["spec"].get("clusterIP")
    if remembered_proxy_mode(cluster.config.state_dir) == "iptables":
        saved = cluster.node_exec("worker1", "iptables-legacy-save", "-t", "nat").stdout
        assert f"{ns}/st-nodeport" in saved  # the rules are there for the others
        assert f"{ns}/st-headless" not in saved and f"{ns}/st-extname" not in saved
        return
    # nftables rules carry no names: every address in kproxy's table must be one a Service owns (services are
    # read first: other tests' namespaces may still be going away, and kproxy follows within a sync).
    nodeport_key = f"{cluster_ip(cluster, ns, 'st-nodeport')} . tcp . 80"

    def only_owned_addresses() -> bool:
        owned = set()
        for service in json.loads(cluster.kubectl("get", "services", "-A", "-o", "json"))["items"]:
            owned.update(service["spec"].get("clusterIPs", []) + service["spec"].get("externalIPs", []))
            owned.update(i["ip"] for i in service.get("status", {}).get("loadBalancer", {}).get("ingress", []))
        table = cluster.node_exec("worker1", "nft", "list", "table", "ip", "kproxy").stdout
        keys = set(re.findall(r"(\d+\.\d+\.\d+\.\d+) \. (?:tcp|udp|sctp) \. \d+", table))
        return nodeport_key in table and keys <= owned  # the rules are there for the others, and only theirs

    assert wait_for("kproxy's table holding only Services' addresses", only_owned_addresses, timeout=15)


def test_udp_service_keeps_answering_after_its_only_endpoint_is_replaced(cluster: Any, ns: str) -> None:
    (old,) = [p["metadata"]["name"] for p in running_pods(cluster, "app=st-udp", ns)]
    vip = cluster_ip(cluster, ns, "st-udp")
    netns = cluster.config.node_netns("worker1")
    flow = subprocess.Popen(
        nsenter_argv(netns, ["python3", "-u", "-c", UDP_FLOW, vip, "53", "90"]), stdout=subprocess.PIPE, text=True
    )
    assert flow.stdout is not None
    try:
        answers: list[str] = []

        def answered(name: str) -> bool:
            answers.append(flow.stdout.readline().strip())  # type: ignore[union-attr]
            return answers[-1] == name

        assert wait_for("the first endpoint answering the flow", lambda: answered(old), timeout=20, interval=0)
        cluster.kubectl("delete", "pod", old, "-n", ns, "--wait=false")
        new = wait_for(
            "a replacement UDP pod",
            lambda: [
                p["metadata"]["name"] for p in running_pods(cluster, "app=st-udp", ns) if p["metadata"]["name"] != old
            ],
            timeout=60,
        )[0]
        # The same flow (same source port, kept alive throughout) reaches the new pod.
        assert wait_for("the replacement answering the same flow", lambda: answered(new), timeout=40, interval=0)
    finally:
        flow.kill()
        flow.wait(timeout=10)


def test_load_balancer_address_moves_when_its_node_dies(cluster: Any, ns: str) -> None:
    address = wait_for("st-lb's ingress address", lambda: ingress_ip(cluster, ns), timeout=30)
    holder = wait_for("an announcing node", lambda: lease_holder(cluster, ns), timeout=30)
    survivors = {pod: node for pod, node in web_pods(cluster, ns).items() if node != holder}
    assert holder in ("worker1", "worker2") and survivors
    stop = subprocess.run(pocket_argv(cluster, "node") + ["stop", holder], capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    try:
        started = time.monotonic()
        new_holder = wait_for(
            "another node to take the address",
            lambda: lease_holder(cluster, ns) != holder and lease_holder(cluster, ns),
            timeout=60,
        )
        assert new_holder in survivors.values()
        answer = wait_for(
            "the address answering through the new node",
            lambda: (lambda text: text if text in survivors else None)(from_client(cluster, f"http://{address}/")),
            timeout=60,
        )
        print(f"LB failover: lease moved and address answered after {time.monotonic() - started:.1f}s ({answer})")
    finally:
        start = subprocess.run(
            pocket_argv(cluster, "node") + ["start", holder], capture_output=True, text=True, timeout=300
        )
        assert start.returncode == 0, start.stderr
