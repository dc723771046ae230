"""The DNS server: UDP and TCP on asyncio, answering from the record index or by forwarding.

Every packet is handled on its own and any failure stays with it: a packet
whose header cannot be read is dropped, one whose header can be read but
whose body cannot is answered FORMERR, and nothing a client sends stops the
server.  Behaviour follows CoreDNS: one question per query (else FORMERR),
class IN only (else REFUSED), EDNS0 buffer sizes honoured with TC set when an
answer does not fit, and would-be NXDOMAINs turned into SERVFAIL until the
API caches have synced.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dnslib import CLASS, EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSRecord

from control.clock import RealClock
from kdns import metrics
from kdns.forward import Forwarder
from kdns.packed import PackedAnswers
from kdns.ratelimit import ANSWER, SLIP, RateLimiter, truncated_reply
from kdns.records import Answer, RecordIndex

log = logging.getLogger(__name__)

HEADER_SIZE = 12
CLASSIC_UDP_SIZE = 512
MAX_ADVERTISED_SIZE = 4096
MAX_CNAME_CHAIN = 8
MAX_UDP_IN_FLIGHT = 1024
UDP_BATCH = 256  # datagrams served per wakeup before other work gets a turn
MAX_UDP_QUERY = 65535
MAX_KNOWN_CLIENTS = 65536
BADVERS_EXTENDED = 1  # BADVERS (16) >> 4, carried in the OPT record

DEFAULT_RECURSION_NETWORKS = ("10.244.0.0/16", "10.96.0.0/12", "192.168.56.0/24", "127.0.0.0/8", "::1/128")


class RecordSource(Protocol):
    """Where the server gets the current index, its pre-packed answers, and whether the API caches have synced."""

    def index(self) -> RecordIndex: ...

    def answers(self) -> PackedAnswers: ...

    def synced(self) -> bool: ...


@dataclass(frozen=True)
class StaticSource:
    """A fixed index, always synced: for tests and for serving a known set of objects."""

    fixed: RecordIndex
    packed: PackedAnswers = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "packed", PackedAnswers(self.fixed))

    def index(self) -> RecordIndex:
        return self.fixed

    def answers(self) -> PackedAnswers:
        return self.packed

    def synced(self) -> bool:
        return True


def parse_networks(spec: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs from flags, with an error naming the bad one."""
    networks = []
    for cidr in spec:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as err:
            raise ValueError(f"recursion network {cidr!r}: {err}") from err
    return tuple(networks)


def _header_only(data: bytes, rcode: int) -> bytes:
    """A bare reply to a packet whose body is unreadable: same id, opcode and RD, QR set."""
    query_id, flags = struct.unpack("!HH", data[:4])
    opcode_and_rd = flags & 0x7900
    return struct.pack("!HHHHHH", query_id, 0x8000 | opcode_and_rd | rcode, 0, 0, 0, 0)


