"""`pocket up --proxy-mode` reaches every node's kproxy as its `--mode`, and later commands remember it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pocket.commands import COMMANDS, cluster_config, remember_proxy_mode
from pocket.node import node_components


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path) -> Path:
    """A state dir of the test's own: the real one remembers the running cluster's mode."""
    return tmp_path


def kproxy_modes(state_dir: Path, *up_flags: str, command: str = "up") -> set[str]:
    """The `--mode` of the kproxy on every node, for `pocket up` (or another command) given these flags."""
    parser = argparse.ArgumentParser(prog=f"pocket {command}", exit_on_error=False)
    COMMANDS[command].add_arguments(parser)
    cluster = cluster_config(parser.parse_args(["--state-dir", str(state_dir), *up_flags]))
    modes = set()
    for node in cluster.nodes:
        argv = next(c.argv for c in node_components(cluster, node, python="python3") if c.name == "kproxy")
        modes.add(argv[argv.index("--mode") + 1])
    return modes


def test_proxy_mode_defaults_to_iptables_on_every_node(state_dir: Path) -> None:
    assert kproxy_modes(state_dir) == {"iptables"}


def test_proxy_mode_nftables_reaches_every_kproxy(state_dir: Path) -> None:
    assert kproxy_modes(state_dir, "--proxy-mode", "nftables") == {"nftables"}


def test_unknown_proxy_mode_is_refused_naming_the_choices(state_dir: Path) -> None:
    with pytest.raises(argparse.ArgumentError, match="ipvs.*iptables.*nftables"):
        kproxy_modes(state_dir, "--proxy-mode", "ipvs")


def test_a_restart_brings_kproxy_back_in_the_mode_up_was_given(state_dir: Path) -> None:
    parser = argparse.ArgumentParser()
    COMMANDS["up"].add_arguments(parser)
    remember_proxy_mode(cluster_config(parser.parse_args(["--state-dir", str(state_dir), "--proxy-mode", "nftables"])))
    assert kproxy_modes(state_dir, "node", "kproxy", command="restart") == {"nftables"}
    assert kproxy_modes(state_dir, "--proxy-mode", "iptables", "node", "kproxy", command="restart") == {"iptables"}
    (state_dir / "proxy-mode").write_text("ipvs\n")
    with pytest.raises(SystemExit, match="proxy-mode says 'ipvs'"):
        kproxy_modes(state_dir, "node", "kproxy", command="restart")
