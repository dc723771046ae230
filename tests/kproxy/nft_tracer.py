"""A packet tracer over kproxy's nftables table, so nft rule tests check behaviour, as tracer.py does for iptables.

It interprets exactly the statements kproxy writes (anything else is a
TraceError) and follows a new connection's first packet through the hooks
in priority order: filter (-110) before nat on output, nat prerouting then
filter input/forward, nat postrouting last, forking at every `numgen` rule
and at every spread DNAT (one branch per entry of `service-endpoints`).
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from dataclasses import replace

from kproxy.nftables.ruleset import SERVICE_KEY, NftRuleset
from tests.kproxy.tracer import Outcome, Packet, TraceError

# (odds, packet, verdict or None when the chain fell through)
Walk = list[tuple[float, Packet, str | None]]

_NUMGEN = re.compile(r"^numgen random mod (\d+) == 0 (goto|jump) (\S+)$")
_KEY_WORDS = len(SERVICE_KEY.split())
_SPREAD_DNAT = re.compile(rf"^dnat ip to {re.escape(SERVICE_KEY)} \. numgen random mod (\d+) map @(\S+)$")


class NftTrace:
    def __init__(self, ruleset: NftRuleset):
        self.ruleset = ruleset

    def summary(self, packet: Packet, hook: str = "PREROUTING") -> dict[tuple[str, str | None, bool], float]:
        merged: dict[tuple[str, str | None, bool], float] = defaultdict(float)
        for outcome, odds in self.trace(packet, hook).items():
            merged[(outcome.verdict, outcome.dnat, outcome.masquerade)] += odds
        return dict(merged)

    def trace(self, packet: Packet, hook: str = "PREROUTING") -> dict[Outcome, float]:
        if hook == "PREROUTING":
            stages = [("nat-prerouting",), ("filter-input", "filter-forward"), ("nat-postrouting",)]
        elif hook == "OUTPUT":
            stages = [("filter-output",), ("nat-output",), ("nat-postrouting",)]
        else:
            raise TraceError(f"hook {hook!r}: PREROUTING or OUTPUT")
        outcomes: dict[Outcome, float] = defaultdict(float)
        for odds, final, verdict in self._stages(stages, packet, 1.0):
            outcomes[Outcome(verdict, final.dnat, final.masquerade, final.chains)] += odds
        return dict(outcomes)

    def _stages(self, stages: list[tuple[str, ...]], packet: Packet, odds: float) -> list[tuple[float, Packet, str]]:
        if not stages:
            return [(odds, packet, "ACCEPT")]
        choices = stages[0]
        if len(choices) == 2:  # routing: to this node (input) or through it (forward)
            chain = choices[0] if packet.is_local(packet.dst) else choices[1]
            if chain == "filter-input":
                stages = stages[:2]  # delivered locally: no postrouting
        else:
            chain = choices[0]
        results = []
        for sub_odds, after, verdict in self._walk(chain, 0, packet, odds):
            if verdict in ("DROP", "REJECT"):
                results.append((sub_odds, after, verdict))
            else:
                results += self._stages(stages[1:], after, sub_odds)
        return results

    def _walk(self, chain: str, start: int, packet: Packet, odds: float) -> Walk:
        if start == 0:
            packet = replace(packet, chains=packet.chains + (chain,))
        rules = self.ruleset.chains[chain]
        for index in range(start, len(rules)):
            rule = rules[index]
            numgen = _NUMGEN.match(rule)
            if numgen:
                chance = 1 / int(numgen.group(1))
                return self._walk(chain, index + 1, packet, odds * (1 - chance)) + self._verdict(
                    chain, index, f"{numgen.group(2)} {numgen.group(3)}", packet, odds * chance
                )
            matched, statement = self._match(rule, packet)
            if not matched:
                continue
            if statement.startswith("meta mark set meta mark "):
                op, value = statement.split()[-2:]
                mark = packet.mark | int(value, 0) if op == "or" else packet.mark ^ int(value, 0)
                packet = replace(packet, mark=mark)
                continue
            if statement.startswith("update @"):
                continue  # records affinity; no effect on this packet
            return self._verdict(chain, index, statement, packet, odds)
        return [(odds, packet, None)]

    def _verdict(self, chain: str, index: int, statement: str, packet: Packet, odds: float) -> Walk:
        words = statement.split()
        if statement == "return":
            return [(odds, packet, None)]
        if statement in ("drop", "reject"):
            return [(odds, packet, statement.upper())]
        if statement == "masquerade":
            return [(odds, replace(packet, masquerade=True), "ACCEPT")]
        if words[:3] == ["meta", "l4proto", packet.proto] and words[3:5] == ["dnat", "to"]:
            ip, _, port = words[5].rpartition(":")
            return [(odds, replace(packet, dst=ip, dport=int(port), dnat=words[5]), "ACCEPT")]
        if words[:3] == ["dnat", "ip", "to"]:
            return self._spread(statement, packet, odds)
        if words[0] in ("jump", "goto") and len(words) == 2:
            return self._call(chain, index, words[0], words[1], packet, odds)
        if words[0] == "vmap":  # vmap @map key...
            map_name, key = words[1].lstrip("@"), " ".join(words[2:])
            verdict = self.ruleset.elements[map_name].get(key)
            if verdict is None:
                return self._walk(chain, index + 1, packet, odds)
            return self._verdict(chain, index, verdict, packet, odds)
        raise TraceError(f"unmodelled statement {statement!r} in chain {chain}")

    def _spread(self, statement: str, packet: Packet, odds: float) -> Walk:
        """`dnat ip to <service key> . numgen random mod N map @service-endpoints`: each of N entries, 1/N each."""
        found = _SPREAD_DNAT.match(statement)
        if not found:
            raise TraceError(f"unmodelled DNAT {statement!r}")
        count, map_name = int(found.group(1)), found.group(2)
        results: Walk = []
        for index in range(count):
            target = self.ruleset.elements[map_name].get(f"{packet.dst} . {packet.proto} . {packet.dport} . {index}")
            if target is None:
                raise TraceError(f"{map_name} has no entry {index} of {count} for {packet.dst}:{packet.dport}")
            ip, port = target.split(" . ")
            dnat = f"{ip}:{port}"
            results.append((odds / count, replace(packet, dst=ip, dport=int(port), dnat=dnat), "ACCEPT"))
        return results

    def _member(self, operand: str, key: str) -> bool:
        if not operand.startswith("@"):
            raise TraceError(f"expected a set after the concatenation, got {operand!r}")
        return key in self.ruleset.elements.get(operand[1:], {})

    def _call(self, chain: str, index: int, how: str, target: str, packet: Packet, odds: float) -> Walk:
        if target not in self.ruleset.chains:
            raise TraceError(f"{how} to missing chain {target!r}")
        results: Walk = []
        for sub_odds, sub_packet, verdict in self._walk(target, 0, packet, odds):
            if verdict is None and how == "jump":
                results += self._walk(chain, index + 1, sub_packet, sub_odds)
            else:
                results.append((sub_odds, sub_packet, verdict))
        return results

    def _match(self, rule: str, packet: Packet) -> tuple[bool, str]:
        """Consume the match expressions at the front of `rule`; (all matched, remaining statement)."""
        words = rule.split()
        i = 0
        while i < len(words):
            w = words[i : i + 6]
            if w[:2] == ["ct", "state"]:
                if packet.ctstate.lower() not in w[2].split(","):
                    return False, ""
                i += 3
            elif w[:4] in (["fib", "daddr", "type", "local"], ["fib", "saddr", "type", "local"]):
                if not packet.is_local(packet.dst if w[1] == "daddr" else packet.src):
                    return False, ""
                i += 4
            elif words[i : i + _KEY_WORDS] == SERVICE_KEY.split():
                key = f"{packet.dst} . {packet.proto} . {packet.dport}"
                if words[i + _KEY_WORDS] == "vmap":
                    return True, f"vmap {words[i + _KEY_WORDS + 1]} {key}"
                if not self._member(words[i + _KEY_WORDS], key):
                    return False, ""
                i += _KEY_WORDS + 1
            elif words[i : i + 3] == ["ip", "saddr", "."] and words[i + 3 : i + 5] == ["ip", "daddr"]:
                if not self._member(words[i + 5], f"{packet.src} . {packet.dst}"):
                    return False, ""
                i += 6
            elif w[:3] == ["ct", "status", "dnat"]:
                if packet.dnat is None:
                    return False, ""
                i += 3
            elif w[:3] == ["meta", "l4proto", "."]:
                return True, f"vmap {words[i + 6]} {packet.proto} . {packet.dport}"
            elif w[:1] == ["ip"] and w[1] in ("daddr", "saddr"):
                address = packet.dst if w[1] == "daddr" else packet.src
                negated = w[2] == "!="
                value = w[3] if negated else w[2]
                if value.startswith("@"):
                    hit = value[1:] in packet.recent
                else:
                    hit = ipaddress.ip_address(address) in ipaddress.ip_network(value, strict=False)
                if hit == negated:
                    return False, ""
                i += 4 if negated else 3
            elif w[0] in ("tcp", "udp", "sctp") and w[1] == "dport":
                if packet.proto != w[0] or packet.dport != int(w[2]):
                    return False, ""
                i += 3
            elif w[:3] == ["meta", "mark", "&"] and w[4] == "==":
                if packet.mark & int(w[3], 0) != int(w[5], 0):
                    return False, ""
                i += 6
            else:
                return True, " ".join(words[i:])
        return True, ""
