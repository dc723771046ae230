"""Malformed and random packets (scapy) at kdns on 127.0.0.1, then it must still answer correctly.

Bounded: at most PACKETS datagrams and SECONDS seconds of sending, a few TCP
streams of junk, only to 127.0.0.1.  Any packet that made the server hit an
unexpected exception (logged as "failed to answer") fails the test, as does
any wrong answer afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT
from scapy.packet import fuzz

from kdns.server import DnsServer, StaticSource
from tests.kdns.objects import cluster_index

PACKETS = 3000
SECONDS = 4.0
TCP_STREAMS = 20
NAMES = [b"web.default.svc.cluster.local", b"WeB.DeFault.svc.cluster.local", b"nope.cluster.local", b"x" * 70]


def valid_packets(rng: random.Random) -> list[bytes]:
    """Well-formed queries of many shapes: the seeds the mutations start from."""
    seeds = []
    for name in NAMES:
        for qtype in (1, 28, 33, 12, 255, 16, 6, 99, 65535):
            seeds.append(bytes(DNS(id=rng.randrange(65536), rd=1, qd=DNSQR(qname=name, qtype=qtype))))
        seeds.append(
            bytes(DNS(rd=1, qd=DNSQR(qname=name), ar=DNSRROPT(rclass=rng.choice([0, 512, 1232, 65535]), version=0)))
        )
    return seeds


def packets(rng: random.Random) -> Iterator[bytes]:
    """An endless mix: scapy-fuzzed DNS layers, mutated seeds, truncations, random bytes."""
    seeds = valid_packets(rng)
    while True:
        kind = rng.randrange(6)
        if kind == 0:
            yield bytes(fuzz(DNS(qd=DNSQR(qname=rng.choice(NAMES)))))
        elif kind == 1:
            yield bytes(fuzz(DNS(qd=fuzz(DNSQR()), an=fuzz(DNSRR()), ar=fuzz(DNSRROPT()))))
        elif kind == 2:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data)
        elif kind == 3:
            seed = rng.choice(seeds)
            yield seed[: rng.randrange(len(seed))]
        elif kind == 4:
            seed = rng.choice(seeds)  # counts claiming more records than there are, or pointers that loop
            yield seed[:4] + bytes(rng.randrange(256) for _ in range(8)) + seed[12:] + b"\xc0\x0c" * rng.randrange(4)
        else:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))


def blast(port: int, seed: int) -> int:
    """Send fuzzed datagrams (bounded in count and time), draining replies; returns how many were sent."""
    rng = random.Random(seed)
    deadline = time.monotonic() + SECONDS
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for packet in packets(rng):
            if sent >= PACKETS or time.monotonic() > deadline:
                break
            sock.sendto(packet, ("127.0.0.1", port))
            sent += 1
            try:
                while True:
                    sock.recv(65535)
            except BlockingIOError:
                pass
    return sent


def tcp_junk(port: int, seed: int) -> None:
    """TCP streams with lying length prefixes, junk bodies and early closes."""
    rng = random.Random(seed)
    seeds = valid_packets(rng)
    for _ in range(TCP_STREAMS):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            body = rng.choice([rng.randbytes(rng.randrange(40)), rng.choice(seeds)[: rng.randrange(20)]])
            prefix = rng.randrange(65536).to_bytes(2, "big") if rng.random() < 0.5 else len(body).to_bytes(2, "big")
            conn.sendall(prefix + body)


async def ask(port: int, name: str, qtype: str, tcp: bool = False) -> DNSRecord:
    request = DNSRecord.question(name, qtype)
    return DNSRecord.parse(await asyncio.to_thread(request.send, "127.0.0.1", port, tcp, 5))


async def test_server_survives_fuzzing_and_still_answers_correctly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="kdns")
    server = DnsServer(StaticSource(cluster_index()), None, idle_timeout=1.0)
    _, port = await server.start("127.0.0.1", 0)
    try:
        sent = await asyncio.to_thread(blast, port, 1234)
        await asyncio.to_thread(tcp_junk, port, 99)
        assert sent > 100
        assert server.serving
        for tcp in (False, True):
            web = await ask(port, "WEB.default.svc.cluster.local", "A", tcp)
            assert web.header.rcode == RCODE.NOERROR and web.header.aa == 1
            assert [(str(rr.rname), str(rr.rdata)) for rr in web.rr] == [
                ("WEB.default.svc.cluster.local.", "10.96.5.5")
            ]
            srv = await ask(port, "_http._tcp.web.default.svc.cluster.local", "SRV", tcp)
            assert [rr.rdata.port for rr in srv.rr] == [80] and [rr.rtype for rr in srv.ar] == [QTYPE.A]
            nope = await ask(port, "nope.default.svc.cluster.local", "A", tcp)
            assert nope.header.rcode == RCODE.NXDOMAIN and [rr.rtype for rr in nope.auth] == [QTYPE.SOA]
    finally:
        await server.stop()
    assert "failed to answer" not in caplog.text
