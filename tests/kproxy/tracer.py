"""A packet tracer over iptables-restore text, so rule tests check behaviour, not just strings.

It parses the tables kproxy writes (every match and target kproxy uses;
anything else is an error rather than silently ignored) and follows one
new connection's first packet through nat (PREROUTING or OUTPUT), filter
(INPUT, FORWARD or OUTPUT) and nat POSTROUTING, forking at every
`-m statistic` rule, and returns each possible outcome with its probability.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections import defaultdict
from dataclasses import dataclass, field, replace

BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
TERMINAL = {"ACCEPT", "DROP", "REJECT", "DNAT", "MASQUERADE"}


class TraceError(ValueError):
    """The text uses something the tracer does not model."""


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    # Addresses the node itself owns: what `-m addrtype LOCAL` matches (loopback always is).
    local_ips: frozenset[str] = frozenset()
    # `-m recent` lists this client is already on (session affinity).
    recent: frozenset[str] = frozenset()
    ctstate: str = "NEW"
    mark: int = 0
    dnat: str | None = None
    masquerade: bool = False
    chains: tuple[str, ...] = ()

    def is_local(self, ip: str) -> bool:
        return ip in self.local_ips or ipaddress.ip_address(ip).is_loopback


@dataclass(frozen=True)
class Outcome:
    verdict: str  # ACCEPT, DROP or REJECT
    dnat: str | None  # ip:port the packet was DNATed to
    masquerade: bool
    chains: tuple[str, ...]  # nat and filter chains the packet went through, in order


@dataclass
class Rule:
    text: str
    matches: list[tuple[str, bool, list[str]]] = field(default_factory=list)  # (option, negated, values)
    target: str = ""
    target_args: dict[str, str] = field(default_factory=dict)


# Options that take one value, by the module (or core) that defines them.
_MATCH_OPTIONS = {
    "-s",
    "-d",
    "-p",
    "--dport",
    "--dst-type",
    "--src-type",
    "--mode",
    "--probability",
    "--name",
    "--seconds",
    "--mark",
    "--ctstate",
    "--comment",
    "--mask",
}
_FLAG_OPTIONS = {"--rcheck", "--set", "--reap", "--rsource"}
_TARGET_OPTIONS = {"--to-destination", "--or-mark", "--xor-mark", "--set-xmark", "--reject-with"}
_MODULES = {"tcp", "udp", "sctp", "comment", "addrtype", "statistic", "recent", "mark", "conntrack"}


def parse_rule(text: str, tokens: list[str]) -> Rule:
    rule = Rule(text)
    negate = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negate = True
            i += 1
            continue
        if token == "-m":
            if tokens[i + 1] not in _MODULES:
                raise TraceError(f"unknown match module {tokens[i + 1]!r} in {text!r}")
            i += 2
        elif token == "-j":
            rule.target = tokens[i + 1]
            i += 2
        elif token in _TARGET_OPTIONS:
            rule.target_args[token] = tokens[i + 1]
            i += 2
        elif token in _MATCH_OPTIONS:
            rule.matches.append((token, negate, [tokens[i + 1]]))
            i += 2
        elif token in _FLAG_OPTIONS:
            rule.matches.append((token, negate, []))
            i += 1
        else:
            raise TraceError(f"unknown option {token!r} in {text!r}")
        negate = False
    if not rule.target:
        raise TraceError(f"rule without -j: {text!r}")
    return rule


class Ruleset:
    """Tables parsed from restore text (payloads applied in order, as restore --noflush would)."""

    def __init__(self, *payloads: str):
        self.tables: dict[str, dict[str, list[Rule]]] = {t: {c: [] for c in chains} for t, chains in BUILTIN.items()}
        for payload in payloads:
            self._load(payload)

    def _load(self, payload: str) -> None:
        table: dict[str, list[Rule]] | None = None
        for line in payload.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line == "COMMIT":
                continue
            if line.startswith("*"):
                table = self.tables.setdefault(line[1:], defaultdict(list))
                continue
            if table is None:
                raise TraceError(f"line outside a table: {line!r}")
            if line.startswith(":"):
                chain = line[1:].split()[0]
                table[chain] = []  # declaring a chain in restore flushes it
                continue
            tokens = shlex.split(line)
            command, chain = tokens[0], tokens[1]
            if command == "-X":
                del table[chain]
            elif command == "-A":
                table[chain].append(parse_rule(line, tokens[2:]))
            elif command == "-I":
                table[chain].insert(int(tokens[2]) - 1, parse_rule(line, tokens[3:]))
            else:
                raise TraceError(f"unknown command {command!r}: {line!r}")

    def chain(self, table: str, chain: str) -> list[Rule]:
        return self.tables[table][chain]

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.tables.get(table, {})

    # -- tracing -----------------------------------------------------------

    def trace(self, packet: Packet, hook: str = "PREROUTING") -> dict[Outcome, float]:
        """Every outcome of this packet arriving (PREROUTING) or leaving the node (OUTPUT), with its odds."""
        if hook not in ("PREROUTING", "OUTPUT"):
            raise TraceError(f"hook {hook!r}: PREROUTING or OUTPUT")
        outcomes: dict[Outcome, float] = defaultdict(float)
        for odds, after_nat, _ in self._walk("nat", hook, 0, packet, 1.0):
            routed_locally = after_nat.is_local(after_nat.dst)
            filter_chain = "OUTPUT" if hook == "OUTPUT" else ("INPUT" if routed_locally else "FORWARD")
            for odds2, after_filter, verdict in self._walk("filter", filter_chain, 0, after_nat, odds):
                verdict = verdict or "ACCEPT"
                if verdict == "ACCEPT" and filter_chain != "INPUT":
                    for odds3, routed, _ in self._walk("nat", "POSTROUTING", 0, after_filter, 1.0):
                        outcome = Outcome(verdict, routed.dnat, routed.masquerade, routed.chains)
                        outcomes[outcome] += odds2 * odds3
                    continue
                outcomes[Outcome(verdict, after_filter.dnat, after_filter.masquerade, after_filter.chains)] += odds2
        return dict(outcomes)

    def summary(self, packet: Packet, hook: str = "PREROUTING") -> dict[tuple[str, str | None, bool], float]:
        """Outcomes by (verdict, DNAT destination, masqueraded), whatever chains led there."""
        merged: dict[tuple[str, str | None, bool], float] = defaultdict(float)
        for outcome, odds in self.trace(packet, hook).items():
            merged[(outcome.verdict, outcome.dnat, outcome.masquerade)] += odds
        return dict(merged)

    def _walk(self, table: str, chain: str, start: int, packet: Packet, odds: float):
        """(odds, packet, verdict) for each way through `chain` from rule `start`; verdict None = fell through."""
        if start == 0:
            packet = replace(packet, chains=packet.chains + (chain,))
        rules = self.chain(table, chain)
        for index in range(start, len(rules)):
            rule = rules[index]
            chance = _match(rule, packet)
            if chance == 0:
                continue
            results = []
            if chance < 1:
                results += self._walk(table, chain, index + 1, packet, odds * (1 - chance))
            results += self._take(table, chain, index, rule, packet, odds * chance)
            return results
        return [(odds, packet, None)]

    def _take(self, table: str, chain: str, index: int, rule: Rule, packet: Packet, odds: float):
        target = rule.target
        if target == "RETURN":
            return [(odds, packet, None)]
        if target == "MARK":
            return self._walk(table, chain, index + 1, replace(packet, mark=_marked(packet.mark, rule)), odds)
        if target == "DNAT":
            destination = rule.target_args["--to-destination"]
            ip, _, port = destination.rpartition(":")
            return [(odds, replace(packet, dst=ip, dport=int(port), dnat=destination), "DNAT")]
        if target == "MASQUERADE":
            return [(odds, replace(packet, masquerade=True), "MASQUERADE")]
        if target in TERMINAL:
            return [(odds, packet, target)]
        if not self.has_chain(table, target):
            raise TraceError(f"jump to missing chain {target!r} in {rule.text!r}")
        results = []
        for sub_odds, sub_packet, verdict in self._walk(table, target, 0, packet, odds):
            if verdict is None:
                results += self._walk(table, chain, index + 1, sub_packet, sub_odds)
            else:
                results.append((sub_odds, sub_packet, verdict))
        return results


def _marked(mark: int, rule: Rule) -> int:
    args = rule.target_args
    if "--or-mark" in args:
        return mark | int(args["--or-mark"], 0)
    if "--xor-mark" in args:
        return mark ^ int(args["--xor-mark"], 0)
    value, _, mask = args["--set-xmark"].partition("/")
    return (mark & ~int(mask or "0xffffffff", 0)) ^ int(value, 0)


def _match(rule: Rule, packet: Packet) -> float:
    """The chance that `rule` matches `packet`: 0, 1, or a statistic rule's probability."""
    chance = 1.0
    options = {option for option, _, _ in rule.matches}
    for option, negated, values in rule.matches:
        value = values[0] if values else ""
        if option == "--probability":
            chance = float(value)
            continue
        if option in ("--comment", "--mode", "--seconds", "--reap", "--name", "--set", "--rsource"):
            continue  # no effect on whether a fresh packet matches
        if option == "--mask":
            if value != "255.255.255.255":
                raise TraceError(f"recent --mask {value}: only whole source addresses are modelled")
            continue
        if option == "-s":
            hit = ipaddress.ip_address(packet.src) in ipaddress.ip_network(value, strict=False)
        elif option == "-d":
            hit = ipaddress.ip_address(packet.dst) in ipaddress.ip_network(value, strict=False)
        elif option == "-p":
            hit = packet.proto == value
        elif option == "--dport":
            hit = packet.dport == int(value)
        elif option == "--dst-type":
            hit = _addrtype(value) and packet.is_local(packet.dst)
        elif option == "--src-type":
            hit = _addrtype(value) and packet.is_local(packet.src)
        elif option == "--mark":
            mark, _, mask = value.partition("/")
            hit = packet.mark & int(mask or "0xffffffff", 0) == int(mark, 0)
        elif option == "--ctstate":
            hit = packet.ctstate in value.split(",")
        elif option == "--rcheck":
            names = [v[0] for o, _, v in rule.matches if o == "--name"]
            if "--seconds" not in options or not names:
                raise TraceError(f"--rcheck without --name/--seconds: {rule.text!r}")
            hit = names[0] in packet.recent
        else:
            raise TraceError(f"unmodelled match {option!r}")
        if hit == negated:
            return 0.0
    return chance


def _addrtype(value: str) -> bool:
    if value != "LOCAL":
        raise TraceError(f"addrtype {value!r}: only LOCAL is modelled")
    return True
