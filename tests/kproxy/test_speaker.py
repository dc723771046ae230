"""The LoadBalancer speaker: Lease election against the real API server, ARP answered on real veths.

Namespaces this test makes: `br` (a bridge), `n1` and `n2` (two "nodes",
192.168.77.11/.12 on eth0) and `cl` (a client, .1). The speakers run in
this process, with their ARP sockets opened inside `n1` and `n2`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from control.api.errors import ApiError
from control.client import Client, Informer
from kproxy.speaker import LEASE_NAMESPACE, ArpResponder, Speaker
from tests.conftest import ApiServer
from tests.kproxy.netns import in_ns, namespaces

pytestmark = pytest.mark.root

LB_IP = "192.168.77.240"
WHO_HAS = """
import sys
from scapy.all import srp1, conf
from scapy.layers.l2 import ARP, Ether
conf.verb = 0
answer = srp1(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=sys.argv[1]), iface="eth0", timeout=2)
print(answer[ARP].hwsrc if answer else "none")
"""


@dataclass
class Net:
    n1: str
    n2: str
    client: str

    def mac(self, ns: str) -> str:
        return in_ns(ns, "cat", "/sys/class/net/eth0/address").stdout.strip()

    def who_has(self, ip: str) -> str:
        return in_ns(self.client, "python3", "-c", WHO_HAS, ip).stdout.strip()


@pytest.fixture
def net() -> Iterator[Net]:
    with namespaces("br", "n1", "n2", "cl") as (br, n1, n2, cl):
        in_ns(br, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(br, "ip", "link", "set", "br0", "up")
        for index, (ns, ip) in enumerate(((n1, "192.168.77.11"), (n2, "192.168.77.12"), (cl, "192.168.77.1"))):
            in_ns(br, "ip", "link", "add", f"p{index}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            in_ns(br, "ip", "link", "set", f"p{index}", "master", "br0", "up")
            in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
        yield Net(n1, n2, cl)


async def eventually(check: Callable[[], Awaitable[bool]], attempts: int = 60) -> bool:
    """Poll a bounded number of times (up to ~12 s)."""
    for _ in range(attempts):
        if await check():
            return True
        await asyncio.sleep(0.2)
    return await check()


async def holder(client: Client, name: str) -> str:
    try:
        lease = await client.get("leases", name, LEASE_NAMESPACE)
    except ApiError:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@pytest.fixture
async def service(apiserver: ApiServer) -> AsyncIterator[tuple[Client, str]]:
    async with Client(apiserver.url) as client:
        with contextlib.suppress(ApiError):
            await client.create("namespaces", {"metadata": {"name": LEASE_NAMESPACE}})
        ns = f"spk-{uuid.uuid4().hex[:6]}"
        await client.create("namespaces", {"metadata": {"name": ns}})
        svc = await client.create(
            "services",
            {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
            ns,
        )
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": LB_IP, "ipMode": "VIP"}]}}
        await client.update_status("services", svc)
        yield client, ns


async def test_one_node_answers_arp_and_another_takes_over_when_it_dies(net: Net, service: tuple[Client, str]) -> None:
    client, ns = service
    lease = f"kproxy-lb.{ns}.lb"
    services, slices = Informer(client, "services", ns), Informer(client, "endpointslices", ns)
    informers = [asyncio.create_task(services.run()), asyncio.create_task(slices.run())]
    first = Speaker(client, services, slices, "n1", ArpResponder("eth0", net.n1), lease_seconds=2, renew_interval=0.3)
    second = Speaker(client, services, slices, "n2", ArpResponder("eth0", net.n2), lease_seconds=2, renew_interval=0.3)

    async def renew_forever(speaker: Speaker) -> None:
        """Like Speaker.run, but dying without handing the Lease back (a crashed node)."""
        await services.synced.wait()
        while True:
            await speaker.reconcile()
            await asyncio.sleep(0.3)

    first_task = asyncio.create_task(renew_forever(first))
    second_task: asyncio.Task[None] | None = None
    try:
        assert await eventually(lambda: _is(holder(client, lease), "n1"))
        second_task = asyncio.create_task(second.run())
        await asyncio.sleep(1.0)
        assert await holder(client, lease) == "n1"
        assert second.responder.addresses == frozenset()
        assert await asyncio.to_thread(net.who_has, LB_IP) == net.mac(net.n1)
        # An address nobody holds is not answered.
        assert await asyncio.to_thread(net.who_has, "192.168.77.241") == "none"

        first_task.cancel()  # n1 dies: no more renewals, no more ARP answers
        first.responder.close()
        assert await eventually(lambda: _is(holder(client, lease), "n2"))
        assert await asyncio.to_thread(net.who_has, LB_IP) == net.mac(net.n2)
    finally:
        first_task.cancel()
        tasks = [first_task, *informers] + ([second_task] if second_task else [])
        if second_task:
            second_task.cancel()
        for task in informers:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        second.responder.close()
    # A clean stop hands the Lease back.
    assert await holder(client, lease) == ""


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


async def test_node_excluded_from_load_balancers_does_not_stand(net: Net, service: tuple[Client, str]) -> None:
    client, ns = service
    lease = f"kproxy-lb.{ns}.lb"
    node_name = f"excluded-{uuid.uuid4().hex[:6]}"
    node = await client.create(
        "nodes",
        {"metadata": {"name": node_name, "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""}}},
    )
    services, slices = Informer(client, "services", ns), Informer(client, "endpointslices", ns)
    informers = [asyncio.create_task(services.run()), asyncio.create_task(slices.run())]
    speaker = Speaker(client, services, slices, node_name, ArpResponder("eth0", net.n1), lease_seconds=2)
    try:
        await services.synced.wait()
        await slices.synced.wait()
        for _ in range(3):
            await speaker.reconcile()
        assert await holder(client, lease) == "" and speaker.responder.addresses == frozenset()
        node["metadata"]["labels"] = {}
        await client.update("nodes", node)
        await speaker.reconcile()
        assert await holder(client, lease) == node_name
        assert speaker.responder.addresses == frozenset({LB_IP})
    finally:
        for task in informers:
            task.cancel()
        await asyncio.gather(*informers, return_exceptions=True)
        speaker.responder.close()
        await client.delete("nodes", node_name)
