"""The conntrack sysctls kube-proxy sets when it starts, with its defaults.

kube-proxy (cmd/kube-proxy/app/server_linux.go, conntrack.go) raises
`nf_conntrack_max` to max(32768 per CPU, 131072), capped at 1,048,576, and the
hash size to a quarter of it, but never lowers them; it sets the established
and CLOSE_WAIT TCP timeouts to 24 h and 1 h (the kernel's are 5 days, which
keeps dead flows far too long, and 60 s, which lets a half-closed flow lose
its NAT while the server still holds it); `tcp_be_liberal` and the UDP
timeouts only when asked. kproxy runs inside its node's network namespace,
where the timeouts are the namespace's own but `nf_conntrack_max` and the
hash size are the host's and read-only: failing to raise those is logged,
not fatal, since the host keeps whatever limit it has.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROC_SYS_NETFILTER = Path("/proc/sys/net/netfilter")
HASHSIZE = Path("/sys/module/nf_conntrack/parameters/hashsize")
MAX_CAP = 1048576  # kube-proxy's cap on the scaled maximum


@dataclass(frozen=True)
class ConntrackSettings:
    """kube-proxy's `conntrack` configuration; 0 (False) leaves that sysctl as it is."""

    max_per_core: int = 32768
    minimum: int = 131072
    tcp_established_timeout: int = 86400
    tcp_close_wait_timeout: int = 3600
    tcp_be_liberal: bool = False
    udp_timeout: int = 0
    udp_stream_timeout: int = 0

    def wanted_max(self, cpus: int) -> int:
        """The nf_conntrack_max kube-proxy asks for on `cpus` CPUs (0: leave it)."""
        if not self.max_per_core:
            return 0
        return max(min(self.max_per_core * cpus, MAX_CAP), self.minimum)

    def timeouts(self) -> dict[str, int]:
        """The per-namespace sysctls to set, by name under net/netfilter."""
        wanted = {
            "nf_conntrack_tcp_timeout_established": self.tcp_established_timeout,
            "nf_conntrack_tcp_timeout_close_wait": self.tcp_close_wait_timeout,
            "nf_conntrack_tcp_be_liberal": int(self.tcp_be_liberal),
            "nf_conntrack_udp_timeout": self.udp_timeout,
            "nf_conntrack_udp_timeout_stream": self.udp_stream_timeout,
        }
        return {name: value for name, value in wanted.items() if value}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """kube-proxy's conntrack flags, with its defaults."""
    defaults = ConntrackSettings()
    parser.add_argument(
        "--conntrack-max-per-core",
        type=int,
        default=defaults.max_per_core,
        help="nf_conntrack_max per CPU, raised to at least --conntrack-min (0: leave it)",
    )
    parser.add_argument(
        "--conntrack-min", type=int, default=defaults.minimum, help="the least nf_conntrack_max to ask for"
    )
    parser.add_argument(
        "--conntrack-tcp-timeout-established",
        type=int,
        default=defaults.tcp_established_timeout,
        help="seconds an idle established TCP flow is kept (0: leave it)",
    )
    parser.add_argument(
        "--conntrack-tcp-timeout-close-wait",
        type=int,
        default=defaults.tcp_close_wait_timeout,
        help="seconds a TCP flow in CLOSE_WAIT is kept (0: leave it)",
    )
    parser.add_argument(
        "--conntrack-tcp-be-liberal",
        action="store_true",
        help="track TCP without dropping out-of-window packets as INVALID",
    )
    parser.add_argument(
        "--conntrack-udp-timeout", type=int, default=0, help="seconds an unreplied UDP flow is kept (0: leave it)"
    )
    parser.add_argument(
        "--conntrack-udp-timeout-stream",
        type=int,
        default=0,
        help="seconds a UDP flow with replies is kept (0: leave it)",
    )


def settings_from(args: argparse.Namespace) -> ConntrackSettings:
    """The settings the flags ask for; ValueError naming the flag when one is negative."""
    for flag in (
        "max_per_core",
        "min",
        "tcp_timeout_established",
        "tcp_timeout_close_wait",
        "udp_timeout",
        "udp_timeout_stream",
    ):
        value = getattr(args, f"conntrack_{flag}")
        if value < 0:
            raise ValueError(f"--conntrack-{flag.replace('_', '-')} {value}: must be 0 or more")
    return ConntrackSettings(
        max_per_core=args.conntrack_max_per_core,
        minimum=args.conntrack_min,
        tcp_established_timeout=args.conntrack_tcp_timeout_established,
        tcp_close_wait_timeout=args.conntrack_tcp_timeout_close_wait,
        tcp_be_liberal=args.conntrack_tcp_be_liberal,
        udp_timeout=args.conntrack_udp_timeout,
        udp_stream_timeout=args.conntrack_udp_timeout_stream,
    )


def apply(settings: ConntrackSettings, cpus: int | None = None) -> dict[str, int]:
    """Set what kube-proxy sets in this process's network namespace; returns what was written.

    An unwritable timeout is an error (it belongs to this namespace); an unwritable maximum or hash
    size (the host's, read-only outside the host namespace) is a warning.
    """
    ensure_conntrack_loaded()
    written: dict[str, int] = {}
    wanted_max = settings.wanted_max(cpus or os.cpu_count() or 1)
    current_max = int((PROC_SYS_NETFILTER / "nf_conntrack_max").read_text())
    if wanted_max > current_max and _write_host_limit(PROC_SYS_NETFILTER / "nf_conntrack_max", wanted_max):
        written["nf_conntrack_max"] = wanted_max
        if int(HASHSIZE.read_text()) < wanted_max // 4 and _write_host_limit(HASHSIZE, wanted_max // 4):
            written["hashsize"] = wanted_max // 4
    for name, value in settings.timeouts().items():
        path = PROC_SYS_NETFILTER / name
        if int(path.read_text()) != value:
            path.write_text(f"{value}\n")
            written[name] = value
    for name, value in written.items():
        log.info("set conntrack sysctl", extra={"sysctl": name, "value": value})
    return written


def ensure_conntrack_loaded(modprobe: Sequence[str] = ("modprobe", "nf_conntrack")) -> None:
    """Load nf_conntrack if nothing has yet: its sysctls exist only then, and a fresh VM loads it only with
    the first NAT rule, which kproxy writes after this. OSError, naming the command, if that fails."""
    if (PROC_SYS_NETFILTER / "nf_conntrack_max").exists():
        return
    command = " ".join(modprobe)
    try:
        done = subprocess.run(list(modprobe), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OSError(f"nf_conntrack is not loaded and `{command}` could not run: {error}") from error
    if done.returncode != 0 or not (PROC_SYS_NETFILTER / "nf_conntrack_max").exists():
        raise OSError(f"nf_conntrack is not loaded and `{command}` did not load it: {done.stderr.strip()}")
    log.info("loaded nf_conntrack", extra={"command": command})


def _write_host_limit(path: Path, value: int) -> bool:
    try:
        path.write_text(f"{value}\n")
    except OSError as error:
        log.warning(
            "cannot raise a host-wide conntrack limit from this namespace; the host keeps its own",
            extra={"path": str(path), "wanted": value, "error": str(error)},
        )
        return False
    return True
