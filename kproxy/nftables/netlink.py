"""Changes to table `ip kproxy` sent as one nf_tables netlink batch, without the `nft` tool.

`nft -f` first dumps every chain of the ruleset into its cache before it
adds a rule or a map element: at 10,000 Services (40,000 chains) that alone
costs about 0.1-0.2 s, whatever the change. A between-full-syncs diff only
adds, flushes and deletes kproxy's own chains, rules, set and map elements
and affinity sets, so it is sent here directly: the rule texts kproxy generates
(a small, fixed set of shapes) are compiled to the same expressions `nft`
would produce (`nft --debug=netlink` shows them), and the whole diff is one
batch the kernel applies or rejects atomically. A rule this compiler does
not know raises `UnsupportedRule`, and the caller falls back to `nft -f`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Sequence
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
DROP = 0
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
IP_OFFSETS = {"saddr": 12, "daddr": 16}
NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
META_L4PROTO = 16
CMP_EQ, CMP_NEQ = 0, 1
NUMGEN_RANDOM = 1
FIB_ADDRTYPE, FIB_SADDR, RTN_LOCAL = 3, 1, 2
DYNSET_UPDATE = 1
NAT_DNAT, NAT_PROTO_SPECIFIED = 1, 2
SET_TIMEOUT, SET_EVAL = 0x10, 0x20
TYPE_IPADDR = 7
DYNAMIC_SET_SIZE = 65535  # what nft gives a dynamic set declared without a size


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
    return [expression("meta", be32(1, 1), be32(2, META_L4PROTO)), compare(bytes([PROTOCOLS[name]]))]


# -- rule compiler -----------------------------------------------------------


def _address_match(field: str, negated: bool, operand: str) -> list[bytes]:
    """`ip saddr|daddr [!=] ADDR[/LEN]` or `ip saddr @set`, as nft encodes them (whole bytes of a prefix)."""
    offset = IP_OFFSETS[field]
    if operand.startswith("@"):
        if negated:
            raise UnsupportedRule("negated set lookup")
        return [payload(NETWORK_HEADER, offset, 4), expression("lookup", text(1, operand[1:]), be32(2, 1))]
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


def compile_rule(rule: str) -> bytes:
    """The NFTA_RULE_EXPRESSIONS list for one of kproxy's rule texts."""
    words = rule.split()
    out: list[bytes] = []
    i = 0
    try:
        while i < len(words):
            word = words[i]
            if word == "ip" and words[i + 1] in IP_OFFSETS:
                negated = words[i + 2] == "!="
                operand = words[i + 3] if negated else words[i + 2]
                out += _address_match(words[i + 1], negated, operand)
                i += 4 if negated else 3
            elif word in PROTOCOLS and words[i + 1] == "dport":
                out += l4proto(word)
                out += [payload(TRANSPORT_HEADER, 2, 2), compare(struct.pack(">H", int(words[i + 2])))]
                i += 3
            elif word == "meta" and words[i + 1] == "l4proto":
                out += l4proto(words[i + 2])
                i += 3
            elif words[i : i + 4] == ["fib", "saddr", "type", "local"]:
                out += [
                    expression("fib", be32(1, 1), be32(2, FIB_ADDRTYPE), be32(3, FIB_SADDR)),
                    compare(struct.pack("=I", RTN_LOCAL)),
                ]
                i += 4
            elif words[i : i + 3] == ["numgen", "random", "mod"] and words[i + 4 : i + 6] == ["==", "0"]:
                modulus = int(words[i + 3])
                out += [
                    expression("numgen", be32(1, 1), be32(2, modulus), be32(3, NUMGEN_RANDOM)),
                    compare(struct.pack("=I", 0)),
                ]
                i += 6
            elif word == "update" and words[i + 2 : i + 6] == ["{", "ip", "saddr", "}"] and words[i + 1][0] == "@":
                out += [
                    payload(NETWORK_HEADER, IP_OFFSETS["saddr"], 4),
                    expression("dynset", text(1, words[i + 1][1:]), be32(3, DYNSET_UPDATE), be32(4, 1)),
                ]
                i += 6
            elif word == "dnat" and words[i + 1] == "to":
                address, port = words[i + 2].rsplit(":", 1)
                out += [
                    immediate(1, ipaddress.IPv4Address(address).packed),
                    immediate(2, struct.pack(">H", int(port))),
                    expression(
                        "nat",
                        be32(1, NAT_DNAT),
                        be32(2, NFPROTO_IPV4),
                        be32(3, 1),
                        be32(5, 2),
                        be32(7, NAT_PROTO_SPECIFIED),
                    ),
                ]
                i += 3
            elif word in VERDICTS and i + 2 == len(words):
                out.append(jump(VERDICTS[word], words[i + 1]))
                i += 2
            else:
                raise UnsupportedRule(f"{rule!r}: cannot compile {' '.join(words[i:])!r}")
    except (IndexError, ValueError) as err:
        if isinstance(err, UnsupportedRule):
            raise
        raise UnsupportedRule(f"{rule!r}: {err}") from err
    return nested(4, *out)  # NFTA_RULE_EXPRESSIONS


def _field(kind: str, text_value: str) -> bytes:
    """One field of a concatenation, padded to its 4-byte register slot as nft lays it out."""
    if kind == "addr":
        return ipaddress.IPv4Address(text_value).packed
    if kind == "proto":
        if text_value not in PROTOCOLS:
            raise UnsupportedRule(f"protocol {text_value!r}")
        return bytes([PROTOCOLS[text_value]]).ljust(4, b"\0")
    if kind == "port":
        return struct.pack(">H", int(text_value)).ljust(4, b"\0")
    if kind == "index":  # what `numgen` puts in a register: host byte order
        return struct.pack("=I", int(text_value))
    raise UnsupportedRule(f"field kind {kind!r}")


def concat(text_value: str, kinds: Sequence[str]) -> bytes:
    """`10.96.0.5 . tcp . 80` and its field kinds (`addr`, `proto`, `port`, `index`) as nft's key bytes."""
    parts = text_value.split(" . ")
    if len(parts) != len(kinds):
        raise UnsupportedRule(f"{text_value!r} does not have the fields {' . '.join(kinds)}")
    return b"".join(_field(kind, part) for kind, part in zip(kinds, parts, strict=True))


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
    messages: list[tuple[int, int, bytes]]
    describe: list[str]

    @classmethod
    def for_table(cls, table: str) -> Batch:
        return cls(table, [], [])

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
        body = text(1, self.table) + text(2, chain) + compile_rule(rule)
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
        try:
            sock.sendall(b"".join(parts))
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
