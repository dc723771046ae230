"""The controller manager against a real API server on a real etcd.

Each test works in its own namespace; the manager runs on the test's event
loop with its own client, and is cancelled afterwards.
"""

from __future__ import annotations

import asyncio
import ipaddress


from control.api.errors import ApiError
from control.client import Client
from control.controllers.deployment import HASH_LABEL, REVISION
from control.events import EventRecorder
from tests.controllers.helpers import eventually, set_pod_running

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]},
}


async def live_pods(client: Client, namespace: str, label: str = "app=web") -> list[dict]:
    items = (await client.list("pods", namespace, label_selector=label))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def test_replicaset_creates_scales_and_reports(apiserver, manager, namespace):
    client = apiserver.client
    rs = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
    }
    created = await client.create("replicasets", rs, namespace)

    pods = await eventually(lambda: _exactly(live_pods(client, namespace), 3), what="3 pods for the ReplicaSet")
    for pod in pods:
        assert pod["metadata"]["name"].startswith("web-") and len(pod["metadata"]["name"]) == len("web-") + 5
        (ref,) = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "ReplicaSet",
            "web",
            created["metadata"]["uid"],
            True,
            True,
        )

    for i, pod in enumerate(pods):
        await set_pod_running(client, pod, f"10.244.1.{10 + i}")

    async def status_ready():
        status = (await client.get("replicasets", "web", namespace)).get("status") or {}
        return status if status.get("readyReplicas") == 3 else None

    status = await eventually(status_ready, what="readyReplicas 3")
    assert status["replicas"] == 3 and status["availableReplicas"] == 3 and status["observedGeneration"] >= 1

    async def creation_events():
        events = [e for e in (await client.list("events", namespace))["items"] if e["reason"] == "SuccessfulCreate"]
        return events if len(events) == 3 else None

    events = await eventually(creation_events, what="3 SuccessfulCreate events")
    created_msgs = {e["message"] for e in events}
    assert created_msgs == {f"Created pod: {p['metadata']['name']}" for p in pods}
    assert {e["involvedObject"]["kind"] for e in events} == {"ReplicaSet"}

    await client.patch("replicasets", "web", {"spec": {"replicas": 1}}, namespace)
    await eventually(lambda: _exactly(live_pods(client, namespace), 1), what="scale down to 1 pod")


async def test_replicaset_adopts_a_matching_orphan(apiserver, manager, namespace):
    client = apiserver.client
    orphan = {
        "metadata": {"name": "orphan", "namespace": namespace, "labels": {"app": "web"}},
        "spec": TEMPLATE["spec"],
    }
    await client.create("pods", orphan, namespace)

    async def orphan_cached():
        # Upstream has the same race: a ReplicaSet whose first sync misses the orphan creates two pods,
        # adopts the orphan later and deletes a surplus pod, possibly the orphan.  Start from a known cache.
        return manager.informers["pods"].get("orphan", namespace)

    await eventually(orphan_cached, what="the orphan in the controller's cache")
    rs = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
    }
    await client.create("replicasets", rs, namespace)

    async def adopted_and_two():
        pods = await live_pods(client, namespace)
        orphan = [p for p in pods if p["metadata"]["name"] == "orphan"]
        owned = orphan and [r["name"] for r in orphan[0]["metadata"].get("ownerReferences") or []] == ["web"]
        return pods if owned and len(pods) == 2 else None

    pods = await eventually(adopted_and_two, what="the orphan adopted and 2 pods in all")
    assert all(p["metadata"]["ownerReferences"][0]["controller"] for p in pods)


