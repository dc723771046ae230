"""Leader election on a FakeClock against the real API server: who may take the Lease, and when.

Time that matters to the algorithm (how long a record has been seen
unchanged, how long renewals have failed) is the FakeClock's, so the tests
never sleep for lease durations; the Lease itself is a real object in etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from control.clock import FakeClock
from control.controllers.leaderelection import (
    LeaderElectionConfig,
    LeaderElector,
    add_leader_election_arguments,
    lease_spec,
    leader_election_config,
    released_spec,
)


def config(lease: str, identity: str) -> LeaderElectionConfig:
    return LeaderElectionConfig(lease_name=lease, identity=identity)


def fresh_lease() -> str:
    return f"pkt-le-{uuid.uuid4().hex[:8]}"


async def lease_holder(apiserver, lease: str) -> str:
    return (await apiserver.client.get("leases", lease, "kube-system"))["spec"].get("holderIdentity", "")


async def advance_until(
    clock: FakeClock, step: float, check: Callable[[], Awaitable[bool]], limit: float, what: str
) -> float:
    """Advance fake time in steps (giving real HTTP round trips a moment) until `check` holds; return the fake time."""
    for _ in range(int(limit / step) + 1):
        if await check():
            return clock.now()
        await clock.advance(step)
        for _ in range(20):  # the elector's round trip to the server happens in real time
            await asyncio.sleep(0.01)
    raise AssertionError(f"{what} did not happen within {limit}s of fake time")


# -- pure parts ------------------------------------------------------------------


def test_kubernetes_defaults() -> None:
    cfg = config("kube-scheduler", "me")
    assert (cfg.namespace, cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == ("kube-system", 15, 10, 2)


@pytest.mark.parametrize(
    ("durations", "complaint"),
    [
        ((10, 10, 2), "lease duration (10s) must be greater than renew deadline (10s)"),
        ((15, 2, 2), "renew deadline (2s) must exceed 1.2 x retry period (2s)"),
        ((15, 10, 0), "must be positive"),
    ],
)
def test_inconsistent_durations_are_named(durations: tuple[float, float, float], complaint: str) -> None:
    lease, renew, retry = durations
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        LeaderElectionConfig("x", "me", lease_duration=lease, renew_deadline=renew, retry_period=retry)


def test_flags_default_on_and_accept_false() -> None:
    parser = argparse.ArgumentParser()
    add_leader_election_arguments(parser, "kube-scheduler")
    on = leader_election_config(parser.parse_args([]))
    assert on is not None and on.lease_name == "kube-scheduler" and on.identity
    assert leader_election_config(parser.parse_args(["--leader-elect=false"])) is None
    assert leader_election_config(parser.parse_args(["--leader-elect"])) is not None
    with pytest.raises(SystemExit, match="lease duration"):
        leader_election_config(parser.parse_args(["--leader-elect-lease-duration", "5"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--leader-elect=maybe"])


def test_new_holder_bumps_transitions_and_acquire_time() -> None:
    mine = lease_spec({}, "a", 15, "t0")
    assert mine == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "t0",
        "renewTime": "t0",
        "leaseTransitions": 0,
    }
    renewed = lease_spec(mine, "a", 15, "t1")
    assert (renewed["acquireTime"], renewed["renewTime"], renewed["leaseTransitions"]) == ("t0", "t1", 0)
    taken = lease_spec(renewed, "b", 15, "t2")
    assert (taken["holderIdentity"], taken["acquireTime"], taken["leaseTransitions"]) == ("b", "t2", 1)
    released = released_spec(taken, "t3")
    assert (released["holderIdentity"], released["leaseDurationSeconds"], released["leaseTransitions"]) == ("", 1, 1)


# -- against the real API server, on a FakeClock ------------------------------------


async def test_first_candidate_creates_the_lease_and_second_waits_out_the_duration(apiserver) -> None:
    lease = fresh_lease()
    clock = FakeClock()
    first = LeaderElector(apiserver.client, config(lease, "first"), clock)
    second = LeaderElector(apiserver.client, config(lease, "second"), clock)
    assert await first.try_acquire_or_renew()
    assert await lease_holder(apiserver, lease) == "first"
    assert not await second.try_acquire_or_renew()  # second starts observing the record now
    await clock.advance(14)
    assert not await second.try_acquire_or_renew()
    await clock.advance(2)  # 16 s without the record changing: the holder is presumed dead
    assert await second.try_acquire_or_renew()
    got = (await apiserver.client.get("leases", lease, "kube-system"))["spec"]
    assert (got["holderIdentity"], got["leaseTransitions"], got["leaseDurationSeconds"]) == ("second", 1, 15)
    assert not await first.try_acquire_or_renew()  # the old holder sees someone else renewing


async def test_renewing_holder_keeps_the_lease(apiserver) -> None:
    lease = fresh_lease()
    clock = FakeClock()
    holder = LeaderElector(apiserver.client, config(lease, "holder"), clock)
    standby = LeaderElector(apiserver.client, config(lease, "standby"), clock)
    assert await holder.try_acquire_or_renew()
    for _ in range(20):  # 40 s of fake time, renewed every 2 s
        assert not await standby.try_acquire_or_renew()
        await clock.advance(2)
        await asyncio.sleep(0.002)  # renewTime has microsecond resolution: make each renewal distinct
        assert await holder.try_acquire_or_renew()
    assert await lease_holder(apiserver, lease) == "holder"


async def test_lead_runs_while_held_stops_when_renewal_fails_and_lease_is_released_on_cancel(apiserver) -> None:
    lease = fresh_lease()
    clock = FakeClock()
    elector = LeaderElector(apiserver.client, config(lease, "a"), clock)
    terms: list[str] = []
    ended: list[str] = []

    async def lead() -> None:
        terms.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("stopped")

    runner = asyncio.create_task(elector.run(lead))
    try:

        async def leading() -> bool:
            return elector.leading and terms == ["started"]

        await advance_until(clock, 0.5, leading, 5, "first term")
        # Someone else takes the Lease behind the elector's back: its renewals now fail.
        stolen = await apiserver.client.get("leases", lease, "kube-system")
        stolen["spec"] = lease_spec(stolen["spec"], "thief", 15, "2026-01-01T00:00:00.000000Z")
        await apiserver.client.update("leases", stolen)
        start = clock.now()

        async def stopped() -> bool:
            return ended == ["stopped"] and not elector.leading

        lost_at = await advance_until(clock, 1, stopped, 30, "leadership lost")
        assert lost_at - start >= 10  # not before the renew deadline
        # The thief never renews: after its lease duration the elector wins a second term.

        async def second_term() -> bool:
            return elector.leading and terms == ["started", "started"]

        await advance_until(clock, 1, second_term, 40, "second term")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert ended == ["stopped", "stopped"]
    got = (await apiserver.client.get("leases", lease, "kube-system"))["spec"]
    assert (got["holderIdentity"], got["leaseDurationSeconds"]) == ("", 1)  # released: nobody need wait
    successor = LeaderElector(apiserver.client, config(lease, "b"), FakeClock())
    assert await successor.try_acquire_or_renew()


async def test_lead_failing_ends_run_with_its_error_and_releases(apiserver) -> None:
    lease = fresh_lease()
    elector = LeaderElector(apiserver.client, config(lease, "a"), FakeClock())

    async def lead() -> None:
        raise RuntimeError("controller crashed")

    with pytest.raises(RuntimeError, match="controller crashed"):
        await asyncio.wait_for(elector.run(lead), 10)
    assert await lease_holder(apiserver, lease) == ""
