"""A real upstream nameserver for the forwarding tests: dnslib's server on a 127.0.0.x address.

It serves a few fixed names, counts every question it receives, and answers
`big.example.` with TC over UDP (full over TCP) to exercise the TCP retry.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

ZONE_SOA = SOA("ns.example.", "hostmaster.example.", (1, 7200, 1800, 86400, 60))


class CountingResolver(BaseResolver):  # type: ignore[misc]
    """Fixed answers; `asked[(name, type, proto)]` counts what reached the upstream."""

    def __init__(self) -> None:
        self.asked: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        name = str(request.q.qname).lower()
        qtype = QTYPE.get(request.q.qtype)
        with self._lock:
            self.asked[(name, qtype, handler.protocol)] += 1
        reply = request.reply()
        if name == "www.example.com." and qtype == "A":
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=120, rdata=A("192.0.2.80")))
        elif name == "slow.example." and qtype == "A":
            time.sleep(0.3)  # long enough for concurrent askers to overlap
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.30")))
        elif name == "short.example." and qtype == "A":
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=10, rdata=A("192.0.2.10")))
        elif name == "big.example." and qtype == "A":
            if handler.protocol == "udp":
                reply.header.tc = 1
            else:
                for i in range(3):
                    reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A(f"192.0.2.{i + 1}")))
        elif name == "www.example.com.":
            reply.add_auth(RR("example.com.", QTYPE.SOA, ttl=60, rdata=ZONE_SOA))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR("example.", QTYPE.SOA, ttl=60, rdata=ZONE_SOA))
        return reply


@contextmanager
def upstream(address: str, port: int = 53) -> Iterator[CountingResolver]:
    """Serve the counting resolver over UDP and TCP on address:port; stopped on exit."""
    resolver = CountingResolver()
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False, logf=lambda _: None)
    servers = [DNSServer(resolver, address=address, port=port, tcp=tcp, logger=quiet) for tcp in (False, True)]
    started = []
    try:
        for server in servers:
            server.start_thread()
            started.append(server)
        yield resolver
    finally:
        for server in started:
            server.stop()
            server.server.server_close()
