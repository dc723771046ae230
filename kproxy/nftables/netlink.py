"""Table `ip kproxy` changed by nf_tables netlink batches, without the `nft` tool.

`nft -f` first dumps every chain of the ruleset into its cache before it
adds a rule or a map element: at 10,000 Services (40,000 chains) that alone
costs about 0.1-0.2 s, whatever the change; and at 10,000 Services it
spends most of a full sync parsing 70,000 elements. So kproxy's syncs, full
or partial, are sent here directly: the rule texts kproxy generates (a
small, fixed set of shapes) are compiled to the expressions `nft` sends for
them (tests compare the bytes with `nft --debug=mnl`), elements are packed
many to a message, and each sync is one batch the kernel applies or rejects
atomically. Declaring sets stays with `nft` (their `typeof` types are nft's
own metadata). A rule this compiler does not know raises `UnsupportedRule`,
and the caller falls back to `nft -f`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kproxy.iptables.restore import PacketFilterError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFPROTO_IPV4 = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_APPEND = 0x1, 0x4, 0x400, 0x800
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NETLINK_CAP_ACK = 10
CLONE_NEWNET = 0x40000000

NEWCHAIN, DELCHAIN, NEWRULE, DELRULE, NEWSET, DELSET, NEWSETELEM, DELSETELEM = 3, 5, 6, 8, 9, 11, 12, 14
VERDICTS = {"jump": -3, "goto": -4}
DROP, RETURN = 0, -5
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
IP_OFFSETS = {"saddr": 12, "daddr": 16}
NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
META_L4PROTO, META_MARK = 16, 3
NFT_REG32_00 = 8
BITWISE_BOOL = 0
CT_STATE, CT_STATUS = 0, 2
CT_STATE_NEW, IPS_DST_NAT = 0x8, 0x20
REJECT_ICMP_UNREACH, ICMP_PORT_UNREACHABLE = 0, 3
CMP_EQ, CMP_NEQ = 0, 1
NUMGEN_RANDOM = 1
FIB_ADDRTYPE, RTN_LOCAL = 3, 2
FIB_ADDRESSES = {"saddr": 1, "daddr": 2}  # NFTA_FIB_F_SADDR, NFTA_FIB_F_DADDR
DYNSET_UPDATE = 1
NAT_DNAT, NAT_PROTO_SPECIFIED = 1, 2
SET_TIMEOUT, SET_EVAL = 0x10, 0x20
TYPE_IPADDR = 7
DYNAMIC_SET_SIZE = 65535  # what nft gives a dynamic set declared without a size
ELEMENTS_BYTES_PER_MESSAGE = 60000  # an element list is one attribute, whose length is 16 bits
SO_SNDBUFFORCE = 32


class UnsupportedRule(ValueError):
    """A rule text outside the shapes this compiler knows; send it with `nft -f` instead."""


# -- attribute encoding ------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def text(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def be32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">i" if value < 0 else ">I", value))


def value(kind: int, data: bytes) -> bytes:
    return nested(kind, attr(1, data))  # NFTA_DATA_VALUE


def verdict(kind: int, code: int, chain: str | None = None) -> bytes:
    inner = be32(1, code) + (text(2, chain) if chain else b"")  # NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN
    return nested(kind, nested(2, inner))  # NFTA_DATA_VERDICT


def expression(name: str, *attributes: bytes) -> bytes:
    return nested(1, text(1, name), nested(2, *attributes))  # NFTA_LIST_ELEM{NFTA_EXPR_NAME, NFTA_EXPR_DATA}


def payload(base: int, offset: int, length: int, register: int = 1) -> bytes:
    return expression("payload", be32(1, register), be32(2, base), be32(3, offset), be32(4, length))


def compare(data: bytes, op: int = CMP_EQ, register: int = 1) -> bytes:
    return expression("cmp", be32(1, register), be32(2, op), value(3, data))


def immediate(register: int, data: bytes) -> bytes:
    return expression("immediate", be32(1, register), value(2, data))


def jump(code: int, chain: str | None = None) -> bytes:
    return expression("immediate", be32(1, 0), verdict(2, code, chain))


def l4proto(name: str) -> list[bytes]:
    if name not in PROTOCOLS:
        raise UnsupportedRule(f"protocol {name!r}")
    return [meta_load(META_L4PROTO), compare(bytes([PROTOCOLS[name]]))]


# -- rule compiler -----------------------------------------------------------

# What a match or a concatenation can load, with the expression that loads it into a register.
LOADS = {
    ("ip", "saddr"): lambda register: payload(NETWORK_HEADER, IP_OFFSETS["saddr"], 4, register),
    ("ip", "daddr"): lambda register: payload(NETWORK_HEADER, IP_OFFSETS["daddr"], 4, register),
    ("meta", "l4proto"): lambda register: meta_load(META_L4PROTO, register),
    ("th", "dport"): lambda register: payload(TRANSPORT_HEADER, 2, 2, register),
}


def concat_register(slot: int) -> int:
    """The register of a concatenation's `slot`th 32-bit field, numbered as nft does: the first in the 128-bit
    register 1, the others in the 32-bit registers after NFT_REG32_00 (8)."""
    return 1 if slot == 0 else NFT_REG32_00 + slot


def meta_load(key: int, register: int = 1) -> bytes:
    return expression("meta", be32(2, key), be32(1, register))


def ct_load(key: int) -> bytes:
    return expression("ct", be32(2, key), be32(1, 1))


def random_number(modulus: int, register: int = 1) -> bytes:
    """`numgen random mod <modulus>` into `register`."""
    return expression("numgen", be32(1, register), be32(2, modulus), be32(3, NUMGEN_RANDOM), be32(4, 0))


def lookup(set_name: str, register: int = 1, data_register: int | None = None) -> bytes:
    """A set lookup (`@set`), or a map's with its value into `data_register` (0: the verdict of a vmap)."""
    into = b"" if data_register is None else be32(3, data_register)
    return expression("lookup", be32(2, register), into, text(1, set_name))


