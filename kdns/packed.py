"""Pre-packed responses: the UDP hot path is a dict lookup, a few byte splices and a send.

A cluster answer depends only on the question (name, type, class), so it is
packed once, when the index is built, and kept keyed by the question's wire
bytes with the name lowercased.  A query then costs: check the header,
look the question up, and splice together the query's ID and RD bit, the
stored flags and counts, the query's own question bytes (so the question's
case is echoed byte for byte), the stored sections and, when the query has
an EDNS0 OPT record, an OPT record of our own advertising its buffer size.

Answer owner names must echo the question's case too.  Templates are packed
with the question name in upper case, so dnslib compresses exactly the answer
owners (the only names spelled that way) into pointers to offset 12; since
the query's question bytes replace the template's, those pointers then read
the query's spelling.  Every other name in a response is lower case and
ends in a label with letters (the zone, `in-addr.arpa`), so none of them
can point into the question.

Anything unusual (other opcodes, several questions, an OPT with options or
a version other than 0, ...) is not in the table's shape and goes to the
full path in `kdns.server`, which may then remember its answer here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from dnslib import CLASS, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from control.clock import Clock, RealClock
from kdns.metrics import ANSWERED
from kdns.records import Answer, Record, RecordIndex

HEADER_SIZE = 12
CLASSIC_UDP_SIZE = 512
MAX_ADVERTISED_SIZE = 4096
OPT_SIZE = 11  # root owner, type 41, class = size, TTL 0, RDLENGTH 0
MAX_REMEMBERED = 10_000
MAX_EXACT = 20_000  # queries whose whole reply (but the ID) is kept, keyed by their bytes after the ID
REAL_CLOCK = RealClock()  # answers learnt from queries (negative ones mostly), per index

PLAIN_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # one question, nothing else
EDNS_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # one question and one OPT
OPT_TYPE = b"\x00\x29"
RD_BIT = 0x01
TC_BIT = 0x02


@dataclass(frozen=True, slots=True)
class Packed:
    """One question's response, minus the ID and the question itself, ready to splice.

    The `*_heads` are header bytes 2..12 (flags and the four counts), indexed
    by the query's RD bit: `plain_heads` and `plain_sections` for a query
    without OPT (already the truncated form when the response exceeds 512
    bytes), `edns_heads` with one more additional record for our OPT, and
    `truncated_edns_heads` for when the response does not fit the client's
    buffer. `sections` is everything after the question; `size` the whole
    response's length without OPT; `answered` its cell in `metrics.ANSWERED`;
    `expires` (the forwarder clock's time, 0 for never) marks a forwarded
    answer, served only until then and only to clients allowed recursion;
    its TTLs, packed at `packed_at`, are lowered by the whole seconds since
    (`aging`: each TTL field's offset in `sections` and its packed value)
    whenever the clock passes `restamp_at`.
    """

    plain_heads: tuple[bytes, bytes]
    plain_sections: bytes
    edns_heads: tuple[bytes, bytes]
    truncated_edns_heads: tuple[bytes, bytes]
    sections: bytes
    size: int
    answered: list[int]
    expires: float = 0.0
    packed_at: float = 0.0
    restamp_at: float = 0.0
    aging: tuple[tuple[int, int], ...] = ()


def wire_name(name: str) -> bytes:
    """A name in wire format (labels with length bytes, root at the end)."""
    labels = [label.encode() for label in name.rstrip(".").split(".")]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def question_key(name: bytes, qtype: int, qclass: int = CLASS.IN) -> bytes | None:
    """The table key for a question: the wire name lowercased, then type and class.

    None when the type or class bytes would themselves change under `lower()`
    (e.g. type 65), since the hot path lowercases the whole question at once.
    """
    type_class = struct.pack("!HH", qtype, qclass)
    if type_class.lower() != type_class or type_class.upper() != type_class:
        return None
    return name.lower() + type_class


def _opt(size: int) -> bytes:
    return b"\x00" + OPT_TYPE + size.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"


OPT_RECORDS = {size: _opt(size) for size in range(CLASSIC_UDP_SIZE, MAX_ADVERTISED_SIZE + 1)}


def pack_template(upper_name: str, qtype: int, answer: Answer, expires: float = 0.0, now: float = 0.0) -> Packed:
    """Pack `answer` to a question spelt `upper_name` (upper case) and keep the reusable parts.

    A forwarded answer (`expires` set) also keeps where its TTLs are, to age them from `now`.
    """
    header = DNSHeader(id=0, qr=1, aa=int(answer.authoritative), rd=0, ra=1, rcode=answer.rcode)
    record = DNSRecord(header, q=DNSQuestion(upper_name, qtype, CLASS.IN))
    record.rr = list(answer.answer)
    record.auth = list(answer.authority)
    record.ar = list(answer.additional)
    packet = record.pack()
    question_end = HEADER_SIZE + len(wire_name(upper_name)) + 4
    flags, counts = packet[2:4], packet[4:12]
    arcount = struct.unpack("!H", counts[6:8])[0]
    edns_counts = counts[:6] + struct.pack("!H", arcount + 1)
    truncated_flags = bytes([flags[0] | TC_BIT, flags[1]])
    sections = packet[question_end:]
    fits_plain = len(packet) <= CLASSIC_UDP_SIZE
    return Packed(
        plain_heads=_by_rd(flags + counts if fits_plain else truncated_flags + PLAIN_COUNTS),
        plain_sections=sections if fits_plain else b"",
        edns_heads=_by_rd(flags + edns_counts),
        truncated_edns_heads=_by_rd(truncated_flags + EDNS_COUNTS),
        sections=sections,
        size=len(packet),
        answered=ANSWERED[("udp", QTYPE.get(qtype, str(qtype)), RCODE.get(answer.rcode, str(answer.rcode)))],
        expires=expires,
        packed_at=now,
        restamp_at=min(now + 1.0, expires),
        aging=_ttl_fields(packet, question_end) if expires else (),
    )


def _ttl_fields(packet: bytes, question_end: int) -> tuple[tuple[int, int], ...]:
    """(offset after the question, value) of every record's TTL field; OPT's 'TTL' is flags, not a TTL."""
    records = sum(struct.unpack("!HHH", packet[6:12]))
    fields = []
    at = question_end
    for _ in range(records):
        while packet[at] and not packet[at] & 0xC0:
            at += 1 + packet[at]
        at += 2 if packet[at] & 0xC0 else 1  # a compression pointer, or the root label
        rtype, ttl, rdlength = struct.unpack_from("!H2xIH", packet, at)
        if rtype != QTYPE.OPT:
            fields.append((at + 4 - question_end, ttl))
        at += 10 + rdlength
    return tuple(fields)


def _restamped(packed: Packed, now: float) -> Packed:
    """`packed` with every TTL lowered by the whole seconds since it was packed."""
    age = int(now - packed.packed_at)
    sections = bytearray(packed.sections)
    for offset, ttl in packed.aging:
        struct.pack_into("!I", sections, offset, max(0, ttl - age))
    aged = bytes(sections)
    return replace(
        packed,
        sections=aged,
        plain_sections=aged if packed.plain_sections else b"",
        restamp_at=min(packed.packed_at + age + 1.0, packed.expires),
    )


def _by_rd(head: bytes) -> tuple[bytes, bytes]:
    """`head` with RD clear and with RD set, so the hot path indexes by the query's RD bit."""
    return head, bytes([head[0] | RD_BIT]) + head[1:]


def _targets(records: tuple[Record, ...]) -> list[str]:
    """The names whose address records a positive answer of these records puts in its additional section."""
    found = [str(r.value[3]) for r in records if r.rtype == QTYPE.SRV]
    found += [str(r.value) for r in records if r.rtype == QTYPE.NS]
    return [target.rstrip(".").lower() for target in found]


def _packable(name: str) -> bool:
    """ASCII (so upper() keeps its length), labels of 1..63 characters, at most 253 in all."""
    labels = name.rstrip(".").split(".")
    return name.isascii() and all(0 < len(label) < 64 for label in labels) and len(name.rstrip(".")) <= 253


def cacheable(name: str, qtype: int, answer: Answer) -> bool:
    """Whether an index answer may be served from a template.

    Not when it needs a CNAME chased (it may go upstream), nor when the
    name's last label has no letter (its case could not mark the owners).
    """
    if any(rr.rtype == QTYPE.CNAME for rr in answer.answer) and qtype not in (QTYPE.CNAME, QTYPE.ANY):
        return False
    last_label = name.rstrip(".").rsplit(".", 1)[-1]
    return any(ch.isalpha() for ch in last_label)


class PackedAnswers:
    """Templates for one RecordIndex: every positive answer up front, negative ones as they are asked.

    Negative answers carry the SOA, whose serial changes with every change to
    the cluster, so they are learnt per index from the questions actually
    asked.  Positive answers are packed when the index is built; a name whose
    records (and, for SRV and NS, its targets' records) are unchanged since
    `previous` keeps its packed answers, so a change costs the names it touches.
    """

    def __init__(self, index: RecordIndex, previous: PackedAnswers | None = None) -> None:
        self.index = index
        self.table: dict[bytes, Packed] = {}
        self._by_name: dict[str, tuple[object, list[tuple[bytes, Packed]]]] = {}
        earlier = previous._by_name if previous is not None else {}
        for name, records in index.records.items():
            content = (records, tuple(index.records.get(target, ()) for target in _targets(records)))
            kept = earlier.get(name)
            if kept is not None and kept[0] == content:
                entries = kept[1]
            else:
                packed = (self._pack(name, qtype) for qtype in {r.rtype for r in records})
                entries = [entry for entry in packed if entry is not None]
            self._by_name[name] = (content, entries)
            self.table.update(entries)
        self._prepacked = dict(self.table)
        self.exact: dict[bytes, tuple[bytes, Packed]] = {}
        """Replies by the query's bytes after the ID: (the reply's bytes after the ID, its template).

        A forwarded template (`expires` set) may only be used from here for a
        client allowed recursion and before its `restamp_at`; past that, `reply`
        restamps it and stores the new reply."""

    def learn(self, name: str, qtype: int) -> bool:
        """Remember the index's answer to a question the table lacked; False when it may not be cached."""
        entry = self._pack(name, qtype)
        if entry is None:
            return False
        self._make_room(entry[0])
        self.table[entry[0]] = entry[1]
        return True

    def remember_forwarded(self, name: str, qtype: int, answer: Answer, now: float, until: float) -> bool:
        """Keep an upstream answer (its TTLs as of `now`) until `until` or its shortest TTL runs out.

        `until` is when the forwarder's cache lets go of it, so this copy never
        outlives the one it came from; until then the fast path lowers its TTLs
        once a second itself, as the forwarder's cache would.
        """
        ttls = [rr.ttl for section in (answer.answer, answer.authority, answer.additional) for rr in section]
        expires = min([until, *(now + ttl for ttl in ttls)])
        if expires <= now or answer.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN) or not _packable(name):
            return False
        key = question_key(wire_name(name), qtype)
        if key is None or not cacheable(name, qtype, answer):
            return False
        self._make_room(key)
        self.table[key] = pack_template(name.upper(), qtype, answer, expires, now)
        return True

    def _make_room(self, key: bytes) -> None:
        """Start learning afresh when the table is full of learnt answers and `key` would add one more."""
        if key not in self.table and len(self.table) - len(self._prepacked) >= MAX_REMEMBERED:
            self.table = dict(self._prepacked)

    def _pack(self, name: str, qtype: int) -> tuple[bytes, Packed] | None:
        """The table entry for (name, qtype), or None when it must take the full path."""
        if not _packable(name):
            return None
        key = question_key(wire_name(name), qtype)
        if key is None:
            return None
        upper = name.upper()
        answer = self.index.lookup(upper, qtype)
        if answer is None or not cacheable(name, qtype, answer):
            return None
        return key, pack_template(upper, qtype, answer)

    def reply(self, query: bytes, may_recurse: bool = False, clock: Clock = REAL_CLOCK) -> bytes | None:
        """The response to a UDP query from the table, or None when it needs the full path.

        `may_recurse`: the client is known to be allowed forwarded answers;
        `clock`: the forwarder's, which their expiry times come from.  The
        reply is also kept in `exact`, so the next query with the same bytes
        (but the ID) costs one lookup.
        """
        found = self._reply(query, may_recurse, clock)
        if found is None:
            return None
        packed, response = found
        packed.answered[0] += 1
        if len(self.exact) >= MAX_EXACT:
            self.exact = {}  # full (clients spelling names in ever new cases): start afresh
        self.exact[query[2:]] = (response[2:], packed)
        return response

    def _reply(self, query: bytes, may_recurse: bool, clock: Clock) -> tuple[Packed, bytes] | None:
        if len(query) < HEADER_SIZE + 5 or query[2] & 0xF8:
            return None  # a response, or an opcode other than QUERY
        counts = query[4:12]
        if counts == PLAIN_COUNTS:
            question = query[12:]
            key = question.lower()
            packed = self.table.get(key)
            if packed is not None and packed.expires:
                packed = self._forwarded(key, packed, may_recurse, clock)
            if packed is None:
                return None
            return packed, query[:2] + packed.plain_heads[query[2] & RD_BIT] + question + packed.plain_sections
        if counts != EDNS_COUNTS:
            return None
        opt = query[-OPT_SIZE:]
        # Only a bare version-0 OPT with no options; the rest takes the full path.
        if opt[0] != 0 or opt[1:3] != OPT_TYPE or opt[5:7] != b"\x00\x00" or opt[9:11] != b"\x00\x00":
            return None
        question = query[12:-OPT_SIZE]
        key = question.lower()
        packed = self.table.get(key)
        if packed is not None and packed.expires:
            packed = self._forwarded(key, packed, may_recurse, clock)
        if packed is None:
            return None
        client_size = max(CLASSIC_UDP_SIZE, (opt[3] << 8) | opt[4])
        advertised = OPT_RECORDS[min(client_size, MAX_ADVERTISED_SIZE)]
        if packed.size + OPT_SIZE > client_size:
            return packed, query[:2] + packed.truncated_edns_heads[query[2] & RD_BIT] + question + advertised
        return packed, query[:2] + packed.edns_heads[query[2] & RD_BIT] + question + packed.sections + advertised

    def _forwarded(self, key: bytes, packed: Packed, may_recurse: bool, clock: Clock) -> Packed | None:
        """A forwarded answer with its TTLs current, or None: not for this client, or expired (then forgotten)."""
        if not may_recurse:
            return None  # REFUSED is the full path's to say
        now = clock.now()
        if now < packed.restamp_at:
            return packed
        if now >= packed.expires:
            self.table.pop(key, None)
            return None
        packed = self.table[key] = _restamped(packed, now)
        return packed
