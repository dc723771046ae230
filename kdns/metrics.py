"""kdns's Prometheus metrics, named after CoreDNS's (`coredns_dns_*`, `coredns_cache_*`, `coredns_forward_*`).

Requests and responses are counted in a plain dict rather than prometheus
Counters: the UDP fast path answers in a few microseconds and a labelled
Counter increment would cost about as much again.  A collector turns the
dict into `kdns_dns_requests_total` and `kdns_dns_responses_total` on scrape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

ANSWERED: defaultdict[tuple[str, str, str], int] = defaultdict(int)
"""Answered queries by (proto, query type, response rcode); add 1 per response."""


class _AnswerCounts(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        requests = CounterMetricFamily("kdns_dns_requests", "DNS requests received", labels=["proto", "type"])
        responses = CounterMetricFamily("kdns_dns_responses", "DNS responses sent", labels=["rcode"])
        by_request: defaultdict[tuple[str, str], int] = defaultdict(int)
        by_rcode: defaultdict[str, int] = defaultdict(int)
        for (proto, qtype, rcode), count in list(ANSWERED.items()):
            by_request[(proto, qtype)] += count
            by_rcode[rcode] += count
        for labels, count in by_request.items():
            requests.add_metric(list(labels), count)
        for rcode, count in by_rcode.items():
            responses.add_metric([rcode], count)
        yield requests
        yield responses


REGISTRY.register(_AnswerCounts())

MALFORMED = Counter("kdns_dns_malformed_requests_total", "Packets dropped or answered FORMERR", ["proto"])
REQUEST_DURATION = Histogram(
    "kdns_dns_request_duration_seconds",
    "Time to answer a DNS request on the full path (the pre-packed UDP path is not timed)",
    ["type"],
    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048),
)
CACHE_HITS = Counter("kdns_cache_hits_total", "Forwarded answers served from the cache", ["type"])
CACHE_MISSES = Counter("kdns_cache_misses_total", "Forwarded questions not in the cache")
FORWARD_REQUESTS = Counter("kdns_forward_requests_total", "Queries sent upstream", ["to", "proto"])
FORWARD_FAILURES = Counter("kdns_forward_failures_total", "Upstream queries that failed", ["to", "reason"])