def _bit_test(load: bytes, bits: int, op: int, host_value: int = 0, with_op: bool = False) -> list[bytes]:
    """`<load> & bits <op> host_value` on a host-order 32-bit value (ct state/status, meta mark)."""
    return [load, bitwise(bits, 0, with_op), compare(struct.pack("=I", host_value), op)]


def bitwise(mask: int, xor: int, with_op: bool = False) -> bytes:
    """register 1 = (register 1 & mask) ^ xor, on host-order 32-bit values. nft names the operation (boolean)
    when the result is stored (`meta mark set ...`), not in a test."""
    operation = be32(6, BITWISE_BOOL) if with_op else b""
    return expression(
        "bitwise",
        be32(1, 1),
        be32(2, 1),
        operation,
        be32(3, 4),
        value(4, struct.pack("=I", mask)),
        value(5, struct.pack("=I", xor)),
    )


class _Words:
    """A rule's words with a cursor."""

    def __init__(self, rule: str):
        self.words = rule.split()
        self.at = 0

    def more(self) -> bool:
        return self.at < len(self.words)

    def peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.words[index] if index < len(self.words) else ""

    def take(self, *expected: str) -> bool:
        if tuple(self.words[self.at : self.at + len(expected)]) == expected:
            self.at += len(expected)
            return True
        return False

    def next(self) -> str:
        word = self.peek()
        if not word:
            raise UnsupportedRule("rule ends early")
        self.at += 1
        return word

    def rest(self) -> str:
        return " ".join(self.words[self.at :])


def _fields(words: _Words) -> list[tuple[str, str]]:
    """`ip daddr . meta l4proto . th dport`: the loadable fields of a concatenation (or one field)."""
    fields = []
    while True:
        field = (words.peek(), words.peek(1))
        if field not in LOADS:
            raise UnsupportedRule(f"cannot load {' '.join(field)!r}")
        words.at += 2
        fields.append(field)
        if words.peek() != "." or (words.peek(1), words.peek(2)) not in LOADS:
            return fields
        words.at += 1


