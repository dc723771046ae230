"""Applying a ruleset: one `iptables-restore` transaction per sync, streamed while it is built.

kproxy owns only its KUBE-* chains. A transaction rewrites those it
declares, deletes per-service chains that the ruleset no longer declares
(a removed service), and adds the jumps from the built-in chains only when
`iptables-save` shows them missing, so rules other programs put in the same
tables are never touched.

Restore parses its input as it reads it, so `Transaction` produces the input
chain by chain and `IptablesPacketFilter.restore` feeds it to the process as
it comes, through a pipe with room for several batches: on a full sync the
rules are built while restore parses the ones before them (parsing is most of
a restore: about 1 s of 1.3 s for ten thousand services with
iptables-legacy here), on the machine's other core.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from kproxy.iptables.rules import (
    FILTER_CHAINS,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_SERVICES,
    NAT_CHAINS,
    SERVICE_CHAIN_PREFIXES,
    Chain,
    ChainKey,
    chains_text,
    comment,
)

log = logging.getLogger(__name__)

BACKENDS = {
    "legacy": ("iptables-legacy-restore", "iptables-legacy-save"),
    "nft": ("iptables-restore", "iptables-save"),
}
SHARED_CHAINS = frozenset([("filter", c) for c in FILTER_CHAINS] + [("nat", c) for c in NAT_CHAINS])
# Chains declared together before their rules (see chains_text): about 250 services' worth.
DECLARE_BATCH = 1000
# Text gathered per write to restore's stdin.
PIPE_BATCH = 64 * 1024
# Restore's stdin pipe holds this much (the kernel's default is 64 KiB, and fs.pipe-max-size 1 MiB).
# A write returns once its text is in the pipe, so with room for several declaration batches
# (about 350 KiB each) the next batch is built while restore parses the ones before it; with
# 64 KiB each write waited on restore and restore then waited on the build, one after the other.
PIPE_SIZE = 1024 * 1024


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


class Saving(Protocol):
    """A save under way: asked whether it is done while rules are built, its text taken once it is."""

    def done(self) -> bool: ...

    def result(self) -> str: ...


class PacketFilter(Protocol):
    """Where rules go: apply a restore payload, read the current rules back."""

    def restore(self, payload: str | Iterable[str], noflush: bool = True) -> None:
        """Apply restore input, whole or as pieces to hand over while they are produced."""
        ...

    def start_save(self) -> Saving:
        """Begin reading the current rules back, without waiting for them."""
        ...

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

    def restore(self, payload: str | Iterable[str], noflush: bool = True) -> None:
        """Apply a payload, writing each piece as it comes; without `noflush`, every table it names is replaced whole.

        Restore commits a table when it reads the table's COMMIT, so if producing
        the payload fails, the process is killed before it reads an unfinished table.
        """
        pieces = (payload,) if isinstance(payload, str) else payload
        # -w: wait for the xtables lock rather than fail when another program holds it.
        command = [self.restore_command, "-w", "5", *(["--noflush"] if noflush else [])]
        with tempfile.TemporaryFile() as errors:
            try:
                process = subprocess.Popen(
                    self.command_prefix + command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    pipesize=PIPE_SIZE,
                )
            except OSError as err:
                raise PacketFilterError(f"{command[0]}: {err}") from err
            timed_out = threading.Event()
            watchdog = threading.Timer(self.timeout, _kill, (process, timed_out))
            watchdog.start()
            try:
                assert process.stdin is not None  # stdin=PIPE
                read_all = _feed(process.stdin, pieces)
                returncode = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            finally:
                watchdog.cancel()
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
        if timed_out.is_set():
            raise PacketFilterError(f"{command[0]}: no answer within {self.timeout:g} s, killed")
        if returncode != 0:
            raise PacketFilterError(f"{command[0]} exited {returncode}: {message}")
        if not read_all:
            raise PacketFilterError(f"{command[0]} exited before reading all its input: {message}")

    def start_save(self) -> SaveProcess:
        return SaveProcess(self.command_prefix + [self.save_command], self.timeout)

    def save(self) -> str:
        return self.start_save().result()


def _feed(stdin: IO[bytes], pieces: Iterable[str]) -> bool:
    """Write the pieces in pipe-sized batches and close; False when the reader went away first."""
    batch: list[str] = []
    size = 0
    try:
        for piece in pieces:
            batch.append(piece)
            size += len(piece)
            if size >= PIPE_BATCH:
                stdin.write("".join(batch).encode())
                batch, size = [], 0
        stdin.write("".join(batch).encode())
        stdin.close()
    except BrokenPipeError:  # restore exited (an error, or killed): its status and stderr say why
        try:
            stdin.close()
        except BrokenPipeError:
            pass
        return False
    return True


def _kill(process: subprocess.Popen[bytes], timed_out: threading.Event) -> None:
    timed_out.set()
    process.kill()


class SaveProcess:
    """`iptables-save` writing into memory-backed files that nobody has to drain while it runs.

    A full sync builds rules on the main thread meanwhile and asks `done`
    between services (a non-blocking wait); restore can start the moment
    save exits. A thread draining a pipe instead needed the GIL for each wake
    up and so saw save end up to several switch intervals late (15-40 ms
    for a 3 ms save at 1,000 services here), all of it before restore could begin.
    """

    def __init__(self, command: list[str], timeout: float):
        self.name = command[-1]
        self.timeout = timeout
        self.output = os.fdopen(os.memfd_create(self.name), "w+b")
        self.errors = os.fdopen(os.memfd_create(f"{self.name}-errors"), "w+b")
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.output, stderr=self.errors)
        except OSError as err:
            self._close()
            raise PacketFilterError(f"{self.name}: {err}") from err

    def done(self) -> bool:
        return self.process.poll() is not None

    def result(self) -> str:
        """Save's output once it exits; PacketFilterError past the timeout (it is killed then) or on failure.

        A blocking wait with a watchdog, as for restore: `Popen.wait` with a
        timeout polls with growing sleeps and noticed a 2 ms save up to 4 ms late.
        """
        timed_out = threading.Event()
        watchdog = threading.Timer(self.timeout, _kill, (self.process, timed_out))
        watchdog.start()
        try:
            returncode = self.process.wait()
        finally:
            watchdog.cancel()
        if timed_out.is_set():
            self._close()
            raise PacketFilterError(f"{self.name}: no answer within {self.timeout:g} s, killed")
        try:
            if returncode != 0:
                message = _read_from_start(self.errors).decode(errors="replace").strip()
                raise PacketFilterError(f"{self.name} exited {returncode}: {message}")
            return _read_from_start(self.output).decode()
        finally:
            self._close()

    def _close(self) -> None:
        self.output.close()
        self.errors.close()


def _read_from_start(file: IO[bytes]) -> bytes:
    file.seek(0)
    return file.read()


class RecordingPacketFilter:
    """A test double that keeps every payload and answers save with canned text."""

    def __init__(self, saved: str = "", fail_with: str | None = None):
        self.payloads: list[str] = []
        self.flushing: list[bool] = []  # per payload: was it a whole-table replacement
        self.saved = saved
        self.fail_with = fail_with

    def restore(self, payload: str | Iterable[str], noflush: bool = True) -> None:
        if self.fail_with is not None:
            raise PacketFilterError(self.fail_with)
        self.payloads.append(payload if isinstance(payload, str) else "".join(payload))
        self.flushing.append(not noflush)

    def start_save(self) -> Saving:
        return _Saved(self.saved)

    def save(self) -> str:
        return self.saved


class _Saved:
    """A save that is already done: the recording filter's canned text."""

    def __init__(self, text: str):
        self.text = text

    def done(self) -> bool:
        return True

    def result(self) -> str:
        return self.text


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


