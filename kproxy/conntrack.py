"""Clearing UDP conntrack flows that point at endpoints which went away.

UDP has no connection teardown: without this, a client that keeps sending
to a service VIP keeps hitting a removed backend (or the REJECT of a time
without endpoints) for as long as its conntrack entry lives. Uses the
`conntrack` CLI from conntrack-tools.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class UdpFlowFilter:
    """UDP flows sent to `orig_dst:orig_dport`, optionally only those answered by `reply_src:reply_sport`.

    An empty `orig_dst` means any destination (a node port); an empty
    `reply_src` means any reply source (flows that met a REJECT).
    """

    orig_dport: int
    orig_dst: str = ""
    reply_src: str = ""
    reply_sport: int = 0

    def arguments(self) -> list[str]:
        args = ["-p", "udp"]
        if self.orig_dst:
            args += ["--orig-dst", self.orig_dst]
        args += ["--orig-port-dst", str(self.orig_dport)]
        if self.reply_src:
            args += ["--reply-src", self.reply_src, "--reply-port-src", str(self.reply_sport)]
        return args


class ConntrackCleaner(Protocol):
    def delete(self, flows: Sequence[UdpFlowFilter]) -> None: ...


class ConntrackCli:
    """Deletes flows with `conntrack -D`; a filter that matches nothing is not an error."""

    def __init__(self, command_prefix: Sequence[str] = (), timeout: float = 10.0):
        self.command_prefix = list(command_prefix)
        self.timeout = timeout

    def delete(self, flows: Sequence[UdpFlowFilter]) -> None:
        for flow in flows:
            command = [*self.command_prefix, "conntrack", "-D", *flow.arguments()]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                log.warning("conntrack cleanup failed", extra={"flow": str(flow), "error": str(err)})
                continue
            # conntrack exits 1 with "0 flow entries have been deleted" when nothing matched.
            if done.returncode != 0 and "0 flow entries" not in done.stderr:
                log.warning("conntrack cleanup failed", extra={"flow": str(flow), "error": done.stderr.strip()})


class RecordingConntrack:
    """A test double that remembers which flows it was asked to delete."""

    def __init__(self) -> None:
        self.deleted: list[UdpFlowFilter] = []

    def delete(self, flows: Sequence[UdpFlowFilter]) -> None:
        self.deleted.extend(flows)
