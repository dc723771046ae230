"""`pocket up --proxy-mode` reaches every node's kproxy as its `--mode`."""

from __future__ import annotations

import argparse

import pytest

from pocket.commands import COMMANDS, cluster_config
from pocket.node import node_components


def kproxy_modes(*up_flags: str) -> set[str]:
    """The `--mode` of the kproxy on every node, for `pocket up` given these flags."""
    parser = argparse.ArgumentParser(prog="pocket up", exit_on_error=False)
    COMMANDS["up"].add_arguments(parser)
    cluster = cluster_config(parser.parse_args(list(up_flags)))
    modes = set()
    for node in cluster.nodes:
        argv = next(c.argv for c in node_components(cluster, node, python="python3") if c.name == "kproxy")
        modes.add(argv[argv.index("--mode") + 1])
    return modes


def test_proxy_mode_defaults_to_iptables_on_every_node() -> None:
    assert kproxy_modes() == {"iptables"}


def test_proxy_mode_nftables_reaches_every_kproxy() -> None:
    assert kproxy_modes("--proxy-mode", "nftables") == {"nftables"}


def test_unknown_proxy_mode_is_refused_naming_the_choices() -> None:
    with pytest.raises(argparse.ArgumentError, match="ipvs.*iptables.*nftables"):
        kproxy_modes("--proxy-mode", "ipvs")
