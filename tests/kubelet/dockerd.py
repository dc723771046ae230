"""A throwaway dockerd in a network namespace made for the test, and its complete teardown.

The namespace is `pkt-kubelet-<random>`; every directory (data root, exec
root, socket) lives under one temp dir, so teardown can find exactly what
this dockerd made (its containerd and shims carry that path on their
command line; its mounts lie under it) and nothing else.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Dockerd:
    netns: str
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    @property
    def base_url(self) -> str:
        return f"unix://{self.workdir}/docker.sock"

    def in_netns(self, *command: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """Run a command in the node namespace (nsenter, bounded in time)."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns_path}", *command], capture_output=True, text=True, timeout=timeout
        )


def start_dockerd() -> Dockerd:
    netns = f"pkt-kubelet-{secrets.token_hex(3)}"
    workdir = Path(tempfile.mkdtemp(prefix="pkt-kl-", dir="/tmp"))
    subprocess.run(["ip", "netns", "add", netns], check=True)
    log = open(workdir / "dockerd.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
    process = subprocess.Popen(
        [
            "nsenter",
            f"--net=/var/run/netns/{netns}",
            "dockerd",
            "--data-root",
            str(workdir / "data"),
            "--exec-root",
            str(workdir / "exec"),
            "-H",
            f"unix://{workdir}/docker.sock",
            "--pidfile",
            str(workdir / "docker.pid"),
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    daemon = Dockerd(netns, workdir, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            text = (workdir / "dockerd.log").read_text(errors="replace")[-2000:]
            stop_dockerd(daemon)
            raise RuntimeError(f"dockerd exited with {process.returncode}:\n{text}")
        try:
            client = docker.DockerClient(base_url=daemon.base_url, timeout=5)
            try:
                client.ping()
            finally:
                client.close()
            return daemon
        except Exception:
            if time.monotonic() > deadline:
                stop_dockerd(daemon)
                raise
            time.sleep(0.3)


def _our_processes(workdir: Path) -> list[int]:
    """Processes (containerd, shims) whose command line names our temp dir."""
    found = []
    marker = str(workdir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _our_mounts(workdir: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(str(workdir)):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def stop_dockerd(daemon: Dockerd) -> None:
    """Remove every container, stop dockerd and its containerd, unmount, delete the namespace and the dir."""
    if daemon.process.poll() is None:
        try:
            client = docker.DockerClient(base_url=daemon.base_url, timeout=30)
            try:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
            finally:
                client.close()
        except Exception:  # teardown goes on; the processes are killed below anyway
            pass
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait(STOP_TIMEOUT)
    for pid in _our_processes(daemon.workdir):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for point in _our_mounts(daemon.workdir):
        subprocess.run(["umount", "-l", point], capture_output=True)
    subprocess.run(["ip", "netns", "del", daemon.netns], capture_output=True)
    shutil.rmtree(daemon.workdir, ignore_errors=True)
