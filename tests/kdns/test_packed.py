"""The pre-packed fast path answers exactly as the full path does, question by question.

Every name the test index holds (plus negative and odd ones) is asked in
mixed case, with and without EDNS0 at several buffer sizes, with RD set and
clear; the fast path's bytes must decode to the same message as the full
path's (the full path is `DnsServer.handle`, which parses with dnslib and
packs afresh).
"""

from __future__ import annotations

import itertools
import random

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, DNSRecord

from control.clock import FakeClock

from kdns.packed import PackedAnswers, question_key, wire_name
from kdns.records import Answer
from kdns.server import DnsServer, StaticSource
from tests.kdns.objects import cluster_index, endpoints, service

BIG_HEADLESS = service("default", "big", {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})
BIG_ENDPOINTS = endpoints(
    "default",
    "big",
    [{"addresses": [{"ip": f"10.244.3.{i}"} for i in range(1, 61)], "ports": [{"name": "http", "port": 80}]}],
)
INDEX = cluster_index(extra_services=(BIG_HEADLESS,), extra_endpoints=(BIG_ENDPOINTS,))
QUESTION = bytes(DNSRecord.question("web.default.svc.cluster.local").pack())
QTYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "NS", "SOA", "ANY", "MX"]
EDNS_SIZES = [None, 512, 1232, 4096, 65535]
ODD_NAMES = [
    "cluster.local",
    "nope.default.svc.cluster.local",
    "nope.default.svc.cluster.local.default.svc.cluster.local",
    "default.svc.cluster.local",
    "10-244-1-5.default.pod.cluster.local",
    "9.9.9.10.in-addr.arpa",  # outside the served reverse zones
]


def mixed_case(name: str, rng: random.Random) -> str:
    return "".join(ch.upper() if rng.random() < 0.5 else ch for ch in name)


def make_query(name: str, qtype: str, edns: int | None, rd: bool, rng: random.Random) -> bytes:
    request = DNSRecord.question(name, qtype)
    request.header.id = rng.randrange(65536)
    request.header.rd = int(rd)
    if edns is not None:
        request.add_ar(EDNS0(udp_len=edns))
    return bytes(request.pack())


def decoded(packet: bytes) -> str:
    """The message as dnslib prints it: header, question and every record, names as spelt."""
    return str(DNSRecord.parse(packet))


async def test_fast_path_matches_full_path_for_every_question() -> None:
    source = StaticSource(INDEX)
    server = DnsServer(source, None)
    rng = random.Random(7)
    names = [*INDEX.records, *ODD_NAMES]
    fast_answers = 0
    for name, qtype in itertools.product(names, QTYPES):
        edns, rd = rng.choice(EDNS_SIZES), rng.random() < 0.5
        packet = make_query(mixed_case(name, rng), qtype, edns, rd, rng)
        full = await server.handle(packet, "127.0.0.1", "udp")  # also teaches the table negative answers
        assert full is not None
        fast = source.answers().reply(packet)
        if fast is None:
            continue
        fast_answers += 1
        assert decoded(fast) == decoded(full), (name, qtype, edns, rd)
        assert fast[12 : 12 + len(packet) - 12 - (11 if edns else 0)] == packet[12 : len(packet) - (11 if edns else 0)]
    # All were answered fast but the ExternalName's chased types (they may go upstream) and
    # the PTR name outside the served reverse zones (forwarded).
    external_name_chases = len(QTYPES) - 2  # all but CNAME and ANY
    assert fast_answers == len(names) * len(QTYPES) - external_name_chases - len(QTYPES)


def test_records_are_packed_before_any_query() -> None:
    answers = PackedAnswers(INDEX)
    query = DNSRecord.question("WEB.default.svc.Cluster.Local", "A")
    reply = answers.reply(bytes(query.pack()))
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == query.header.id and parsed.header.aa == 1 and parsed.header.rd == 1
    assert [(str(rr.rname), str(rr.rdata), rr.ttl) for rr in parsed.rr] == [
        ("WEB.default.svc.Cluster.Local.", "10.96.5.5", 30)
    ]


def test_negative_answers_are_learnt_not_guessed() -> None:
    answers = PackedAnswers(INDEX)
    packet = bytes(DNSRecord.question("nope.default.svc.cluster.local", "A").pack())
    assert answers.reply(packet) is None
    assert answers.learn("nope.default.svc.cluster.local", QTYPE.A)
    reply = DNSRecord.parse(answers.reply(packet) or b"")
    assert reply.header.rcode == RCODE.NXDOMAIN and [rr.rtype for rr in reply.auth] == [QTYPE.SOA]


@pytest.mark.parametrize(
    "packet",
    [
        # a response (QR set), never answered
        bytes.fromhex("abcd81000001000000000000") + QUESTION[12:],
        # opcode STATUS
        bytes.fromhex("abcd10000001000000000000") + QUESTION[12:],
        # two questions' worth of count
        bytes.fromhex("abcd01000002000000000000") + QUESTION[12:],
        # trailing garbage after the question
        QUESTION + b"\x00",
        # an OPT record with EDNS version 1
        QUESTION[:11] + b"\x01" + QUESTION[12:] + b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00",
        b"\x00" * 11,
    ],
)
def test_unusual_packets_take_the_full_path(packet: bytes) -> None:
    assert PackedAnswers(INDEX).reply(packet) is None


def test_names_that_cannot_be_packed_are_refused() -> None:
    answers = PackedAnswers(INDEX)
    assert not answers.learn("x" * 64 + ".default.svc.cluster.local", QTYPE.A)  # label too long
    assert not answers.learn("web.default.svc.cluster.local", 65)  # type bytes change under lower()


