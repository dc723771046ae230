"""The Vagrant cluster as the end-to-end tests see it: kubectl from the host, commands and Docker on VMs over ssh.

It offers what tests/e2e/test_service_path.py uses of the local cluster
(`kubectl`, `docker(node).containers.list(...)`, `exec_run`), so the same
checks run against VMs. Docker is reached by running the `docker` CLI on the
node, against the node's own engine, through `ssh` with the configuration
`vagrant ssh-config` prints (one ssh per call; `vagrant ssh` would start Ruby
every time).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pocket.config import ClusterConfig

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
BOX = "pocketkube/bookworm"
UP_TIMEOUT = 3600


def vagrant_env() -> dict[str, str]:
    """The tested cluster: the offline box, 2 workers, networks that reach nothing beyond the host."""
    return dict(os.environ, POCKET_BOX=BOX, POCKET_WORKERS="2", POCKET_ISOLATED="1")


def vagrant(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["vagrant", *args], cwd=VAGRANT_DIR, env=vagrant_env(), capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class Container:
    """A container on a node's engine, seen through the docker CLI on that node."""

    cluster: VagrantCluster
    node: str
    id: str

    def exec_run(self, cmd: list[str]) -> tuple[int, bytes]:
        """Like docker-py's exec_run: (exit code, stdout and stderr together)."""
        proc = self.cluster.node_exec(self.node, "sh", "-c",
                                      f"{self.cluster.docker_cli(self.node)} exec {self.id} {shlex.join(cmd)} 2>&1")
        return proc.returncode, proc.stdout.encode()


@dataclass
class Containers:
    cluster: VagrantCluster
    node: str

    def list(self, filters: dict[str, list[str]]) -> list[Container]:
        """Running containers matching every label filter."""
        flags = " ".join(f"--filter {shlex.quote('label=' + label)}" for label in filters.get("label", []))
        proc = self.cluster.node_exec(self.node, "sh", "-c", f"{self.cluster.docker_cli(self.node)} ps -q {flags}")
        assert proc.returncode == 0, f"docker ps on {self.node}: {proc.stderr}"
        return [Container(self.cluster, self.node, cid) for cid in proc.stdout.split()]


@dataclass
class NodeDocker:
    containers: Containers


@dataclass
class VagrantCluster:
    """kubectl with the kubeconfig the control plane left in vagrant/.pocket; ssh to the VMs."""

    ssh_config: Path
    kubeconfig: Path = VAGRANT_DIR / ".pocket" / "kubeconfig"
    layout: ClusterConfig = field(default_factory=ClusterConfig)

    def kubectl(self, *args: str, timeout: float = 180) -> str:
        proc = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def node_exec(self, node: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command as root on a VM; the caller checks returncode."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), node, "sudo", shlex.join(cmd)],
                              capture_output=True, text=True, timeout=timeout)

    def docker_cli(self, node: str) -> str:
        return f"docker -H {self.layout.docker_host(node)}"

    def docker(self, node: str) -> NodeDocker:
        return NodeDocker(Containers(self, node))
