"""Applying a ruleset: one `iptables-restore --noflush` transaction per sync.

kproxy owns only its KUBE-* chains. The transaction rewrites those it
declares, deletes per-service chains that the ruleset no longer declares
(a removed service), and adds the jumps from the built-in chains only when
`iptables-save` shows them missing, so rules other programs put in the same
tables are never touched.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kproxy.iptables.rules import (
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_SERVICES,
    SERVICE_CHAIN_PREFIXES,
    comment,
)

log = logging.getLogger(__name__)

BACKENDS = {
    "legacy": ("iptables-legacy-restore", "iptables-legacy-save"),
    "nft": ("iptables-restore", "iptables-save"),
}


@dataclass(frozen=True)
class JumpRule:
    """A rule in a built-in chain that sends traffic into one of kproxy's chains."""

    table: str
    chain: str
    target: str
    comment: str
    matches: str = ""

    def rule(self) -> str:
        """The rule as an insertion at the top of the built-in chain, as kube-proxy prepends them."""
        parts = ["-I", self.chain, "1", self.matches, comment(self.comment), "-j", self.target]
        return " ".join(p for p in parts if p)

    def present_in(self, rules: list[str]) -> bool:
        """Whether saved rules already hold this jump."""
        return any(r.startswith(f"-A {self.chain} ") and r.endswith(f"-j {self.target}") for r in rules)


NEW = "-m conntrack --ctstate NEW"
JUMP_RULES = (
    JumpRule("filter", "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", NEW),
    JumpRule("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", NEW),
    JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    JumpRule("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", NEW),
    JumpRule("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", NEW),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)


class PacketFilterError(RuntimeError):
    """iptables-restore or -save failed; the message carries the tool's own words."""


class PacketFilter(Protocol):
    """Where rules go: apply a restore payload, read the current rules back."""

    def restore(self, payload: str, noflush: bool = True) -> None: ...

    def save(self) -> str: ...


class IptablesPacketFilter:
    """The real thing: iptables-(legacy-)restore/-save run as subprocesses.

    `command_prefix` runs them elsewhere (e.g. `ip netns exec NS`), which is
    how tests program a namespace they made; kproxy itself is started inside
    its node's namespace and needs none.
    """

    def __init__(self, backend: str = "legacy", command_prefix: Sequence[str] = (), timeout: float = 60.0):
        if backend not in BACKENDS:
            raise ValueError(f"iptables backend {backend!r}: must be one of {sorted(BACKENDS)}")
        self.restore_command, self.save_command = BACKENDS[backend]
        self.command_prefix = list(command_prefix)
        self.timeout = timeout

    def restore(self, payload: str, noflush: bool = True) -> None:
        """Apply a payload; without `noflush`, every table it names is replaced whole."""
        # -w: wait for the xtables lock rather than fail when another program holds it.
        self._run([self.restore_command, "-w", "5", *(["--noflush"] if noflush else [])], payload)

    def save(self) -> str:
        return self._run([self.save_command], None)

    def _run(self, command: list[str], stdin: str | None) -> str:
        try:
            done = subprocess.run(
                self.command_prefix + command,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise PacketFilterError(f"{command[0]}: {err}") from err
        if done.returncode != 0:
            raise PacketFilterError(f"{command[0]} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout


class RecordingPacketFilter:
    """A test double that keeps every payload and answers save with canned text."""

    def __init__(self, saved: str = "", fail_with: str | None = None):
        self.payloads: list[str] = []
        self.flushing: list[bool] = []  # per payload: was it a whole-table replacement
        self.saved = saved
        self.fail_with = fail_with

    def restore(self, payload: str, noflush: bool = True) -> None:
        if self.fail_with is not None:
            raise PacketFilterError(self.fail_with)
        self.payloads.append(payload)
        self.flushing.append(not noflush)

    def save(self) -> str:
        return self.saved


@dataclass
class SavedTable:
    """What `iptables-save` showed for one table: its chains and its rules."""

    chains: set[str]
    rules: list[str]


def parse_save(text: str) -> dict[str, SavedTable]:
    """Tables of iptables-save output (or restore input) by name."""
    tables: dict[str, SavedTable] = {}
    current: SavedTable | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), SavedTable(set(), []))
        elif current is None or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            current.chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            current.rules.append(line)
    return tables


def transaction(ruleset: str, saved: str) -> str:
    """The restore payload for one sync: the ruleset plus stale-chain deletions and missing jumps.

    A chain is stale when it has a per-service prefix, exists now and the new
    ruleset does not declare it; restore needs it declared (which flushes it)
    before `-X` can delete it, since other stale chains may still jump to it.
    """
    current = parse_save(saved)
    wanted = parse_save(ruleset)
    out: list[str] = []
    table_name, stale = "", []
    for line in ruleset.splitlines():
        if line.startswith("*"):
            table_name = line[1:].strip()
            stale = sorted(
                c
                for c in (current[table_name].chains if table_name in current else set())
                if c.startswith(SERVICE_CHAIN_PREFIXES) and c not in wanted[table_name].chains
            )
            out.append(line)
            out.extend(f":{c} - [0:0]" for c in stale)
        elif line == "COMMIT":
            out.extend(f"-X {c}" for c in stale)
            out.extend(
                j.rule()
                for j in JUMP_RULES
                if j.table == table_name and not (table_name in current and j.present_in(current[table_name].rules))
            )
            out.append(line)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def rule_count(ruleset: str) -> dict[str, int]:
    """Rules per table in a payload, for the rules-count metric."""
    return {name: len(table.rules) for name, table in parse_save(ruleset).items()}
