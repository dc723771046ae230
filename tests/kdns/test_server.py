"""Real DNS packets against kdns on 127.0.0.1: UDP and TCP, EDNS0 and truncation, bad packets.

The server is fed a fixed record index (StaticSource) but everything from
the socket on is the production path; queries are made with dnslib's client.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest
from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSQuestion, DNSRecord
from prometheus_client import REGISTRY

from control.observability import serve_health
from kdns.forward import Forwarder
from kdns.packed import PackedAnswers
from kdns.records import RecordIndex
from kdns.server import DnsServer, StaticSource
from tests.kdns.objects import cluster_index, endpoints, service

BIG_HEADLESS = service("default", "big", {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})
BIG_ENDPOINTS = endpoints(
    "default",
    "big",
    [{"addresses": [{"ip": f"10.244.3.{i}"} for i in range(1, 61)], "ports": [{"name": "http", "port": 80}]}],
)
INDEX = cluster_index(extra_services=(BIG_HEADLESS,), extra_endpoints=(BIG_ENDPOINTS,))


async def start(server: DnsServer) -> int:
    _, port = await server.start("127.0.0.1", 0)
    return port


@pytest.fixture
async def dns_port() -> AsyncIterator[int]:
    """kdns on 127.0.0.1 with no upstream (out-of-zone names get SERVFAIL)."""
    server = DnsServer(StaticSource(INDEX), None)
    port = await start(server)
    yield port
    await server.stop()


async def query(
    port: int,
    name: str,
    qtype: str = "A",
    *,
    tcp: bool = False,
    edns: int | None = None,
) -> DNSRecord:
    """One query through dnslib's blocking client, in a thread so the server keeps running."""
    request = DNSRecord.question(name, qtype)
    if edns is not None:
        request.add_ar(EDNS0(udp_len=edns))
    raw = await asyncio.to_thread(request.send, "127.0.0.1", port, tcp, 5)
    reply = DNSRecord.parse(raw)
    assert reply.header.id == request.header.id
    return reply


async def exchange_raw(port: int, packet: bytes) -> bytes:
    """Send raw bytes over UDP and wait (up to 5 s) for the reply."""

    def send() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(packet, ("127.0.0.1", port))
            return sock.recv(65535)

    return await asyncio.to_thread(send)


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