def _load_fields(fields: Sequence[tuple[str, str]]) -> list[bytes]:
    return [LOADS[field](concat_register(slot)) for slot, field in enumerate(fields)]


def _match(words: _Words) -> list[bytes]:
    """A field compared with a value (`ip saddr != 10.0.0.0/8`, `meta l4proto tcp`), or fields looked up in a
    set (`... @set`) or verdict map (`... vmap @map`)."""
    fields = _fields(words)
    if words.peek().startswith("@") or words.peek() == "vmap":
        verdict_map = words.take("vmap")
        set_name = words.next()[1:]
        if len(fields) == 1 and fields[0][0] == "ip" and not verdict_map:
            return _address_match(fields[0][1], False, "@" + set_name)
        return [*_load_fields(fields), lookup(set_name, data_register=0 if verdict_map else None)]
    if len(fields) != 1:
        raise UnsupportedRule(f"concatenation without a lookup before {words.rest()!r}")
    negated = words.take("!=")
    operand = words.next()
    if fields[0][0] == "ip":
        return _address_match(fields[0][1], negated, operand)
    if fields[0] == ("meta", "l4proto") and not negated:
        return l4proto(operand)
    raise UnsupportedRule(f"cannot compare {' '.join(fields[0])!r} with {operand!r}")


def _mapped_dnat(words: _Words, port_protocols: Mapping[str, str]) -> list[bytes]:
    """`dnat ip to <key fields> . numgen random mod N map @m`: the address and port come from map `m`, whose
    port is typed by protocol, so nft tests the protocol first (`port_protocols` says which, per map)."""
    fields = _fields(words)
    if not (words.take(".", "numgen", "random", "mod") and words.peek(1) == "map"):
        raise UnsupportedRule(f"mapped dnat {words.rest()!r}")
    modulus = int(words.next())
    words.take("map")
    map_name = words.next()[1:]
    if map_name not in port_protocols:
        raise UnsupportedRule(f"the protocol of map {map_name!r} is not known")
    return [
        *l4proto(port_protocols[map_name]),
        *_load_fields(fields),
        random_number(modulus, concat_register(len(fields))),
        lookup(map_name, data_register=1),
        expression("nat", be32(1, NAT_DNAT), be32(2, NFPROTO_IPV4), be32(3, 1), be32(5, concat_register(1))),
    ]


