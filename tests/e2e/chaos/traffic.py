"""The fault suite's bounded client: HTTP through a Service's VIP and through its DNS name, until told to stop.

Run inside a node's network namespace (`pocket node exec control-plane --
python3 traffic.py ...`). Each round sends one request to the VIP and one
to the name, resolved by a fresh query to the cluster DNS (two attempts,
like glibc's stub resolver with one nameserver), each on a new connection. One JSON line per
request on stdout. Bounded: it stops when the stop file appears, after
--max-seconds, or after --max-requests rounds, whichever comes first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import time

from dnslib import QTYPE, RCODE, DNSRecord

REQUEST_TIMEOUT = 2.0
DNS_ATTEMPT_TIMEOUT = 1.0
DNS_ATTEMPTS = 2


def http_get(ip: str, port: int) -> None:
    """One GET on a new connection; raise unless it answers 200 with a body."""
    conn = http.client.HTTPConnection(ip, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or not body.strip():
            raise OSError(f"HTTP {resp.status}, {len(body)} bytes")
    finally:
        conn.close()


def resolve(name: str, dns_server: str) -> str:
    """The name's A record from the cluster DNS, asking again (as glibc does) on a timeout, an ICMP refusal,
    SERVFAIL or REFUSED; each attempt from a new port, so the Service may pick the other kdns."""
    last: Exception | None = None
    for _ in range(DNS_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(DNS_ATTEMPT_TIMEOUT)
            query = DNSRecord.question(name, "A")
            try:
                sock.sendto(query.pack(), (dns_server, 53))
                reply = DNSRecord.parse(sock.recv(4096))
            except OSError as err:
                last = err
                continue
            answers = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
            if answers:
                return answers[0]
            last = OSError(f"no A record ({RCODE.get(reply.header.rcode)})")
            if reply.header.rcode not in (RCODE.SERVFAIL, RCODE.REFUSED):
                break  # an answer: NXDOMAIN or no data is final
    raise OSError(f"resolving {name}: {last}")


def attempt(kind: str, call: object) -> dict[str, object]:
    started = time.time()
    try:
        call()  # type: ignore[operator]
        return {"kind": kind, "t": started, "ok": True}
    except Exception as err:  # every failure is a failed request, whatever its cause
        return {"kind": kind, "t": started, "ok": False, "error": f"{type(err).__name__}: {err}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vip", required=True)
    parser.add_argument("--name", required=True, help="the Service's DNS name")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--dns", default="10.96.0.10")
    parser.add_argument("--interval", type=float, default=0.1, help="pause between rounds (seconds)")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--max-requests", type=int, default=5000, help="rounds at most")
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds
    for _ in range(args.max_requests):
        if os.path.exists(args.stop_file) or time.monotonic() > deadline:
            break
        for line in (
            attempt("vip", lambda: http_get(args.vip, args.port)),
            attempt("dns", lambda: http_get(resolve(args.name, args.dns), args.port)),
        ):
            print(json.dumps(line), flush=True)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
