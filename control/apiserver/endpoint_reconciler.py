"""The `kubernetes` Service's endpoints: every API server that is alive, as upstream's lease reconciler keeps them.

Each API server keeps a key `/masterleases/<its IP>` in etcd, rewritten every
`interval` seconds with an expiry `ttl` seconds ahead; the Endpoints and the
EndpointSlice `default/kubernetes` list the IPs whose key has not expired
(expired keys are deleted). An API server that stops cleanly removes its own
key at once; one that dies (its node killed) drops out once its key expires,
so the Service stays on the live API servers of an HA control plane.
With one API server the list is just its own address, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import aetcd
import grpc

from control.api.errors import ApiError
from control.apiserver.storage import KeyExists, KeyNotFound, RevisionConflict, Storage

log = logging.getLogger(__name__)

LEASE_PREFIX = "/masterleases/"
LEASE_TTL = 15.0  # upstream's master lease TTL
RECONCILE_INTERVAL = 5.0  # well under the TTL, so a live server's key never lapses between renewals

# (live API server IPs, port) -> writes the `kubernetes` Endpoints and EndpointSlice
Publish = Callable[[Sequence[str], int], Awaitable[None]]


class EndpointReconciler:
    """Keep this API server's lease and publish the live ones as the `kubernetes` endpoints."""

    def __init__(
        self,
        storage: Storage,
        publish: Publish,
        ip: str,
        port: int,
        wall_clock: Callable[[], float] = time.time,
        ttl: float = LEASE_TTL,
        interval: float = RECONCILE_INTERVAL,
    ):
        self.storage = storage
        self.publish = publish
        self.ip = ip
        self.port = port
        self.wall_clock = wall_clock  # wall time: every API server, on any machine, compares expiries
        self.ttl = ttl
        self.interval = interval

    @property
    def key(self) -> str:
        return LEASE_PREFIX + self.ip

    async def renew(self) -> None:
        """Write this server's lease with a fresh expiry (create it if missing)."""
        lease = {"metadata": {"name": self.ip}, "expires": self.wall_clock() + self.ttl}
        stored = await self.storage.get(self.key)
        try:
            if stored is None:
                await self.storage.create(self.key, lease)
            else:
                await self.storage.update(self.key, lease, stored.revision)
        except (KeyExists, KeyNotFound, RevisionConflict):
            pass  # another write raced ours; the next round renews again, well before expiry

    async def live_ips(self) -> list[str]:
        """IPs of unexpired leases, sorted; expired leases are deleted."""
        now = self.wall_clock()
        live = []
        for stored in (await self.storage.list(LEASE_PREFIX))[0]:
            if float(stored.obj.get("expires", 0)) > now:
                live.append(stored.obj["metadata"]["name"])
                continue
            try:
                await self.storage.delete(stored.key, stored.revision)
            except (KeyNotFound, RevisionConflict):
                pass  # renewed or deleted meanwhile
        return sorted(live)

    async def reconcile(self) -> list[str]:
        """Renew, then publish the live API servers; returns them."""
        await self.renew()
        live = await self.live_ips()
        await self.publish(live, self.port)
        return live

    async def run(self) -> None:
        """Reconcile every interval until cancelled; a failed round (etcd away) is logged and retried."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.reconcile()
            except (ApiError, OSError, aetcd.ClientError, grpc.aio.AioRpcError) as err:
                log.warning("kubernetes endpoints reconcile failed", extra={"error": str(err)})

    async def remove(self) -> None:
        """On shutdown: drop this server's lease and publish the others (kept as they are if none is left)."""
        stored = await self.storage.get(self.key)
        if stored is not None:
            try:
                await self.storage.delete(self.key, stored.revision)
            except (KeyNotFound, RevisionConflict):
                pass
        live = await self.live_ips()
        if live:
            await self.publish(live, self.port)
