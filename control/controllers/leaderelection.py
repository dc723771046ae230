"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does.

Several copies of the scheduler or the controller manager may run; only the
one holding the Lease (`kube-system/kube-scheduler`,
`kube-system/kube-controller-manager`) acts.  The holder renews the Lease
every `retry_period`; if it cannot renew for `renew_deadline` it stops
acting and goes back to standby.  A standby takes the Lease once it has seen
the same record, unchanged, for the record's `leaseDurationSeconds` on its
own clock (so clocks across machines never matter), or at once when the
holder released it on a clean shutdown.  Writes use the Lease's
resourceVersion, so two candidates can never both win one round.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import prometheus_client

from control.api.errors import ApiError
from control.client import Client
from control.clock import Clock, RealClock

log = logging.getLogger(__name__)

LEADER = prometheus_client.Gauge(
    "pocket_leader_election_master_status", "1 while this process holds the leader Lease", ["name"]
)
RELEASE_TIMEOUT = 2.0  # seconds a clean shutdown may spend handing the Lease back


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Kubernetes' defaults: lease 15 s, renew deadline 10 s, retry every 2 s."""

    lease_name: str
    identity: str
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # The holder must give up (renew_deadline) before anyone may take over (lease_duration),
        # and must get more than one renewal attempt within the deadline (client-go's checks).
        if min(self.lease_duration, self.renew_deadline, self.retry_period) <= 0:
            raise ValueError("leader election durations must be positive")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"lease duration ({self.lease_duration}s) must be greater than renew deadline ({self.renew_deadline}s)"
            )
        if self.renew_deadline <= 1.2 * self.retry_period:
            raise ValueError(
                f"renew deadline ({self.renew_deadline}s) must exceed 1.2 x retry period ({self.retry_period}s)"
            )
        if not self.lease_name or not self.identity:
            raise ValueError("leader election needs a lease name and an identity")


def default_identity() -> str:
    """hostname_uuid, as kube-scheduler and kube-controller-manager name themselves."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(now: datetime | None = None) -> str:
    """metav1.MicroTime, the format of a Lease's acquireTime and renewTime."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(previous: dict[str, Any], identity: str, lease_duration: float, now: str) -> dict[str, Any]:
    """The spec a successful acquire or renew writes: a new holder bumps leaseTransitions and acquireTime."""
    renewing = previous.get("holderIdentity") == identity
    transitions = int(previous.get("leaseTransitions") or 0)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(lease_duration)),
        "acquireTime": (previous.get("acquireTime") or now) if renewing else now,
        "renewTime": now,
        "leaseTransitions": transitions if renewing or not previous else transitions + 1,
    }


def released_spec(previous: dict[str, Any], now: str) -> dict[str, Any]:
    """What a clean shutdown leaves: no holder, so a standby takes over without waiting (client-go's release)."""
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": now,
        "renewTime": now,
        "leaseTransitions": int(previous.get("leaseTransitions") or 0),
    }


