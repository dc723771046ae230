"""Forwarding through kdns to a real upstream (dnslib's server on 127.0.0.x:53): cache, retries, REFUSED."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, DNSRecord

from control.clock import FakeClock
from kdns.forward import Forwarder, read_resolv_conf
from kdns.server import DnsServer, StaticSource
from tests.kdns.objects import cluster_index
from tests.kdns.upstream import CountingResolver, upstream

UPSTREAM_IP = "127.0.0.77"
SECOND_UPSTREAM_IP = "127.0.0.78"


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[CountingResolver]:
    with upstream(UPSTREAM_IP) as resolver:
        yield resolver


@pytest.fixture
def fake_upstream(running_upstream: CountingResolver) -> CountingResolver:
    """The module's upstream, with its question counts reset for this test."""
    running_upstream.asked.clear()
    return running_upstream


@pytest.fixture
def closed_port() -> int:
    """A UDP and TCP port on 127.0.0.1 with nothing listening (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_upstream() -> Iterator[tuple[str, int]]:
    """A UDP socket that takes queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield "127.0.0.1", int(sock.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def kdns(
    tmp_path: Path, fake_upstream: CountingResolver, clock: FakeClock
) -> AsyncIterator[tuple[int, CountingResolver]]:
    """kdns forwarding to the fake upstream named in a resolv.conf file."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"# node resolver\nsearch example\nnameserver {UPSTREAM_IP}\noptions ndots:1\n")
    server = DnsServer(StaticSource(cluster_index()), Forwarder(read_resolv_conf(str(resolv)), clock=clock))
    _, port = await server.start("127.0.0.1", 0)
    yield port, fake_upstream
    await server.stop()


async def query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    request = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(await asyncio.to_thread(request.send, "127.0.0.1", port, False, 5))
    assert reply.header.id == request.header.id
    return reply


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def test_resolv_conf_nameservers(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.0.0.2\n# nameserver 10.0.0.3\nsearch a b\nnameserver 10.0.0.4 ; two\n")
    assert read_resolv_conf(str(resolv)) == [("10.0.0.2", 53), ("10.0.0.4", 53)]
    with pytest.raises(ValueError, match="no-such-file"):
        read_resolv_conf(str(tmp_path / "no-such-file"))


async def test_outside_names_are_forwarded(kdns: tuple[int, CountingResolver]) -> None:
    port, resolver = kdns
    reply = await query(port, "www.example.com")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.ra == 1
    assert addresses(reply) == ["192.0.2.80"]
    assert resolver.asked[("www.example.com.", "A", "udp")] == 1


async def test_positive_answers_are_cached_for_their_ttl(kdns: tuple[int, CountingResolver], clock: FakeClock) -> None:
    port, resolver = kdns
    first = await query(port, "short.example")
    await clock.advance(4)
    second = await query(port, "short.example")
    assert addresses(first) == addresses(second) == ["192.0.2.10"]
    assert resolver.asked[("short.example.", "A", "udp")] == 1
    assert second.rr[0].ttl == 6  # the cached answer ages
    await clock.advance(0.5)  # asked again within the second: the same TTL; a second later, one less
    assert [rr.ttl for rr in (await query(port, "short.example")).rr] == [6]
    await clock.advance(1)
    assert [rr.ttl for rr in (await query(port, "short.example")).rr] == [5]
    await clock.advance(5.5)  # past the 10 s TTL
    await query(port, "short.example")
    assert resolver.asked[("short.example.", "A", "udp")] == 2


async def test_cached_ttl_is_capped(kdns: tuple[int, CountingResolver], clock: FakeClock) -> None:
    port, resolver = kdns
    await query(port, "www.example.com")
    await clock.advance(31)  # the record says 120 s; the cache keeps it for at most 30
    await query(port, "www.example.com")
    assert resolver.asked[("www.example.com.", "A", "udp")] == 2


async def test_concurrent_askers_share_one_upstream_query(kdns: tuple[int, CountingResolver]) -> None:
    port, resolver = kdns
    replies = await asyncio.gather(*(query(port, "slow.example") for _ in range(5)))
    assert [addresses(r) for r in replies] == [["192.0.2.30"]] * 5
    assert resolver.asked[("slow.example.", "A", "udp")] == 1


async def test_negative_answers_are_cached_by_soa_minimum(kdns: tuple[int, CountingResolver], clock: FakeClock) -> None:
    port, resolver = kdns
    first = await query(port, "missing.example")
    second = await query(port, "missing.example")
    assert first.header.rcode == second.header.rcode == RCODE.NXDOMAIN
    assert [rr.rtype for rr in second.auth] == [QTYPE.SOA]
    assert resolver.asked[("missing.example.", "A", "udp")] == 1
    nodata = await query(port, "www.example.com", "TXT")
    await query(port, "www.example.com", "TXT")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    assert resolver.asked[("www.example.com.", "TXT", "udp")] == 1
    await clock.advance(31)
    await query(port, "missing.example")
    assert resolver.asked[("missing.example.", "A", "udp")] == 2


async def test_truncated_upstream_answer_is_retried_over_tcp(kdns: tuple[int, CountingResolver]) -> None:
    port, resolver = kdns
    reply = await query(port, "big.example")
    assert addresses(reply) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert resolver.asked[("big.example.", "A", "udp")] == 1
    assert resolver.asked[("big.example.", "A", "tcp")] == 1


async def test_external_name_cname_is_followed_upstream(kdns: tuple[int, CountingResolver]) -> None:
    port, _ = kdns
    reply = await query(port, "ext.default.svc.cluster.local")
    assert [(QTYPE.get(rr.rtype), str(rr.rdata)) for rr in reply.rr] == [
        ("CNAME", "www.example.com."),
        ("A", "192.0.2.80"),
    ]


async def test_cluster_names_never_reach_the_upstream(kdns: tuple[int, CountingResolver]) -> None:
    port, resolver = kdns
    assert (await query(port, "nope.default.svc.cluster.local")).header.rcode == RCODE.NXDOMAIN
    assert (await query(port, "9.9.99.10.in-addr.arpa", "PTR")).header.rcode == RCODE.NXDOMAIN
    assert not resolver.asked


async def test_closed_upstream_port_is_servfail(closed_port: int) -> None:
    server = DnsServer(StaticSource(cluster_index()), Forwarder([("127.0.0.1", closed_port)]))
    _, port = await server.start("127.0.0.1", 0)
    try:
        # The client waits 5 s: a reply at all means kdns gave up well before that.
        assert (await query(port, "www.example.com")).header.rcode == RCODE.SERVFAIL
    finally:
        await server.stop()


async def test_silent_upstream_is_servfail_within_budget(silent_upstream: tuple[str, int]) -> None:
    server = DnsServer(StaticSource(cluster_index()), Forwarder([silent_upstream], timeout=0.3, budget=1.0))
    _, port = await server.start("127.0.0.1", 0)
    try:
        assert (await query(port, "www.example.com")).header.rcode == RCODE.SERVFAIL
    finally:
        await server.stop()


async def test_next_upstream_is_tried_after_a_silent_one(silent_upstream: tuple[str, int]) -> None:
    with upstream(SECOND_UPSTREAM_IP) as resolver:
        forwarder = Forwarder([silent_upstream, (SECOND_UPSTREAM_IP, 53)], timeout=0.3, budget=2.0)
        server = DnsServer(StaticSource(cluster_index()), forwarder)
        _, port = await server.start("127.0.0.1", 0)
        try:
            assert addresses(await query(port, "www.example.com")) == ["192.0.2.80"]
        finally:
            await server.stop()
    assert resolver.asked[("www.example.com.", "A", "udp")] == 1


async def test_clients_outside_the_allowed_ranges_are_refused(fake_upstream: CountingResolver) -> None:
    server = DnsServer(
        StaticSource(cluster_index()),
        Forwarder([(UPSTREAM_IP, 53)]),
        recursion_networks=["10.244.0.0/16", "10.96.0.0/12", "192.168.56.0/24"],
    )
    _, port = await server.start("127.0.0.1", 0)
    try:
        assert (await query(port, "www.example.com")).header.rcode == RCODE.REFUSED
        # The cluster zone stays open to everyone.
        assert addresses(await query(port, "kubernetes.default.svc.cluster.local")) == ["10.96.0.1"]
    finally:
        await server.stop()
    assert not fake_upstream.asked


def test_cache_is_bounded(clock: FakeClock) -> None:
    forwarder = Forwarder([], clock=clock, cache_size=3)
    for i in range(5):
        answered = DNSRecord.question(f"n{i}.example").reply()
        answered.add_answer(*RR.fromZone(f"n{i}.example. 60 IN A 192.0.2.{i}"))
        forwarder.cache.put((f"n{i}.example.", QTYPE.A, 1), answered)
    assert len(forwarder.cache) == 3
    assert forwarder.cache.get(("n0.example.", QTYPE.A, 1)) is None
    assert forwarder.cache.get(("n4.example.", QTYPE.A, 1)) is not None
