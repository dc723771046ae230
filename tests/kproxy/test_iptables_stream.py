"""Restore input streamed while it is built: real restores in namespaces this test makes, and the payload's shape."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from kproxy.iptables.restore import (
    DECLARE_BATCH,
    PIPE_BATCH,
    IptablesPacketFilter,
    PacketFilterError,
    RecordingPacketFilter,
    chain_rules,
    parse_save,
)
from kproxy.iptables.rules import Chain, ServiceRules
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from tests.kproxy.netns import namespaces, processes_in
from tests.kproxy.tracer import Packet, Ruleset

pytestmark = pytest.mark.root

NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
# More chains than one declaration batch: 4 chains per service (SVC and 3 SEP).
SERVICES = DECLARE_BATCH // 4 + 50


def snapshot(count: int) -> ServiceSnapshot:
    snap = ServiceSnapshot()
    for i in range(count):
        key = ServicePortName("stream", f"svc{i}", "http", "TCP")
        snap.service_ports.append(ServicePort(key, f"10.96.{i // 256}.{i % 256}", 80))
        snap.endpoints[key] = tuple(Endpoint(f"10.244.{i // 256}.{i % 256}", 8080 + j) for j in range(3))
    return snap


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("stream") as (ns,):
        yield ns


class WatchedProgrammer(IptablesProgrammer):
    """The real programmer, noting which processes run in the node's namespace when its last chain is built."""

    def __init__(self, ns: str, backend: str, bulk_limit: int | None):
        super().__init__(IptablesPacketFilter(backend, ["ip", "netns", "exec", ns]), NODE, bulk_limit)
        self.ns = ns
        self.running_at_last_chain: list[str] | None = None

    def chains(self, parts: Iterable[ServiceRules]) -> Iterator[Chain]:
        built = list(super().chains(parts))
        yield from built[:-1]
        self.running_at_last_chain = processes_in(self.ns)
        yield built[-1]


@pytest.mark.parametrize("backend, bulk_limit", [("legacy", None), ("nft", 500)])
def test_full_sync_feeds_restore_while_building_and_the_kernel_ends_up_with_every_chain(
    node_ns: str, backend: str, bulk_limit: int | None
) -> None:
    programmer = WatchedProgrammer(node_ns, backend, bulk_limit)
    snap = snapshot(SERVICES)
    report = programmer.sync(snap, full=True)
    # The restore was already reading when the last chain was still to come.
    assert programmer.running_at_last_chain, "no restore running in the namespace while the rules were built"
    assert report.chains_written == len(programmer.written)
    saved = programmer.packet_filter.save()
    kernel = chain_rules(saved)
    assert set(programmer.written) <= set(kernel)
    traced = Ruleset(saved).summary(Packet("10.244.9.9", "10.96.1.4", 80))  # service 260, in the second batch
    assert set(traced) == {("ACCEPT", f"10.244.1.4:{8080 + j}", False) for j in range(3)}
    # Restarted with the same services: everything is in place, so no restore is even started.
    restarted = WatchedProgrammer(node_ns, backend, bulk_limit)
    assert restarted.sync(snap, full=True).chains_written == 0
    assert restarted.running_at_last_chain == []


