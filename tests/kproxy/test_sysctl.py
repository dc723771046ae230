"""kube-proxy's conntrack sysctls: the values asked for, and `apply` run for real inside a `pkt-kproxy-*` namespace."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kproxy import sysctl
from kproxy.sysctl import ConntrackSettings, add_arguments, settings_from
from tests.kproxy.netns import in_ns, namespaces

NETFILTER = "/proc/sys/net/netfilter"
TIMEOUTS = (
    "nf_conntrack_tcp_timeout_established",
    "nf_conntrack_tcp_timeout_close_wait",
    "nf_conntrack_tcp_be_liberal",
    "nf_conntrack_udp_timeout",
    "nf_conntrack_udp_timeout_stream",
)


def test_wanted_max_scales_per_cpu_above_the_minimum_and_below_the_cap() -> None:
    defaults = ConntrackSettings()
    assert defaults.wanted_max(cpus=2) == 131072  # 2 x 32768 is below the minimum
    assert defaults.wanted_max(cpus=8) == 262144
    assert defaults.wanted_max(cpus=64) == 1048576  # 64 x 32768 = 2M, capped
    assert ConntrackSettings(max_per_core=0).wanted_max(cpus=8) == 0


def test_only_asked_for_timeouts_are_set() -> None:
    assert ConntrackSettings().timeouts() == {
        "nf_conntrack_tcp_timeout_established": 86400,
        "nf_conntrack_tcp_timeout_close_wait": 3600,
    }
    everything = ConntrackSettings(tcp_be_liberal=True, udp_timeout=30, udp_stream_timeout=120)
    assert everything.timeouts()["nf_conntrack_tcp_be_liberal"] == 1
    assert everything.timeouts()["nf_conntrack_udp_timeout_stream"] == 120


def test_negative_flag_is_refused_by_name() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(ValueError, match="--conntrack-tcp-timeout-close-wait -1: must be 0 or more"):
        settings_from(parser.parse_args(["--conntrack-tcp-timeout-close-wait", "-1"]))


def test_flags_carry_kube_proxys_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from(parser.parse_args([])) == ConntrackSettings()
    parsed = settings_from(parser.parse_args(["--conntrack-tcp-be-liberal", "--conntrack-udp-timeout", "30"]))
    assert parsed == ConntrackSettings(tcp_be_liberal=True, udp_timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    with namespaces("sysctl") as made:
        yield made[0]


def apply_in(ns: str, settings: Mapping[str, object], cpus: int) -> tuple[dict[str, int], str]:
    """`kproxy.sysctl.apply` run by a Python process inside `ns`: what it wrote, and what it logged."""
    code = (
        "import json, sys; from kproxy.sysctl import ConntrackSettings, apply; "
        "print(json.dumps(apply(ConntrackSettings(**json.loads(sys.argv[1])), int(sys.argv[2]))))"
    )
    done = in_ns(ns, sys.executable, "-c", code, json.dumps(settings), str(cpus))
    return json.loads(done.stdout), done.stderr


def read(ns: str, name: str) -> int:
    return int(in_ns(ns, "cat", f"{NETFILTER}/{name}").stdout)


def host(name: str) -> int:
    return int(Path(NETFILTER, name).read_text())


def test_apply_sets_the_timeouts_in_its_own_namespace_only(netns: str) -> None:
    host_before = {name: host(name) for name in TIMEOUTS}
    settings = {"tcp_be_liberal": True, "udp_timeout": 31, "udp_stream_timeout": 121}
    written, _ = apply_in(netns, settings, cpus=2)
    expected = {
        "nf_conntrack_tcp_timeout_established": 86400,
        "nf_conntrack_tcp_timeout_close_wait": 3600,
        "nf_conntrack_tcp_be_liberal": 1,
        "nf_conntrack_udp_timeout": 31,
        "nf_conntrack_udp_timeout_stream": 121,
    }
    assert written == expected
    assert {name: read(netns, name) for name in TIMEOUTS} == expected
    assert {name: host(name) for name in TIMEOUTS} == host_before
    again, _ = apply_in(netns, settings, cpus=2)
    assert again == {}  # already as wanted: nothing rewritten


def test_a_maximum_above_the_hosts_is_a_warning_inside_a_namespace(netns: str) -> None:
    host_max = host("nf_conntrack_max")
    written, logged = apply_in(netns, {"max_per_core": 1, "minimum": host_max + 1}, cpus=1)
    assert host("nf_conntrack_max") == host_max
    if "nf_conntrack_max" in written:  # a kernel with a per-namespace maximum
        assert read(netns, "nf_conntrack_max") == host_max + 1
    else:
        assert "cannot raise a host-wide conntrack limit" in logged
        assert read(netns, "nf_conntrack_max") == host_max
    assert "hashsize" not in written


def test_a_maximum_below_the_current_one_is_left_alone(netns: str) -> None:
    current = read(netns, "nf_conntrack_max")
    written, logged = apply_in(netns, {"max_per_core": 1, "minimum": current - 1}, cpus=1)
    assert "nf_conntrack_max" not in written
    assert "cannot raise" not in logged


def test_kproxy_refuses_a_negative_conntrack_flag_before_touching_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kproxy", "--node-name", "worker1", "--conntrack-tcp-timeout-established", "-5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "kproxy: --conntrack-tcp-timeout-established -5: must be 0 or more" in done.stdout


def test_a_machine_that_has_not_loaded_conntrack_yet_loads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh VM loads nf_conntrack only with its first NAT rule, after kproxy starts: kproxy loads it first.
    (This host has it loaded, so the sysctl directory is a stand-in and the loader a command creating it.)"""
    monkeypatch.setattr(sysctl, "PROC_SYS_NETFILTER", tmp_path)
    loader = ("sh", "-c", f"echo 262144 > {tmp_path}/nf_conntrack_max")
    sysctl.ensure_conntrack_loaded(loader)
    assert (tmp_path / "nf_conntrack_max").read_text() == "262144\n"
    sysctl.ensure_conntrack_loaded(("false",))  # loaded now: nothing is run


def test_conntrack_that_cannot_be_loaded_is_an_error_naming_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysctl, "PROC_SYS_NETFILTER", tmp_path)
    with pytest.raises(OSError, match="`sh -c echo no module >&2; exit 1` did not load it: no module"):
        sysctl.ensure_conntrack_loaded(("sh", "-c", "echo no module >&2; exit 1"))
    with pytest.raises(OSError, match="`no-such-modprobe nf_conntrack` could not run"):
        sysctl.ensure_conntrack_loaded(("no-such-modprobe", "nf_conntrack"))
