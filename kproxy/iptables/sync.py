"""Turning the wanted ruleset into as small an iptables-restore transaction as is safe.

Between full syncs, a sync rewrites only the chains whose rules differ from
what kproxy last wrote, and deletes the per-service chains it no longer
wants; it never reads the kernel. A full sync (the first, every resync
period, after a failure) reads the kernel with `save` and rewrites exactly
the chains whose saved rules differ from the wanted ones put in
`iptables-save`'s own form (`saved_form`). That repairs changes made behind
kproxy's back, and after a restart leaves unchanged chains alone. A rule
form `saved_form` gets wrong only costs a needless rewrite of its chain.
Each sync is one restore call.

iptables-nft's `--noflush` restore grows quadratically with the chains it
declares (about 2 s for 2,000 services here, minutes for 10,000), so above
`bulk_limit` chains a sync instead replaces the `filter` and `nat` tables
whole (restore without `--noflush`), carrying over every rule kproxy does
not own as `save` printed it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kproxy.iptables.restore import JUMP_RULES, PacketFilter, parse_save
from kproxy.iptables.rules import (
    FILTER_CHAINS,
    NAT_CHAINS,
    SERVICE_CHAIN_PREFIXES,
    Tables,
    assemble,
    service_rules,
)
from kproxy.model import NodeConfig, ServiceSnapshot

log = logging.getLogger(__name__)

ChainKey = tuple[str, str]  # (table, chain)
TABLES = ("filter", "nat")
SHARED_CHAINS = frozenset([("filter", c) for c in FILTER_CHAINS] + [("nat", c) for c in NAT_CHAINS])


def owned(key: ChainKey) -> bool:
    """Whether kproxy owns this chain (and may rewrite or delete it)."""
    return key in SHARED_CHAINS or key[1].startswith(SERVICE_CHAIN_PREFIXES)


def chain_rules(text: str) -> dict[ChainKey, tuple[str, ...]]:
    """Every chain of save output (or restore input) with its rules in order."""
    chains: dict[ChainKey, list[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":") and table:
            chains.setdefault((table, line[1:].split()[0]), [])
        elif line.startswith("-A ") and table:
            chains.setdefault((table, line.split(maxsplit=2)[1]), []).append(line)
    return {key: tuple(rules) for key, rules in chains.items()}


# Which match module each option kproxy writes belongs to (the protocol modules share --dport).
_MODULE_OF = {
    "--comment": "comment",
    "--dst-type": "addrtype",
    "--src-type": "addrtype",
    "--mode": "statistic",
    "--probability": "statistic",
    "--mark": "mark",
    "--ctstate": "conntrack",
    **{o: "recent" for o in ("--name", "--set", "--rcheck", "--seconds", "--reap", "--mask", "--rsource")},
}
_FLAGS = {"--set", "--rcheck", "--reap", "--rsource"}
_RECENT_ORDER = ("--set", "--rcheck", "--seconds", "--reap", "--name", "--mask", "--rsource")


@functools.lru_cache(maxsize=262144)
def saved_form(rule: str) -> str:
    """A rule as `iptables-save` prints it back: core matches first, defaults spelled out, values normalised."""
    tokens = _tokens(rule)
    head, tokens = tokens[:2], tokens[2:]
    core: dict[str, str] = {}
    modules: dict[str, dict[str, str]] = {}
    target: list[str] = []
    negate, protocol, i = False, "", 0
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negate = True
            i += 1
            continue
        if target or token == "-j":
            target.append(token)
        elif token in ("-s", "-d"):
            value = tokens[i + 1] if "/" in tokens[i + 1] else f"{tokens[i + 1]}/32"
            core[token] = f"{'! ' if negate else ''}{token} {value}"
            i += 1
        elif token == "-p":
            protocol = tokens[i + 1]
            core[token] = f"-p {protocol}"
            i += 1
        elif token == "-m":
            modules.setdefault(tokens[i + 1], {})
            i += 1
        else:
            module = _MODULE_OF.get(token, protocol)
            value = "" if token in _FLAGS else tokens[i + 1]
            modules.setdefault(module, {})[token] = f"{'! ' if negate else ''}{token} {value}".rstrip()
            i += 0 if token in _FLAGS else 1
        negate = False
        i += 1
    parts = head + [core[o] for o in ("-s", "-d", "-p") if o in core]
    for module, options in modules.items():
        parts.append(f"-m {module}")
        if module == "comment":
            text = options["--comment"].split(" ", 1)[1].replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'--comment "{text}"')
        elif module == "statistic":
            chance = float(options["--probability"].split()[1])
            parts.append(f"--mode random --probability {round(0x80000000 * chance) / 0x80000000:.11f}")
        elif module == "recent":
            options.setdefault("--mask", "--mask 255.255.255.255")
            options.setdefault("--rsource", "--rsource")
            parts.extend(options[o] for o in _RECENT_ORDER if o in options)
        else:
            parts.extend(options.values())
    parts.extend(_saved_target(target))
    return " ".join(parts)


def _tokens(rule: str) -> list[str]:
    """Words of a rule kproxy wrote; a double-quoted comment is one word (kproxy never nests quotes)."""
    if '"' not in rule:
        return rule.split()
    words: list[str] = []
    for index, part in enumerate(rule.split('"')):
        if index % 2:
            words.append(part)
        else:
            words.extend(part.split())
    return words


def _saved_target(target: list[str]) -> list[str]:
    if target[1:] == ["REJECT"]:
        return [*target, "--reject-with", "icmp-port-unreachable"]
    if target[1] == "MARK" and target[2] == "--or-mark":
        return ["-j", "MARK", "--set-xmark", f"{target[3]}/{target[3]}"]
    if target[1] == "MARK" and target[2] == "--xor-mark":
        return ["-j", "MARK", "--set-xmark", f"{target[3]}/0x0"]
    return target


def flatten(tables: Tables) -> dict[ChainKey, tuple[str, ...]]:
    return {(t, c): tuple(rules) for t, chains in tables.tables.items() for c, rules in chains.items()}


def chains_payload(
    wanted: Mapping[ChainKey, Sequence[str]],
    rewrite: Iterable[ChainKey],
    stale: Iterable[ChainKey],
    jumps: Iterable[str] = (),
    jump_tables: Iterable[str] = (),
) -> str:
    """A `--noflush` payload: declare (flush) and refill `rewrite`, flush and delete `stale`, add `jumps`.

    `jumps` are `-I` lines for the tables named in `jump_tables` (one per
    jump). Tables with nothing to do are left out; "" when nothing is.
    """
    rewrite, stale = set(rewrite), set(stale)
    jump_lines = list(zip(jump_tables, jumps, strict=True))
    lines: list[str] = []
    for table in TABLES:
        mine = [c for (t, c) in wanted if t == table and (t, c) in rewrite]
        gone = sorted(c for (t, c) in stale if t == table)
        extra = [line for t, line in jump_lines if t == table]
        if not (mine or gone or extra):
            continue
        lines.append(f"*{table}")
        lines.extend(f":{c} - [0:0]" for c in mine + gone)
        for chain in mine:
            lines.extend(wanted[(table, chain)])
        lines.extend(f"-X {c}" for c in gone)
        lines.extend(extra)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n" if lines else ""


def replacement_payload(wanted: Mapping[ChainKey, Sequence[str]], saved: str) -> str:
    """A full (flushing) restore of `filter` and `nat`: the rules kproxy does not own as saved, plus `wanted`.

    Built-in chains keep their saved policy line; missing jumps are added.
    Other tables are not mentioned, so restore leaves them alone.
    """
    declarations: dict[str, list[str]] = {t: [] for t in TABLES}
    foreign: dict[str, list[str]] = {t: [] for t in TABLES}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table not in declarations:
            continue
        elif line.startswith(":") and not owned((table, line[1:].split()[0])):
            declarations[table].append(line)
        elif line.startswith("-A ") and not owned((table, line.split(maxsplit=2)[1])):
            foreign[table].append(line)
    current = parse_save(saved)
    lines: list[str] = []
    for table in TABLES:
        lines.append(f"*{table}")
        lines.extend(declarations[table])
        mine = [c for (t, c) in wanted if t == table]
        lines.extend(f":{c} - [0:0]" for c in mine)
        lines.extend(foreign[table])
        for chain in mine:
            lines.extend(wanted[(table, chain)])
        saved_table = current.get(table)
        for jump in JUMP_RULES:
            if jump.table == table and not (saved_table and jump.present_in(saved_table.rules)):
                lines.append(jump.rule())
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SyncReport:
    """What one sync did: rules kproxy now has per table, and how much it wrote."""

    rules: dict[str, int]
    chains_written: int
    full: bool


class IptablesProgrammer:
    """Keeps kproxy's iptables chains equal to a snapshot, writing as little as possible per sync."""

    def __init__(self, packet_filter: PacketFilter, node: NodeConfig, bulk_limit: int | None = None):
        self.packet_filter = packet_filter
        self.node = node
        self.bulk_limit = bulk_limit
        self.written: dict[ChainKey, tuple[str, ...]] = {}

    def wanted(self, snap: ServiceSnapshot) -> dict[ChainKey, tuple[str, ...]]:
        ports = sorted(snap.service_ports, key=lambda s: s.key)
        parts = (service_rules(p, tuple(snap.endpoints.get(p.key, ())), self.node) for p in ports)
        return flatten(assemble(parts, self.node))

    def sync(self, snap: ServiceSnapshot, full: bool) -> SyncReport:
        """Apply the snapshot in one restore; a partial sync that would be too big becomes a full one."""
        wanted = self.wanted(snap)
        if not full:
            rewrite = [k for k, rules in wanted.items() if self.written.get(k) != rules]
            stale = [k for k in self.written if k not in wanted]
            if self.bulk_limit is None or len(rewrite) + len(stale) <= self.bulk_limit:
                payload = chains_payload(wanted, rewrite, stale)
                if payload:
                    self.packet_filter.restore(payload)
                self.written = wanted
                return self._report(wanted, len(rewrite), full=False)
        return self._full_sync(wanted)

    def _full_sync(self, wanted: dict[ChainKey, tuple[str, ...]]) -> SyncReport:
        saved = self.packet_filter.save()
        kernel = chain_rules(saved)
        rewrite = [
            key for key, rules in wanted.items() if key not in kernel or kernel[key] != tuple(map(saved_form, rules))
        ]
        stale = [k for k in kernel if k[1].startswith(SERVICE_CHAIN_PREFIXES) and k not in wanted]
        current = parse_save(saved)
        missing = [j for j in JUMP_RULES if not (j.table in current and j.present_in(current[j.table].rules))]
        if self.bulk_limit is not None and len(rewrite) + len(stale) > self.bulk_limit:
            self.packet_filter.restore(replacement_payload(wanted, saved), noflush=False)
        else:
            payload = chains_payload(wanted, rewrite, stale, [j.rule() for j in missing], [j.table for j in missing])
            if payload:
                self.packet_filter.restore(payload)
        self.written = wanted
        log.info("full sync", extra={"chains_written": len(rewrite), "chains_deleted": len(stale)})
        return self._report(wanted, len(rewrite), full=True)

    def forget(self) -> None:
        """After a failed restore nothing is known about the kernel: the next sync must be full."""
        self.written = {}

    @staticmethod
    def _report(wanted: Mapping[ChainKey, Sequence[str]], written: int, full: bool) -> SyncReport:
        rules = {t: sum(len(r) for (tt, _), r in wanted.items() if tt == t) for t in TABLES}
        return SyncReport(rules, written, full)