async def test_deployment_rolls_out_a_new_template_and_back(apiserver, manager, namespace, kubectl):
    client = apiserver.client
    deployment = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": TEMPLATE,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        },
    }
    await client.create("deployments", deployment, namespace)

    async def replicasets():
        return (await client.list("replicasets", namespace))["items"]

    (first,) = await eventually(lambda: _exactly(replicasets(), 1), what="the first ReplicaSet")
    template_hash = first["metadata"]["labels"][HASH_LABEL]
    assert first["metadata"]["name"] == f"web-{template_hash}"
    assert first["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: template_hash}
    assert first["metadata"]["annotations"][REVISION] == "1"

    async def scaling_events():
        return [e for e in (await client.list("events", namespace))["items"] if e["reason"] == "ScalingReplicaSet"]

    scaling = await eventually(scaling_events, what="ScalingReplicaSet event")
    assert [e["message"] for e in scaling] == [f"Scaled up replica set {first['metadata']['name']} to 2 from 0"]

    ips = iter(f"10.244.2.{n}" for n in range(10, 250))
    ready_names: set[str] = set()

    async def make_pods_ready():
        """Play the kubelets: every new pod becomes Running and Ready."""
        for pod in await live_pods(client, namespace):
            if pod["metadata"]["name"] not in ready_names:
                await set_pod_running(client, pod, next(ips))
                ready_names.add(pod["metadata"]["name"])

    async def available():
        await make_pods_ready()
        d = await client.get("deployments", "web", namespace)
        status = d.get("status") or {}
        done = (
            status.get("updatedReplicas") == 2 and status.get("availableReplicas") == 2 and status.get("replicas") == 2
        )
        return d if done else None

    await eventually(available, what="first rollout complete")

    changed = {**TEMPLATE, "spec": {"containers": [{**TEMPLATE["spec"]["containers"][0], "image": "busybox:2"}]}}
    await client.patch("deployments", "web", {"spec": {"template": changed}}, namespace)

    async def rolled():
        d = await available()
        rss = {rs["metadata"]["name"]: rs for rs in await replicasets()}
        old = rss.get(first["metadata"]["name"])
        if d is None or len(rss) != 2 or old is None or old["spec"]["replicas"] != 0:
            return None
        return d, rss

    d, rss = await eventually(rolled, timeout=40, what="rolling update to the new template")
    status = kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=30s")
    assert 'deployment "web" successfully rolled out' in status.stdout
    (new,) = [rs for name, rs in rss.items() if name != first["metadata"]["name"]]
    assert new["spec"]["replicas"] == 2
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert d["metadata"]["annotations"][REVISION] == "2"
    conditions = {c["type"]: c for c in d["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] in ("NewReplicaSetAvailable", "ReplicaSetUpdated")
    for pod in await live_pods(client, namespace):
        assert pod["metadata"]["labels"][HASH_LABEL] == new["metadata"]["labels"][HASH_LABEL]

    kubectl("rollout", "undo", "deployment/web", "-n", namespace)

    async def rolled_back():
        d = await available()
        rss = {rs["metadata"]["name"]: rs for rs in await replicasets()}
        old = rss[first["metadata"]["name"]]
        if d is None or old["spec"]["replicas"] != 2 or rss[new["metadata"]["name"]]["spec"]["replicas"] != 0:
            return None
        return d, old

    d, restored = await eventually(rolled_back, timeout=40, what="rollback to the first ReplicaSet")
    assert restored["metadata"]["annotations"][REVISION] == "3"
    assert d["metadata"]["annotations"][REVISION] == "3"
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


async def test_endpoints_follow_pod_ip_and_readiness(apiserver, manager, namespace):
    client = apiserver.client
    service = {
        "metadata": {"name": "web", "namespace": namespace, "labels": {"tier": "fe"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    await client.create("services", service, namespace)
    for name in ("a", "b"):
        pod = {"metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}}, "spec": TEMPLATE["spec"]}
        await client.create("pods", pod, namespace)

    async def endpoints():
        try:
            return await client.get("endpoints", "web", namespace)
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    empty = await eventually(endpoints, what="Endpoints for the service")
    assert not empty.get("subsets") and empty["metadata"]["labels"] == {"tier": "fe"}

    a = await client.get("pods", "a", namespace)
    b = await client.get("pods", "b", namespace)
    await set_pod_running(client, a, "10.244.3.2")
    await set_pod_running(client, b, "10.244.3.3", ready=False)

    async def filled():
        ep = await endpoints()
        subsets = (ep or {}).get("subsets") or []
        return subsets if subsets and subsets[0].get("addresses") and subsets[0].get("notReadyAddresses") else None

    (subset,) = await eventually(filled, what="ready and not-ready addresses")
    assert [(x["ip"], x["targetRef"]["name"]) for x in subset["addresses"]] == [("10.244.3.2", "a")]
    assert [x["ip"] for x in subset["notReadyAddresses"]] == ["10.244.3.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

    await client.delete("services", "web", namespace)
    await eventually(lambda: _gone(endpoints()), what="Endpoints deleted with the service")


async def two_pod_deployment(client: Client, namespace: str) -> None:
    """Deployment `web` with 2 replicas, returned once both pods exist."""
    deployment = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
    }
    await client.create("deployments", deployment, namespace)
    await eventually(lambda: _exactly(live_pods(client, namespace), 2), what="the deployment's pods")


async def test_deleting_a_deployment_collects_replicasets_and_pods(apiserver, manager, namespace, kubectl):
    client = apiserver.client
    await two_pod_deployment(client, namespace)

    kubectl("delete", "deployment", "web", "-n", namespace)

    async def all_gone():
        rss = (await client.list("replicasets", namespace))["items"]
        pods = (await client.list("pods", namespace))["items"]
        return not rss and not pods

    await eventually(all_gone, what="ReplicaSets and pods collected")


async def test_foreground_deletion_keeps_the_owner_until_dependents_are_gone(apiserver, manager, namespace, kubectl):
    client = apiserver.client
    await two_pod_deployment(client, namespace)
    marked = await client.delete("deployments", "web", namespace, propagation_policy="Foreground")
    assert marked["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in marked["metadata"]["finalizers"]

    async def all_gone():
        left = [(await client.list(p, namespace))["items"] for p in ("deployments", "replicasets", "pods")]
        return not any(left)

    await eventually(all_gone, what="the Deployment gone after its ReplicaSet and pods")


async def test_orphan_deletion_releases_dependents(apiserver, manager, namespace, kubectl):
    client = apiserver.client
    await two_pod_deployment(client, namespace)

    # kubectl waits for the Deployment to go, which needs this loop's controllers: run it in a thread.
    await asyncio.to_thread(kubectl, "delete", "deployment", "web", "-n", namespace, "--cascade=orphan")

    async def released():
        if (await client.list("deployments", namespace))["items"]:
            return None
        rss = (await client.list("replicasets", namespace))["items"]
        return rss if len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences") else None

    (rs,) = await eventually(released, what="the ReplicaSet left without its owner")
    await asyncio.sleep(1.0)  # the collector had its chance: the ReplicaSet and its pods stay
    assert (await client.get("replicasets", rs["metadata"]["name"], namespace))["metadata"]["uid"] == rs["metadata"][
        "uid"
    ]
    assert len(await live_pods(client, namespace)) == 2


async def test_node_ipam_hands_out_distinct_subnets(apiserver, manager):
    client = apiserver.client
    names = [f"pkt-ipam-{i}" for i in range(3)]
    for name in names:
        await client.create("nodes", {"metadata": {"name": name}})

    async def cidrs():
        nodes = [await client.get("nodes", name) for name in names]
        got = [(n.get("spec") or {}).get("podCIDR") for n in nodes]
        return nodes if all(got) else None

    nodes = await eventually(cidrs, what="podCIDRs on every node")
    subnets = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]
    assert len(set(subnets)) == 3
    for node, subnet in zip(nodes, subnets, strict=True):
        assert subnet.prefixlen == 24 and subnet.subnet_of(ipaddress.ip_network("10.244.0.0/16"))
        assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    for name in names:
        await client.delete("nodes", name)


async def _exactly(items_coro, count: int):
    items = await items_coro
    return items if len(items) == count else None


async def _gone(get_coro):
    return (await get_coro) is None


async def test_deployment_scaling_and_recreate_strategy(apiserver, manager, namespace):
    client = apiserver.client
    deployment = {
        "metadata": {"name": "db", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": TEMPLATE,
            "strategy": {"type": "Recreate"},
        },
    }
    await client.create("deployments", deployment, namespace)

    async def replicasets():
        return (await client.list("replicasets", namespace))["items"]

    (first,) = await eventually(lambda: _exactly(replicasets(), 1), what="the first ReplicaSet")
    await client.patch("deployments", "db", {"spec": {"replicas": 4}}, namespace)

    async def scaled():
        rs = await client.get("replicasets", first["metadata"]["name"], namespace)
        return rs if rs["spec"]["replicas"] == 4 else None

    await eventually(scaled, what="the current ReplicaSet scaled to 4")
    await eventually(lambda: _exactly(live_pods(client, namespace), 4), what="4 pods")

    changed = {**TEMPLATE, "spec": {"containers": [{**TEMPLATE["spec"]["containers"][0], "image": "busybox:2"}]}}
    await client.patch("deployments", "db", {"spec": {"template": changed}}, namespace)
    overlaps = []

    async def recreated():
        rss = await replicasets()
        running = [rs["metadata"]["name"] for rs in rss if rs["spec"]["replicas"] > 0]
        if len(running) > 1:
            overlaps.append(running)  # Recreate must never run old and new at once
        new = [rs for rs in rss if rs["metadata"]["name"] != first["metadata"]["name"]]
        return (
            new
            if len(new) == 1 and running == [new[0]["metadata"]["name"]] and new[0]["spec"]["replicas"] == 4
            else None
        )

    (new,) = await eventually(recreated, what="Recreate rollout finished")
    assert overlaps == []
    pods = await eventually(lambda: _exactly(live_pods(client, namespace), 4), what="4 new pods")
    assert {p["metadata"]["labels"][HASH_LABEL] for p in pods} == {new["metadata"]["labels"][HASH_LABEL]}


async def test_event_recorder_counts_repeats(apiserver, namespace):
    recorder = EventRecorder(apiserver.client, "pkt-test-controller")
    pod = await apiserver.client.create(
        "pods", {"metadata": {"name": "p", "namespace": namespace}, "spec": TEMPLATE["spec"]}, namespace
    )
    for _ in range(3):
        await recorder.record("pods", pod, "Warning", "BackOff", "same message")
    await recorder.record("pods", pod, "Normal", "Other", "different")
    events = {e["reason"]: e for e in (await apiserver.client.list("events", namespace))["items"]}
    assert set(events) == {"BackOff", "Other"}
    assert events["BackOff"]["count"] == 3 and events["Other"]["count"] == 1
    assert events["BackOff"]["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "p",
        "namespace": namespace,
        "uid": pod["metadata"]["uid"],
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }
    assert events["BackOff"]["source"] == {"component": "pkt-test-controller"}


async def test_stuck_rollout_exceeds_its_progress_deadline(apiserver, manager, namespace, kubectl):
    client = apiserver.client
    deployment = {
        "metadata": {"name": "stuck", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": TEMPLATE,
        },
    }
    await client.create("deployments", deployment, namespace)  # no kubelet: its pod never becomes ready

    async def timed_out():
        d = await client.get("deployments", "stuck", namespace)
        conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        progressing = conds.get("Progressing") or {}
        return progressing if progressing.get("reason") == "ProgressDeadlineExceeded" else None

    cond = await eventually(timed_out, what="ProgressDeadlineExceeded")
    assert cond["status"] == "False"
    result = kubectl("rollout", "status", "deployment/stuck", "-n", namespace, "--timeout=20s", check=False)
    assert result.returncode != 0
    assert 'deployment "stuck" exceeded its progress deadline' in result.stderr


async def test_paused_deployment_scales_but_does_not_roll_out(apiserver, manager, namespace, kubectl):
    client = apiserver.client
    deployment = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
    }
    await client.create("deployments", deployment, namespace)

    async def replicasets():
        return (await client.list("replicasets", namespace))["items"]

    (first,) = await eventually(lambda: _exactly(replicasets(), 1), what="the first ReplicaSet")
    kubectl("rollout", "pause", "deployment/web", "-n", namespace)
    changed = {**TEMPLATE, "spec": {"containers": [{**TEMPLATE["spec"]["containers"][0], "image": "busybox:2"}]}}
    await client.patch("deployments", "web", {"spec": {"template": changed, "replicas": 3}}, namespace)

    async def observed_while_paused():
        d = await client.get("deployments", "web", namespace)
        status = d.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or []}
        caught_up = status.get("observedGeneration") == d["metadata"]["generation"]
        paused = (conds.get("Progressing") or {}).get("reason") == "DeploymentPaused"
        return d if caught_up and paused else None

    await eventually(observed_while_paused, what="the paused spec observed")
    rss = await replicasets()
    assert [rs["metadata"]["name"] for rs in rss] == [first["metadata"]["name"]]  # no rollout while paused
    assert rss[0]["spec"]["replicas"] == 3  # but scaling applies

    kubectl("rollout", "resume", "deployment/web", "-n", namespace)
    rss = await eventually(lambda: _exactly(replicasets(), 2), what="the rollout after resume")
    (new,) = [rs for rs in rss if rs["metadata"]["name"] != first["metadata"]["name"]]
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
