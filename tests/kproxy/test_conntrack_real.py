"""UDP flow cleanup through ctnetlink, on entries in a pkt-kproxy namespace's own conntrack table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kproxy.conntrack import NetlinkConntrack, UdpFlowFilter
from tests.kproxy.netns import in_ns, namespaces

pytestmark = pytest.mark.root

CLIENT = "10.244.1.20"


def add_flow(ns: str, sport: int, vip: str, dport: int, backend: str, proto: str = "udp") -> None:
    """A flow client:sport -> vip:dport that was DNATed to backend:5353 (made with the conntrack CLI)."""
    in_ns(
        ns, "conntrack", "-I", "-p", proto, "-s", CLIENT, "-d", vip, "--sport", str(sport), "--dport", str(dport),
        "--reply-src", backend, "--reply-dst", CLIENT, "--reply-port-src", "5353", "--reply-port-dst", str(sport),
        "--timeout", "120", *(["--state", "ESTABLISHED"] if proto == "tcp" else []),
    )  # fmt: skip


def flows(ns: str) -> str:
    return in_ns(ns, "conntrack", "-L", check=False).stdout


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("ct") as (ns,):
        yield ns


def test_deletes_only_udp_flows_answered_by_the_removed_endpoint(node_ns: str) -> None:
    add_flow(node_ns, 40001, "10.96.0.10", 53, "10.244.0.3")
    add_flow(node_ns, 40002, "10.96.0.10", 53, "10.244.0.4")
    add_flow(node_ns, 40003, "10.96.0.11", 53, "10.244.0.3")
    add_flow(node_ns, 40004, "10.96.0.10", 53, "10.244.0.3", proto="tcp")
    add_flow(node_ns, 40005, "192.168.56.11", 30053, "10.244.0.3")
    assert flows(node_ns).count("sport=4000") == 5
    cleaner = NetlinkConntrack(node_ns)
    cleaner.delete([UdpFlowFilter(53, "10.96.0.10", "10.244.0.3", 5353), UdpFlowFilter(30053, "", "10.244.0.3", 5353)])
    left = flows(node_ns)
    assert "sport=40001" not in left and "sport=40005" not in left
    assert all(f"sport={port}" in left for port in (40002, 40003, 40004))
    # A reply-less filter clears a whole VIP port, whoever answered.
    cleaner.delete([UdpFlowFilter(53, "10.96.0.11")])
    left = flows(node_ns)
    assert "sport=40003" not in left and "sport=40002" in left and "sport=40004" in left


def test_filter_matching() -> None:
    by_endpoint = UdpFlowFilter(53, "10.96.0.10", "10.244.0.3", 5353)
    assert by_endpoint.matches("10.96.0.10", 53, "10.244.0.3", 5353)
    assert not by_endpoint.matches("10.96.0.10", 53, "10.244.0.3", 5354)
    assert not by_endpoint.matches("10.96.0.11", 53, "10.244.0.3", 5353)
    assert UdpFlowFilter(30053, "", "10.244.0.3", 5353).matches("192.168.56.11", 30053, "10.244.0.3", 5353)
    assert UdpFlowFilter(53, "10.96.0.10").matches("10.96.0.10", 53, "10.244.9.9", 1)
