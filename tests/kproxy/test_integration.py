"""kproxy end to end on real parts: API server on etcd, Informers, and iptables-legacy in a pkt-kproxy namespace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from control.client import Client, Informer
from kproxy.conntrack import RecordingConntrack
from kproxy.iptables.restore import IptablesPacketFilter, parse_save
from kproxy.iptables.rules import endpoint_chain, service_chain
from kproxy.iptables.sync import IptablesProgrammer
from kproxy.model import Endpoint, NodeConfig, ServicePortName
from kproxy.proxier import Proxier
from tests.conftest import ApiServer
from tests.kproxy.netns import namespaces
from tests.kproxy.tracer import Packet, Ruleset

pytestmark = pytest.mark.root


async def eventually(check: Callable[[], bool], attempts: int = 100) -> bool:
    """Poll a bounded number of times (up to ~10 s) for a condition the sync loop makes true."""
    for _ in range(attempts):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


@pytest.fixture
async def kproxy(apiserver: ApiServer) -> AsyncIterator[tuple[Client, IptablesPacketFilter]]:
    with namespaces("e2e") as (ns,):
        packet_filter = IptablesPacketFilter("legacy", ["ip", "netns", "exec", ns])
        async with Client(apiserver.url) as client:
            services, slices = Informer(client, "services"), Informer(client, "endpointslices")
            node = NodeConfig("worker1", ("192.168.56.11",), "10.244.0.0/16")
            proxier = Proxier(
                services,
                slices,
                node,
                IptablesProgrammer(packet_filter, node),
                RecordingConntrack(),
                min_sync_interval=0.05,
            )
            tasks = [asyncio.create_task(t) for t in (services.run(), slices.run(), proxier.run())]
            try:
                yield apiserver.client, packet_filter
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def test_service_and_endpoints_from_the_api_become_working_rules(
    kproxy: tuple[Client, IptablesPacketFilter],
) -> None:
    client, packet_filter = kproxy
    created = await client.create(
        "services",
        {"metadata": {"name": "kp-web"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        "default",
    )
    vip = created["spec"]["clusterIP"]
    await client.create(
        "endpointslices",
        {
            "metadata": {"name": "kp-web-1", "labels": {"kubernetes.io/service-name": "kp-web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "worker1", "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
        "default",
    )
    assert await eventually(lambda: "--to-destination 10.244.1.5:8080" in packet_filter.save())
    traced = Ruleset(packet_filter.save()).summary(Packet("10.244.2.2", vip, 80))
    assert traced == {("ACCEPT", "10.244.1.5:8080", False): pytest.approx(1.0)}

    await client.delete("services", "kp-web", "default")
    await client.delete("endpointslices", "kp-web-1", "default")
    assert await eventually(lambda: vip not in packet_filter.save())
    nat = parse_save(packet_filter.save())["nat"]
    web = ServicePortName("default", "kp-web", "http", "TCP")
    assert service_chain("KUBE-SVC-", web) not in nat.chains
    assert endpoint_chain(web, Endpoint("10.244.1.5", 8080)) not in nat.chains
