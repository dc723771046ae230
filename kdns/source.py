"""The record index fed from the API server through informers (Services, Endpoints, Namespaces).

Watch events only mark the index stale; the next query rebuilds it from the
informer caches, so a burst of changes costs one rebuild and every answer
comes from one consistent snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from control.client import Client, Informer, Object, name_of
from kdns.records import RecordIndex


class InformerSource:
    """A RecordSource over live informers."""

    def __init__(
        self,
        client: Client,
        *,
        zone: str,
        ttl: int,
        reverse_cidrs: Iterable[str],
        server_ips: Iterable[str],
        server_port: int,
    ):
        self.zone = zone
        self.ttl = ttl
        self.reverse_cidrs = tuple(reverse_cidrs)
        self.server_ips = tuple(server_ips)
        self.server_port = server_port
        self.services = Informer(client, "services")
        self.endpoints = Informer(client, "endpoints")
        self.namespaces = Informer(client, "namespaces")
        self._informers = (self.services, self.endpoints, self.namespaces)
        for informer in self._informers:
            informer.add_handler(self._changed)
        self._serial = int(time.time())
        self._index = self._build()
        self._stale = False

    def _changed(self, _kind: str, _obj: Object, _prev: Object | None) -> None:
        self._stale = True
        self._serial = max(self._serial + 1, int(time.time()))  # SOA serial: last change, always rising

    def _build(self) -> RecordIndex:
        return RecordIndex.build(
            self.services.items(),
            self.endpoints.items(),
            [name_of(ns) for ns in self.namespaces.items()],
            zone=self.zone,
            ttl=self.ttl,
            serial=self._serial,
            reverse_cidrs=self.reverse_cidrs,
            server_ips=self.server_ips,
            server_port=self.server_port,
        )

    def index(self) -> RecordIndex:
        if self._stale:
            self._stale = False
            self._index = self._build()
        return self._index

    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self._informers)

    async def run(self) -> None:
        """Run the informers until cancelled."""
        await asyncio.gather(*(informer.run() for informer in self._informers))
