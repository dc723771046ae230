"""The TCP forwarder that lets kubectl on the host (and, in HA, each node's components) reach the API server.

The listening socket is bound in the namespace the process starts in (the
host's 127.0.0.1 only); then the whole process moves into the given
namespace, so every outgoing connection it opens is made there, where the
API servers are reachable. Nothing is routed between the host and the node
network.

With several targets (the API servers of an HA control plane) each new
connection goes to the target that last answered, else to the next one
that accepts; upstream connections carry short TCP keepalives and a user
timeout, so a connection to a dead node fails within seconds and its
client (a watch, say) reconnects through a live one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from pocket import netns

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 2.0  # a dead node's address does not answer ARP: give up on it quickly and try the next
KEEPALIVE_IDLE = 2  # seconds idle before the first probe
KEEPALIVE_INTERVAL = 1
KEEPALIVE_PROBES = 3
USER_TIMEOUT_MS = 6000  # unacknowledged data for this long also ends the connection


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` -> (host, port), with an error naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 1-65535, got {text!r}")
    return host, int(port)


def parse_targets(text: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` -> the targets in order of preference."""
    targets = [parse_host_port(item.strip()) for item in text.split(",")]
    if len(set(targets)) != len(targets):
        raise ValueError(f"a target is listed twice in {text!r}")
    return targets


class Targets:
    """The targets in the order to try them: the one that last accepted first, then the rest in the given order."""

    def __init__(self, targets: Sequence[tuple[str, int]]):
        if not targets:
            raise ValueError("at least one target is needed")
        self.targets = list(targets)
        self.preferred = 0

    def order(self) -> list[tuple[str, int]]:
        return [self.targets[self.preferred], *(t for i, t in enumerate(self.targets) if i != self.preferred)]

    def accepted(self, target: tuple[str, int]) -> None:
        self.preferred = self.targets.index(target)


def _detect_dead_peer(writer: asyncio.StreamWriter) -> None:
    """Short keepalives and a user timeout, so a connection to a node that vanished errors out in seconds."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)


async def connect_first(targets: Targets) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the first target that accepts (remembered as preferred); OSError if none does."""
    failures = []
    for target in targets.order():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as err:
            failures.append(f"{target[0]}:{target[1]}: {err or type(err).__name__}")
            continue
        if target != targets.targets[targets.preferred]:
            log.info("failing over", extra={"target": f"{target[0]}:{target[1]}"})
        targets.accepted(target)
        _detect_dead_peer(writer)
        return reader, writer
    raise OSError(f"no target accepts a connection ({'; '.join(failures)})")


def bind_listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror}") from err
    sock.listen(256)
    return sock


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then pass the EOF on (half-close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, targets: Targets) -> None:
    try:
        upstream_reader, upstream_writer = await connect_first(targets)
    except OSError as err:
        log.warning("cannot reach any target", extra={"error": str(err)})
        client_writer.close()
        return
    try:
        await asyncio.gather(_pump(client_reader, upstream_writer), _pump(upstream_reader, client_writer))
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()


async def serve(listener: socket.socket, targets: Targets) -> None:
    """Accept on `listener` forever, forwarding each connection both ways to the first target that accepts."""
    server = await asyncio.start_server(lambda r, w: _handle(r, w, targets), sock=listener)
    async with server:
        await server.serve_forever()


def run(listen: str, netns_name: str, target: str) -> None:
    """Bind in the current namespace, move into `netns_name`, forward to `target` (HOST:PORT[,HOST:PORT...])."""
    listen_addr = parse_host_port(listen)
    targets = Targets(parse_targets(target))
    listener = bind_listener(*listen_addr)
    netns.enter(netns_name)
    log.info("forwarding", extra={"listen": listen, "netns": netns_name, "target": target})
    asyncio.run(serve(listener, targets))
