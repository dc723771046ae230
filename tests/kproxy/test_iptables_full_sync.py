"""What keeps a full sync near a bare restore: save running unattended while rules are built, restore's pipe holding
whole batches, the garbage collector paused while building. Real tools in namespaces this test makes."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from kproxy.iptables.restore import (
    PIPE_SIZE,
    IptablesPacketFilter,
    PacketFilterError,
    RecordingPacketFilter,
    parse_save,
)
from kproxy.iptables.rules import Chain, ServiceRules
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from tests.kproxy.netns import namespaces, processes_in

pytestmark = pytest.mark.root

NODE = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
# Starts the command after it only once the file named first exists (at most 10 s of polling).
GATED = 'i=0; while [ ! -e "$0" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exec "$@"'


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("save") as (ns,):
        yield ns


def test_save_runs_to_the_end_with_nobody_reading_and_gives_all_its_output(node_ns: str) -> None:
    # Far more output than a pipe holds: 3,000 rules of about 60 characters.
    rules = "".join(f"-A FOREIGN -s 10.1.{i // 256}.{i % 256}/32 -j RETURN\n" for i in range(3000))
    restore = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns])
    restore.restore(f"*nat\n:FOREIGN - [0:0]\n{rules}COMMIT\n")
    saving = restore.start_save()
    deadline = time.monotonic() + 10
    while not saving.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert saving.done(), "save did not finish while nothing read its output"
    saved = saving.result()
    assert len(saved) > 64 * 1024
    assert parse_save(saved)["nat"].rules == rules.splitlines()


def test_a_failing_save_is_reported_with_its_own_words() -> None:
    missing = IptablesPacketFilter("legacy", ["ip", "netns", "exec", "pkt-kproxy-no-such-namespace"])
    with pytest.raises(PacketFilterError, match=r"iptables-legacy-save exited \d+: .*pkt-kproxy-no-such-namespace"):
        missing.save()


def test_a_save_that_never_finishes_is_killed_after_the_timeout(node_ns: str) -> None:
    hung = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns, "sh", "-c", "exec sleep 60", "--"], 0.5)
    with pytest.raises(PacketFilterError, match=r"iptables-legacy-save: no answer within 0.5 s, killed"):
        hung.save()
    assert processes_in(node_ns) == []


def unbuildable() -> ServiceSnapshot:
    """A snapshot whose first service fails to build (its endpoint has no valid address)."""
    key = ServicePortName("default", "bad", "", "TCP")
    return ServiceSnapshot([ServicePort(key, "10.96.0.10", 80)], {key: (Endpoint("not-an-address", 8080),)})


def test_a_failure_while_building_during_save_leaves_no_save_running(node_ns: str) -> None:
    # A save that takes a while, so that it is still running when building fails at the first service.
    slow = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns, "sh", "-c", 'sleep 0.5; exec "$@"', "--"])
    with pytest.raises(OSError, match="illegal IP address"):
        IptablesProgrammer(slow, NODE).sync(unbuildable(), full=True)
    assert processes_in(node_ns) == []


class CollectorWatchingProgrammer(IptablesProgrammer):
    """The real programmer, noting whether the garbage collector was on as each chain was built."""

    def __init__(self, packet_filter: RecordingPacketFilter):
        super().__init__(packet_filter, NODE)
        self.collector_on: dict[str, bool] = {}

    def chains(self, parts: Iterable[ServiceRules]) -> Iterator[Chain]:
        for chain in super().chains(parts):
            self.collector_on[chain[0][1]] = gc.isenabled()
            yield chain


class CollectorWatchingFilter(RecordingPacketFilter):
    """Records payloads, noting whether the garbage collector was on once restore had taken all its input."""

    collector_on_when_fed: bool | None = None

    def restore(self, payload: str | Iterable[str], noflush: bool = True) -> None:
        super().restore(payload, noflush)
        self.collector_on_when_fed = gc.isenabled()


@pytest.mark.parametrize("enabled_before", [True, False])
@pytest.mark.parametrize("full", [True, False])
def test_the_collector_is_off_while_services_are_built_and_as_it_was_before_restore_ends(
    enabled_before: bool, full: bool
) -> None:
    key = ServicePortName("default", "web", "", "TCP")
    snap = ServiceSnapshot([ServicePort(key, "10.96.0.10", 80)], {key: (Endpoint("10.244.1.1", 8080),)})
    packet_filter = CollectorWatchingFilter()
    programmer = CollectorWatchingProgrammer(packet_filter)
    if not enabled_before:
        gc.disable()
    try:
        assert programmer.sync(snap, full=full).chains_written > 0
        per_service = {c: on for c, on in programmer.collector_on.items() if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
        assert len(per_service) == 2 and not any(per_service.values())
        # Back as it was once the services were built: while restore still worked, not after it.
        assert packet_filter.collector_on_when_fed is enabled_before
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()


def test_the_collector_is_back_on_after_a_sync_that_failed_while_building() -> None:
    with pytest.raises(OSError, match="illegal IP address"):
        IptablesProgrammer(RecordingPacketFilter(), NODE).sync(unbuildable(), full=True)
    assert gc.isenabled()


def test_the_collector_is_back_on_after_a_restore_that_failed_with_services_still_to_build() -> None:
    keys = [ServicePortName("default", f"web{i}", "", "TCP") for i in range(3)]
    snap = ServiceSnapshot(
        [ServicePort(k, f"10.96.0.{10 + i}", 80) for i, k in enumerate(keys)],
        {k: (Endpoint(f"10.244.1.{i + 1}", 8080),) for i, k in enumerate(keys)},
    )
    refusing = RecordingPacketFilter(fail_with="iptables-legacy-restore exited 1: line 2 failed")
    failure: PacketFilterError | None = None
    try:
        IptablesProgrammer(refusing, NODE).sync(snap, full=True)
    except PacketFilterError as err:
        failure = err  # kept, traceback and all, as a caller logging it later would: the sync's frames live on
    assert failure is not None and "line 2 failed" in str(failure)
    assert gc.isenabled()


def test_restore_takes_a_write_larger_than_a_default_pipe_before_reading_any(node_ns: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    # Restore starts reading only once `go` exists, and that is made only after the big write has returned.
    gated = IptablesPacketFilter("legacy", ["ip", "netns", "exec", node_ns, "sh", "-c", GATED, str(go)], timeout=10)
    padding = "# padding\n" * (PIPE_SIZE * 3 // 4 // len("# padding\n"))  # well over 64 KiB, within the pipe

    def pieces() -> Iterator[str]:
        yield padding
        go.touch()
        yield "*nat\n:KUBE-SVC-GATED - [0:0]\n-A KUBE-SVC-GATED -j RETURN\nCOMMIT\n"

    gated.restore(pieces())
    assert "-A KUBE-SVC-GATED -j RETURN" in parse_save(gated.save())["nat"].rules
