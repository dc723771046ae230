"""Two real copies of the scheduler / controller manager on one API server: one leads, the other takes over.

Each copy is a `python -m pocket.cli` process with short lease timings; the
leader is killed with SIGKILL (no chance to release the Lease), and the
standby must then take the Lease and do the work.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from control.client import Client
from tests.conftest import free_port
from tests.controllers.helpers import eventually, make_namespace
from tests.controllers.test_cli import wait_for_http
from tests.scheduler.test_integration import add_node

FAST_LEASE = [
    "--leader-elect-lease-duration",
    "3",
    "--leader-elect-renew-deadline",
    "2",
    "--leader-elect-retry-period",
    "0.5",
]


@dataclass
class Copy:
    process: subprocess.Popen[bytes]
    health_port: int

    def is_leader(self, lease: str) -> bool:
        """The copy's own word, from /metrics (pocket_leader_election_master_status)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return False
        match = re.search(rf'pocket_leader_election_master_status{{name="{lease}"}} (\S+)', text)
        return match is not None and float(match.group(1)) == 1.0


@contextmanager
def two_copies(component: str, api_server: str, lease: str, extra: list[str]) -> Iterator[list[Copy]]:
    copies = []
    try:
        for _ in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "pocket.cli", component, "--api-server", api_server]
            argv += ["--health-port", str(port), "--leader-elect-resource-name", lease, *FAST_LEASE, *extra]
            copies.append(Copy(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), port))
        for copy in copies:
            assert wait_for_http(f"http://127.0.0.1:{copy.health_port}/healthz", copy.process) == "ok"
        yield copies
    finally:
        for copy in copies:
            if copy.process.poll() is None:
                copy.process.send_signal(signal.SIGKILL)
            copy.process.wait(10)
            if copy.process.stderr:
                copy.process.stderr.close()


def wait_for_one_leader(copies: list[Copy], lease: str, timeout: float = 20) -> Copy:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [c for c in copies if c.process.poll() is None and c.is_leader(lease)]
        if len(leaders) == 1:
            return leaders[0]
        assert len(leaders) < 2, "two copies claim leadership at once"
        time.sleep(0.2)
    raise AssertionError(f"no single leader of {lease} within {timeout}s")


async def lease_holder(client: Client, lease: str) -> str:
    return (await client.get("leases", lease, "kube-system"))["spec"].get("holderIdentity", "")


async def test_scheduler_standby_takes_over_when_the_leader_is_killed(apiserver) -> None:
    client = apiserver.client
    lease = f"pkt-sched-{uuid.uuid4().hex[:6]}"
    node = f"pkt-le-node-{uuid.uuid4().hex[:6]}"
    namespace = await make_namespace(client)
    await add_node(client, node, "2")
    try:
        with two_copies("scheduler", apiserver.url, lease, ["--retry-interval", "1"]) as copies:
            leader = wait_for_one_leader(copies, lease)
            first_holder = await lease_holder(client, lease)
            assert first_holder
            leader.process.send_signal(signal.SIGKILL)
            leader.process.wait(10)
            standby = next(c for c in copies if c is not leader)
            assert wait_for_one_leader([standby], lease) is standby
            second_holder = await lease_holder(client, lease)
            assert second_holder not in ("", first_holder)
            pod = {"metadata": {"name": "after-failover"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            await client.create("pods", pod, namespace)

            async def bound() -> str | None:
                return (await client.get("pods", "after-failover", namespace))["spec"].get("nodeName")

            assert await eventually(bound, what="the new leader binds a pod") == node
    finally:
        await client.delete("pods", "after-failover", namespace, grace_period_seconds=0)
        await client.delete("nodes", node)


async def test_controller_manager_standby_takes_over_when_the_leader_is_killed(apiserver) -> None:
    client = apiserver.client
    lease = f"pkt-kcm-{uuid.uuid4().hex[:6]}"
    namespace = await make_namespace(client)
    with two_copies("controller-manager", apiserver.url, lease, []) as copies:
        leader = wait_for_one_leader(copies, lease)
        first_holder = await lease_holder(client, lease)
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(10)
        standby = next(c for c in copies if c is not leader)
        assert wait_for_one_leader([standby], lease) is standby
        assert (await lease_holder(client, lease)) not in ("", first_holder)
        replicaset = {
            "metadata": {"name": "after-failover"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "failover"}},
                "template": {
                    "metadata": {"labels": {"app": "failover"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }
        await client.create("replicasets", replicaset, namespace)

        async def two_pods() -> bool:
            return len((await client.list("pods", namespace))["items"]) == 2

        await eventually(two_pods, what="the new leader creates the ReplicaSet's pods")
    await client.delete("replicasets", "after-failover", namespace)
    for pod in (await client.list("pods", namespace))["items"]:
        await client.delete("pods", pod["metadata"]["name"], namespace, grace_period_seconds=0)


async def test_sigterm_releases_the_lease_for_an_immediate_takeover(apiserver) -> None:
    lease = f"pkt-rel-{uuid.uuid4().hex[:6]}"
    slow_lease = ["--leader-elect-lease-duration", "60", "--leader-elect-renew-deadline", "40"]
    with two_copies("scheduler", apiserver.url, lease, slow_lease) as copies:
        leader = wait_for_one_leader(copies, lease)
        leader.process.send_signal(signal.SIGTERM)
        assert leader.process.wait(10) == 0
        standby = next(c for c in copies if c is not leader)
        # With a 60 s lease, taking over within 20 s is only possible because the Lease was handed back.
        assert wait_for_one_leader([standby], lease, timeout=20) is standby