def _statement(words: _Words, port_protocols: Mapping[str, str]) -> list[bytes]:
    """The expressions of the next match or statement."""
    word = words.peek()
    if words.take("ct", "status", "dnat"):
        return _bit_test(ct_load(CT_STATUS), IPS_DST_NAT, CMP_NEQ)
    if words.take("ct", "state", "new"):
        return _bit_test(ct_load(CT_STATE), CT_STATE_NEW, CMP_NEQ)
    if word == "fib" and words.peek(1) in FIB_ADDRESSES and words.peek(2) == "type" and words.peek(3) == "local":
        flags = FIB_ADDRESSES[words.peek(1)]
        words.at += 4
        return [
            expression("fib", be32(3, flags), be32(2, FIB_ADDRTYPE), be32(1, 1)),
            compare(struct.pack("=I", RTN_LOCAL)),
        ]
    if (word, words.peek(1)) in LOADS:
        return _match(words)
    if word in PROTOCOLS and words.peek(1) == "dport":
        words.at += 2
        number = int(words.next())
        return [*l4proto(word), payload(TRANSPORT_HEADER, 2, 2), compare(struct.pack(">H", number))]
    if words.take("numgen", "random", "mod"):
        modulus = int(words.next())
        if not words.take("==", "0"):
            raise UnsupportedRule(f"numgen test {words.rest()!r}")
        return [random_number(modulus), compare(struct.pack("=I", 0))]
    if (
        word == "update"
        and words.peek(1).startswith("@")
        and words.words[words.at + 2 : words.at + 6] == ["{", "ip", "saddr", "}"]
    ):
        set_name = words.peek(1)[1:]
        words.at += 6
        return [
            payload(NETWORK_HEADER, IP_OFFSETS["saddr"], 4),
            expression("dynset", be32(4, 1), be32(3, DYNSET_UPDATE), text(1, set_name)),
        ]
    if words.take("dnat", "ip", "to"):
        return _mapped_dnat(words, port_protocols)
    if words.take("dnat", "to"):
        address, port = words.next().rsplit(":", 1)
        return [
            immediate(1, ipaddress.IPv4Address(address).packed),
            immediate(2, struct.pack(">H", int(port))),
            expression(
                "nat", be32(1, NAT_DNAT), be32(2, NFPROTO_IPV4), be32(3, 1), be32(5, 2), be32(7, NAT_PROTO_SPECIFIED)
            ),
        ]
    if words.take("meta", "mark", "set", "meta", "mark"):
        operation, bits = words.next(), int(words.next(), 0)
        if operation not in ("or", "xor"):
            raise UnsupportedRule(f"mark operation {operation!r}")
        mask = 0xFFFFFFFF & ~bits if operation == "or" else 0xFFFFFFFF
        return [meta_load(META_MARK), bitwise(mask, bits, True), expression("meta", be32(2, META_MARK), be32(3, 1))]
    if words.take("meta", "mark", "&"):
        bits = int(words.next(), 0)
        if not words.take("=="):
            raise UnsupportedRule(f"mark test {words.rest()!r}")
        return _bit_test(meta_load(META_MARK), bits, CMP_EQ, int(words.next(), 0), with_op=True)
    if words.take("masquerade"):
        return [expression("masq")]
    if words.take("reject"):
        return [expression("reject", be32(1, REJECT_ICMP_UNREACH), attr(2, bytes([ICMP_PORT_UNREACHABLE])))]
    if words.take("return"):
        return [jump(RETURN)]
    if word in VERDICTS and words.peek(1) and words.at + 2 == len(words.words):
        words.at += 2
        return [jump(VERDICTS[word], words.words[-1])]
    raise UnsupportedRule(f"cannot compile {words.rest()!r}")


def _address_match(field: str, negated: bool, operand: str) -> list[bytes]:
    """`ip saddr|daddr [!=] ADDR[/LEN]` or `ip saddr @set`, as nft encodes them (whole bytes of a prefix)."""
    offset = IP_OFFSETS[field]
    if operand.startswith("@"):
        if negated:
            raise UnsupportedRule("negated set lookup")
        return [payload(NETWORK_HEADER, offset, 4), lookup(operand[1:])]
    network = ipaddress.IPv4Network(operand)
    op = CMP_NEQ if negated else CMP_EQ
    whole_bytes, rest = divmod(network.prefixlen, 8)
    if rest == 0:
        return [payload(NETWORK_HEADER, offset, whole_bytes), compare(network.network_address.packed[:whole_bytes], op)]
    mask = network.netmask.packed
    return [
        payload(NETWORK_HEADER, offset, 4),
        expression("bitwise", be32(1, 1), be32(2, 1), be32(3, 4), value(4, mask), value(5, b"\0" * 4)),
        compare(network.network_address.packed, op),
    ]


def compile_rule(rule: str, port_protocols: Mapping[str, str] | None = None) -> bytes:
    """The NFTA_RULE_EXPRESSIONS list for one of kproxy's rule texts, expression for expression as nft sends it
    (a lookup aside: nft also names the set by its id in the batch).

    `port_protocols`: for maps a `dnat ip to ... map @m` reads, the protocol of the port in the map's data.
    """
    words = _Words(rule)
    out: list[bytes] = []
    try:
        while words.more():
            out += _statement(words, port_protocols or {})
    except UnsupportedRule as err:
        raise UnsupportedRule(f"{rule!r}: {err}") from None
    except (IndexError, ValueError) as err:
        raise UnsupportedRule(f"{rule!r}: {err}") from err
    return nested(4, *out)  # NFTA_RULE_EXPRESSIONS


