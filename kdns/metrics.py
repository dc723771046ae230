"""kdns's Prometheus metrics, named after CoreDNS's (`coredns_dns_*`, `coredns_cache_*`, `coredns_forward_*`).

Requests and responses are counted in plain one-item lists rather than
prometheus Counters: the UDP fast path answers in a microsecond or two and
a labelled Counter increment would cost about as much again.  A collector turns the
dict into `kdns_dns_requests_total` and `kdns_dns_responses_total` on scrape.

Every kdns metric lives in KDNS_REGISTRY, which reaches the process-wide
registry (and so /metrics) through one collector that adds in the latest
counts of the other `--workers`: each forked worker writes its counts down
a pipe every REPORT_INTERVAL seconds and the first process, which serves
/metrics, keeps the last snapshot from each.  /metrics therefore shows the
totals of all workers, the others' at most REPORT_INTERVAL old.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REPORT_INTERVAL = 1.0  # seconds between a worker's snapshots
MAX_UNSENT_BYTES = 1 << 20  # a worker skips snapshots while this much is still waiting in its pipe
MAX_SNAPSHOT_LINE = 16 << 20

KDNS_REGISTRY = CollectorRegistry(auto_describe=True)

ANSWERED: defaultdict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0])
"""Answered queries by (proto, query type, response rcode): add 1 to the cell's [0] per response.

A one-item list, so a pre-packed answer keeps its cell and counts without a dict lookup."""

Snapshot = list[dict[str, object]]  # families as JSON: name, type, documentation, samples [name, labels, value]


class _AnswerCounts(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        requests = CounterMetricFamily("kdns_dns_requests", "DNS requests received", labels=["proto", "type"])
        responses = CounterMetricFamily("kdns_dns_responses", "DNS responses sent", labels=["rcode"])
        by_request: defaultdict[tuple[str, str], int] = defaultdict(int)
        by_rcode: defaultdict[str, int] = defaultdict(int)
        for (proto, qtype, rcode), (count,) in list(ANSWERED.items()):
            by_request[(proto, qtype)] += count
            by_rcode[rcode] += count
        for labels, count in by_request.items():
            requests.add_metric(list(labels), count)
        for rcode, count in by_rcode.items():
            responses.add_metric([rcode], count)
        yield requests
        yield responses


KDNS_REGISTRY.register(_AnswerCounts())

MALFORMED = Counter(
    "kdns_dns_malformed_requests_total", "Packets dropped or answered FORMERR", ["proto"], registry=KDNS_REGISTRY
)
REQUEST_DURATION = Histogram(
    "kdns_dns_request_duration_seconds",
    "Time to answer a DNS request on the full path (the pre-packed UDP path is not timed)",
    ["type"],
    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048),
    registry=KDNS_REGISTRY,
)
CACHE_HITS = Counter(
    "kdns_cache_hits_total", "Forwarded answers served from the cache", ["type"], registry=KDNS_REGISTRY
)
CACHE_MISSES = Counter("kdns_cache_misses_total", "Forwarded questions not in the cache", registry=KDNS_REGISTRY)
FORWARD_REQUESTS = Counter(
    "kdns_forward_requests_total", "Queries sent upstream", ["to", "proto"], registry=KDNS_REGISTRY
)
FORWARD_FAILURES = Counter(
    "kdns_forward_failures_total", "Upstream queries that failed", ["to", "reason"], registry=KDNS_REGISTRY
)


def snapshot() -> Snapshot:
    """This process's kdns metrics as JSON-ready families."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "documentation": family.documentation,
            "samples": [[sample.name, sample.labels, sample.value] for sample in family.samples],
        }
        for family in KDNS_REGISTRY.collect()
    ]


def merged(snapshots: Iterable[Snapshot]) -> list[Metric]:
    """Families with each sample summed over the snapshots (`*_created`, a timestamp, takes the earliest)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families_of_one in snapshots:
        for family in families_of_one:
            name = str(family["name"])
            if name not in families:
                families[name] = Metric(name, str(family["documentation"]), str(family["type"]))
                values[name] = {}
            into = values[name]
            for sample_name, labels, value in family["samples"]:  # type: ignore[attr-defined]
                key = (sample_name, tuple(sorted(labels.items())))
                if key not in into:
                    into[key] = value
                elif sample_name.endswith("_created"):
                    into[key] = min(into[key], value)
                else:
                    into[key] += value
    for name, family_metric in families.items():
        for (sample_name, labels), value in values[name].items():
            family_metric.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class WorkerTotals(Collector):
    """kdns's metrics for /metrics: this process's counts plus the last reported by each other worker."""

    def __init__(self) -> None:
        self.reported: dict[int, Snapshot] = {}  # by the worker's pipe

    def collect(self) -> Iterator[Metric]:
        yield from merged([snapshot(), *self.reported.values()])

    async def follow(self, fd: int) -> None:
        """Keep the latest snapshot a worker writes to `fd` (after it exits, its last one stays: totals never drop)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_SNAPSHOT_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb"))
        while line := await reader.readline():
            try:
                self.reported[fd] = json.loads(line)
            except ValueError:
                log.warning("unreadable metrics snapshot from a worker (%d bytes)", len(line))


WORKER_TOTALS = WorkerTotals()
REGISTRY.register(WORKER_TOTALS)


async def report_to(fd: int, interval: float = REPORT_INTERVAL) -> None:
    """In a forked worker: write this process's counts down `fd` every `interval` seconds, until cancelled."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(fd, "wb"))
    try:
        while True:
            if transport.is_closing():
                return  # the first process is gone; the parent-death signal ends this worker
            if transport.get_write_buffer_size() < MAX_UNSENT_BYTES:
                transport.write(json.dumps(snapshot()).encode() + b"\n")
            await asyncio.sleep(interval)
    finally:
        transport.close()
