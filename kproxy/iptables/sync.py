"""Turning the wanted ruleset into as small an iptables-restore transaction as is safe.

Between full syncs, a sync rewrites only the chains whose rules differ from
what kproxy last wrote, and deletes the per-service chains it no longer
wants; it never reads the kernel. A full sync (the first, every resync
period, after a failure) reads the kernel with `save` and rewrites exactly
the chains whose saved rules differ from the wanted ones put in
`iptables-save`'s own form (`saved_form`). That repairs changes made behind
kproxy's back, and after a restart leaves unchanged chains alone. A rule
form `saved_form` gets wrong only costs a needless rewrite of its chain.
Each sync is one restore call, started at the first chain that needs
writing and fed while the rest is built; none when nothing needs writing.

iptables-nft's `--noflush` restore grows quadratically with the chains it
declares (about 2 s for 2,000 services here, minutes for 10,000), so above
`bulk_limit` chains a sync instead replaces the `filter` and `nat` tables
whole (restore without `--noflush`), carrying over every rule kproxy does
not own as `save` printed it. With a limit, a sync holds its chains back
until more than the limit need writing (then it replaces, streaming the
rest) or all are built and the changes fit one `--noflush` restore.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from kproxy.iptables.restore import (
    PacketFilter,
    Transaction,
    chain_rules,
    foreign_rules,
    missing_jumps,
)
from kproxy.iptables.rules import (
    SERVICE_CHAIN_PREFIXES,
    Chain,
    ChainKey,
    ServiceRules,
    ruleset_chains,
    service_parts,
)
from kproxy.collector import collector_paused
from kproxy.model import NodeConfig, ServiceSnapshot

log = logging.getLogger(__name__)

TABLES = ("filter", "nat")


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

    def chains(self, parts: Iterable[ServiceRules]) -> Iterator[Chain]:
        """The wanted chains in restore order, each service's as its part is reached."""
        return ruleset_chains(parts, self.node)

    def sync(self, snap: ServiceSnapshot, full: bool) -> SyncReport:
        """Apply the snapshot in one restore; a partial sync that would be too big becomes a full one."""
        # Off until the last service is built, while restore still parses what is queued in its pipe.
        parts = collector_paused(service_parts(snap.service_ports, snap.endpoints, self.node))
        try:
            return self._sync(parts, full)
        finally:
            parts.close()  # the collector is back on however the sync ended

    def _sync(self, parts: Iterator[ServiceRules], full: bool) -> SyncReport:
        saved: str | None = None
        if full:
            saved, built = self._save_while_building(parts)
            parts = itertools.chain(built, parts)
        chains = self.chains(parts)
        if saved is not None:
            kernel = chain_rules(saved)
            changes = Transaction(functools.partial(_differs, kernel), kernel.keys(), missing_jumps(saved))
        else:
            written = self.written
            changes = Transaction(lambda key, rules: written.get(key) != rules, written.keys())
        if self.bulk_limit is not None:
            ahead, changed = _look_ahead(chains, changes, self.bulk_limit)
            if changed is None:
                return self._replace(itertools.chain(ahead, chains), saved)
            changed_keys = changed  # the look-ahead compared every chain already
            changes.changed = lambda key, rules: key in changed_keys
            chains = iter(ahead)
        self._apply(changes.lines(chains), noflush=True)
        self.written = changes.wanted
        if full:
            log.info("full sync", extra={"chains_written": changes.written, "chains_deleted": changes.deleted})
        return self._report(changes.wanted, changes.written, full)

    def _replace(self, chains: Iterable[Chain], saved: str | None) -> SyncReport:
        """Replace `filter` and `nat` whole: every chain of kproxy's, and the other programs' rules as saved."""
        saved = self.packet_filter.save() if saved is None else saved
        replacement = Transaction(lambda key, rules: True, jumps=missing_jumps(saved), foreign=foreign_rules(saved))
        self._apply(replacement.lines(chains), noflush=False)
        self.written = replacement.wanted
        log.info("full sync replaced the tables", extra={"chains_written": replacement.written})
        return self._report(replacement.wanted, replacement.written, full=True)

    def _save_while_building(self, parts: Iterator[ServiceRules]) -> tuple[str, list[ServiceRules]]:
        """`save`'s output, and the services' rules built while it ran (they do not depend on the kernel)."""
        saving = self.packet_filter.start_save()
        built: list[ServiceRules] = []
        try:
            for part in parts:
                built.append(part)
                if saving.done():
                    break
        finally:
            saved = saving.result()  # also when building failed: save is not left running
        return saved, built

    def _apply(self, lines: Iterator[str], noflush: bool) -> None:
        """Start restore at the first line there is to write, if any, and feed it the rest as it comes."""
        first = next(lines, None)
        if first is not None:
            self.packet_filter.restore(itertools.chain([first], lines), noflush)

    def forget(self) -> None:
        """After a failed restore nothing is known about the kernel: the next sync must be full."""
        self.written = {}

    @staticmethod
    def _report(wanted: Mapping[ChainKey, Sequence[str]], written: int, full: bool) -> SyncReport:
        rules = dict.fromkeys(TABLES, 0)
        for (table, _), chain in wanted.items():
            rules[table] += len(chain)
        return SyncReport(rules, written, full)


def _look_ahead(chains: Iterator[Chain], changes: Transaction, limit: int) -> tuple[list[Chain], set[ChainKey] | None]:
    """Chains read while the changes may still fit one `--noflush` restore, and the changed ones (None: too many).

    Reading stops at the first change over the limit, leaving the rest of `chains` to stream.
    """
    ahead: list[Chain] = []
    changed: set[ChainKey] = set()
    for key, rules in chains:
        ahead.append((key, rules))
        if changes.changed(key, rules):
            changed.add(key)
            if len(changed) > limit:
                return ahead, None
    wanted = {key for key, _ in ahead}
    stale = [k for k in changes.existing if k[1].startswith(SERVICE_CHAIN_PREFIXES) and k not in wanted]
    return ahead, (changed if len(changed) + len(stale) <= limit else None)


def _differs(kernel: Mapping[ChainKey, tuple[str, ...]], key: ChainKey, rules: tuple[str, ...]) -> bool:
    """Whether the kernel's chain (as saved) is missing or holds other rules than `rules`."""
    have = kernel.get(key)
    return have is None or len(have) != len(rules) or have != tuple(map(saved_form, rules))
