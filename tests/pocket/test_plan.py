"""The pure parts of the bring-up: address plan, node command lines, daemon.json, kubeconfig, kube-dns objects."""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from pocket.cli import _command
from pocket.cluster import kube_dns_objects
from pocket.config import ClusterConfig
from pocket.kubeconfig import kubeconfig, write_kubeconfig
from pocket.network import MAX_IFNAME, peer_name
from pocket.node import daemon_json, node_components, registry_config

CLUSTER = ClusterConfig(kubeconfig=Path("/root/.pocketkube/kubeconfig"))
POCKET_COMPONENTS = {"apiserver", "controller-manager", "scheduler", "kdns", "kubelet", "kproxy"}


def components(node: str) -> dict[str, tuple[str, ...]]:
    return {c.name: c.argv for c in node_components(CLUSTER, CLUSTER.node(node), python="/usr/bin/python3")}


def flags(argv: tuple[str, ...]) -> dict[str, str]:
    """`--flag value` pairs of an argv (flags without a value map to "")."""
    out: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if eq:
                out[name] = value
            else:
                nxt = argv[i + 1] if i + 1 < len(argv) else ""
                out[name] = "" if nxt.startswith("--") else nxt
    return out


def test_address_plan() -> None:
    subnet = ipaddress.ip_network("192.168.56.0/24")
    ips = [ip for _, ip in CLUSTER.endpoints()]
    assert ips == ["192.168.56.10", "192.168.56.11", "192.168.56.12", "192.168.56.1"]
    assert all(ipaddress.ip_address(ip) in subnet for ip in ips)
    assert CLUSTER.all_netns() == ["pk-net", "pk-control-plane", "pk-worker1", "pk-worker2", "pk-client"]
    assert CLUSTER.api_server_url == "http://192.168.56.10:6443"
    assert CLUSTER.registry == "192.168.56.10:5000"


def test_test_prefix_renames_every_namespace_and_keeps_interface_names_short() -> None:
    test_cluster = ClusterConfig(prefix="pkt-up-0123abcd-")
    assert all(name.startswith("pkt-up-0123abcd-") for name in test_cluster.all_netns())
    peers = [peer_name(netns, test_cluster) for netns, _ in test_cluster.endpoints()]
    assert len(set(peers)) == len(peers)
    assert all(len(p) <= MAX_IFNAME for p in peers)


def test_unknown_node_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="no node named 'worker9'"):
        CLUSTER.node("worker9")


def test_control_plane_runs_everything_in_order_and_workers_only_agents() -> None:
    assert list(components("control-plane")) == [
        "etcd",
        "registry",
        "dockerd",
        "apiserver",
        "controller-manager",
        "scheduler",
        "kdns",
        "kubelet",
        "kproxy",
    ]
    assert list(components("worker1")) == ["dockerd", "kubelet", "kproxy", "kdns"]  # the second kdns
    assert list(components("worker2")) == ["dockerd", "kubelet", "kproxy"]


def test_pocket_components_run_through_the_pocket_cli() -> None:
    for name, argv in components("control-plane").items():
        if name in POCKET_COMPONENTS:
            assert argv[:4] == ("/usr/bin/python3", "-m", "pocket.cli", name)


def test_kubelet_flags_match_the_agreed_command_line() -> None:
    worker = flags(components("worker1")["kubelet"])
    assert worker == {
        "--api-server": "http://192.168.56.10:6443",
        "--node-name": "worker1",
        "--node-ip": "192.168.56.11",
        "--docker-host": "unix:///run/pocketkube/worker1/docker.sock",
        "--root-dir": "/var/lib/pocketkube/nodes/worker1/kubelet",
        "--cluster-dns": "10.96.0.10",
        "--cluster-domain": "cluster.local",
        "--resolv-conf": "/var/lib/pocketkube/nodes/worker1/resolv.conf",
        "--pod-infra-image": "pocketkube/pause:latest",
        "--port": "10250",
        "--heartbeat-interval": "2",
    }
    control_plane = flags(components("control-plane")["kubelet"])
    assert control_plane["--node-labels"] == "node-role.kubernetes.io/control-plane="
    assert control_plane["--register-with-taints"] == "node-role.kubernetes.io/control-plane:NoSchedule"
    assert control_plane["--node-ip"] == "192.168.56.10"


