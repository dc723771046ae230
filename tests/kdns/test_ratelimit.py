"""Per-client rate limiting and recursion ranges, over real UDP and TCP sockets on 127.0.0.x.

The limiter runs on an injected FakeClock, so budgets refill only when a
test advances it: which queries are answered, truncated or dropped is
exact, whatever the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from control.cli_support import add_common
from control.clock import FakeClock
from kdns.cli import COMMAND
from kdns.forward import Forwarder
from kdns.ratelimit import RateLimiter, truncated_reply
from kdns.server import DnsServer, StaticSource
from tests.kdns.objects import cluster_index
from tests.kdns.upstream import CountingResolver, upstream

CLUSTER_NAME = "kubernetes.default.svc.cluster.local"
QPS, BURST = 2.0, 3.0
QUIET = 1.0  # seconds without a packet after which no more replies are coming
UPSTREAM_IP = "127.0.0.81"
INSIDE, OUTSIDE = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
async def limited(clock: FakeClock) -> AsyncIterator[int]:
    """kdns on 127.0.0.1 allowing each client QPS answers a second, BURST at once."""
    server = DnsServer(StaticSource(cluster_index()), None, rate_limiter=RateLimiter(QPS, burst=BURST, clock=clock))
    _, port = await server.start("127.0.0.1", 0)
    yield port
    await server.stop()


def burst(port: int, count: int, source: str = INSIDE) -> dict[int, DNSRecord]:
    """Send `count` queries at once from `source`; every reply that comes back, by query number."""
    queries = [DNSRecord.question(CLUSTER_NAME, "A") for _ in range(count)]
    for number, query in enumerate(queries):
        query.header.id = 1000 + number
    replies: dict[int, DNSRecord] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(QUIET)
        for query in queries:
            sock.sendto(query.pack(), ("127.0.0.1", port))
        for _ in range(count):
            try:
                reply = DNSRecord.parse(sock.recv(65535))
            except TimeoutError:
                break
            replies[reply.header.id - 1000] = reply
    return replies


def full_answers(replies: dict[int, DNSRecord]) -> list[int]:
    return sorted(n for n, r in replies.items() if not r.header.tc and [str(a.rdata) for a in r.rr] == ["10.96.0.1"])


async def test_over_budget_queries_are_dropped_or_truncated(limited: int) -> None:
    replies = await asyncio.to_thread(burst, limited, 10)
    assert full_answers(replies) == [0, 1, 2]  # the burst
    truncated = sorted(n for n, r in replies.items() if r.header.tc)
    assert truncated == [4, 6, 8]  # every second query over budget slips through as TC=1, the rest are dropped
    for number in truncated:
        reply = replies[number]
        assert reply.header.qr == 1 and reply.header.rcode == RCODE.NOERROR and not reply.rr
        assert str(reply.q.qname) == CLUSTER_NAME + "." and reply.q.qtype == QTYPE.A
    assert len(replies) == 6


async def test_budget_refills_and_is_per_client(limited: int, clock: FakeClock) -> None:
    assert full_answers(await asyncio.to_thread(burst, limited, 5)) == [0, 1, 2]
    # another address has its own budget
    assert full_answers(await asyncio.to_thread(burst, limited, 5, OUTSIDE)) == [0, 1, 2]
    assert full_answers(await asyncio.to_thread(burst, limited, 3)) == []
    await clock.advance(1.0)  # QPS tokens come back
    assert full_answers(await asyncio.to_thread(burst, limited, 5)) == [0, 1]
    await clock.advance(60.0)  # never more than BURST saved up
    assert full_answers(await asyncio.to_thread(burst, limited, 5)) == [0, 1, 2]


async def test_truncated_clients_are_answered_over_tcp(limited: int) -> None:
    replies = await asyncio.to_thread(burst, limited, 6)
    assert any(r.header.tc for r in replies.values())
    request = DNSRecord.question(CLUSTER_NAME, "A")
    reply = DNSRecord.parse(await asyncio.to_thread(request.send, "127.0.0.1", limited, True, 5))
    assert reply.header.id == request.header.id and [str(a.rdata) for a in reply.rr] == ["10.96.0.1"]


def test_truncated_reply_only_for_one_question_queries() -> None:
    query = DNSRecord.question("a.example", "AAAA")
    query.header.rd = 1
    reply = DNSRecord.parse(truncated_reply(query.pack()) or b"")
    assert (reply.header.id, reply.header.tc, reply.header.qr, reply.header.rd) == (query.header.id, 1, 1, 1)
    assert str(reply.q.qname) == "a.example." and reply.q.qtype == QTYPE.AAAA and not reply.rr
    packed = query.pack()
    assert truncated_reply(packed[:11]) is None  # no header
    assert truncated_reply(packed[:-1]) is None  # question cut short
    assert truncated_reply(query.reply().pack()) is None  # a response
    two = DNSRecord.question("a.example")
    two.add_question(DNSRecord.question("b.example").q)
    assert truncated_reply(two.pack()) is None
    assert truncated_reply(packed[:12] + b"\xc0\x0c\x00\x01\x00\x01") is None  # pointer in a question


def test_limiter_memory_is_bounded(clock: FakeClock) -> None:
    limiter = RateLimiter(QPS, burst=BURST, clock=clock, max_clients=100)
    for i in range(1000):
        limiter.check(f"10.244.{i // 256}.{i % 256}")
    assert len(limiter._buckets) <= 100


@pytest.mark.parametrize(("qps", "slip"), [(0, 2), (-1, 2), (5, -1)])
def test_limiter_refuses_nonsense(qps: float, slip: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(qps, slip=slip)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pocket kdns")
    add_common(parser)
    COMMAND.add_arguments(parser)
    return parser.parse_args(argv)


def test_rate_limit_flag(caplog: pytest.LogCaptureFixture) -> None:
    assert _parse(["--listen", "127.0.0.1"]).rate_limit == 1000.0
    assert _parse(["--rate-limit", "0"]).rate_limit == 0.0
    assert COMMAND.run(_parse(["--rate-limit", "-5"])) == 2
    assert "--rate-limit -5: must be 0 (off) or more" in caplog.text


# -- recursion only for the cluster's clients ---------------------------------------


@pytest.fixture
def running_upstream() -> Iterator[CountingResolver]:
    with upstream(UPSTREAM_IP) as resolver:
        yield resolver


async def test_recursion_only_for_allowed_ranges_even_from_the_cache(running_upstream: CountingResolver) -> None:
    """An answer cached (and pre-packed) for a cluster client is still REFUSED to an outside one."""
    server = DnsServer(
        StaticSource(cluster_index()), Forwarder([(UPSTREAM_IP, 53)]), recursion_networks=[f"{INSIDE}/32"]
    )
    _, port = await server.start("127.0.0.1", 0)

    def ask(source: str, name: str) -> DNSRecord:
        request = DNSRecord.question(name, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.sendto(request.pack(), ("127.0.0.1", port))
            reply = DNSRecord.parse(sock.recv(65535))
        assert reply.header.id == request.header.id
        return reply

    try:
        for _ in range(3):  # forwarded once, then from the cache and the fast path
            inside = await asyncio.to_thread(ask, INSIDE, "www.example.com")
            assert inside.header.rcode == RCODE.NOERROR and [str(a.rdata) for a in inside.rr] == ["192.0.2.80"]
        for _ in range(3):
            outside = await asyncio.to_thread(ask, OUTSIDE, "www.example.com")
            assert outside.header.rcode == RCODE.REFUSED and not outside.rr
        cluster = await asyncio.to_thread(ask, OUTSIDE, CLUSTER_NAME)  # the cluster zone is for everyone
        assert [str(a.rdata) for a in cluster.rr] == ["10.96.0.1"]
    finally:
        await server.stop()
    assert running_upstream.asked[("www.example.com.", "A", "udp")] == 1
