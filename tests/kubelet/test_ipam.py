"""host-local IPAM: unique addresses, stable per pod, persistent, released on removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelet.network import Ipam, NetworkError, veth_name


def test_allocates_unique_addresses_skipping_the_gateway(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "10.244.1.0/24")
    ips = [ipam.allocate(f"pod-{i}") for i in range(20)]
    assert len(set(ips)) == 20
    assert "10.244.1.1" not in ips and "10.244.1.0" not in ips
    assert ips[0] == "10.244.1.2"


def test_same_pod_same_address(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "10.244.1.0/24")
    assert ipam.allocate("a") == ipam.allocate("a")


def test_persists_across_instances(tmp_path: Path) -> None:
    first = Ipam(tmp_path, "10.244.1.0/24")
    a = first.allocate("a")
    second = Ipam(tmp_path, "10.244.1.0/24")
    assert second.lookup("a") == a
    assert second.allocate("b") != a


def test_release_frees_and_next_allocation_moves_on(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "10.244.1.0/24")
    a = ipam.allocate("a")
    ipam.release("a")
    assert ipam.lookup("a") is None
    assert "a" not in ipam.allocations().values()
    # like host-local, the freed address is not handed out again straight away
    assert ipam.allocate("b") != a


def test_exhaustion_is_an_error(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "10.244.1.0/29")  # hosts .1-.6, .1 is the gateway
    got = {ipam.allocate(f"p{i}") for i in range(5)}
    assert len(got) == 5
    with pytest.raises(NetworkError, match="no free address"):
        ipam.allocate("one-too-many")


def test_veth_names_fit_the_kernel_limit() -> None:
    names = {veth_name(f"uid-{i}") for i in range(100)}
    assert len(names) == 100 and all(len(n) <= 15 for n in names)
