"""Per-client response rate limiting for kdns's UDP answers, after BIND's RRL.

UDP sources can be forged, so a DNS server that answers everything at full
speed is an amplifier aimed at whoever's address is forged, and one noisy
pod can take the server's whole CPU.  Each source address gets a token
bucket of `qps` tokens a second (holding at most `burst`); a query within
budget is answered as usual.  Over budget, most queries are dropped
unanswered and every `slip`-th one gets an empty truncated reply (TC=1,
BIND's "slip"): a real client behind a forged flood retries over TCP, which
cannot be forged and is not limited here.  Checking costs one dict lookup
and a few float operations, before any parsing.
"""

from __future__ import annotations

import struct

from prometheus_client import Counter

from control.clock import Clock, RealClock
from kdns.metrics import KDNS_REGISTRY

ANSWER, SLIP, DROP = 0, 1, 2
DEFAULT_QPS = 1000.0
DEFAULT_SLIP = 2
MAX_TRACKED_CLIENTS = 65536
HEADER_SIZE = 12

LIMITED = Counter(
    "kdns_ratelimit_responses_total",
    "UDP queries over their client's budget, by what was done (drop, slip)",
    ["action"],
    registry=KDNS_REGISTRY,  # so /metrics shows every worker's total
)
_DROPPED = LIMITED.labels("drop")
_SLIPPED = LIMITED.labels("slip")


class RateLimiter:
    """Token buckets per client address: `check` says whether to answer, slip (TC=1) or drop."""

    def __init__(
        self,
        qps: float,
        *,
        burst: float | None = None,
        slip: int = DEFAULT_SLIP,
        clock: Clock | None = None,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ):
        if qps <= 0:
            raise ValueError(f"rate limit must be more than 0 queries per second, got {qps}")
        if slip < 0:
            raise ValueError(f"slip must be 0 (never) or more, got {slip}")
        self.qps = qps
        self.burst = max(1.0, burst if burst is not None else qps)
        self.slip = slip
        self.max_clients = max_clients
        self._now = (clock or RealClock()).now
        self._buckets: dict[str, list[float]] = {}  # address -> [tokens, last refill, over-budget count]

    def check(self, client: str) -> int:
        now = self._now()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._forget_idle(now)
            self._buckets[client] = [self.burst - 1.0, now, 0.0]
            return ANSWER
        tokens = bucket[0] + (now - bucket[1]) * self.qps
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = min(tokens, self.burst) - 1.0
            return ANSWER
        bucket[0] = tokens
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            _SLIPPED.inc()
            return SLIP
        _DROPPED.inc()
        return DROP

    def _forget_idle(self, now: float) -> None:
        """Keep memory bounded: forget clients whose bucket has refilled (they lose nothing by it)."""
        full = [c for c, (tokens, last, _) in self._buckets.items() if tokens + (now - last) * self.qps >= self.burst]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self.max_clients:  # all busy: a flood of sources; start over
            self._buckets.clear()


def truncated_reply(query: bytes) -> bytes | None:
    """The query's header and question with QR and TC set and no records: "ask again over TCP".

    None when the packet is not a one-question query (those are dropped instead).
    """
    if len(query) < HEADER_SIZE or query[2] & 0x80 or query[4:6] != b"\x00\x01":
        return None
    end = HEADER_SIZE
    while end < len(query) and query[end] != 0:
        if query[end] & 0xC0:
            return None  # compression pointers have no place in a question
        end += 1 + query[end]
    end += 5  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    (flags,) = struct.unpack("!H", query[2:4])
    flags = 0x8000 | (flags & 0x7900) | 0x0200 | 0x0080  # QR, the query's opcode and RD, TC, RA
    return query[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + query[HEADER_SIZE:end]