def test_control_plane_flags_match_the_agreed_command_lines() -> None:
    cp = components("control-plane")
    assert flags(cp["apiserver"]) == {
        "--etcd-servers": "http://127.0.0.1:2379",
        "--bind-address": "0.0.0.0",
        "--port": "6443",
        "--advertise-address": "192.168.56.10",
        "--service-cluster-ip-range": "10.96.0.0/12",
        "--kubelet-port": "10250",
    }
    assert flags(cp["controller-manager"]) == {
        "--api-server": "http://192.168.56.10:6443",
        "--cluster-cidr": "10.244.0.0/16",
        "--node-cidr-mask-size": "24",
        "--health-port": "10257",
    }
    assert flags(cp["scheduler"]) == {"--api-server": "http://192.168.56.10:6443", "--health-port": "10259"}
    assert flags(cp["kdns"]) == {
        "--api-server": "http://192.168.56.10:6443",
        "--listen": "192.168.56.10",
        "--port": "53",
        "--cluster-domain": "cluster.local",
        "--resolv-conf": "/var/lib/pocketkube/nodes/control-plane/resolv.conf",
        "--health-port": "9153",
        "--ttl": "30",
    }
    assert flags(components("worker2")["kproxy"]) == {
        "--api-server": "http://192.168.56.10:6443",
        "--node-name": "worker2",
        "--node-ip": "192.168.56.12",
        "--cluster-cidr": "10.244.0.0/16",
        "--health-port": "10256",
        "--iptables": "legacy",
        "--mode": "iptables",
    }


@pytest.mark.parametrize("component", sorted(POCKET_COMPONENTS))
def test_each_component_accepts_the_command_line_we_launch_it_with(component: str) -> None:
    node = "worker1" if component in ("kubelet", "kproxy") else "control-plane"
    argv = components(node)[component]
    parser = argparse.ArgumentParser(prog=component, exit_on_error=False)
    _command(component).add_arguments(parser)
    parser.parse_args(list(argv[4:]))


def test_etcd_and_dockerd_command_lines() -> None:
    cp = components("control-plane")
    assert flags(cp["etcd"])["--listen-client-urls"] == "http://192.168.56.10:2379,http://127.0.0.1:2379"
    assert flags(cp["etcd"])["--listen-peer-urls"] == "http://127.0.0.1:2380"
    assert flags(cp["etcd"])["--data-dir"] == "/var/lib/pocketkube/etcd"
    assert flags(components("worker2")["dockerd"]) == {
        "--data-root": "/var/lib/pocketkube/nodes/worker2/docker",
        "--exec-root": "/run/pocketkube/worker2/docker",
        "--pidfile": "/run/pocketkube/worker2/docker.pid",
        "--bridge": "none",
        "--iptables": "false",
        "--ip-masq": "false",
        "--config-file": "/var/lib/pocketkube/nodes/worker2/daemon.json",
    }
    assert "unix:///run/pocketkube/worker2/docker.sock" in components("worker2")["dockerd"]


def test_config_files_daemon_json_registry_and_resolv_conf() -> None:
    assert daemon_json(CLUSTER, "overlay2") == {
        "registry-mirrors": ["http://192.168.56.10:5000"],
        "insecure-registries": ["192.168.56.10:5000"],
        "storage-driver": "overlay2",
    }
    dockerd = next(c for c in node_components(CLUSTER, CLUSTER.node("worker1"), "vfs") if c.name == "dockerd")
    ((path, content),) = dockerd.config_files
    assert path == Path("/var/lib/pocketkube/nodes/worker1/daemon.json")
    assert json.loads(content)["storage-driver"] == "vfs"
    registry = yaml.safe_load(registry_config(CLUSTER, CLUSTER.control_plane))
    assert registry["http"]["addr"] == "192.168.56.10:5000"
    assert registry["storage"]["filesystem"]["rootdirectory"].startswith("/var/lib/pocketkube/registry")
    kubelet = next(c for c in node_components(CLUSTER, CLUSTER.node("worker2")) if c.name == "kubelet")
    resolv = Path("/var/lib/pocketkube/nodes/worker2/resolv.conf")
    assert kubelet.config_files == ((resolv, "nameserver 192.168.56.1\n"),)


def test_kube_dns_service_and_endpoints() -> None:
    service, endpoints = kube_dns_objects(CLUSTER)
    assert service["metadata"] == {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    assert "selector" not in service["spec"]
    assert service["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in service["spec"]["ports"]] == [
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
    ]
    (subset,) = endpoints["subsets"]
    assert subset["addresses"] == [
        {"ip": "192.168.56.10", "nodeName": "control-plane"},
        {"ip": "192.168.56.11", "nodeName": "worker1"},
    ]
    assert {(p["name"], p["protocol"]) for p in subset["ports"]} == {("dns", "UDP"), ("dns-tcp", "TCP")}


def test_kubeconfig_is_read_by_real_kubectl(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "kubeconfig"
    assert write_kubeconfig(path, "http://127.0.0.1:6443") is True
    assert write_kubeconfig(path, "http://127.0.0.1:6443") is False
    assert path.stat().st_mode & 0o777 == 0o600
    view = json.loads(
        subprocess.run(
            ["kubectl", "--kubeconfig", str(path), "config", "view", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert view["current-context"] == "pocketkube"
    assert view["clusters"] == [{"name": "pocketkube", "cluster": {"server": "http://127.0.0.1:6443"}}]
    assert view["contexts"][0]["context"] == {"cluster": "pocketkube", "user": "pocketkube"}
    assert kubeconfig("http://127.0.0.1:7443")["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:7443"
