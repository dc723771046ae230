"""The host side of a Vagrant run: libvirt started if needed, and everything it added removed afterwards.

systemd is not PID 1 on the machines this runs on, so libvirtd and virtlogd
are started by hand. What was there before is recorded first (networks,
pools, volumes, iptables rules and chains, /dev/kvm's mode, IP forwarding),
so the tear-down removes exactly what this run added, and stops only the
daemons it started, by their pid.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LIBVIRT = "qemu:///system"
DAEMONS = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}
KVM = Path("/dev/kvm")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IPTABLES = ("iptables", "iptables-legacy", "ip6tables", "ip6tables-legacy")


def virsh(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["virsh", "-q", "-c", LIBVIRT, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def names(listing: str) -> set[str]:
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def pid_running(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def iptables_rules(command: str) -> dict[str, tuple[set[str], set[str]]]:
    """table -> (user-defined chains, `-A` rules) as iptables-save prints them."""
    out = subprocess.run([f"{command}-save"], capture_output=True, text=True, check=True).stdout
    tables: dict[str, tuple[set[str], set[str]]] = {}
    chains: set[str] = set()
    rules: set[str] = set()
    for line in out.splitlines():
        if line.startswith("*"):
            chains, rules = set(), set()
            tables[line[1:]] = (chains, rules)
        elif line.startswith(":") and line.split()[1] == "-":
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.add(line)
    return tables


def nft_tables() -> set[str]:
    """`family name` of every nftables table (iptables-nft makes them on first use)."""
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return {line.removeprefix("table ").strip() for line in out.splitlines() if line.startswith("table ")}


@dataclass
class LibvirtHost:
    """What the host had before the run, and what the run started."""

    kvm_mode: int = 0
    kvm_gid: int = 0
    ip_forward: str = "0"
    started: list[int] = field(default_factory=list)
    networks: set[str] = field(default_factory=set)
    active_networks: set[str] = field(default_factory=set)
    pools: set[str] = field(default_factory=set)
    volumes: dict[str, set[str]] = field(default_factory=dict)
    iptables: dict[str, dict[str, tuple[set[str], set[str]]]] = field(default_factory=dict)
    nft: set[str] = field(default_factory=set)

    def start(self) -> None:
        """Record the host, then start virtlogd and libvirtd unless they run."""
        if KVM.exists():
            info = KVM.stat()
            self.kvm_mode, self.kvm_gid = stat.S_IMODE(info.st_mode), info.st_gid
        self.ip_forward = IP_FORWARD.read_text().strip()
        self.iptables = {command: iptables_rules(command) for command in IPTABLES}
        self.nft = nft_tables()
        if KVM.exists():
            # Without group access libvirt re-probes qemu for a minute on every VM definition.
            subprocess.run(["chgrp", "kvm", str(KVM)], check=True)
            KVM.chmod(0o660)
        for daemon, pid_file in DAEMONS.items():
            if pid_running(pid_file) is None:
                subprocess.run([daemon, "-d"], check=True, timeout=60)
                self._wait_pid(daemon, pid_file)
        self.networks = names(virsh("net-list", "--all", "--name"))
        self.active_networks = names(virsh("net-list", "--name"))
        self.pools = names(virsh("pool-list", "--all", "--name"))
        self.volumes = {pool: names(virsh("vol-list", pool)) for pool in names(virsh("pool-list", "--name"))}

    def _wait_pid(self, daemon: str, pid_file: Path) -> None:
        deadline = time.monotonic() + 30
        while (pid := pid_running(pid_file)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{daemon} did not write {pid_file}")
            time.sleep(0.2)
        self.started.append(pid)

    def stop(self) -> list[str]:
        """Remove what the run added; return what could not be removed."""
        problems: list[str] = []
        for pool in names(virsh("pool-list", "--name")):
            for volume in names(virsh("vol-list", pool)) - self.volumes.get(pool, set()):
                virsh("vol-delete", "--pool", pool, volume, check=False)
            left = names(virsh("vol-list", pool)) - self.volumes.get(pool, set())
            problems += [f"libvirt volume {pool}/{volume} not deleted" for volume in sorted(left)]
        for pool in names(virsh("pool-list", "--all", "--name")) - self.pools:
            virsh("pool-destroy", pool, check=False)
            virsh("pool-undefine", pool, check=False)
        for network in names(virsh("net-list", "--name")) - self.active_networks:
            virsh("net-destroy", network, check=False)
        for network in names(virsh("net-list", "--all", "--name")) - self.networks:
            virsh("net-undefine", network, check=False)
        for pid in reversed(self.started):
            self._stop_pid(pid, problems)
        self.started.clear()
        problems += self._restore_iptables()
        IP_FORWARD.write_text(self.ip_forward + "\n")
        if KVM.exists():
            os.chown(KVM, -1, self.kvm_gid)
            KVM.chmod(self.kvm_mode)
        return problems

    @staticmethod
    def _stop_pid(pid: int, problems: list[str]) -> None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        problems.append(f"pid {pid} did not stop")

    def _restore_iptables(self) -> list[str]:
        """Delete the rules, chains and nftables tables libvirt added; return what is still there."""
        problems = []
        for command, before in self.iptables.items():
            for table, (chains, rules) in iptables_rules(command).items():
                old_chains, old_rules = before.get(table, (set(), set()))
                for rule in rules - old_rules:
                    args = shlex.split(rule)[1:]
                    subprocess.run([command, "-t", table, "-D", *args], capture_output=True)
                for chain in chains - old_chains:
                    subprocess.run([command, "-t", table, "-F", chain], capture_output=True)
                    subprocess.run([command, "-t", table, "-X", chain], capture_output=True)
        for table in nft_tables() - self.nft:
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
        for command, before in self.iptables.items():
            after = iptables_rules(command)
            for table, (chains, rules) in after.items():
                old_chains, old_rules = before.get(table, (set(), set()))
                if chains - old_chains or rules - old_rules:
                    problems.append(f"{command} table {table}: left {sorted(chains - old_chains)} "
                                    f"{sorted(rules - old_rules)}")
        return problems