def test_a_change_repacks_only_the_names_it_touches() -> None:
    moved = service(
        "default",
        "web",
        {"clusterIP": "10.96.5.6", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 8080}]},
    )
    before = PackedAnswers(INDEX)
    changed_index = cluster_index(extra_services=(BIG_HEADLESS, moved), extra_endpoints=(BIG_ENDPOINTS,))
    after = PackedAnswers(changed_index, before)
    web = question_key(wire_name("web.default.svc.cluster.local"), QTYPE.A)
    kubernetes = question_key(wire_name("kubernetes.default.svc.cluster.local"), QTYPE.A)
    assert web is not None and kubernetes is not None
    assert after.table[kubernetes] is before.table[kubernetes]
    assert after.table[web] is not before.table[web]
    reply = DNSRecord.parse(after.reply(bytes(DNSRecord.question("web.default.svc.cluster.local").pack())) or b"")
    assert sorted(str(rr.rdata) for rr in reply.rr) == ["10.96.5.5", "10.96.5.6"]


def test_srv_is_repacked_when_only_its_targets_address_changes() -> None:
    first = endpoints(
        "default",
        "big",
        [{"addresses": [{"ip": "10.244.3.1", "hostname": "h"}], "ports": [{"name": "http", "port": 80}]}],
    )
    second = endpoints(
        "default",
        "big",
        [{"addresses": [{"ip": "10.244.3.2", "hostname": "h"}], "ports": [{"name": "http", "port": 80}]}],
    )
    before = PackedAnswers(cluster_index(extra_services=(BIG_HEADLESS,), extra_endpoints=(first,)))
    after = PackedAnswers(cluster_index(extra_services=(BIG_HEADLESS,), extra_endpoints=(second,)), before)
    query = bytes(DNSRecord.question("_http._tcp.big.default.svc.cluster.local", "SRV").pack())
    reply = DNSRecord.parse(after.reply(query) or b"")
    assert [str(rr.rdata) for rr in reply.ar] == ["10.244.3.2"]


async def test_forwarded_answers_only_for_recursion_clients_aged_by_the_second_until_they_expire() -> None:
    clock = FakeClock(100.0)
    answers = PackedAnswers(INDEX)
    upstream = DNSRecord.question("www.example.com").reply()
    upstream.add_answer(*RR.fromZone("www.example.com. 120 IN A 192.0.2.1"))
    upstream.add_answer(*RR.fromZone("www.example.com. 90 IN A 192.0.2.9"))
    answer = Answer(RCODE.NOERROR, tuple(upstream.rr), authoritative=False)
    # The forwarder's cache holds it for 30 s: the packed copy must not outlive that.
    assert answers.remember_forwarded("www.example.com", QTYPE.A, answer, clock.now(), clock.now() + 30)
    packet = bytes(DNSRecord.question("WWW.example.COM").pack())
    assert answers.reply(packet, may_recurse=False, clock=clock) is None  # REFUSED is the full path's to say

    def ttls() -> list[tuple[str, str, int]]:
        reply = DNSRecord.parse(answers.reply(packet, may_recurse=True, clock=clock) or b"")
        assert reply.header.aa == 0 and str(reply.q.qname) == "WWW.example.COM."
        return [(str(rr.rname), str(rr.rdata), rr.ttl) for rr in reply.rr]

    assert ttls() == [("www.example.com.", "192.0.2.1", 120), ("www.example.com.", "192.0.2.9", 90)]
    await clock.advance(0.9)
    assert ttls() == [("www.example.com.", "192.0.2.1", 120), ("www.example.com.", "192.0.2.9", 90)]
    await clock.advance(11.5)  # 12.4 s in: lowered by 12, as the forwarder's cache would
    assert ttls() == [("www.example.com.", "192.0.2.1", 108), ("www.example.com.", "192.0.2.9", 78)]
    await clock.advance(17.6)  # 30 s: the forwarder's cache has let go, so this goes upstream again
    assert answers.reply(packet, may_recurse=True, clock=clock) is None
    zero_ttl = Answer(RCODE.NOERROR, (RR.fromZone("z.example. 0 IN A 192.0.2.2")[0],), authoritative=False)
    assert not answers.remember_forwarded("z.example", QTYPE.A, zero_ttl, clock.now(), clock.now() + 30)


async def test_forwarded_negative_answer_ages_its_soa_and_expires_with_the_shortest_ttl() -> None:
    clock = FakeClock(50.0)
    answers = PackedAnswers(INDEX)
    upstream = DNSRecord.question("gone.example.org").reply()
    upstream.header.rcode = RCODE.NXDOMAIN
    upstream.add_auth(*RR.fromZone("example.org. 5 IN SOA ns.example.org. admin.example.org. 1 2 3 4 5"))
    answer = Answer(RCODE.NXDOMAIN, (), tuple(upstream.auth), authoritative=False)
    assert answers.remember_forwarded("gone.example.org", QTYPE.A, answer, clock.now(), clock.now() + 30)
    request = DNSRecord.question("gone.example.org")
    request.add_ar(EDNS0(udp_len=1232))
    packet = bytes(request.pack())
    await clock.advance(3.2)
    reply = DNSRecord.parse(answers.reply(packet, may_recurse=True, clock=clock) or b"")
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.rr == []
    assert [(rr.rtype, rr.ttl) for rr in reply.auth] == [(QTYPE.SOA, 2)]
    assert [(rr.rtype, rr.rclass) for rr in reply.ar] == [(QTYPE.OPT, 1232)]
    await clock.advance(1.8)  # the SOA's 5 s are up
    assert answers.reply(packet, may_recurse=True, clock=clock) is None
