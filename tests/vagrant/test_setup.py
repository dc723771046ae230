"""`pocket node setup`'s pure parts: the units and files it writes, from the same node description as `pocket up`."""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pocket.certs import cluster_pki
from pocket.config import CONTROL_PLANE_ROLE, WORKER_ROLE, ClusterConfig
from pocket.node import node_components
from pocket.setup import (
    MODULES_FILE,
    NODE_FILES_READER,
    NODE_FILES_SECRET,
    SYSCTL_FILE,
    UNIT_DIR,
    SetupError,
    bootstrap_readers,
    bootstrap_token_for,
    file_mode,
    node_files_key,
    open_node_files,
    seal_node_files,
    node_cluster,
    node_units,
    parse_cluster_nodes,
    planned_files,
    run_setup,
    unit_name,
    units_to_restart,
    write_if_changed,
)

PYTHON = "/opt/pocketkube/bin/python"
TOKEN = "0123456789abcdef0123456789abcdef"
OTHER_TOKEN = "fedcba9876543210fedcba9876543210"


def exec_start(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, text
    return shlex.split(lines[0].removeprefix("ExecStart="))


CLUSTER_NODES = (("control-plane", "192.168.56.10"), ("worker1", "192.168.56.11"), ("worker2", "192.168.56.12"))


def vm_units(name: str, python: str = PYTHON) -> list:
    """The units of one node of the default three-node cluster, as `pocket node setup` makes them on a VM."""
    ip = dict(CLUSTER_NODES)[name]
    role = CONTROL_PLANE_ROLE if name == "control-plane" else WORKER_ROLE
    cluster, node = node_cluster(role, name, ip, "192.168.56.10", CLUSTER_NODES)
    return node_units(cluster, node, "overlay2", python)


def control_plane_units() -> list:
    return vm_units("control-plane")


def worker_units() -> list:
    return vm_units("worker2")


BOOTSTRAP_FLAG = ["--bootstrap-kubeconfig", "/var/lib/pocketkube/pki/kubeconfigs/bootstrap-kubelet.conf"]


@pytest.mark.parametrize("name", [name for name, _ in CLUSTER_NODES])
def test_each_vm_runs_what_the_local_cluster_runs_on_that_node(name: str) -> None:
    """Same components, same command lines as `pocket up` with its PKI (same paths: both use ClusterConfig's
    defaults); only a worker's kubelet also gets --bootstrap-kubeconfig, right after its --kubeconfig."""
    local = ClusterConfig()
    expected = [(unit_name(c.name), list(c.argv))
                for c in node_components(local, local.node(name), "overlay2", PYTHON, cluster_pki(local))]
    if name != "control-plane":
        kubelet = next(argv for unit, argv in expected if unit == unit_name("kubelet"))
        kubelet[6:6] = BOOTSTRAP_FLAG
    assert [(u.name, exec_start(u.text)) for u in vm_units(name)] == expected


def test_control_plane_runs_every_component_in_start_order() -> None:
    names = [u.name for u in control_plane_units()]
    assert names[:3] == [unit_name(n) for n in ("etcd", "registry", "dockerd")]
    assert names.index(unit_name("apiserver")) < names.index(unit_name("kubelet"))
    assert set(names) == {unit_name(n) for n in ("etcd", "registry", "dockerd", "apiserver", "controller-manager",
                                                 "scheduler", "kdns", "kubelet", "kproxy")}


def test_worker_runs_only_node_components() -> None:
    assert [u.name for u in worker_units()] == [unit_name(n) for n in ("dockerd", "kubelet", "kproxy")]


def test_without_cluster_nodes_a_worker_knows_the_control_plane_and_itself() -> None:
    cluster, node = node_cluster(WORKER_ROLE, "worker3", "192.168.56.13", "192.168.56.10")
    assert [(n.name, n.role, n.ip) for n in cluster.nodes] == [
        ("control-plane", CONTROL_PLANE_ROLE, "192.168.56.10"), ("worker3", WORKER_ROLE, "192.168.56.13")]
    assert [n.ip for n in cluster.control_planes] == ["192.168.56.10"]


def test_exec_start_uses_the_private_addresses() -> None:
    kubelet = next(exec_start(u.text) for u in vm_units("worker1") if u.component.name == "kubelet")
    assert kubelet[:4] == [PYTHON, "-m", "pocket.cli", "kubelet"]
    assert kubelet[kubelet.index("--node-ip") + 1] == "192.168.56.11"
    assert kubelet[kubelet.index("--tls-cert-file") + 1] == "/var/lib/pocketkube/pki/kubelet-worker1.crt"


def test_units_are_ordered_after_what_they_need() -> None:
    units = {u.component.name: u for u in control_plane_units()}
    after = next(line for line in units["apiserver"].text.splitlines() if line.startswith("After="))
    assert {"pocket-etcd.service", "pocket-dockerd.service"} <= set(after.removeprefix("After=").split())
    etcd_after = next(line for line in units["etcd"].text.splitlines() if line.startswith("After="))
    assert etcd_after == "After=network-online.target"
    for unit in units.values():
        assert "Restart=always" in unit.text.splitlines()


def test_dockerd_unit_creates_its_socket_directory_and_keeps_containers_on_restart() -> None:
    dockerd = worker_units()[0]
    lines = dockerd.text.splitlines()
    assert "ExecStartPre=/bin/mkdir -p /run/pocketkube/worker2" in lines
    assert "KillMode=process" in lines
    assert "-H" in exec_start(dockerd.text)
    assert exec_start(dockerd.text)[exec_start(dockerd.text).index("-H") + 1] == \
        "unix:///run/pocketkube/worker2/docker.sock"


def test_planned_files_hold_configuration_of_the_components() -> None:
    files = planned_files(control_plane_units())
    daemon = json.loads(files[Path("/var/lib/pocketkube/nodes/control-plane/daemon.json")])
    assert daemon["registry-mirrors"] == ["http://192.168.56.10:5000"]
    assert daemon["insecure-registries"] == ["192.168.56.10:5000"]
    assert "addr: 192.168.56.10:5000" in files[Path("/var/lib/pocketkube/registry/config.yml")]
    assert files[Path("/var/lib/pocketkube/nodes/control-plane/resolv.conf")].startswith("nameserver ")
    assert "net.ipv4.ip_forward = 1" in files[SYSCTL_FILE]
    assert "br_netfilter" in files[MODULES_FILE].split()
    assert UNIT_DIR / "pocket-kdns.service" in files


def test_worker_mirror_points_at_the_control_plane() -> None:
    files = planned_files(worker_units())
    daemon = json.loads(files[Path("/var/lib/pocketkube/nodes/worker2/daemon.json")])
    assert daemon["registry-mirrors"] == ["http://192.168.56.10:5000"]
    assert not any("registry" in path.name for path in files if path.parent == UNIT_DIR)


def test_only_units_whose_files_changed_restart() -> None:
    units = worker_units()
    assert units_to_restart(units, set()) == []
    daemon_json = Path("/var/lib/pocketkube/nodes/worker2/daemon.json")
    assert units_to_restart(units, {daemon_json}) == ["pocket-dockerd.service"]
    resolv = Path("/var/lib/pocketkube/nodes/worker2/resolv.conf")
    assert units_to_restart(units, {resolv, UNIT_DIR / "pocket-kproxy.service"}) == [
        "pocket-kubelet.service", "pocket-kproxy.service"]


def test_write_if_changed_writes_once(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.conf"
    assert write_if_changed(path, "one\n")
    mtime = path.stat().st_mtime_ns
    assert not write_if_changed(path, "one\n")
    assert path.stat().st_mtime_ns == mtime
    assert write_if_changed(path, "two\n")
    assert path.read_text() == "two\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bogus", "n", "192.168.56.11", "192.168.56.10"), "--role"),
        ((WORKER_ROLE, "Worker_1", "192.168.56.11", "192.168.56.10"), "DNS labels"),
        ((WORKER_ROLE, "worker1", "192.168.56.300", "192.168.56.10"), "IPv4"),
        ((WORKER_ROLE, "worker1", "192.168.56.11", "cp"), "--control-plane-ip"),
        ((CONTROL_PLANE_ROLE, "control-plane", "192.168.56.11", "192.168.56.10"), "must equal"),
        ((WORKER_ROLE, "worker1", "192.168.56.11", "192.168.56.10", (("worker1", "192.168.56.11"),)),
         "control plane"),
        ((WORKER_ROLE, "worker1", "192.168.56.11", "192.168.56.10", (("control-plane", "192.168.56.10"),)),
         "this node"),
        ((WORKER_ROLE, "worker1", "192.168.56.10", "192.168.56.10"), "must differ"),
    ],
)
def test_bad_node_arguments_are_named(args: tuple, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        node_cluster(*args)


def test_worker_without_token_is_refused_before_touching_the_machine() -> None:
    lines: list[str] = []
    code = run_setup(["--role", "worker", "--node-name", "worker1", "--node-ip", "192.168.56.11",
                      "--control-plane-ip", "192.168.56.10"], lines.append)
    assert code == 1
    assert lines == ["pocket node setup: a worker needs --join-token (the one given to the control plane)"]


def test_bad_token_is_refused() -> None:
    lines: list[str] = []
    code = run_setup(["--role", "control-plane", "--node-name", "control-plane", "--node-ip", "192.168.56.10",
                      "--control-plane-ip", "192.168.56.10", "--join-token", "Not A Token"], lines.append)
    assert code == 1
    assert "--join-token must be" in lines[0]


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """systemd-analyze parses each unit (syntax, ExecStart quoting) with this machine's executables."""
    cluster, node = node_cluster(CONTROL_PLANE_ROLE, "control-plane", "192.168.56.10", "192.168.56.10")
    for unit in node_units(cluster, node, "overlay2", sys.executable):
        path = tmp_path / unit.name
        path.write_text(unit.text)
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{unit.name}: {proc.stderr}"


def test_cluster_nodes_are_parsed_in_order() -> None:
    assert parse_cluster_nodes("control-plane=192.168.56.10,worker1=192.168.56.11") == CLUSTER_NODES[:2]
    with pytest.raises(SetupError, match="NAME=IP"):
        parse_cluster_nodes("control-plane=192.168.56.10,worker1")


# -- security: what the units and files carry -----------------------------------------------------------------

PKI = Path("/var/lib/pocketkube/pki")


def argv_of(units: list, component: str) -> list[str]:
    return next(exec_start(u.text) for u in units if u.component.name == component)


def flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, (name, argv)
    return argv[argv.index(name) + 1]


def test_no_unit_talks_plain_http_to_the_api() -> None:
    for name, _ in CLUSTER_NODES:
        for unit in vm_units(name):
            assert "--api-server" not in exec_start(unit.text), unit.name
            assert "http://192.168.56.10:6443" not in unit.text, unit.name


def test_control_plane_apiserver_is_https_only_with_node_rbac_and_encryption() -> None:
    apiserver = argv_of(control_plane_units(), "apiserver")
    assert flag(apiserver, "--authorization-mode") == "Node,RBAC"
    assert flag(apiserver, "--enable-admission-plugins") == "NodeRestriction"
    assert flag(apiserver, "--tls-cert-file") == str(PKI / "apiserver.crt")
    assert flag(apiserver, "--tls-private-key-file") == str(PKI / "apiserver.key")
    assert flag(apiserver, "--client-ca-file") == str(PKI / "ca.crt")
    assert flag(apiserver, "--encryption-provider-config") == str(PKI / "encryption-config.yaml")
    assert flag(apiserver, "--service-account-key-file") == str(PKI / "sa.pub")
    assert flag(apiserver, "--service-account-signing-key-file") == str(PKI / "sa.key")
    assert flag(apiserver, "--kubelet-client-certificate") == str(PKI / "apiserver-kubelet-client.crt")
    assert flag(apiserver, "--kubelet-certificate-authority") == str(PKI / "ca.crt")
    assert flag(apiserver, "--etcd-servers") == "https://127.0.0.1:2379"
    assert flag(apiserver, "--etcd-certfile") == str(PKI / "apiserver-etcd-client.crt")
    assert "--anonymous-auth" not in apiserver  # false by default: no credentials, 401


def test_control_plane_etcd_wants_client_certificates_on_its_own_addresses_only() -> None:
    etcd = argv_of(control_plane_units(), "etcd")
    assert "--client-cert-auth" in etcd
    assert flag(etcd, "--listen-client-urls") == "https://192.168.56.10:2379,https://127.0.0.1:2379"
    assert flag(etcd, "--trusted-ca-file") == str(PKI / "ca.crt")
    assert flag(etcd, "--cert-file") == str(PKI / "etcd-server.crt")


def test_each_control_plane_component_has_its_own_identity() -> None:
    units = control_plane_units()
    kubeconfigs = {name: flag(argv_of(units, name), "--kubeconfig")
                   for name in ("controller-manager", "scheduler", "kdns", "kubelet", "kproxy")}
    assert kubeconfigs == {
        "controller-manager": str(PKI / "kubeconfigs/controller-manager.conf"),
        "scheduler": str(PKI / "kubeconfigs/scheduler.conf"),
        "kdns": str(PKI / "kubeconfigs/kdns.conf"),
        "kubelet": str(PKI / "kubeconfigs/node-control-plane.conf"),
        "kproxy": str(PKI / "kubeconfigs/node-control-plane.conf"),
    }
    manager = argv_of(units, "controller-manager")
    assert flag(manager, "--cluster-signing-cert-file") == str(PKI / "ca.crt")
    assert flag(manager, "--cluster-signing-key-file") == str(PKI / "ca.key")
    assert "--bootstrap-kubeconfig" not in argv_of(units, "kubelet"), "the control plane's node cert is made at setup"


@pytest.mark.parametrize("worker", ["worker1", "worker2"])
def test_worker_kubelet_bootstraps_and_kproxy_uses_the_node_identity_it_gets(worker: str) -> None:
    units = vm_units(worker)
    kubelet, kproxy = argv_of(units, "kubelet"), argv_of(units, "kproxy")
    node_kubeconfig = str(PKI / f"kubeconfigs/node-{worker}.conf")
    assert flag(kubelet, "--kubeconfig") == node_kubeconfig == flag(kproxy, "--kubeconfig")
    assert flag(kubelet, "--bootstrap-kubeconfig") == str(PKI / "kubeconfigs/bootstrap-kubelet.conf")
    assert flag(kubelet, "--tls-cert-file") == str(PKI / f"kubelet-{worker}.crt")
    assert flag(kubelet, "--client-ca-file") == str(PKI / "ca.crt")
    kdns = [u for u in units if u.component.name == "kdns"]
    if worker == "worker1":  # kdns runs on the control plane and the first worker, with kdns's identity
        assert flag(exec_start(kdns[0].text), "--kubeconfig") == str(PKI / "kubeconfigs/kdns.conf")
    else:
        assert not kdns


def test_private_files_are_written_owner_only(tmp_path: Path) -> None:
    key = tmp_path / "pki" / "kubelet-worker1.key"
    assert write_if_changed(key, "KEY\n", file_mode(key))
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    assert write_if_changed(key, "KEY\n", file_mode(key)), "a private file left readable is fixed"
    assert key.stat().st_mode & 0o777 == 0o600
    assert file_mode(tmp_path / "kubeconfigs" / "bootstrap-kubelet.conf") == 0o600
    assert file_mode(tmp_path / "ca.crt") == 0o644


def test_node_files_open_only_with_the_join_token_and_for_their_node() -> None:
    files = {"kubelet-worker1.crt": "CERT", "kubelet-worker1.key": "KEY"}
    sealed = seal_node_files(TOKEN, "worker1", files)
    assert "KEY" not in base64.b64decode(sealed).decode(errors="replace")
    assert sealed != seal_node_files(TOKEN, "worker1", files), "a fresh nonce each time"
    assert open_node_files(TOKEN, "worker1", sealed) == files
    with pytest.raises(SetupError, match="do not open with this --join-token"):
        open_node_files(OTHER_TOKEN, "worker1", sealed)
    with pytest.raises(SetupError, match="uploaded for worker2 do not open"):
        open_node_files(TOKEN, "worker2", sealed)
    assert node_files_key(TOKEN) != hashlib.sha256(bootstrap_token_for(TOKEN).encode()).digest()


def test_only_bootstrap_tokens_may_read_cluster_info_and_the_sealed_files() -> None:
    objects = {(plural, o["metadata"]["namespace"], o["metadata"]["name"]): o for plural, o in bootstrap_readers()}
    cluster_info = objects[("roles", "kube-public", "kubeadm:bootstrap-signer-clusterinfo")]
    assert cluster_info["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                                      "resourceNames": ["cluster-info"], "verbs": ["get"]}]
    node_files = objects[("roles", "kube-system", NODE_FILES_READER)]
    assert node_files["rules"][0]["resourceNames"] == [NODE_FILES_SECRET]
    assert node_files["rules"][0]["verbs"] == ["get"]
    subjects = {name: o["subjects"] for (plural, _, name), o in objects.items() if plural == "rolebindings"}
    assert subjects[NODE_FILES_READER] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                            "name": "system:bootstrappers:kubeadm:default-node-token"}]