def _address_field(text_value: str) -> bytes:
    if text_value.count(".") != 3:  # inet_aton would also take `10.1` or `10`
        raise UnsupportedRule(f"address {text_value!r}")
    try:
        return socket.inet_aton(text_value)
    except OSError:
        raise UnsupportedRule(f"address {text_value!r}") from None


def _protocol_field(text_value: str) -> bytes:
    if text_value not in PROTOCOLS:
        raise UnsupportedRule(f"protocol {text_value!r}")
    return bytes([PROTOCOLS[text_value]]).ljust(4, b"\0")


def _port_field(text_value: str) -> bytes:
    return struct.pack(">H", int(text_value)).ljust(4, b"\0")


def _index_field(text_value: str) -> bytes:
    return struct.pack("=I", int(text_value))  # what `numgen` puts in a register: host byte order


# One field of a concatenation, padded to its 4-byte register slot as nft lays it out, by field kind.
FIELDS = {"addr": _address_field, "proto": _protocol_field, "port": _port_field, "index": _index_field}


class _Memo(dict[str, bytes]):
    """A field encoder that remembers: a batch repeats addresses and ports many times."""

    def __init__(self, encode: Callable[[str], bytes]):
        super().__init__()
        self.encode = encode

    def __missing__(self, text_value: str) -> bytes:
        encoded = self[text_value] = self.encode(text_value)
        return encoded


class ConcatEncoder:
    """Concatenations of one layout, e.g. `10.96.0.5 . tcp . 80` for field kinds (`addr`, `proto`, `port`),
    as nft's key bytes."""

    def __init__(self, kinds: Sequence[str]):
        unknown = [kind for kind in kinds if kind not in FIELDS]
        if unknown:
            raise UnsupportedRule(f"field kind {unknown[0]!r}")
        self.kinds = tuple(kinds)
        self.fields = [_Memo(FIELDS[kind]) for kind in kinds]
        self.length = 4 * len(kinds)

    def __call__(self, text_value: str) -> bytes:
        parts = text_value.split(" . ")
        if len(parts) != len(self.fields):
            raise UnsupportedRule(f"{text_value!r} does not have the fields {' . '.join(self.kinds)}")
        try:
            return b"".join(map(dict.__getitem__, self.fields, parts))  # __getitem__ falls back on __missing__
        except (ValueError, struct.error) as err:
            raise UnsupportedRule(f"{text_value!r}: {err}") from None


def concat(text_value: str, kinds: Sequence[str]) -> bytes:
    return ConcatEncoder(kinds)(text_value)


def map_verdict(text_verdict: str) -> tuple[int, str | None]:
    words = text_verdict.split()
    if words == ["drop"]:
        return DROP, None
    if len(words) == 2 and words[0] in VERDICTS:
        return VERDICTS[words[0]], words[1]
    raise UnsupportedRule(f"map verdict {text_verdict!r}")


# -- the batch ---------------------------------------------------------------