class DnsServer:
    """Answers DNS queries from a RecordSource, forwarding the names it does not serve."""

    def __init__(
        self,
        source: RecordSource,
        forwarder: Forwarder | None,
        *,
        recursion_networks: Iterable[str] = DEFAULT_RECURSION_NETWORKS,
        idle_timeout: float = 10.0,
        max_tcp_connections: int = 256,
        rate_limiter: RateLimiter | None = None,
    ):
        self.source = source
        self.rate_limiter = rate_limiter
        self.forwarder = forwarder
        self.recursion_networks = parse_networks(recursion_networks)
        self.idle_timeout = idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self._tcp_connections = 0
        self._udp: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._recursion_clients: set[str] = set()  # addresses already found in recursion_networks
        self._clock = forwarder.clock if forwarder is not None else RealClock()

    # -- lifecycle ---------------------------------------------------------

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Listen on host:port over UDP and TCP; returns the bound address (port 0 picks one).

        `reuse_port` lets several worker processes share the port (SO_REUSEPORT),
        the kernel spreading clients over them.
        """
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(
            self._serve_tcp, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        bound = self._tcp.sockets[0].getsockname()
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if reuse_port:
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            udp.bind((host, bound[1]))
        except OSError:
            udp.close()
            self._tcp.close()
            raise
        udp.setblocking(False)
        loop.add_reader(udp.fileno(), self._drain_udp)
        self._udp = udp
        log.info("kdns listening", extra={"address": f"{bound[0]}:{bound[1]}"})
        return bound[0], bound[1]

    @property
    def serving(self) -> bool:
        return self._udp is not None and self._udp.fileno() != -1 and self._tcp is not None

    async def stop(self) -> None:
        if self._udp is not None and self._udp.fileno() != -1:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- transports --------------------------------------------------------

    def _drain_udp(self) -> None:
        """Read datagrams until the socket is empty (at most UDP_BATCH a wakeup), answering each.

        A raw reader rather than a DatagramProtocol: one wakeup serves a whole
        burst, and a pre-packed answer costs a recvfrom, a dict lookup, a few
        byte splices and a sendto, with nothing else allocated.  The rest
        (and forwarded answers gone stale) go to the full path in a task.
        """
        sock = self._udp
        if sock is None:
            return
        recvfrom, sendto = sock.recvfrom, sock.sendto
        answers = self.source.answers()
        exact, reply_from_table = answers.exact, answers.reply
        limiter = self.rate_limiter.check if self.rate_limiter is not None else None
        recursion_clients, now = self._recursion_clients, self._clock.now
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(MAX_UDP_QUERY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. an ICMP error queued on the socket: nothing to answer
                log.debug("udp receive error: %s", err)
                continue
            if limiter is not None:
                verdict = limiter(addr[0])
                if verdict != ANSWER:
                    truncated = truncated_reply(data) if verdict == SLIP else None
                    if truncated is not None:
                        self._send_udp(truncated, addr)
                    continue
            # The same bytes asked before: the stored reply, unless it is a forwarded
            # one this client may not have or whose TTLs are due to be lowered.
            hit = exact.get(data[2:])
            if hit is not None:
                tail, packed = hit
                if not packed.expires or (addr[0] in recursion_clients and now() < packed.restamp_at):
                    packed.answered[0] += 1
                    try:
                        sendto(data[:2] + tail, addr)
                    except OSError:
                        pass  # socket buffer full or the client gone: a lost UDP answer, the client retries
                    continue
            reply = reply_from_table(data, addr[0] in recursion_clients, self._clock)
            if reply is not None:
                try:
                    sendto(reply, addr)
                except OSError:
                    pass
                continue
            if len(self._tasks) >= MAX_UDP_IN_FLIGHT:
                continue  # overloaded: dropping is what a UDP server does
            task = asyncio.ensure_future(self._answer_udp(data, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _send_udp(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self._udp is None or self._udp.fileno() == -1:
            return
        try:
            self._udp.sendto(reply, addr)
        except OSError:
            pass  # socket buffer full or the client gone: a lost UDP answer, the client retries

    async def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.handle(data, addr[0], "udp")
        if reply is not None:
            self._send_udp(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Length-prefixed queries, answered in order, until the client goes quiet or away."""
        if self._tcp_connections >= self.max_tcp_connections:
            writer.close()  # at capacity: the client retries or falls back to another server
            return
        self._tcp_connections += 1
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else ""
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), self.idle_timeout)
                (length,) = struct.unpack("!H", prefix)
                if length == 0:
                    break
                data = await asyncio.wait_for(reader.readexactly(length), self.idle_timeout)
                reply = await self.handle(data, client_ip, "tcp")
                if reply is None:
                    break  # unreadable header: the stream is out of step, give up on it
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_connections -= 1
            writer.close()

    # -- one packet --------------------------------------------------------

    async def handle(self, data: bytes, client_ip: str, proto: str) -> bytes | None:
        """The reply to one packet, or None to drop it; never raises."""
        started = time.perf_counter()
        try:
            return await self._handle(data, client_ip, proto, started)
        except Exception:
            log.exception("failed to answer a %s packet from %s", proto, client_ip)
            if len(data) >= HEADER_SIZE:
                metrics.ANSWERED[(proto, "unknown", "SERVFAIL")][0] += 1
                return _header_only(data, RCODE.SERVFAIL)
            return None

    async def _handle(self, data: bytes, client_ip: str, proto: str, started: float) -> bytes | None:
        if len(data) < HEADER_SIZE or data[2] & 0x80:
            metrics.MALFORMED.labels(proto).inc()
            return None  # no header to answer, or a response (never answer those: loops)
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds on bad input; all mean FORMERR here
            metrics.MALFORMED.labels(proto).inc()
            metrics.ANSWERED[(proto, "unknown", "FORMERR")][0] += 1
            return _header_only(data, RCODE.FORMERR)
        opts = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
        qtype_name = QTYPE.get(query.q.qtype, str(query.q.qtype)) if query.questions else "none"
        # The checks run in the order miekg/dns and CoreDNS apply them.
        if query.header.opcode != OPCODE.QUERY:
            metrics.ANSWERED[(proto, qtype_name, "NOTIMP")][0] += 1
            return _header_only(data, RCODE.NOTIMP)
        if len(query.questions) != 1 or len(opts) > 1:
            metrics.ANSWERED[(proto, qtype_name, "FORMERR")][0] += 1
            return _header_only(data, RCODE.FORMERR)
        opt = opts[0] if opts else None
        ext_rcode = 0
        if query.q.qclass != CLASS.IN:
            answer = Answer(RCODE.REFUSED, authoritative=False)
        elif opt is not None and (opt.ttl >> 16) & 0xFF != 0:
            answer, ext_rcode = Answer(RCODE.NOERROR, authoritative=False), BADVERS_EXTENDED
        else:
            answer = await self._resolve(str(query.q.qname), query.q.qtype, client_ip)
        reply = self._pack(query, answer, opt, proto, ext_rcode)
        rcode_name = "BADVERS" if ext_rcode else RCODE.get(answer.rcode, str(answer.rcode))
        metrics.ANSWERED[(proto, qtype_name, rcode_name)][0] += 1
        metrics.REQUEST_DURATION.labels(qtype_name).observe(time.perf_counter() - started)
        return reply

    async def _resolve(self, qname: str, qtype: int, client_ip: str) -> Answer:
        index = self.source.index()
        local = index.lookup(qname, qtype)
        if local is not None:
            if local.rcode == RCODE.NXDOMAIN and not self.source.synced():
                return Answer(RCODE.SERVFAIL, authoritative=False)
            answers = self.source.answers()
            if answers.index is index:
                answers.learn(qname, qtype)  # the next asker of this question takes the fast path
            return await self._chase_cname(index, local, qtype)
        if not self._may_recurse(client_ip):
            return Answer(RCODE.REFUSED, authoritative=False)
        answer = await self._forward(qname, qtype)
        if answer.rcode != RCODE.SERVFAIL and self.forwarder is not None:
            until = self.forwarder.cached_until(qname, qtype)
            self.source.answers().remember_forwarded(qname, qtype, answer, self._clock.now(), until)
        return answer

    async def _forward(self, qname: str, qtype: int) -> Answer:
        if self.forwarder is None:
            return Answer(RCODE.SERVFAIL, authoritative=False)
        reply = await self.forwarder.resolve(qname, qtype)
        if reply is None:
            return Answer(RCODE.SERVFAIL, authoritative=False)
        return Answer(reply.header.rcode, tuple(reply.rr), tuple(reply.auth), tuple(reply.ar), bool(reply.header.aa))

    async def _chase_cname(self, index: RecordIndex, answer: Answer, qtype: int) -> Answer:
        """Follow an ExternalName's CNAME to addresses, in the index or upstream (as CoreDNS does)."""
        records = list(answer.answer)
        rcode = answer.rcode
        for _ in range(MAX_CNAME_CHAIN):
            if qtype in (QTYPE.CNAME, QTYPE.ANY) or not records or records[-1].rtype != QTYPE.CNAME:
                break
            target = str(records[-1].rdata.label)
            following = index.lookup(target, qtype)
            if following is None:
                following = await self._forward(target, qtype)
            if following.rcode == RCODE.SERVFAIL:
                break
            rcode = following.rcode
            records += following.answer
            if not following.answer:
                break
        return Answer(rcode, tuple(records), answer.authority, answer.additional, answer.authoritative)

    def _may_recurse(self, client_ip: str) -> bool:
        if client_ip in self._recursion_clients:
            return True
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        allowed = any(address in network for network in self.recursion_networks)
        if allowed:
            if len(self._recursion_clients) >= MAX_KNOWN_CLIENTS:
                self._recursion_clients.clear()
            self._recursion_clients.add(client_ip)
        return allowed

    @staticmethod
    def _pack(query: DNSRecord, answer: Answer, opt: RR | None, proto: str, ext_rcode: int = 0) -> bytes:
        """Serialise a reply, truncating (TC, empty sections) when it overflows a UDP client's buffer."""
        header = DNSHeader(
            id=query.header.id,
            qr=1,
            opcode=query.header.opcode,
            aa=int(answer.authoritative),
            rd=query.header.rd,
            ra=1,
            rcode=answer.rcode,
        )
        reply = DNSRecord(header, q=query.q)
        reply.rr = list(answer.answer)
        reply.auth = list(answer.authority)
        reply.ar = list(answer.additional)
        limit = CLASSIC_UDP_SIZE
        if opt is not None:
            limit = max(CLASSIC_UDP_SIZE, opt.rclass)
            reply.add_ar(EDNS0(udp_len=min(limit, MAX_ADVERTISED_SIZE), ext_rcode=ext_rcode))
        packet = reply.pack()
        if proto == "udp" and len(packet) > limit:
            reply.rr, reply.auth = [], []
            reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
            reply.header.tc = 1
            packet = reply.pack()
        return packet
