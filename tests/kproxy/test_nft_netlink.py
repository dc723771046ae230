"""kproxy's own nf_tables netlink encoding, checked against the `nft` tool byte for byte and by listing."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence

import pytest

from kproxy.iptables.restore import PacketFilterError
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot
from kproxy.nftables import netlink
from kproxy.nftables.netlink import ELEMENTS_BYTES_PER_MESSAGE, Batch, UnsupportedRule, compile_rule, concat
from kproxy.nftables.ruleset import (
    PORT_PROTOCOLS,
    SERVICE_IPS,
    FullSync,
    Nft,
    NftablesProgrammer,
    build_nft,
    chain_name,
)
from tests.kproxy.netns import in_ns, namespaces
from tests.kproxy.test_nft_rules import EPS, NODE, WEB, every_shape

NEWRULE = (10 << 8) | 6  # NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWRULE
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The attribute naming a set by its id in the batch, per expression: nft sends it, kproxy (naming sets that
# already exist) does not.
SET_ID_ATTRIBUTE = {b"lookup": 4, b"dynset": 2}


def mnl_messages(debug_output: str) -> list[tuple[int, bytes]]:
    """(type, body after the nfgenmsg header) of each message `nft --debug=mnl` printed, rebuilt from its dump:
    attribute headers as `|len |flags| type|` lines, payload as 4-byte `data` lines."""
    messages: list[tuple[int, bytearray]] = []
    for line in (ANSI.sub("", raw) for raw in debug_output.splitlines()):
        cells = line.split("|")
        if "| message length |" in line:
            messages.append((0, bytearray()))
        elif "|  type | flags  |" in line:
            messages[-1] = (int(cells[1]), messages[-1][1])
        elif "|len |flags| type|" in line:
            kind = int(cells[3]) | (0x8000 if "N" in cells[2] else 0) | (0x4000 if "B" in cells[2] else 0)
            messages[-1][1].extend(struct.pack("=HH", int(cells[1]), kind))
        elif "|      data      |" in line or "|  extra header  |" in line:
            messages[-1][1].extend(bytes(int(byte, 16) for byte in cells[1].split()))
    return [(kind, bytes(body[4:])) for kind, body in messages]


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        yield kind, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def without_set_ids(expressions: bytes) -> bytes:
    """An NFTA_RULE_EXPRESSIONS attribute without the set-id attributes of its lookups."""
    ((list_kind, elements),) = attributes(expressions)
    out = b""
    for element_kind, element in attributes(elements):
        parts = list(attributes(element))
        name = dict((kind & 0x3FFF, data) for kind, data in parts)[1].rstrip(b"\0")
        rebuilt = b""
        for kind, data in parts:
            if kind & 0x3FFF == 2 and name in SET_ID_ATTRIBUTE:
                data = b"".join(attribute(k, d) for k, d in attributes(data) if k & 0x3FFF != SET_ID_ATTRIBUTE[name])
            rebuilt += attribute(kind, data)
        out += attribute(element_kind, rebuilt)
    return attribute(list_kind, out)


# A cluster CIDR on whole bytes (compared as such), none, and one that is not (compared through a mask).
NODES = (NODE, NodeConfig("worker1", NODE.node_ips, None), NodeConfig("worker1", NODE.node_ips, "10.240.0.0/12"))


def rules_of_every_shape() -> list[tuple[str, str]]:
    """(chain, rule) of every rule kproxy writes, with and without a cluster CIDR, endpoints or local ones."""
    found: dict[tuple[str, str], None] = {}
    for node in NODES:
        for endpoints in (EPS, EPS[1:], [], EPS[:1], [*EPS, Endpoint("10.244.3.9", 8080)]):
            ruleset = build_nft(*every_shape(list(endpoints)), node)
            found.update(((chain, rule), None) for chain, rules in ruleset.chains.items() for rule in rules)
    return list(found)


@pytest.fixture
def node_ns() -> Iterator[str]:
    with namespaces("nl") as (ns,):
        yield ns


@pytest.mark.root
def test_every_rule_compiles_to_the_expressions_nft_sends(node_ns: str) -> None:
    rules = rules_of_every_shape()
    nft = Nft(node_ns)
    for node in NODES:  # every chain and set the rules name
        for endpoints in (EPS, EPS[1:], [], EPS[:1], [*EPS, Endpoint("10.244.3.9", 8080)]):
            script = build_nft(*every_shape(list(endpoints)), node).render()
            nft.apply(
                "".join(line + "\n" for line in script.splitlines() if not line.startswith(("add rule", "add element")))
            )
    shapes = {re.sub(r"[0-9a-z]{16}|\d+(\.\d+){3}(/\d+)?|\d+", "N", rule) for _, rule in rules}
    assert len(shapes) >= 31  # the static plumbing, both spread rules, every chained-service shape
    for chain, rule in rules:
        debug = in_ns(node_ns, "nft", "--debug=mnl", "-c", f"add rule ip kproxy {chain} {rule}")
        sent = [body for kind, body in mnl_messages(debug.stdout + debug.stderr) if kind == NEWRULE]
        assert len(sent) == 1, rule
        expressions = dict(attributes(sent[0]))[0x8000 | 4]
        assert compile_rule(rule, PORT_PROTOCOLS) == without_set_ids(attribute(0x8000 | 4, expressions)), rule


class ScriptNft(Nft):
    """Full syncs as `nft -f` scripts: what the netlink batch must equal."""

    def apply_full(self, full: FullSync) -> None:
        self.apply(full.script())


@pytest.fixture
def two_ns() -> Iterator[list[str]]:
    with namespaces("batch", "script") as made:
        yield made


def listing(ns: str) -> str:
    return in_ns(ns, "nft", "list", "table", "ip", "kproxy").stdout


@pytest.mark.root
def test_full_syncs_by_netlink_leave_the_table_nft_f_does(two_ns: list[str]) -> None:
    """Full syncs (first, changed, after edits behind kproxy's back, after a restart) list identically whether
    sent as one netlink batch or as the `nft -f` script of the same transaction."""
    by_batch, by_script = Nft(two_ns[0]), ScriptNft(two_ns[1])
    programmers = [NftablesProgrammer(nft, NODE) for nft in (by_batch, by_script)]
    steps: list[tuple[list[ServicePort], dict[ServicePortName, Sequence[Endpoint]]]] = [
        every_shape(EPS),
        every_shape([*EPS, Endpoint("10.244.3.9", 8080, node_name="worker1", is_local=True)]),
        every_shape([]),
        ([ServicePort(WEB, "10.96.0.51", 8080)], {WEB: tuple(EPS)}),  # chains, affinity and spread sets go
        every_shape(EPS[:1]),
    ]
    for index, (ports, endpoints) in enumerate(steps):
        if index == 2:  # someone flushes a chain and deletes an element: the full sync repairs both
            for ns in two_ns:
                in_ns(ns, "nft", "flush", "chain", "ip", "kproxy", "services")
                in_ns(ns, "nft", "delete element ip kproxy service-endpoints-udp { 10.96.0.10 . udp . 53 . 0 }")
        if index == 4:  # a restart: new programmers find the rules in place
            programmers = [NftablesProgrammer(nft, NODE) for nft in (by_batch, by_script)]
        for programmer in programmers:
            programmer.sync(ServiceSnapshot(ports, endpoints), full=True)
        batch_listing, script_listing = listing(two_ns[0]), listing(two_ns[1])
        assert batch_listing == script_listing
        wanted = build_nft(ports, endpoints, NODE)
        assert all(f"chain {name} {{" in batch_listing for name in wanted.chains)
    assert "aff-" in batch_listing and "spread-udp-1" in batch_listing


@pytest.mark.root
def test_a_full_sync_of_thousands_of_services_is_one_batch(node_ns: str) -> None:
    """21,000 elements: about 1.3 MB, several times the default socket buffer, and 25 element messages."""
    ports: list[ServicePort] = []
    endpoints: dict[ServicePortName, Sequence[Endpoint]] = {}
    for i in range(3000):
        key = ServicePortName("load", f"svc{i}", "http", "TCP")
        ports.append(ServicePort(key, f"10.96.{i // 256}.{i % 256}", 80))
        endpoints[key] = tuple(Endpoint(f"10.244.{(3 * i + j) // 256}.{(3 * i + j) % 256}", 8080) for j in range(3))
    nft = Nft(node_ns)
    NftablesProgrammer(nft, NODE).sync(ServiceSnapshot(ports, endpoints), full=True)
    spread = in_ns(node_ns, "nft", "list", "set", "ip", "kproxy", "spread-tcp-3").stdout
    assert spread.count(" . tcp . 80") == 3000
    mapped = in_ns(node_ns, "nft", "list", "map", "ip", "kproxy", "service-endpoints-tcp").stdout
    assert mapped.count(" : 10.244.") == 9000 and "10.96.11.183 . tcp . 80 . 2 : 10.244.35.39 . 8080" in mapped


@pytest.mark.root
def test_a_rejected_full_sync_changes_nothing_and_names_what_failed(node_ns: str) -> None:
    nft = Nft(node_ns)
    programmer = NftablesProgrammer(nft, NODE)
    ports, endpoints = every_shape(EPS)
    programmer.sync(ServiceSnapshot(ports, endpoints), full=True)
    before = listing(node_ns)
    wanted = build_nft(ports, endpoints, NODE)
    wanted.elements[SERVICE_IPS]["10.96.9.9 . tcp . 80"] = "goto svc-missing"
    with pytest.raises(PacketFilterError, match=r"add element service-ips"):
        nft.apply_full(FullSync(wanted, *nft.list_names()))
    assert listing(node_ns) == before


@pytest.mark.root
def test_a_rule_outside_the_compiler_goes_by_nft_f(node_ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_every_rule(rule: str, port_protocols: object = None) -> bytes:
        raise UnsupportedRule(f"{rule!r}: pretend unknown")

    nft = Nft(node_ns)
    monkeypatch.setattr(netlink, "compile_rule", refuse_every_rule)
    programmer = NftablesProgrammer(nft, NODE)
    programmer.sync(ServiceSnapshot(*every_shape(EPS)), full=True)
    assert f"chain {chain_name('svc-', WEB)} {{" in listing(node_ns)
    moved = Endpoint("10.244.3.9", 8080)
    programmer.sync(ServiceSnapshot(*every_shape([EPS[0], moved])), full=False)  # partial: the same way
    assert f"chain {chain_name('ep-', WEB, moved)} {{" in listing(node_ns)


def test_elements_are_split_into_messages_the_attribute_length_can_hold() -> None:
    batch = Batch.for_table("kproxy")
    members = {f"10.{i // 65536}.{i // 256 % 256}.{i % 256} . 10.0.0.1": "" for i in range(20000)}
    batch.add_elements("pairs", members, ("addr", "addr"), None)
    assert len(batch.messages) > 1
    for _kind, _flags, body in batch.messages:
        ((_, elements),) = [(k, d) for k, d in attributes(body) if k & 0x3FFF == 3]
        assert len(elements) <= ELEMENTS_BYTES_PER_MESSAGE and len(elements) + 4 < 1 << 16  # a 16-bit length
    assert batch.describe[1].startswith("add element pairs { 10.0.")
    counted = sum(len(list(attributes(d))) for _, _, b in batch.messages for k, d in attributes(b) if k & 0x3FFF == 3)
    assert counted == 20000


def test_malformed_element_fields_are_refused() -> None:
    assert concat("10.96.0.5 . tcp . 80", ("addr", "proto", "port")) == bytes([10, 96, 0, 5, 6, 0, 0, 0, 0, 80, 0, 0])
    for text, kinds in [
        ("10.96 . tcp . 80", ("addr", "proto", "port")),  # inet_aton alone would take it
        ("10.96.0.5 . icmp . 80", ("addr", "proto", "port")),
        ("10.96.0.5 . tcp . 70000", ("addr", "proto", "port")),
        ("10.96.0.5 . tcp", ("addr", "proto", "port")),
    ]:
        with pytest.raises(UnsupportedRule):
            concat(text, kinds)
