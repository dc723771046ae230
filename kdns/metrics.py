"""kdns's Prometheus metrics, named after CoreDNS's (`coredns_dns_*`, `coredns_cache_*`, `coredns_forward_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("kdns_dns_requests_total", "DNS requests received", ["proto", "type"])
RESPONSES = Counter("kdns_dns_responses_total", "DNS responses sent", ["rcode"])
MALFORMED = Counter("kdns_dns_malformed_requests_total", "Packets dropped or answered FORMERR", ["proto"])
REQUEST_DURATION = Histogram(
    "kdns_dns_request_duration_seconds",
    "Time to answer a DNS request",
    ["type"],
    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048),
)
CACHE_HITS = Counter("kdns_cache_hits_total", "Forwarded answers served from the cache", ["type"])
CACHE_MISSES = Counter("kdns_cache_misses_total", "Forwarded questions not in the cache")
FORWARD_REQUESTS = Counter("kdns_forward_requests_total", "Queries sent upstream", ["to", "proto"])
FORWARD_FAILURES = Counter("kdns_forward_failures_total", "Upstream queries that failed", ["to", "reason"])
