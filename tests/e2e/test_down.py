"""The cluster's lifecycle commands, ending with `pocket down`, which must leave nothing behind:
namespaces, processes, containers (and their cgroups), mounts, host iptables rules.

This file runs last in a session (see pytest_collection_modifyitems in
conftest.py), because it crashes nodes and finally removes the shared
cluster; its tests run in file order.
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import pytest

from pocket import processes
from pocket.cluster import container_cgroups, container_ids, mounts_under
from pocket.config import ClusterConfig
from pocket.netns import netns_inode
from tests.e2e.conftest import host_iptables, pocket

pytestmark = pytest.mark.e2e


def cluster_namespaces(config: ClusterConfig) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return names & set(config.all_netns())


def identities(pids: set[int]) -> set[tuple[int, int]]:
    """(pid, start time) pairs, so a recycled pid is not taken for a survivor."""
    return {(pid, start) for pid in pids if (start := processes.start_time(pid)) is not None}


def still_alive(before: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(pid, start) for pid, start in before if processes.alive(pid) and processes.start_time(pid) == start}


def snapshot(config: ClusterConfig, netns_inodes: set[int], containers: set[str]) -> dict[str, Any]:
    """Cluster leftovers: namespaces by name; processes by namespace inode (a namespace outlives
    `ip netns del` while a process is in it) or container cgroup, with their descendants."""
    found = processes.in_netns(netns_inodes) | processes.in_containers(containers)
    return {
        "netns": cluster_namespaces(config),
        "processes": identities(processes.with_descendants(found) - {os.getpid()}),
        "mounts": mounts_under(config.state_dir, config.run_dir),
        "cgroups": container_cgroups(containers),
        "iptables": host_iptables(),
    }


def api_port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.usefixtures("cluster")
def test_second_up_changes_nothing() -> None:
    proc = pocket("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing changed" in proc.stdout
    phases = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    # every phase but the prerequisite check (which only says ok) reports it had nothing to do
    assert len(phases) == 11, proc.stdout
    assert sum("already done" in line for line in phases) == len(phases) - 1, proc.stdout
    assert "export KUBECONFIG=" in proc.stdout


@pytest.mark.usefixtures("cluster")
def test_status_lists_every_component_up_and_nodes_ready() -> None:
    proc = pocket("status", timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count("Ready=True") == 3
    assert "down" not in proc.stdout


@pytest.mark.usefixtures("cluster")
def test_node_exec_passes_the_exit_code_through() -> None:
    proc = pocket("node", "exec", "worker1", "--", "sh", "-c", "ip -4 -o addr show eth0; exit 7", timeout=30)
    assert proc.returncode == 7
    assert "192.168.56.11/24" in proc.stdout
    client = pocket("client", "exec", "--", "busybox", "ping", "-c", "1", "-W", "2", "192.168.56.12", timeout=30)
    assert client.returncode == 0, client.stdout + client.stderr


def reachable(cluster: Any, address: str) -> bool:
    return cluster.node_exec("control-plane", "busybox", "ping", "-c", "1", "-W", "1", address).returncode == 0


def test_node_stop_crashes_a_node_and_start_brings_it_back(cluster: Any) -> None:
    config: ClusterConfig = cluster.config
    kubelet_pid = processes.read_pid(config.pid_file("worker2", "kubelet"))
    dockerd_pid = processes.read_pid(config.pid_file("worker2", "dockerd"))
    assert kubelet_pid and dockerd_pid and reachable(cluster, "192.168.56.12")

    stop = pocket("node", "stop", "worker2", timeout=60)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not processes.alive(kubelet_pid) and not processes.alive(dockerd_pid)
    assert not reachable(cluster, "192.168.56.12")
    assert reachable(cluster, "192.168.56.11"), "other nodes are untouched"

    start = pocket("node", "start", "worker2", timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    assert reachable(cluster, "192.168.56.12")
    assert processes.read_pid(config.pid_file("worker2", "kubelet")) not in (None, kubelet_pid)
    assert cluster.docker("worker2").ping()
    nodes = cluster.kubectl("get", "node", "worker2", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
    assert nodes == "True"


def test_down_removes_everything_up_made(cluster: Any) -> None:
    config: ClusterConfig = cluster.config
    container = cluster.docker("worker1").containers.run("busybox", ["sleep", "600"], detach=True, network_mode="none")
    container.reload()
    container_pid = container.attrs["State"]["Pid"]

    inodes = {inode for name in config.all_netns() if (inode := netns_inode(name)) is not None}
    containers = container_ids(config, [node.name for node in config.nodes])
    assert container.id in containers
    before = snapshot(config, inodes, containers)
    assert before["netns"] == set(config.all_netns())
    assert before["mounts"], "a running cluster has docker mounts under its state dirs"
    assert container_pid in {pid for pid, _ in before["processes"]}, "the container is one of the cluster's processes"
    assert api_port_open(config.api_port)

    proc = pocket("down", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    after = snapshot(config, inodes, containers)
    assert after["netns"] == set()
    assert still_alive(before["processes"]) == set()
    assert after["processes"] == set()
    assert after["mounts"] == []
    assert before["cgroups"], "running containers have cgroups"
    assert after["cgroups"] == []
    assert after["iptables"] == before["iptables"]
    if cluster.started_here:
        assert after["iptables"] == cluster.host_iptables_before_up
    assert not config.state_dir.exists()
    assert not config.run_dir.exists()
    assert not config.kubeconfig.exists()
    assert not api_port_open(config.api_port)

    again = pocket("down", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "none running" in again.stdout
