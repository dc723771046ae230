"""Keeps the kube-dns Endpoints honest: a kdns that stops answering is moved to notReadyAddresses.

kdns instances are not pods, so no kubelet probes them and no endpoints
controller takes a dead one out of the Service.  Every kdns therefore asks
each address listed for its Service a real DNS question (the `dns-version`
TXT record) every few seconds, and moves the silent ones to
`notReadyAddresses` and the answering ones back to `addresses`, so kproxy
only sends lookups to instances that answer.  An instance never marks
itself down and never leaves the Service with no ready address, so a
partitioned kdns cannot empty it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from dnslib import DNSRecord

from control.api.errors import ApiError
from control.client import Client

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.5
PROBE_TRIES = 2


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.query_id = query_id
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 2 and int.from_bytes(data[:2], "big") == self.query_id and not self.answered.done():
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:
        if not self.answered.done():
            self.answered.set_result(False)  # e.g. ICMP port unreachable: nothing listens there


async def answers(ip: str, port: int, zone: str) -> bool:
    """Whether a DNS server at ip:port answers a question about `zone` (a few short tries)."""
    for _ in range(PROBE_TRIES):
        if await _ask_once(ip, port, zone):
            return True
    return False


async def _ask_once(ip: str, port: int, zone: str) -> bool:
    query = DNSRecord.question(f"dns-version.{zone}", "TXT")
    probe = _Probe(query.header.id)
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: probe, remote_addr=(ip, port), family=family
    )
    try:
        transport.sendto(bytes(query.pack()))
        return await asyncio.wait_for(asyncio.shield(probe.answered), PROBE_TIMEOUT)
    except TimeoutError:
        return False
    finally:
        transport.close()


def _udp_port(subset: dict[str, Any]) -> int | None:
    for port in subset.get("ports") or []:
        if str(port.get("protocol", "TCP")).upper() == "UDP":
            return int(port.get("port", 53))
    return None


async def check_once(client: Client, namespace: str, name: str, own_ip: str, zone: str) -> bool:
    """Probe every address of the Service's Endpoints and write back who answers; True if it changed them."""
    try:
        endpoints = await client.get("endpoints", name, namespace)
    except ApiError as err:
        if err.code == 404:
            return False  # no such Service here (tests, other clusters): nothing to keep
        raise
    changed = False
    for subset in endpoints.get("subsets") or []:
        port = _udp_port(subset)
        if port is None:
            continue
        ready = list(subset.get("addresses") or [])
        not_ready = list(subset.get("notReadyAddresses") or [])
        everyone = ready + not_ready
        results = await asyncio.gather(
            *(
                asyncio.sleep(0, True) if a.get("ip") == own_ip else answers(str(a.get("ip")), port, zone)
                for a in everyone
            )
        )
        now_ready = [a for a, ok in zip(everyone, results, strict=True) if ok]
        now_not_ready = [a for a, ok in zip(everyone, results, strict=True) if not ok]
        if not now_ready:
            continue  # nobody answers us: more likely our network than everyone's death
        if {a.get("ip") for a in now_ready} != {a.get("ip") for a in ready}:
            subset["addresses"] = now_ready
            subset["notReadyAddresses"] = now_not_ready
            changed = True
            log.warning(
                "kube-dns endpoints: answering %s, not answering %s",
                [a.get("ip") for a in now_ready],
                [a.get("ip") for a in now_not_ready],
            )
    if changed:
        try:
            await client.update("endpoints", endpoints)
        except ApiError as err:
            if err.code != 409:
                raise
            return False  # another kdns wrote first: look again next round
    return changed


async def keep_endpoints_honest(client: Client, service: str, own_ip: str, zone: str, interval: float) -> None:
    """Run `check_once` every `interval` seconds until cancelled; API errors are logged and retried."""
    namespace, name = service.split("/", 1)
    while True:
        await asyncio.sleep(interval)
        try:
            await check_once(client, namespace, name, own_ip, zone)
        except (ApiError, OSError, TimeoutError) as err:
            log.info("could not check the %s endpoints: %s", service, err)