def chain_rules(text: str) -> dict[ChainKey, tuple[str, ...]]:
    """Every chain of save output (or restore input) with its rules, in the order the text declares them."""
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


def missing_jumps(saved: str) -> list[JumpRule]:
    """The jumps into kproxy's chains that saved rules lack."""
    current = parse_save(saved)
    return [j for j in JUMP_RULES if not (j.table in current and j.present_in(current[j.table].rules))]


@dataclass
class Foreign:
    """Other programs' part of one table as `iptables-save` printed it: carried over when the table is replaced."""

    declarations: list[str]  # `:CHAIN POLICY [counters]` lines, built-in chains' policies included
    rules: list[str]


def owned(key: ChainKey) -> bool:
    """Whether kproxy owns this chain (and may rewrite or delete it)."""
    return key in SHARED_CHAINS or key[1].startswith(SERVICE_CHAIN_PREFIXES)


def foreign_rules(saved: str) -> dict[str, Foreign]:
    """Each saved table's chains and rules that are not kproxy's."""
    tables: dict[str, Foreign] = {}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            tables[table] = Foreign([], [])
        elif line.startswith(":") and table and not owned((table, line[1:].split()[0])):
            tables[table].declarations.append(line)
        elif line.startswith("-A ") and table and not owned((table, line.split(maxsplit=2)[1])):
            tables[table].rules.append(line)
    return tables


