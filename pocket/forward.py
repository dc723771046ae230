"""The host-side TCP forwarder that lets kubectl on the host reach the API server.

The listening socket is bound in the host namespace (127.0.0.1 only); then
the whole process moves into the control-plane namespace, so every
outgoing connection it opens is made there, where 192.168.56.10 is
reachable. Nothing is routed between the host and the node network.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from pocket import netns

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` -> (host, port), with an error naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 1-65535, got {text!r}")
    return host, int(port)


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


async def _handle(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, target: tuple[str, int]
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*target), 10)
    except (TimeoutError, OSError) as err:
        log.warning("cannot reach target", extra={"target": f"{target[0]}:{target[1]}", "error": str(err)})
        client_writer.close()
        return
    try:
        await asyncio.gather(_pump(client_reader, upstream_writer), _pump(upstream_reader, client_writer))
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()


async def serve(listener: socket.socket, target: tuple[str, int]) -> None:
    """Accept on `listener` forever, forwarding each connection to `target` both ways."""
    server = await asyncio.start_server(lambda r, w: _handle(r, w, target), sock=listener)
    async with server:
        await server.serve_forever()


def run(listen: str, netns_name: str, target: str) -> None:
    """Bind in the current namespace, move into `netns_name`, forward to `target`."""
    listen_addr = parse_host_port(listen)
    target_addr = parse_host_port(target)
    listener = bind_listener(*listen_addr)
    netns.enter(netns_name)
    log.info("forwarding", extra={"listen": listen, "netns": netns_name, "target": target})
    asyncio.run(serve(listener, target_addr))
