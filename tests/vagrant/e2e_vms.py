"""End-to-end on real VMs: `make test-vagrant` (not part of `make test`: this file's name is not test_*.py).

The module fixture starts libvirt if it is not running, brings up a control
plane and two workers with `vagrant up` (the offline box, isolated
networks), and afterwards destroys them and removes everything the run added
to the host. The checks are the local cluster's (tests/e2e/test_service_path.py,
imported below and run against the VMs), plus what only VMs have: node
addresses on the private network, a NodePort reached from the host, and
`vagrant provision` changing nothing on a working cluster.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from pocket.config import CONTROL_PLANE_ROLE, WORKER_ROLE
from pocket.setup import node_cluster, node_units
from tests.e2e.helpers import get_json, running_pods, wait_for
from tests.e2e.test_service_path import (  # noqa: F401  (pytest collects the imported checks and fixture)
    test_backends_spread_over_workers_and_client_on_control_plane,
    test_cluster_ip_balances_across_pods,
    test_deleted_backend_is_replaced_and_service_answers,
    test_kubectl_get_and_logs,
    test_resolv_conf,
    test_service_environment_variables,
    test_service_name_resolves_to_cluster_ip,
    test_unknown_name_is_nxdomain,
    web,
)
from tests.vagrant.libvirt_host import LibvirtHost
from tests.vagrant.vms import VAGRANT_DIR, VagrantCluster, vagrant

NODE_IPS = {"control-plane": "192.168.56.10", "worker1": "192.168.56.11", "worker2": "192.168.56.12"}
POCKET_UNITS = re.compile(r"^(pocket-\S+\.service)", re.MULTILINE)


def phase(title: str, started: float) -> None:
    print(f"[test-vagrant] {title}: {time.monotonic() - started:.0f}s", flush=True)


def machines_running() -> bool:
    """Every machine of the Vagrantfile is running (a cluster left up by hand is reused, and left up)."""
    status = vagrant("status", "--machine-readable", timeout=120)
    states = [line.split(",")[3] for line in status.stdout.splitlines() if line.split(",")[2:3] == ["state"]]
    return len(states) == len(NODE_IPS) and all(state == "running" for state in states)


@pytest.fixture(scope="module")
def cluster() -> Iterator[VagrantCluster]:
    host = LibvirtHost()
    started = time.monotonic()
    host.start()
    reused = machines_running()
    try:
        if not reused:
            up = vagrant("up", "--provider=libvirt")
            phase(f"vagrant up (exit {up.returncode})", started)
            assert up.returncode == 0, f"vagrant up failed:\n{up.stdout[-6000:]}\n{up.stderr[-3000:]}"
        ssh_config = VAGRANT_DIR / ".pocket" / "ssh-config"
        config = vagrant("ssh-config", timeout=120)
        assert config.returncode == 0, config.stderr
        ssh_config.write_text(config.stdout)
        yield VagrantCluster(ssh_config)
    finally:
        torn_down = time.monotonic()
        destroy = vagrant("destroy", "-f", timeout=900) if not reused else None
        problems = host.stop()
        phase("vagrant destroy and host tear-down" if destroy else "host tear-down (cluster reused, left up)",
              torn_down)
        phase("whole run", started)
        assert destroy is None or destroy.returncode == 0, destroy.stdout + destroy.stderr
        assert not problems, f"tear-down left: {problems}"


def test_nodes_are_ready_on_their_private_addresses(cluster: VagrantCluster) -> None:
    nodes = get_json(cluster, "nodes")["items"]
    addresses = {
        n["metadata"]["name"]: {a["type"]: a["address"] for a in n["status"]["addresses"]}["InternalIP"]
        for n in nodes
    }
    assert addresses == NODE_IPS
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", node["metadata"]["name"]


@pytest.mark.usefixtures("web")
def test_node_port_from_the_host(cluster: VagrantCluster) -> None:
    """The host reaches the web pods through a NodePort on every VM, including one with no backend."""
    cluster.kubectl("expose", "deployment", "web", "--name", "web-nodeport", "--type", "NodePort", "--port", "80",
                    "--target-port", "http")
    try:
        port = get_json(cluster, "service", "web-nodeport")["spec"]["ports"][0]["nodePort"]
        pods = {p["metadata"]["name"] for p in running_pods(cluster, "app=web")}
        for ip in NODE_IPS.values():
            def fetch(url: str = f"http://{ip}:{port}/") -> str:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return resp.read().decode().strip()

            answer = wait_for(f"an answer from {ip}:{port}", fetch, timeout=120)
            assert answer in pods, f"{ip}:{port} answered {answer!r}, not one of {pods}"
    finally:
        cluster.kubectl("delete", "service", "web-nodeport", "--ignore-not-found")


def unit_pids(cluster: VagrantCluster, node: str) -> dict[str, str]:
    units = cluster.node_exec(node, "systemctl", "list-units", "--plain", "--no-legend", "pocket-*.service")
    assert units.returncode == 0, units.stderr
    pids = {}
    for unit in POCKET_UNITS.findall(units.stdout):
        show = cluster.node_exec(node, "systemctl", "show", "-p", "MainPID", "--value", unit)
        pids[unit] = show.stdout.strip()
    return pids


def expected_units(node: str) -> set[str]:
    """The units `pocket node setup` makes for this node of the Vagrantfile's cluster."""
    role = CONTROL_PLANE_ROLE if node == "control-plane" else WORKER_ROLE
    cluster, spec = node_cluster(role, node, NODE_IPS[node], NODE_IPS["control-plane"], tuple(NODE_IPS.items()))
    return {unit.name for unit in node_units(cluster, spec, "overlay2", "/opt/pocketkube/bin/python")}


def test_provision_again_changes_nothing(cluster: VagrantCluster) -> None:
    """`vagrant provision` re-runs `pocket node setup`: no file rewritten, no unit restarted."""
    before = {node: unit_pids(cluster, node) for node in ("control-plane", "worker1")}
    for node, pids in before.items():
        assert set(pids) == expected_units(node), pids
    for node in before:
        proc = vagrant("provision", node, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "nothing changed" in proc.stdout, proc.stdout[-4000:]
        assert not re.search(r"(starting|restarting) pocket-", proc.stdout), proc.stdout[-4000:]
    assert {node: unit_pids(cluster, node) for node in before} == before