class Transaction:
    """One restore's input, produced chain by chain from the wanted chains as they come.

    Writes the chains `changed` accepts; at each table's end, deletes the
    per-service chains in `existing` that the table's wanted chains no longer
    include, then adds the `jumps`. A table with nothing to do is left out, so
    `lines` yields nothing at all when the kernel needs no change. With
    `foreign` it is a whole-table replacement instead: every chain is
    written, after the other programs' chain declarations and before their rules.
    Once `lines` is exhausted, `wanted` holds every chain it was given, and
    `written` and `deleted` count chains.
    """

    def __init__(
        self,
        changed: Callable[[ChainKey, tuple[str, ...]], bool],
        existing: Collection[ChainKey] = (),
        jumps: Iterable[JumpRule] = (),
        foreign: Mapping[str, Foreign] | None = None,
    ):
        self.changed = changed
        self.existing = existing
        self.jumps = list(jumps)
        self.foreign = foreign
        self.wanted: dict[ChainKey, tuple[str, ...]] = {}
        self.written = 0
        self.deleted = 0

    def lines(self, chains: Iterable[Chain]) -> Iterator[str]:
        """Restore input for `chains`, which come table by table, each chain after the chains it jumps to."""
        table, opened = "", False
        batch: list[tuple[str, Sequence[str]]] = []
        for key, rules in chains:
            chain_table, chain = key
            if chain_table != table:
                if batch:
                    yield chains_text(batch)
                    batch = []
                if table:
                    yield from self._close(table, opened)
                table, opened = chain_table, False
            self.wanted[key] = rules
            if self.foreign is not None or self.changed(key, rules):
                if not opened:
                    yield self._open(table)
                    opened = True
                self.written += 1
                batch.append((chain, rules))
                if len(batch) == DECLARE_BATCH:
                    yield chains_text(batch)
                    batch = []
        if batch:
            yield chains_text(batch)
        if table:
            yield from self._close(table, opened)

    def _open(self, table: str) -> str:
        kept = self.foreign.get(table) if self.foreign is not None else None
        return "".join([f"*{table}\n", *[f"{line}\n" for line in (kept.declarations if kept else [])]])

    def _close(self, table: str, opened: bool) -> Iterator[str]:
        lines: list[str] = []
        if self.foreign is not None:
            kept = self.foreign.get(table)
            lines.extend(kept.rules if kept else [])
        else:
            # Declaring a stale chain flushes it, so the other stale chains jumping to it can go first.
            stale = sorted(
                c
                for t, c in self.existing
                if t == table and c.startswith(SERVICE_CHAIN_PREFIXES) and (t, c) not in self.wanted
            )
            self.deleted += len(stale)
            lines.extend(f":{c} - [0:0]" for c in stale)
            lines.extend(f"-X {c}" for c in stale)
        lines.extend(j.rule() for j in self.jumps if j.table == table)
        if lines and not opened:
            yield self._open(table)
        if lines or opened:
            yield "".join([*[f"{line}\n" for line in lines], "COMMIT\n"])


def transaction(ruleset: str, saved: str) -> str:
    """The restore payload for one sync: the ruleset plus stale-chain deletions and missing jumps.

    A chain is stale when it has a per-service prefix, exists now and the new
    ruleset does not declare it; restore needs it declared (which flushes it)
    before `-X` can delete it, since other stale chains may still jump to it.
    """
    everything = Transaction(lambda key, rules: True, chain_rules(saved).keys(), missing_jumps(saved))
    return "".join(everything.lines(chain_rules(ruleset).items()))
