"""Node IPAM: subnets are handed out in order, never twice, and bad flags are named."""

from __future__ import annotations

import ipaddress

import pytest

from control.controllers.nodeipam import next_free_subnet, node_cidrs, parse_cluster_cidr


def test_allocates_distinct_subnets_in_order_until_full():
    cluster = parse_cluster_cidr("10.244.0.0/22", 24)
    used: list[str] = []
    while (subnet := next_free_subnet(cluster, 24, used)) is not None:
        used.append(subnet)
        assert len(used) <= 4
    assert used == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]


def test_skips_used_and_overlapping_ranges():
    cluster = ipaddress.ip_network("10.244.0.0/16")
    assert next_free_subnet(cluster, 24, ["10.244.0.0/24", "10.244.2.0/24"]) == "10.244.1.0/24"
    assert next_free_subnet(cluster, 24, ["10.244.0.0/23", "not-a-cidr"]) == "10.244.2.0/24"


def test_rebuilds_used_set_from_both_fields():
    node = {"spec": {"podCIDR": "10.244.5.0/24", "podCIDRs": ["10.244.5.0/24"]}}
    assert node_cidrs(node) == ["10.244.5.0/24"]
    assert node_cidrs({"spec": {"podCIDR": "10.244.6.0/24"}}) == ["10.244.6.0/24"]


@pytest.mark.parametrize(
    ("cidr", "mask", "message"),
    [
        ("10.244.0.0/33", 24, "--cluster-cidr"),
        ("10.244.0.1/16", 24, "--cluster-cidr"),
        ("10.244.0.0/16", 8, "--node-cidr-mask-size 8"),
        ("fd00::/64", 80, "only IPv4"),
    ],
)
def test_bad_flags_are_named(cidr, mask, message):
    with pytest.raises(ValueError, match=message):
        parse_cluster_cidr(cidr, mask)