class LeaderElector:
    """Runs `lead()` only while holding the Lease; a fresh `lead()` each time leadership is won again."""

    def __init__(self, client: Client, config: LeaderElectionConfig, clock: Clock | None = None):
        self.client = client
        self.config = config
        self.clock = clock or RealClock()
        self.leading = False
        self._observed_spec: dict[str, Any] | None = None
        self._observed_time = 0.0

    # -- one round -----------------------------------------------------------

    def _observe(self, spec: dict[str, Any]) -> None:
        if spec != self._observed_spec:
            self._observed_spec, self._observed_time = spec, self.clock.now()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; False when someone else holds it or the write lost a race."""
        cfg = self.config
        now = micro_time()
        try:
            lease = await self.client.get("leases", cfg.lease_name, cfg.namespace)
        except ApiError as err:
            if err.code != 404:
                raise
            spec = lease_spec({}, cfg.identity, cfg.lease_duration, now)
            body = {"metadata": {"name": cfg.lease_name, "namespace": cfg.namespace}, "spec": spec}
            try:
                await self.client.create("leases", body, cfg.namespace)
            except ApiError as create_err:
                if create_err.code == 409:  # another candidate created it first
                    return False
                raise
            self._observe(spec)
            return True
        previous: dict[str, Any] = lease.get("spec") or {}
        self._observe(previous)
        holder = previous.get("holderIdentity") or ""
        duration = float(previous.get("leaseDurationSeconds") or cfg.lease_duration)
        if holder and holder != cfg.identity and self.clock.now() < self._observed_time + duration:
            return False
        spec = lease_spec(previous, cfg.identity, cfg.lease_duration, now)
        try:
            await self.client.update("leases", {**lease, "spec": spec})
        except ApiError as err:
            if err.code == 409:  # someone wrote the Lease since our GET
                return False
            raise
        self._observe(spec)
        return True

    async def _attempt(self) -> bool:
        """One round that never raises for a server problem and never outlives the renew deadline."""
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), self.config.renew_deadline)
        except (ApiError, TimeoutError) as err:
            log.info("leader election %s: %s", self.config.lease_name, err)
            return False

    # -- the loop ------------------------------------------------------------

    async def acquire(self) -> None:
        """Return once this process holds the Lease, trying every retry period."""
        while not await self._attempt():
            await self.clock.sleep(self.config.retry_period)
        self._set_leading(True)
        log.info("%s became leader of %s/%s", self.config.identity, self.config.namespace, self.config.lease_name)

    async def keep(self) -> None:
        """Renew every retry period; return when renewals have failed for the renew deadline."""
        last_renew = self.clock.now()
        while True:
            await self.clock.sleep(self.config.retry_period)
            if await self._attempt():
                last_renew = self.clock.now()
            elif self.clock.now() - last_renew >= self.config.renew_deadline:
                log.warning("%s lost leadership of %s", self.config.identity, self.config.lease_name)
                return

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Forever: wait for the Lease, run `lead()` while it is held, stop it when it is lost.

        If `lead()` returns or raises, that ends `run` too (after releasing the Lease).
        """
        try:
            while True:
                await self.acquire()
                leader_task = asyncio.ensure_future(lead())
                keeper = asyncio.ensure_future(self.keep())
                try:
                    done, _ = await asyncio.wait({leader_task, keeper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (leader_task, keeper):
                        task.cancel()
                    await asyncio.gather(leader_task, keeper, return_exceptions=True)
                if leader_task in done:
                    leader_task.result()
                    return
                self._set_leading(False)
        finally:
            if self.leading:
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        """Hand the Lease back on a clean stop, so a standby need not wait out the lease duration."""
        self._set_leading(False)
        cfg = self.config
        try:
            lease = await asyncio.wait_for(self.client.get("leases", cfg.lease_name, cfg.namespace), RELEASE_TIMEOUT)
            spec: dict[str, Any] = lease.get("spec") or {}
            if spec.get("holderIdentity") != cfg.identity:
                return
            released = {**lease, "spec": released_spec(spec, micro_time())}
            await asyncio.wait_for(self.client.update("leases", released), RELEASE_TIMEOUT)
            log.info("%s released %s", cfg.identity, cfg.lease_name)
        except (ApiError, TimeoutError) as err:
            log.info("releasing %s: %s", cfg.lease_name, err)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        LEADER.labels(self.config.lease_name).set(1 if leading else 0)


# -- command-line flags shared by the scheduler and the controller manager ------


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_leader_election_arguments(parser: argparse.ArgumentParser, lease_name: str) -> None:
    """kube-scheduler's and kube-controller-manager's flag names; durations in seconds."""
    parser.add_argument(
        "--leader-elect",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        help="act only while holding a Lease, so several copies can run (default true; --leader-elect=false)",
    )
    parser.add_argument("--leader-elect-lease-duration", type=float, default=15.0, help="seconds a Lease is valid")
    parser.add_argument(
        "--leader-elect-renew-deadline", type=float, default=10.0, help="seconds the leader may fail to renew"
    )
    parser.add_argument("--leader-elect-retry-period", type=float, default=2.0, help="seconds between attempts")
    parser.add_argument("--leader-elect-resource-name", default=lease_name, help="name of the Lease")
    parser.add_argument("--leader-elect-resource-namespace", default="kube-system", help="namespace of the Lease")


def leader_election_config(args: argparse.Namespace) -> LeaderElectionConfig | None:
    """None when --leader-elect=false; SystemExit naming the flags when the durations do not fit together."""
    if not args.leader_elect:
        return None
    try:
        return LeaderElectionConfig(
            lease_name=args.leader_elect_resource_name,
            namespace=args.leader_elect_resource_namespace,
            identity=default_identity(),
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
        )
    except ValueError as err:
        raise SystemExit(f"--leader-elect-*: {err}") from None


async def run_elected(client: Client, config: LeaderElectionConfig | None, lead: Callable[[], Awaitable[None]]) -> None:
    """`lead()` under leader election, or directly when election is off."""
    if config is None:
        await lead()
    else:
        await LeaderElector(client, config).run(lead)
