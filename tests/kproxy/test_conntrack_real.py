"""UDP flow cleanup with the real conntrack CLI, on entries in a pkt-kproxy namespace's own conntrack table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kproxy.conntrack import ConntrackCli, UdpFlowFilter
from tests.kproxy.netns import in_ns, namespaces

pytestmark = pytest.mark.root

CLIENT = "10.244.1.20"


def add_flow(ns: str, sport: int, vip: str, backend: str) -> None:
    """A UDP flow client:sport -> vip:53 that was DNATed to backend:5353."""
    in_ns(
        ns, "conntrack", "-I", "-p", "udp", "-s", CLIENT, "-d", vip, "--sport", str(sport), "--dport", "53",
        "--reply-src", backend, "--reply-dst", CLIENT, "--reply-port-src", "5353", "--reply-port-dst", str(sport),
        "--timeout", "120",
    )  # fmt: skip


def flows(ns: str) -> str:
    return in_ns(ns, "conntrack", "-L", "-p", "udp", check=False).stdout


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("ct") as (ns,):
        yield ns


def test_deletes_only_flows_answered_by_the_removed_endpoint(node_ns: str, caplog: pytest.LogCaptureFixture) -> None:
    add_flow(node_ns, 40001, "10.96.0.10", "10.244.0.3")
    add_flow(node_ns, 40002, "10.96.0.10", "10.244.0.4")
    add_flow(node_ns, 40003, "10.96.0.11", "10.244.0.3")
    assert flows(node_ns).count("dport=53") == 3
    cleaner = ConntrackCli(["ip", "netns", "exec", node_ns])
    cleaner.delete([UdpFlowFilter(53, "10.96.0.10", "10.244.0.3", 5353)])
    left = flows(node_ns)
    assert "sport=40001" not in left
    assert "sport=40002" in left and "sport=40003" in left
    # Nothing left to match is not an error, and a reply-less filter clears a whole VIP port.
    cleaner.delete([UdpFlowFilter(53, "10.96.0.10", "10.244.0.3", 5353), UdpFlowFilter(53, "10.96.0.11")])
    left = flows(node_ns)
    assert "sport=40003" not in left and "sport=40002" in left
    assert not [r for r in caplog.records if r.name == "kproxy.conntrack"]


def test_failure_is_logged_not_raised(node_ns: str, caplog: pytest.LogCaptureFixture) -> None:
    ConntrackCli(["ip", "netns", "exec", node_ns]).delete([UdpFlowFilter(53, "not-an-address")])
    (record,) = [r for r in caplog.records if r.name == "kproxy.conntrack"]
    assert "not-an-address" in record.flow  # type: ignore[attr-defined]
