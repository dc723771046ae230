"""The `kubernetes` endpoints reconciler on a real etcd: every API server with a live lease is listed,
one whose lease expired (its node died) drops out, one that stops cleanly leaves at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from control.apiserver.endpoint_reconciler import LEASE_PREFIX, EndpointReconciler
from control.apiserver.storage import Storage
from tests.conftest import EtcdServer

TTL = 15.0


class WallClock:
    """Wall time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Published:
    """Records what the reconcilers publish as the `kubernetes` endpoints."""

    def __init__(self) -> None:
        self.lists: list[tuple[list[str], int]] = []

    async def __call__(self, ips: Sequence[str], port: int) -> None:
        self.lists.append((list(ips), port))

    @property
    def last(self) -> list[str]:
        return self.lists[-1][0]


@pytest.fixture
async def storage(etcd_server: EtcdServer) -> AsyncIterator[Storage]:
    store = Storage(etcd_server.url, prefix=f"/pkt-{uuid.uuid4().hex[:12]}")
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


def reconciler(storage: Storage, published: Published, clock: WallClock, ip: str) -> EndpointReconciler:
    return EndpointReconciler(storage, published, ip, 6443, wall_clock=clock, ttl=TTL, interval=1.0)


async def test_every_live_api_server_is_listed(storage: Storage) -> None:
    clock, published = WallClock(), Published()
    servers = [reconciler(storage, published, clock, ip) for ip in ("192.168.56.20", "192.168.56.10", "192.168.56.21")]
    for server in servers:
        await server.reconcile()
    assert published.last == ["192.168.56.10", "192.168.56.20", "192.168.56.21"]
    assert published.lists[0] == (["192.168.56.20"], 6443)
    keys = sorted(s.key for s in (await storage.list(LEASE_PREFIX))[0])
    assert keys == [LEASE_PREFIX + ip for ip in ("192.168.56.10", "192.168.56.20", "192.168.56.21")]


async def test_a_dead_server_drops_out_when_its_lease_expires(storage: Storage) -> None:
    clock, published = WallClock(), Published()
    alive = reconciler(storage, published, clock, "192.168.56.20")
    dead = reconciler(storage, published, clock, "192.168.56.10")
    await dead.reconcile()
    await alive.reconcile()
    assert published.last == ["192.168.56.10", "192.168.56.20"]
    clock.now += TTL - 1  # the dead one stops renewing; its lease is still valid
    assert await alive.reconcile() == ["192.168.56.10", "192.168.56.20"]
    clock.now += 2  # now past its expiry; the live one renewed a second ago
    assert await alive.reconcile() == ["192.168.56.20"]
    assert [s.key for s in (await storage.list(LEASE_PREFIX))[0]] == [LEASE_PREFIX + "192.168.56.20"]
    await dead.reconcile()  # it comes back
    assert published.last == ["192.168.56.10", "192.168.56.20"]


async def test_a_clean_stop_leaves_at_once(storage: Storage) -> None:
    clock, published = WallClock(), Published()
    first = reconciler(storage, published, clock, "192.168.56.10")
    second = reconciler(storage, published, clock, "192.168.56.20")
    await first.reconcile()
    await second.reconcile()
    await first.remove()
    assert published.last == ["192.168.56.20"]
    count = len(published.lists)
    await second.remove()  # the last one leaves the endpoints as they are rather than empty them
    assert len(published.lists) == count
    assert (await storage.list(LEASE_PREFIX))[0] == []
