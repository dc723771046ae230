"""The shared local cluster for end-to-end tests.

`cluster` runs `pocket up` once per session (a cluster that is already up
is reused: `pocket up` is idempotent) and runs `pocket down` at the end
only if this session brought the cluster up. test_down.py removes the
cluster, so `pytest_collection_modifyitems` below moves its tests after
every other test of the session, whatever order files are given in.

POCKET_E2E_CLUSTER runs the tests against another local cluster than the
shared one: its `pocket up` flags, e.g. "--prefix pks- --state-dir
/var/lib/pocketkube-sec --run-dir /run/pocketkube-sec --kubeconfig
/tmp/sec.kubeconfig --api-port 6450". Only `pocket()` below and the
`cluster` fixture follow it: tests that run `pocket.cli` themselves (node
stop/start, a second up: test_dns, test_pod_lifecycle, test_service_path,
test_service_types, test_workloads through benchmarks/bench_node_failure)
still act on the default cluster, so do not run those with it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from pocket.certs import ADMIN
from pocket.cluster import docker_client, is_up, security
from pocket.commands import add_cluster_arguments, cluster_config
from pocket.config import KUBELET_PORT, ClusterConfig
from pocket.netns import entered, nsenter_argv

UP_TIMEOUT = 300
CLUSTER_FLAGS = shlex.split(os.environ.get("POCKET_E2E_CLUSTER", ""))
LAST_FILES = ("test_down.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take the cluster down run last (stable order otherwise)."""
    items.sort(key=lambda item: item.path.name in LAST_FILES)


def pocket(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """A `pocket` cluster command (up, down, status, node ...) on the cluster under test."""
    # right after the subcommand: `node` and `client` take everything after their action as its arguments
    argv = [sys.executable, "-m", "pocket.cli", *args[:1], *CLUSTER_FLAGS, *args[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def cluster_under_test() -> ClusterConfig:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return cluster_config(parser.parse_args(CLUSTER_FLAGS))


def host_iptables() -> dict[str, list[str]]:
    """The host namespace's rules from both iptables backends, without the timestamped comment lines."""
    rules = {}
    for command in ("iptables-save", "iptables-legacy-save"):
        out = subprocess.run([command], capture_output=True, text=True, check=True).stdout
        rules[command] = [line for line in out.splitlines() if not line.startswith("#")]
    return rules


@dataclass
class LocalCluster:
    """What tests use: kubectl with the cluster's kubeconfig, commands on nodes, each node's Docker."""

    config: ClusterConfig
    started_here: bool
    host_iptables_before_up: dict[str, list[str]]
    _docker: dict[str, docker.DockerClient] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.config.kubeconfig

    def kubectl(self, *args: str, timeout: float = 120) -> str:
        """Run kubectl against the cluster; return stdout, fail the test with stderr on error."""
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def node_exec(self, node: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command in a node's network namespace; the caller checks returncode."""
        netns = self.config.node_netns(self.config.node(node).name)
        return subprocess.run(nsenter_argv(netns, list(cmd)), capture_output=True, text=True, timeout=timeout)

    def kubelet_get(self, node: str, path: str, timeout: float = 10) -> bytes:
        """GET a kubelet API path from inside the node's network, as the API server would (HTTPS, admin cert)."""
        pki = security(self.config)
        spec = self.config.node(node)
        context = None
        if pki is not None:
            context = ssl.create_default_context(cafile=str(pki.ca))
            context.load_cert_chain(pki.cert(ADMIN), pki.key(ADMIN))
        url = f"{'https' if pki else 'http'}://{spec.ip}:{KUBELET_PORT}{path}"
        with entered(self.config.node_netns(spec.name)):
            with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
                return bytes(resp.read())

    def docker(self, node: str) -> docker.DockerClient:
        if node not in self._docker:
            self._docker[node] = docker_client(self.config, self.config.node(node).name)
        return self._docker[node]

    def close(self) -> None:
        for client in self._docker.values():
            client.close()
        self._docker.clear()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    config = cluster_under_test()
    was_up = is_up(config)
    iptables_before = host_iptables()
    proc = pocket("up")
    if proc.returncode != 0:
        if not was_up:  # tear down what this session half-made; the failure output names the log that matters
            pocket("down", timeout=120)
        pytest.fail(f"`pocket up` failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}", pytrace=False)
    local = LocalCluster(config, started_here=not was_up, host_iptables_before_up=iptables_before)
    try:
        yield local
    finally:
        local.close()
        if local.started_here:
            pocket("down", timeout=120)