def test_a_failure_while_building_kills_restore_before_it_commits(node_ns: str) -> None:
    packet_filter = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns])

    def pieces() -> Iterator[str]:
        yield "*nat\n:KUBE-SVC-HALFWRITTEN - [0:0]\n"
        yield "-A KUBE-SVC-HALFWRITTEN -j RETURN\n" * (2 * PIPE_BATCH // 30)  # more than one write
        assert processes_in(node_ns), "restore should be reading already"
        raise RuntimeError("rule building failed")

    with pytest.raises(RuntimeError, match="rule building failed"):
        packet_filter.restore(pieces())
    assert processes_in(node_ns) == []
    assert "KUBE-SVC-HALFWRITTEN" not in packet_filter.save()


def test_restore_refusing_early_input_is_reported_with_its_own_words(node_ns: str) -> None:
    packet_filter = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns])
    # A bad second line, then far more than the pipe holds: restore exits while input is still coming.
    valid = ":KUBE-SVC-FINE - [0:0]\n" * (4 * PIPE_BATCH // 20)
    with pytest.raises(PacketFilterError, match=r"iptables-legacy-restore exited 1: iptables-restore: line 2 failed"):
        packet_filter.restore(iter(["*nat\n", "-A NO-SUCH-CHAIN -j RETURN\n", valid, "COMMIT\n"]))
    assert "KUBE-SVC-FINE" not in packet_filter.save()


def test_a_restore_that_never_finishes_is_killed_after_the_timeout(node_ns: str) -> None:
    # The "restore" here never reads its input and never exits.
    hung = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns, "sh", "-c", "exec sleep 60", "--"], 0.5)
    with pytest.raises(PacketFilterError, match=r"iptables-legacy-restore: no answer within 0.5 s, killed"):
        hung.restore(iter(["*nat\n", "COMMIT\n"]))
    assert processes_in(node_ns) == []


def test_unknown_backend_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"iptables backend 'ebtables': must be one of \['legacy', 'nft'\]"):
        IptablesPacketFilter("ebtables")


def declared_before_use(payload: str) -> list[str]:
    """Rules that jump to a chain of kproxy's that the payload has not declared yet (restore refuses those)."""
    late: list[str] = []
    declared: set[str] = set()
    for line in payload.splitlines():
        if line.startswith("*"):
            declared = set()
        elif line.startswith(":"):
            declared.add(line[1:].split()[0])
        elif line.startswith(("-A ", "-I ")):
            target = line.rsplit(" -j ", 1)[1].split()[0]
            if target.startswith("KUBE-") and target not in declared:
                late.append(line)
    return late


def test_payload_declares_every_chain_before_a_rule_jumps_to_it_in_batches() -> None:
    recording = RecordingPacketFilter()
    programmer = IptablesProgrammer(recording, NODE)
    programmer.sync(snapshot(SERVICES), full=True)
    (payload,) = recording.payloads
    assert declared_before_use(payload) == []
    assert payload.count("*nat\n") == payload.count("*filter\n") == 1 and payload.count("COMMIT\n") == 2
    # Declarations come in runs of one batch: after the nat header, DECLARE_BATCH of them before the first rule.
    nat = payload[payload.index("*nat\n") :].splitlines()[1:]
    first_rule = next(i for i, line in enumerate(nat) if line.startswith("-A "))
    assert first_rule == DECLARE_BATCH
    assert set(chain_rules(payload)) == set(programmer.written)


def test_bulk_limit_decided_mid_stream_still_replaces_with_every_chain() -> None:
    saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:FOREIGN - [0:0]\n-A FOREIGN -s 10.1.2.3/32 -j RETURN\nCOMMIT\n"
    recording = RecordingPacketFilter(saved=saved)
    programmer = IptablesProgrammer(recording, NODE, bulk_limit=10)
    report = programmer.sync(snapshot(20), full=True)
    assert recording.flushing == [True] and report.full
    (payload,) = recording.payloads
    assert set(chain_rules(payload)) - {("nat", "PREROUTING"), ("nat", "FOREIGN")} == set(programmer.written)
    assert "-A FOREIGN -s 10.1.2.3/32 -j RETURN" in parse_save(payload)["nat"].rules
    assert declared_before_use(payload) == []
    # A change within the limit after that goes through --noflush with only the changed chains.
    changed = snapshot(20)
    key = changed.service_ports[3].key
    changed.endpoints[key] = changed.endpoints[key][:2]
    programmer.sync(changed, full=False)
    assert recording.flushing == [True, False]
    declared = {line[1:].split()[0] for line in recording.payloads[1].splitlines() if line.startswith(":")}
    sep, svc = sorted(declared)  # the service's balancing chain rewritten, the dropped endpoint's chain deleted
    assert declared == {svc, sep} and sep.startswith("KUBE-SEP-") and svc.startswith("KUBE-SVC-")
    assert f"-X {sep}" in recording.payloads[1]
