"""The record index fed from the API server through informers (Services, Endpoints, Namespaces).

Watch events mark the index stale and schedule one rebuild (index and
pre-packed answers) on the event loop, so a burst of changes costs one
rebuild, queries find the answers already packed, and every answer comes
from one consistent snapshot.  A query arriving before the scheduled
rebuild has run does the rebuild itself, so no answer is ever older than
the informer caches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from control.client import Client, Informer, Object, name_of
from kdns.packed import PackedAnswers
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
        self._answers = PackedAnswers(self._index)
        self._stale = False
        self._rebuild_scheduled = False

    def _changed(self, _kind: str, _obj: Object, _prev: Object | None) -> None:
        self._stale = True
        self._serial = max(self._serial + 1, int(time.time()))  # SOA serial: last change, always rising
        if not self._rebuild_scheduled:
            self._rebuild_scheduled = True
            asyncio.get_running_loop().call_soon(self._rebuild_if_stale)

    def _rebuild_if_stale(self) -> None:
        self._rebuild_scheduled = False
        if self._stale:
            self._stale = False
            self._index = self._build()
            self._answers = PackedAnswers(self._index, self._answers)

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
        self._rebuild_if_stale()
        return self._index

    def answers(self) -> PackedAnswers:
        self._rebuild_if_stale()
        return self._answers

    def synced(self) -> bool:
        """Whether every informer has listed once and the index includes what they listed."""
        return all(informer.synced.is_set() for informer in self._informers) and not self._stale

    async def run(self) -> None:
        """Run the informers until cancelled."""
        await asyncio.gather(*(informer.run() for informer in self._informers))
