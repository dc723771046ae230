"""Forwarding out-of-cluster names to the node's nameservers, with a TTL-honouring cache.

Each question goes to the resolv.conf nameservers in order over UDP with a
short timeout; a truncated reply is retried over TCP on the same server; when
none answers in time the caller gets None (and answers SERVFAIL), well under
the 5 s a stub resolver waits.  Answers are cached for their smallest TTL
(capped), negative answers for the SOA minimum (RFC 2308).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RR, DNSError, DNSQuestion, DNSRecord

from control.clock import Clock, RealClock
from kdns import metrics

log = logging.getLogger(__name__)

Upstream = tuple[str, int]
CacheKey = tuple[str, int, int]  # (lower-case name with the final dot, type, class)


def read_resolv_conf(path: str) -> list[Upstream]:
    """The `nameserver` lines of a resolv.conf, as (address, 53)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise ValueError(f"--resolv-conf {path}: {err.strerror}") from err
    servers: list[Upstream] = []
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append((fields[1], 53))
    return servers


@dataclass(frozen=True)
class _Entry:
    reply: DNSRecord
    stored_at: float
    expires_at: float


class ResponseCache:
    """An LRU of upstream replies keyed by (name, type, class), expiring by TTL."""

    def __init__(self, clock: Clock, max_entries: int = 10000, max_ttl: int = 30):
        self.clock = clock
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> DNSRecord | None:
        """A copy of the cached reply with TTLs lowered by its age, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock.now()
        if now >= entry.expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        age = int(now - entry.stored_at)
        reply = DNSRecord(entry.reply.header)
        reply.rr = [_aged(rr, age) for rr in entry.reply.rr]
        reply.auth = [_aged(rr, age) for rr in entry.reply.auth]
        reply.ar = [_aged(rr, age) for rr in entry.reply.ar]
        return reply

    def expires_at(self, key: CacheKey) -> float:
        """When the entry for `key` expires, 0 when there is none."""
        entry = self._entries.get(key)
        return entry.expires_at if entry is not None else 0.0

    def put(self, key: CacheKey, reply: DNSRecord) -> None:
        """Store a reply if it is cacheable (NOERROR with answers, NXDOMAIN/NODATA with an SOA)."""
        ttl = _cache_ttl(reply)
        if ttl is None:
            return
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0:
            return
        now = self.clock.now()
        self._entries[key] = _Entry(reply, now, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _cache_key(qname: str, qtype: int, qclass: int) -> CacheKey:
    return (str(qname).lower().rstrip(".") + ".", qtype, qclass)


def _aged(rr: RR, age: int) -> RR:
    return RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - age), rr.rdata)


def _cache_ttl(reply: DNSRecord) -> int | None:
    rcode = reply.header.rcode
    if rcode == RCODE.NOERROR and reply.rr:
        return min(rr.ttl for rr in reply.rr)
    if rcode in (RCODE.NOERROR, RCODE.NXDOMAIN):
        soas = [rr for rr in reply.auth if rr.rtype == QTYPE.SOA]
        if soas:
            return min(soas[0].ttl, soas[0].rdata.times[4])
    return None


class _UdpExchange(asyncio.DatagramProtocol):
    """One UDP question to one upstream; the future gets the matching reply or the socket error."""

    def __init__(self, query: DNSRecord) -> None:
        self.query = query
        self.reply: asyncio.Future[DNSRecord] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds on bad input
            return  # not a reply we can read: keep waiting for one
        if _matches(self.query, reply) and not self.reply.done():
            self.reply.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


def _matches(query: DNSRecord, reply: DNSRecord) -> bool:
    if reply.header.id != query.header.id or not reply.header.qr or len(reply.questions) != 1:
        return False
    asked, got = query.q, reply.q
    return str(asked.qname).lower() == str(got.qname).lower() and (asked.qtype, asked.qclass) == (
        got.qtype,
        got.qclass,
    )


class Forwarder:
    """Resolves names through upstream nameservers, caching what they say."""

    def __init__(
        self,
        upstreams: list[Upstream],
        *,
        clock: Clock | None = None,
        timeout: float = 0.8,
        budget: float = 2.0,
        cache_size: int = 10000,
        max_ttl: int = 30,
    ):
        self.upstreams = list(upstreams)
        self.clock = clock or RealClock()
        self.timeout = timeout
        self.budget = budget
        self.cache = ResponseCache(self.clock, cache_size, max_ttl)
        self._in_flight: dict[CacheKey, asyncio.Future[DNSRecord | None]] = {}

    def cached_until(self, qname: str, qtype: int, qclass: int = 1) -> float:
        """When the cache lets go of its answer to this question (0 when it holds none)."""
        return self.cache.expires_at(_cache_key(qname, qtype, qclass))

    async def resolve(self, qname: str, qtype: int, qclass: int = 1) -> DNSRecord | None:
        """The upstream reply for a question (cached or fresh), or None when no upstream answered."""
        key = _cache_key(qname, qtype, qclass)
        cached = self.cache.get(key)
        type_name = QTYPE.get(qtype, str(qtype))
        if cached is not None:
            metrics.CACHE_HITS.labels(type_name).inc()
            return cached
        metrics.CACHE_MISSES.inc()
        fetch = self._in_flight.get(key)
        if fetch is None:  # the first asker goes upstream; the same question meanwhile waits for it
            fetch = asyncio.ensure_future(self._fetch(key, qname, qtype, qclass))
            self._in_flight[key] = fetch
            fetch.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(fetch)

    async def _fetch(self, key: CacheKey, qname: str, qtype: int, qclass: int) -> DNSRecord | None:
        try:
            reply = await asyncio.wait_for(self._ask_upstreams(qname, qtype, qclass), self.budget)
        except TimeoutError:
            return None
        if reply is not None:
            reply.ar = [rr for rr in reply.ar if rr.rtype != QTYPE.OPT]
            self.cache.put(key, reply)
        return reply

    async def _ask_upstreams(self, qname: str, qtype: int, qclass: int) -> DNSRecord | None:
        for host, port in self.upstreams:
            query = DNSRecord(q=DNSQuestion(qname, qtype, qclass))
            query.header.id = secrets.randbelow(65536)
            query.header.rd = 1
            label = f"{host}:{port}"
            try:
                metrics.FORWARD_REQUESTS.labels(label, "udp").inc()
                reply = await self._udp(query, host, port)
                if reply.header.tc:
                    metrics.FORWARD_REQUESTS.labels(label, "tcp").inc()
                    reply = await self._tcp(query, host, port)
            except (TimeoutError, OSError, DNSError, asyncio.IncompleteReadError, ValueError) as err:
                reason = "timeout" if isinstance(err, TimeoutError) else type(err).__name__
                metrics.FORWARD_FAILURES.labels(label, reason).inc()
                log.info("upstream %s failed for %s: %s", label, qname, reason)
                continue
            if reply.header.rcode in (RCODE.SERVFAIL, RCODE.REFUSED):
                metrics.FORWARD_FAILURES.labels(label, RCODE.get(reply.header.rcode)).inc()
                continue
            return reply
        return None

    async def _udp(self, query: DNSRecord, host: str, port: int) -> DNSRecord:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(lambda: _UdpExchange(query), remote_addr=(host, port))
        try:
            transport.sendto(query.pack())
            return await asyncio.wait_for(protocol.reply, self.timeout)
        finally:
            transport.close()

    async def _tcp(self, query: DNSRecord, host: str, port: int) -> DNSRecord:
        async def exchange() -> DNSRecord:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                packet = query.pack()
                writer.write(struct.pack("!H", len(packet)) + packet)
                await writer.drain()
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = DNSRecord.parse(await reader.readexactly(length))
            finally:
                writer.close()
            if not _matches(query, reply):
                raise ValueError("TCP reply does not match the question")
            return reply

        return await asyncio.wait_for(exchange(), self.timeout)
