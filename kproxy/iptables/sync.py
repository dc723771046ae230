"""Turning the wanted ruleset into as small an iptables-restore transaction as is safe.

Between full syncs, a sync rewrites only the chains whose rules differ from
what kproxy last wrote, and deletes the per-service chains it no longer
wants; it never reads the kernel. A full sync (the first, every resync
period, after a failure) reads the kernel with `save` and also rewrites any
chain whose saved text differs from what the kernel showed right after
kproxy last wrote it, which repairs changes made behind kproxy's back
without rewriting chains nobody touched. Each sync is one restore call.

iptables-nft's `--noflush` restore grows quadratically with the chains it
declares (about 2 s for 2,000 services here, minutes for 10,000), so above
`bulk_limit` chains a sync instead replaces the `filter` and `nat` tables
whole (restore without `--noflush`), carrying over every rule kproxy does
not own as `save` printed it.
"""

from __future__ import annotations

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
        # Each chain as `save` showed it right after kproxy wrote it; absent = not known yet.
        self.seen: dict[ChainKey, tuple[str, ...]] = {}

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
                for key in (*rewrite, *stale):
                    self.seen.pop(key, None)
                return self._report(wanted, len(rewrite), full=False)
        return self._full_sync(wanted)

    def _full_sync(self, wanted: dict[ChainKey, tuple[str, ...]]) -> SyncReport:
        saved = self.packet_filter.save()
        kernel = chain_rules(saved)
        rewrite = [
            key
            for key, rules in wanted.items()
            if key not in kernel
            or self.written.get(key) != rules
            or key not in self.seen
            or kernel[key] != self.seen[key]
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
        if rewrite or stale:
            after = chain_rules(self.packet_filter.save())
            self.seen = {key: after[key] for key in wanted if key in after}
        log.info("full sync", extra={"chains_written": len(rewrite), "chains_deleted": len(stale)})
        return self._report(wanted, len(rewrite), full=True)

    def forget(self) -> None:
        """After a failed restore nothing is known about the kernel: the next sync must be full."""
        self.written, self.seen = {}, {}

    @staticmethod
    def _report(wanted: Mapping[ChainKey, Sequence[str]], written: int, full: bool) -> SyncReport:
        rules = {t: sum(len(r) for (tt, _), r in wanted.items() if tt == t) for t in TABLES}
        return SyncReport(rules, written, full)
