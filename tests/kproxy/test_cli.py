"""`pocket kproxy` flags: the agreed command line parses, bad values are refused naming the flag."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from control.cli_support import add_common
from kproxy.cli import COMMAND, node_config, programmer_for

AGREED = (
    "--api-server http://192.168.56.10:6443 --node-name worker1 --node-ip 192.168.56.11 "
    "--cluster-cidr 10.244.0.0/16 --health-port 10256 --iptables legacy"
).split()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common(parser)
    COMMAND.add_arguments(parser)
    return parser.parse_args(argv)


def test_agreed_command_line() -> None:
    args = parse(AGREED + ["-v"])
    node = node_config(args)
    assert (node.node_name, node.node_ips, node.cluster_cidr) == ("worker1", ("192.168.56.11",), "10.244.0.0/16")
    assert (args.health_port, args.iptables, args.min_sync_period, args.sync_period) == (10256, "legacy", 0.1, 30.0)
    assert (args.mode, args.announce_interface) == ("iptables", "eth0")


@pytest.mark.parametrize(
    ("extra", "kind", "bulk_limit"),
    [
        ([], "IptablesProgrammer", None),
        (["--iptables", "nft"], "IptablesProgrammer", 500),
        (["--mode", "nftables"], "NftablesProgrammer", None),
    ],
)
def test_mode_and_backend_choose_the_programmer(extra: list[str], kind: str, bulk_limit: int | None) -> None:
    args = parse(AGREED + extra)
    programmer = programmer_for(args, node_config(args))
    assert type(programmer).__name__ == kind
    assert getattr(programmer, "bulk_limit", None) == bulk_limit


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--node-ip", "192.168.56.300"], "--node-ip '192.168.56.300': not an IP address"),
        (["--cluster-cidr", "10.244.0.0/40"], "--cluster-cidr '10.244.0.0/40'"),
        (["--health-port", "70000"], "--health-port 70000: not a port number"),
        (["--sync-period", "0"], "--sync-period 0.0: must be positive"),
        (["--min-sync-period", "-1"], "--min-sync-period -1.0: must not be negative"),
    ],
)
def test_bad_flag_is_named(extra: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        node_config(parse(AGREED + extra))


def test_module_entry_point_refuses_bad_flags_with_exit_code_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kproxy", *AGREED, "--node-ip", "nope"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "kproxy: --node-ip 'nope': not an IP address" in done.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "kproxy", *AGREED, "--iptables", "ipvs"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2 and "--iptables" in unknown.stderr
    bad_mode = subprocess.run(
        [sys.executable, "-m", "kproxy", *AGREED, "--mode", "ipvs"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad_mode.returncode == 2 and "--mode" in bad_mode.stderr
