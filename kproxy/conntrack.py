"""Clearing UDP conntrack flows that point at endpoints which went away.

UDP has no connection teardown: without this, a client that keeps sending
to a service VIP keeps hitting a removed backend (or the REJECT of a time
without endpoints) for as long as its conntrack entry lives. Talks
ctnetlink directly through pyroute2 (no conntrack CLI process per flow).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pyroute2 import Conntrack
from pyroute2.netlink.exceptions import NetlinkError

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

    def matches(self, orig_dst: str, orig_dport: int, reply_src: str, reply_sport: int) -> bool:
        return (
            orig_dport == self.orig_dport
            and (not self.orig_dst or orig_dst == self.orig_dst)
            and (not self.reply_src or (reply_src, reply_sport) == (self.reply_src, self.reply_sport))
        )


class ConntrackCleaner(Protocol):
    def delete(self, flows: Sequence[UdpFlowFilter]) -> None: ...


class NetlinkConntrack:
    """Deletes matching UDP flows: one ctnetlink dump, then one delete per match.

    `netns` names the namespace whose table to clean (tests); kproxy runs in
    its node's namespace and leaves it None. Failures are logged, not raised:
    a stale flow is a nuisance, a sync that fails over it would be worse.
    """

    def __init__(self, netns: str | None = None):
        self.netns = netns

    def delete(self, flows: Sequence[UdpFlowFilter]) -> None:
        if not flows:
            return
        options: dict[str, Any] = {"netns": self.netns} if self.netns else {}
        try:
            conntrack = Conntrack(**options)
        except (OSError, NetlinkError) as err:
            log.warning("conntrack cleanup failed", extra={"error": str(err)})
            return
        try:
            stale = [
                entry.tuple_orig
                for entry in conntrack.dump_entries()
                if entry.tuple_orig.proto == socket.IPPROTO_UDP
                and any(
                    f.matches(
                        entry.tuple_orig.daddr, entry.tuple_orig.dport, entry.tuple_reply.saddr, entry.tuple_reply.sport
                    )
                    for f in flows
                )
            ]
            for orig in stale:
                try:
                    conntrack.entry("del", tuple_orig=orig)
                except NetlinkError as err:  # gone meanwhile (expired) is fine
                    log.info("conntrack delete failed", extra={"flow": f"{orig.daddr}:{orig.dport}", "error": str(err)})
            log.info("deleted stale UDP flows", extra={"count": len(stale)})
        except (OSError, NetlinkError) as err:
            log.warning("conntrack cleanup failed", extra={"error": str(err)})
        finally:
            conntrack.close()


class RecordingConntrack:
    """A test double that remembers which flows it was asked to delete."""

    def __init__(self) -> None:
        self.deleted: list[UdpFlowFilter] = []

    def delete(self, flows: Sequence[UdpFlowFilter]) -> None:
        self.deleted.extend(flows)