async def test_udp_and_tcp_answer_cluster_names(dns_port: int) -> None:
    for tcp in (False, True):
        reply = await query(dns_port, "web.default.svc.cluster.local", tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR
        assert reply.header.aa == 1 and reply.header.qr == 1
        assert addresses(reply) == ["10.96.5.5"]


async def test_srv_with_additional_over_the_wire(dns_port: int) -> None:
    reply = await query(dns_port, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(str(rr.rdata) for rr in reply.rr) == [
        "0 50 5432 10-244-2-11.db.default.svc.cluster.local.",
        "0 50 5432 db-0.db.default.svc.cluster.local.",
    ]
    assert sorted(str(rr.rdata) for rr in reply.ar) == ["10.244.1.10", "10.244.2.11"]


async def test_nxdomain_and_nodata_carry_the_soa(dns_port: int) -> None:
    nx = await query(dns_port, "nope.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and nx.header.aa == 1
    assert [rr.rtype for rr in nx.auth] == [QTYPE.SOA]
    nodata = await query(dns_port, "web.default.svc.cluster.local", "TXT")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    assert [rr.rtype for rr in nodata.auth] == [QTYPE.SOA]


async def test_question_case_is_echoed(dns_port: int) -> None:
    reply = await query(dns_port, "WEB.Default.svc.Cluster.Local")
    assert str(reply.q.qname) == "WEB.Default.svc.Cluster.Local."
    assert str(reply.rr[0].rname) == "WEB.Default.svc.Cluster.Local."


async def test_large_answer_truncates_over_udp_and_is_whole_over_tcp(dns_port: int) -> None:
    name = "big.default.svc.cluster.local"
    plain = await query(dns_port, name)
    assert plain.header.tc == 1 and plain.rr == []
    small = await query(dns_port, name, edns=512)
    assert small.header.tc == 1 and small.rr == []
    assert [rr.rtype for rr in small.ar] == [QTYPE.OPT]
    roomy = await query(dns_port, name, edns=4096)
    assert roomy.header.tc == 0 and len(addresses(roomy)) == 60
    over_tcp = await query(dns_port, name, tcp=True)
    assert over_tcp.header.tc == 0 and len(addresses(over_tcp)) == 60


async def test_opt_is_echoed_only_when_asked(dns_port: int) -> None:
    with_opt = await query(dns_port, "web.default.svc.cluster.local", edns=1232)
    assert [(rr.rtype, rr.rclass) for rr in with_opt.ar] == [(QTYPE.OPT, 1232)]
    without = await query(dns_port, "web.default.svc.cluster.local")
    assert without.ar == []


async def test_unsupported_edns_version_is_badvers(dns_port: int) -> None:
    request = DNSRecord.question("web.default.svc.cluster.local")
    request.add_ar(EDNS0(udp_len=1232, version=1))
    reply = DNSRecord.parse(await exchange_raw(dns_port, request.pack()))
    (opt,) = reply.ar
    assert (opt.ttl >> 24) & 0xFF == 1  # extended rcode 1 -> BADVERS (16)
    assert reply.rr == []


async def test_tcp_connection_carries_several_queries(dns_port: int) -> None:
    names = ["web.default.svc.cluster.local", "kubernetes.default.svc.cluster.local", "nope.default.svc.cluster.local"]
    requests = [DNSRecord.question(name) for name in names]
    reader, writer = await asyncio.open_connection("127.0.0.1", dns_port)
    try:
        writer.write(b"".join(struct.pack("!H", len(p)) + p for p in (r.pack() for r in requests)))
        await writer.drain()
        replies = []
        for _ in requests:
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
            replies.append(DNSRecord.parse(await asyncio.wait_for(reader.readexactly(length), 5)))
    finally:
        writer.close()
    assert [r.header.id for r in replies] == [r.header.id for r in requests]
    assert [addresses(r) for r in replies] == [["10.96.5.5"], ["10.96.0.1"], []]
    assert replies[2].header.rcode == RCODE.NXDOMAIN


async def test_idle_tcp_connection_is_closed() -> None:
    server = DnsServer(StaticSource(INDEX), None, idle_timeout=0.2)
    port = await start(server)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF: the server hung up
        writer.close()
    finally:
        await server.stop()


async def test_tcp_connections_are_capped() -> None:
    server = DnsServer(StaticSource(INDEX), None, max_tcp_connections=2)
    port = await start(server)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    try:
        for _, writer in held:  # make sure the server has taken both
            request = DNSRecord.question("web.default.svc.cluster.local").pack()
            writer.write(struct.pack("!H", len(request)) + request)
            await writer.drain()
        for reader, _ in held:
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
            await asyncio.wait_for(reader.readexactly(length), 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the third is turned away
        writer.close()
        held.pop()[1].close()
        # Once the server has seen the hang-up (bounded wait), a new connection is served.
        for _ in range(100):
            try:
                answered = await query(port, "web.default.svc.cluster.local", tcp=True)
                break
            except (OSError, struct.error):
                await asyncio.sleep(0.05)
        assert addresses(answered) == ["10.96.5.5"]
    finally:
        for _, writer in held:
            writer.close()
        await server.stop()


def formerr_for(packet: bytes, reply: bytes) -> None:
    parsed = DNSRecord.parse(reply)
    assert parsed.header.rcode == RCODE.FORMERR
    assert parsed.header.id == struct.unpack("!H", packet[:2])[0]
    assert parsed.header.qr == 1


async def test_malformed_but_readable_header_gets_formerr(dns_port: int) -> None:
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    cases = {
        "question missing": header,
        "name runs past the end": header + b"\x3fabc",
        "compression pointer to itself": header + b"\xc0\x0c\x00\x01\x00\x01",
        "two pointers in a loop": header + b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01",
    }
    for label, packet in cases.items():
        reply = await exchange_raw(dns_port, packet)
        try:
            formerr_for(packet, reply)
        except AssertionError as err:
            raise AssertionError(f"{label}: {err}") from err


async def test_two_questions_get_formerr(dns_port: int) -> None:
    request = DNSRecord.question("web.default.svc.cluster.local")
    request.add_question(DNSQuestion("kubernetes.default.svc.cluster.local"))
    packet = request.pack()
    formerr_for(packet, await exchange_raw(dns_port, packet))


async def test_other_class_is_refused_and_other_opcode_not_implemented(dns_port: int) -> None:
    chaos = DNSRecord.question("version.bind", "TXT", "CH")
    reply = DNSRecord.parse(await exchange_raw(dns_port, chaos.pack()))
    assert reply.header.rcode == RCODE.REFUSED and reply.q.qclass == CLASS.CH
    status = DNSRecord.question("web.default.svc.cluster.local")
    status.header.opcode = 2
    reply = DNSRecord.parse(await exchange_raw(dns_port, status.pack()))
    assert reply.header.rcode == RCODE.NOTIMP


async def test_garbage_never_stops_the_server(dns_port: int) -> None:
    rng = random.Random(20261127)
    packets = [rng.randbytes(rng.randint(0, 600)) for _ in range(300)]
    packets += [b"", b"\x00", b"\x12\x34\x01", os.urandom(11)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", dns_port))
    for _ in range(20):  # TCP: junk lengths and bodies, then hang up
        reader, writer = await asyncio.open_connection("127.0.0.1", dns_port)
        body = rng.randbytes(rng.randint(0, 100))
        writer.write(struct.pack("!H", rng.randint(0, 200)) + body)
        await writer.drain()
        writer.close()
    assert addresses(await query(dns_port, "web.default.svc.cluster.local")) == ["10.96.5.5"]
    assert addresses(await query(dns_port, "web.default.svc.cluster.local", tcp=True)) == ["10.96.5.5"]


class UnsyncedSource:
    """The informers have not listed yet: the index is empty and not synced."""

    def index(self) -> RecordIndex:
        return INDEX

    def answers(self) -> PackedAnswers:
        return UNSYNCED_ANSWERS

    def synced(self) -> bool:
        return False


UNSYNCED_ANSWERS = PackedAnswers(INDEX)


async def test_would_be_nxdomain_is_servfail_before_sync() -> None:
    server = DnsServer(UnsyncedSource(), None)
    port = await start(server)
    try:
        for _ in range(2):  # and the SERVFAIL is not remembered as an NXDOMAIN for the fast path
            reply = await query(port, "nope.default.svc.cluster.local")
            assert reply.header.rcode == RCODE.SERVFAIL and reply.auth == []
        known = await query(port, "web.default.svc.cluster.local")
        assert addresses(known) == ["10.96.5.5"]
    finally:
        await server.stop()


async def test_out_of_zone_without_upstream_is_servfail(dns_port: int) -> None:
    reply = await query(dns_port, "www.example.com")
    assert reply.header.rcode == RCODE.SERVFAIL


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_and_rcodes(dns_port: int, unused_tcp_port: int) -> None:
    before_a = sample("kdns_dns_requests_total", {"proto": "udp", "type": "A"})
    before_nx = sample("kdns_dns_responses_total", {"rcode": "NXDOMAIN"})
    await query(dns_port, "web.default.svc.cluster.local")
    await query(dns_port, "nope.default.svc.cluster.local")
    assert sample("kdns_dns_requests_total", {"proto": "udp", "type": "A"}) == before_a + 2
    assert sample("kdns_dns_responses_total", {"rcode": "NXDOMAIN"}) == before_nx + 1
    runner = await serve_health("127.0.0.1", unused_tcp_port, {"dns": lambda: True})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{unused_tcp_port}/metrics") as resp:
                text = await resp.text()
            async with session.get(f"http://127.0.0.1:{unused_tcp_port}/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
    assert "kdns_dns_request_duration_seconds_bucket" in text
    assert 'kdns_dns_responses_total{rcode="NOERROR"}' in text


async def test_busybox_nslookup_resolves_through_kdns(dns_port: int) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    server = f"127.0.0.1:{dns_port}"

    async def nslookup(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "/bin/busybox", "nslookup", *args, server, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        return proc.returncode or 0, out.decode()

    code, out = await nslookup("kubernetes.default.svc.cluster.local")
    assert code == 0 and "Address: 10.96.0.1" in out, out
    code, out = await nslookup("-type=srv", "_https._tcp.kubernetes.default.svc.cluster.local")
    assert code == 0 and "0 100 443 kubernetes.default.svc.cluster.local" in out, out
    code, out = await nslookup("no-such-service.default.svc.cluster.local")
    assert code != 0 and "NXDOMAIN" in out, out


async def test_forwarder_with_no_upstreams_gives_servfail() -> None:
    """A server with a forwarder but no upstreams still answers: SERVFAIL for outside names."""
    server = DnsServer(StaticSource(INDEX), Forwarder([]))
    port = await start(server)
    try:
        assert (await query(port, "www.example.com")).header.rcode == RCODE.SERVFAIL
        assert addresses(await query(port, "kubernetes.default.svc.cluster.local")) == ["10.96.0.1"]
    finally:
        await server.stop()


async def test_a_repeated_question_gets_its_own_id_case_rd_and_buffer_size(dns_port: int) -> None:
    """Repeats are answered from replies kept by the query's bytes: nothing of an earlier asker's may leak."""
    name = "web.default.svc.cluster.local"
    seen = []
    for query_id, spelling, rd, edns in [
        (0x1111, name, 1, None),
        (0x2222, name, 1, None),  # the same bytes but the ID
        (0x3333, name, 0, None),
        (0x4444, "Web.DEFAULT.svc.cluster.local", 1, None),
        (0x5555, name, 1, 1232),
        (0x6666, name, 1, 4096),
        (0x7777, name, 1, 1232),
    ]:
        request = DNSRecord.question(spelling)
        request.header.id, request.header.rd = query_id, rd
        if edns is not None:
            request.add_ar(EDNS0(udp_len=edns))
        reply = DNSRecord.parse(await exchange_raw(dns_port, request.pack()))
        assert (reply.header.id, reply.header.rd, reply.header.aa) == (query_id, rd, 1)
        assert str(reply.q.qname) == spelling + "."
        assert [(str(rr.rname), str(rr.rdata)) for rr in reply.rr] == [(spelling + ".", "10.96.5.5")]
        assert [(rr.rtype, rr.rclass) for rr in reply.ar] == ([] if edns is None else [(QTYPE.OPT, edns)])
        seen.append(reply.rr[0].ttl)
    assert set(seen) == {30}