@dataclass
class Batch:
    """nf_tables messages for one table, in order; `describe[i]` names message i for error reports."""

    table: str
    port_protocols: Mapping[str, str]  # see compile_rule
    messages: list[tuple[int, int, bytes]]
    describe: list[str]

    @classmethod
    def for_table(cls, table: str, port_protocols: Mapping[str, str] | None = None) -> Batch:
        return cls(table, port_protocols or {}, [], [])

    def _add(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self.messages.append((kind, flags, body))
        self.describe.append(what)

    def add_chain(self, name: str) -> None:
        self._add(NEWCHAIN, NLM_F_CREATE, text(1, self.table) + text(3, name), f"add chain {name}")

    def flush_chain(self, name: str) -> None:
        self._add(DELRULE, 0, text(1, self.table) + text(2, name), f"flush chain {name}")

    def delete_chain(self, name: str) -> None:
        self._add(DELCHAIN, 0, text(1, self.table) + text(3, name), f"delete chain {name}")

    def add_rule(self, chain: str, rule: str) -> None:
        body = text(1, self.table) + text(2, chain) + compile_rule(rule, self.port_protocols)
        self._add(NEWRULE, NLM_F_CREATE | NLM_F_APPEND, body, f"add rule {chain} {rule}")

    def add_element(
        self, set_name: str, key: str, data: str, key_kinds: Sequence[str], data_kinds: str | Sequence[str] | None
    ) -> None:
        """One element: a set member (`data_kinds` None), a verdict (`"verdict"`) or concatenated data."""
        parts = [value(1, concat(key, key_kinds))]
        if data_kinds == "verdict":
            parts.append(verdict(2, *map_verdict(data)))
        elif data_kinds is not None:
            parts.append(value(2, concat(data, data_kinds)))
        body = text(1, self.table) + text(2, set_name) + nested(3, nested(1, *parts))
        shown = f"{key} : {data}" if data_kinds is not None else key
        self._add(NEWSETELEM, NLM_F_CREATE, body, f"add element {set_name} {{ {shown} }}")

    def add_elements(
        self,
        set_name: str,
        members: Mapping[str, str],
        key_kinds: Sequence[str],
        data_kinds: str | Sequence[str] | None,
    ) -> None:
        """Many elements (key -> data, data "" in a set), as many to a message as its attribute length allows."""
        head = text(1, self.table) + text(2, set_name)
        encode_key = ConcatEncoder(key_kinds)
        if data_kinds == "verdict":  # variable length (chain names): element by element
            chunk: list[bytes] = []
            size = 0
            first = ""
            for key, data in members.items():
                element = nested(1, value(1, encode_key(key)), verdict(2, *map_verdict(data)))
                if size + len(element) > ELEMENTS_BYTES_PER_MESSAGE:
                    self._add_chunk(head, chunk, set_name, first)
                    chunk, size = [], 0
                if not chunk:
                    first = key
                chunk.append(element)
                size += len(element)
            if chunk:
                self._add_chunk(head, chunk, set_name, first)
            return
        encode_data = None if data_kinds is None else ConcatEncoder(data_kinds)
        data_length = 0 if encode_data is None else encode_data.length
        layout = nested(1, value(1, bytes(encode_key.length)), *([value(2, bytes(data_length))] if encode_data else []))
        # Every field is 4 bytes: the attribute headers around key and data are the same in every element.
        key_head, data_head = layout[:12], layout[12 + encode_key.length : 20 + encode_key.length]
        items = list(members.items())
        per_message = ELEMENTS_BYTES_PER_MESSAGE // len(layout)
        for start in range(0, len(items), per_message):
            part = items[start : start + per_message]
            if encode_data is None:
                elements = [key_head + encode_key(key) for key, _ in part]
            else:
                elements = [key_head + encode_key(key) + data_head + encode_data(data) for key, data in part]
            self._add_chunk(head, elements, set_name, part[0][0])

    def _add_chunk(self, head: bytes, elements: list[bytes], set_name: str, first: str) -> None:
        what = f"add element {set_name} {{ {first}, ... }} ({len(elements)} elements)"
        self._add(NEWSETELEM, NLM_F_CREATE, head + nested(3, *elements), what)

    def flush_set(self, name: str) -> None:
        """Every element of a set or map goes (a delete naming none)."""
        self._add(DELSETELEM, 0, text(1, self.table) + text(2, name), f"flush set {name}")

    def delete_element(self, set_name: str, key: str, key_kinds: Sequence[str]) -> None:
        body = text(1, self.table) + text(2, set_name) + nested(3, nested(1, value(1, concat(key, key_kinds))))
        self._add(DELSETELEM, 0, body, f"delete element {set_name} {{ {key} }}")

    def add_timeout_set(self, name: str, timeout_seconds: int) -> None:
        """An address set as `flags dynamic,timeout ; timeout Ns` declares it."""
        body = (
            text(1, self.table)
            + text(2, name)
            + be32(3, SET_TIMEOUT | SET_EVAL)
            + be32(4, TYPE_IPADDR)
            + be32(5, 4)
            + nested(9, be32(1, DYNAMIC_SET_SIZE))
            + be32(10, len(self.messages) + 1)
            + attr(11, struct.pack(">Q", timeout_seconds * 1000))
        )
        self._add(NEWSET, NLM_F_CREATE, body, f"add set {name}")

    def delete_set(self, name: str) -> None:
        self._add(DELSET, 0, text(1, self.table) + text(2, name), f"delete set {name}")


def _message(kind: int, flags: int, seq: int, body: bytes, family: int = NFPROTO_IPV4, res_id: int = 0) -> bytes:
    header = struct.pack("=IHHII", 16 + 4 + len(body), kind, NLM_F_REQUEST | flags, seq, 0)
    return header + struct.pack("=BBH", family, 0, socket.htons(res_id)) + body


# -- the socket --------------------------------------------------------------


def _socket_in(netns: str | None) -> socket.socket:
    """A netfilter netlink socket in `netns` (a name under /run/netns), or in this process's namespace.

    The namespace is entered by a short-lived thread: setns changes only
    the calling thread, and a socket stays in the namespace it was made in.
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    made: list[socket.socket | BaseException] = []

    def enter_and_open() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        except BaseException as err:  # handed to the caller's thread
            made.append(err)

    worker = threading.Thread(target=enter_and_open)
    worker.start()
    worker.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class NetlinkNft:
    """Sends batches over one netfilter netlink socket, kept open between syncs."""

    def __init__(self, netns: str | None = None):
        self.netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = _socket_in(self.netns)
            sock.setsockopt(270, NETLINK_CAP_ACK, 1)  # SOL_NETLINK: errors without the failed message
            sock.bind((0, 0))
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def send(self, batch: Batch) -> None:
        """Apply the batch atomically; on any error nothing changed and PacketFilterError says which op failed."""
        if not batch.messages:
            return
        sock = self._socket()
        first = self._seq + 1
        parts = [_message(NFNL_MSG_BATCH_BEGIN, 0, first, b"", family=0, res_id=NFNL_SUBSYS_NFTABLES)]
        last = len(batch.messages) - 1
        for index, (kind, flags, body) in enumerate(batch.messages):
            ack = NLM_F_ACK if index == last else 0  # errors are always answered; success only for the last
            parts.append(_message((NFNL_SUBSYS_NFTABLES << 8) | kind, flags | ack, first + 1 + index, body))
        end_seq = first + 1 + len(batch.messages)
        parts.append(_message(NFNL_MSG_BATCH_END, 0, end_seq, b"", family=0, res_id=NFNL_SUBSYS_NFTABLES))
        self._seq = end_seq
        data = b"".join(parts)
        try:
            if len(data) + 4096 > sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF):
                # The kernel takes a batch in one message, which must fit the send buffer; root may raise it.
                sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, len(data) + 4096)
            sock.sendall(data)
            answers = self._drain(sock)
        except OSError as err:
            self.close()
            raise PacketFilterError(f"nf_tables netlink: {err}") from err
        failures = [(seq, code) for seq, code in answers if code != 0]
        if failures:
            seq, code = failures[0]
            index = seq - first - 1
            what = batch.describe[index] if 0 <= index < len(batch.describe) else f"message {seq}"
            raise PacketFilterError(f"nf_tables rejected {what!r}: {os.strerror(code)}")
        if (first + 1 + last, 0) not in answers:
            raise PacketFilterError("nf_tables netlink: the batch was not acknowledged")

    @staticmethod
    def _drain(sock: socket.socket) -> list[tuple[int, int]]:
        """(seq, errno) of every answer queued: the kernel handled the batch before sendall returned."""
        answers: list[tuple[int, int]] = []
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return answers
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + 16)
                    answers.append((seq, -code))
                offset += (length + 3) & ~3
                if length == 0:
                    break

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
