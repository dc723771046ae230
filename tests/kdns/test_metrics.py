"""Adding up the workers' metrics: what /metrics shows when kdns runs with --workers."""

from __future__ import annotations

import asyncio
import json
import os

from prometheus_client import CollectorRegistry, generate_latest

from kdns import metrics
from kdns.metrics import Snapshot, WorkerTotals, merged, report_to


def counter(name: str, samples: list[list[object]]) -> Snapshot:
    return [{"name": name, "type": "counter", "documentation": "a count", "samples": samples}]


def test_samples_with_the_same_labels_add_up_and_created_takes_the_earliest() -> None:
    one = counter(
        "kdns_x",
        [
            ["kdns_x_total", {"to": "a"}, 3.0],
            ["kdns_x_created", {"to": "a"}, 200.0],
            ["kdns_x_total", {"to": "b"}, 1.0],
        ],
    )
    two = counter("kdns_x", [["kdns_x_total", {"to": "a"}, 4.0], ["kdns_x_created", {"to": "a"}, 100.0]])
    (family,) = merged([one, two])
    assert (family.name, family.type) == ("kdns_x", "counter")
    assert sorted((s.name, tuple(s.labels.items()), s.value) for s in family.samples) == [
        ("kdns_x_created", (("to", "a"),), 100.0),
        ("kdns_x_total", (("to", "a"),), 7.0),
        ("kdns_x_total", (("to", "b"),), 1.0),
    ]


async def test_a_workers_report_is_added_to_this_process_counts() -> None:
    metrics.ANSWERED[("udp", "NAPTR", "NOERROR")][0] += 2  # a type no other test asks for
    read_fd, write_fd = os.pipe()
    totals = WorkerTotals()
    registry = CollectorRegistry()
    registry.register(totals)
    follower = asyncio.ensure_future(totals.follow(read_fd))
    other_worker = metrics.snapshot()  # stands for another worker with the same counts
    reporter = asyncio.ensure_future(report_to(write_fd, interval=0.05))
    try:
        for _ in range(100):  # bounded: the first report arrives within one interval
            if read_fd in totals.reported:
                break
            await asyncio.sleep(0.05)
        exposition = generate_latest(registry).decode()
        ours = next(f for f in other_worker if f["name"] == "kdns_dns_requests")
        naptr = [s for s in ours["samples"] if s[1] == {"proto": "udp", "type": "NAPTR"}]  # type: ignore[index,attr-defined]
        assert len(naptr) == 1
        assert f'kdns_dns_requests_total{{proto="udp",type="NAPTR"}} {2 * naptr[0][2]:.1f}' in exposition
        assert json.loads(json.dumps(other_worker)) == other_worker  # what goes down the pipe is plain JSON
    finally:
        reporter.cancel()
        follower.cancel()
        await asyncio.gather(reporter, follower, return_exceptions=True)
