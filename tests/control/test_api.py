"""REST semantics against a real apiserver on real etcd (through control.client)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from control.api.errors import ApiError
from control.client import JSON_PATCH, STRATEGIC_MERGE_PATCH, Client

from tests.conftest import ApiServer


def pod(
    name: str, labels: dict[str, str] | None = None, node: str | None = None, image: str = "busybox"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": image}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


async def make_namespace(client: Client, name: str) -> None:
    await client.create("namespaces", {"metadata": {"name": name}})


async def raw(
    client: Client,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    async with client.session.request(
        method, client.server + path, data=data, headers={"Content-Type": content_type, **(headers or {})}
    ) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def test_defaults_namespaces_and_kubernetes_service(apiserver: ApiServer) -> None:
    client = apiserver.client
    names = {ns["metadata"]["name"] for ns in (await client.list("namespaces"))["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    svc = await client.get("services", "kubernetes", "default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": apiserver.server.port}
    ]
    assert "selector" not in svc["spec"]
    ep = await client.get("endpoints", "kubernetes", "default")
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": apiserver.server.port, "protocol": "TCP"}],
        }
    ]
    assert ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    endpoint_slice = await client.get("endpointslices", "kubernetes", "default")
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert endpoint_slice["endpoints"] == [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    assert endpoint_slice["ports"] == [{"name": "https", "port": apiserver.server.port, "protocol": "TCP"}]


async def test_create_sets_metadata_and_pod_defaults(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "crud")
    created = await client.create("pods", pod("p1", {"app": "x"}, image="nginx"), "crud")
    meta = created["metadata"]
    assert meta["namespace"] == "crud" and len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    spec = created["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    assert created["status"]["phase"] == "Pending"
    tagged = await client.create("pods", pod("p2", image="nginx:1.25"), "crud")
    assert tagged["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    fetched = await client.get("pods", "p1", "crud")
    assert fetched == created


async def test_already_exists_not_found_and_conflict_status_bodies(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "errs")
    first = await client.create("configmaps", {"metadata": {"name": "c"}, "data": {"k": "v"}}, "errs")
    with pytest.raises(ApiError) as exists:
        await client.create("configmaps", {"metadata": {"name": "c"}}, "errs")
    assert exists.value.code == 409 and exists.value.reason == "AlreadyExists"
    assert exists.value.status["message"] == 'configmaps "c" already exists'
    assert exists.value.status["details"] == {"name": "c", "kind": "configmaps"}

    with pytest.raises(ApiError) as missing:
        await client.get("pods", "nope", "errs")
    assert missing.value.status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }

    updated = await client.update("configmaps", {**first, "data": {"k": "v2"}})
    assert int(updated["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    with pytest.raises(ApiError) as stale:
        await client.update("configmaps", {**first, "data": {"k": "v3"}})
    assert stale.value.code == 409 and stale.value.reason == "Conflict"
    assert "the object has been modified" in stale.value.status["message"]
    unconditional = {k: v for k, v in first.items()}
    unconditional["metadata"] = {k: v for k, v in first["metadata"].items() if k != "resourceVersion"}
    unconditional["data"] = {"k": "v4"}
    assert (await client.update("configmaps", unconditional))["data"] == {"k": "v4"}


async def test_create_in_missing_namespace_and_body_mismatches(apiserver: ApiServer) -> None:
    client = apiserver.client
    with pytest.raises(ApiError) as missing:
        await client.create("pods", pod("p"), "ghost")
    assert missing.value.code == 404 and missing.value.status["message"] == 'namespaces "ghost" not found'
    status, body = await raw(
        client, "POST", "/api/v1/namespaces/default/pods", {**pod("p"), "metadata": {"name": "p", "namespace": "other"}}
    )
    assert status == 400 and "does not match the namespace" in body["message"]
    status, body = await raw(client, "POST", "/api/v1/namespaces/default/pods", {"kind": "Service", **pod("p")})
    assert status == 400 and "kind" in body["message"]
    status, body = await raw(client, "POST", "/api/v1/namespaces/default/pods", {"apiVersion": "apps/v1", **pod("p")})
    assert status == 400 and "apps/v1" in body["message"]


async def test_validation_errors_are_422_with_field_paths(apiserver: ApiServer) -> None:
    client = apiserver.client
    with pytest.raises(ApiError) as bad_name:
        await client.create("configmaps", {"metadata": {"name": "Bad_Name"}}, "default")
    assert bad_name.value.code == 422 and bad_name.value.reason == "Invalid"
    assert bad_name.value.status["details"]["causes"][0]["field"] == "metadata.name"

    with pytest.raises(ApiError) as no_containers:
        await client.create("pods", {"metadata": {"name": "empty"}, "spec": {"containers": []}}, "default")
    assert [c["field"] for c in no_containers.value.status["details"]["causes"]] == ["spec.containers"]

    with pytest.raises(ApiError) as bad_port:
        await client.create("services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 70000}]}}, "default")
    causes = bad_port.value.status["details"]["causes"]
    assert causes[0]["field"] == "spec.ports[0].port"
    assert 'Service "s" is invalid: spec.ports[0].port' in bad_port.value.status["message"]

    with pytest.raises(ApiError) as mismatch:
        await client.create(
            "deployments",
            {
                "metadata": {"name": "d"},
                "spec": {
                    "selector": {"matchLabels": {"app": "a"}},
                    "template": {
                        "metadata": {"labels": {"app": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            },
            "default",
        )
    assert "spec.template.metadata.labels" in [c["field"] for c in mismatch.value.status["details"]["causes"]]


async def test_generate_name_and_generation(apiserver: ApiServer) -> None:
    client = apiserver.client
    obj = await client.create(
        "pods", {"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "default"
    )
    assert obj["metadata"]["name"].startswith("web-") and len(obj["metadata"]["name"]) == 9
    dep = await client.create(
        "deployments",
        {
            "metadata": {"name": "gen"},
            "spec": {
                "selector": {"matchLabels": {"app": "g"}},
                "template": {
                    "metadata": {"labels": {"app": "g"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
        "default",
    )
    assert dep["metadata"]["generation"] == 1 and dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    labelled = await client.patch("deployments", "gen", {"metadata": {"labels": {"x": "y"}}}, "default")
    assert labelled["metadata"]["generation"] == 1
    scaled = await client.patch("deployments", "gen", {"spec": {"replicas": 3}}, "default")
    assert scaled["metadata"]["generation"] == 2


async def test_label_field_selectors_and_cluster_wide_list(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "sel-a")
    await make_namespace(client, "sel-b")
    await client.create("pods", pod("a1", {"env": "prod", "tier": "fe"}, node="n1"), "sel-a")
    await client.create("pods", pod("a2", {"env": "qa"}), "sel-a")
    await client.create("pods", pod("b1", {"env": "prod"}, node="n2"), "sel-b")

    def names(listed: dict[str, Any]) -> list[str]:
        return sorted(p["metadata"]["name"] for p in listed["items"])

    assert names(await client.list("pods", "sel-a")) == ["a1", "a2"]
    everywhere = await client.list("pods", label_selector="env")
    assert {"a1", "a2", "b1"} <= set(names(everywhere))
    assert names(await client.list("pods", label_selector="env in (prod),tier!=fe")) == ["b1"]
    assert names(await client.list("pods", "sel-a", label_selector="!tier")) == ["a2"]
    assert names(await client.list("pods", field_selector="spec.nodeName=n1")) == ["a1"]
    assert names(await client.list("pods", "sel-a", field_selector="metadata.name!=a1")) == ["a2"]
    with pytest.raises(ApiError) as bad_field:
        await client.list("pods", field_selector="spec.foo=x")
    assert bad_field.value.code == 400 and "field label not supported: spec.foo" in bad_field.value.status["message"]
    with pytest.raises(ApiError) as bad_label:
        await client.list("pods", label_selector="x=a||y=b")
    assert bad_label.value.code == 400


async def test_pagination_keeps_one_snapshot(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "pages")
    for i in range(7):
        await client.create("configmaps", {"metadata": {"name": f"cm-{i}"}}, "pages")
    path = "/api/v1/namespaces/pages/configmaps"
    first = await client.request("GET", path, params={"limit": "3"})
    assert len(first["items"]) == 3 and first["metadata"]["continue"]
    snapshot = first["metadata"]["resourceVersion"]
    await client.create("configmaps", {"metadata": {"name": "cm-late"}}, "pages")
    seen = [c["metadata"]["name"] for c in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = await client.request("GET", path, params={"limit": "3", "continue": token})
        assert page["metadata"]["resourceVersion"] == snapshot
        seen += [c["metadata"]["name"] for c in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"cm-{i}" for i in range(7)]
    status, body = await raw(
        client, "GET", f"{path}?limit=3&continue={first['metadata']['continue']}&resourceVersion=5"
    )
    assert status == 400


async def collect(client: Client, count: int, **kwargs: Any) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []

    async def run() -> None:
        async for event in client.watch(**kwargs):
            if event.type != "BOOKMARK":
                events.append((event.type, event.object["metadata"]["name"]))
            if len(events) >= count:
                return

    await asyncio.wait_for(run(), 20)
    return events


async def test_watch_from_resource_version_and_initial_state(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "watch")
    created = await client.create("configmaps", {"metadata": {"name": "w1"}}, "watch")
    rv = created["metadata"]["resourceVersion"]
    await client.patch("configmaps", "w1", {"data": {"a": "b"}}, "watch")
    await client.create("configmaps", {"metadata": {"name": "w2"}}, "watch")
    await client.delete("configmaps", "w1", "watch")
    from_rv = await collect(client, 3, plural="configmaps", namespace="watch", resource_version=rv)
    assert from_rv == [("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]
    initial = await collect(client, 1, plural="configmaps", namespace="watch")
    assert initial == [("ADDED", "w2")]


async def test_watch_with_selector_sends_deleted_when_object_stops_matching(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "wsel")
    base = await client.create("configmaps", {"metadata": {"name": "m", "labels": {"app": "a"}}}, "wsel")
    rv = base["metadata"]["resourceVersion"]
    await client.patch("configmaps", "m", {"metadata": {"labels": {"app": "b"}}}, "wsel")
    await client.patch("configmaps", "m", {"metadata": {"labels": {"app": "a"}}}, "wsel")
    events = await collect(
        client, 2, plural="configmaps", namespace="wsel", resource_version=rv, label_selector="app=a"
    )
    assert events == [("DELETED", "m"), ("ADDED", "m")]


async def test_watch_bookmarks_carry_only_resource_version(apiserver: ApiServer) -> None:
    client = apiserver.client
    current = await client.list("configmaps", "default")
    rv = current["metadata"]["resourceVersion"]

    async def first_bookmark() -> Any:
        async for event in client.watch("configmaps", "default", resource_version=rv):
            if event.type == "BOOKMARK":
                return event.object

    bookmark = await asyncio.wait_for(first_bookmark(), 20)
    assert bookmark == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}


async def test_watch_timeout_seconds_ends_stream(apiserver: ApiServer) -> None:
    client = apiserver.client
    rv = (await client.list("configmaps", "default"))["metadata"]["resourceVersion"]
    events = [e async for e in client.watch("configmaps", "default", resource_version=rv, timeout_seconds=1)]
    assert all(e.type == "BOOKMARK" for e in events)


async def test_status_subresource_split(apiserver: ApiServer) -> None:
    client = apiserver.client
    svc = await client.create(
        "services",
        {
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
        },
        "default",
    )
    assert svc["status"] == {"loadBalancer": {}}
    with_status = {**svc, "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.240"}]}}}
    after_put = await client.update("services", with_status)
    assert after_put["status"] == {"loadBalancer": {}}
    via_status = await client.update_status(
        "services",
        {**after_put, "status": with_status["status"], "spec": {**after_put["spec"], "sessionAffinity": "ClientIP"}},
    )
    assert via_status["status"] == with_status["status"]
    assert via_status["spec"]["sessionAffinity"] == "None"
    patched = await client.patch(
        "services",
        "lb",
        {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.241"}]}}},
        "default",
        subresource="status",
    )
    assert patched["status"]["loadBalancer"]["ingress"] == [{"ip": "192.168.56.241"}]
    with pytest.raises(ApiError) as no_status:
        await client.request("GET", "/api/v1/namespaces/default/configmaps/x/status")
    assert no_status.value.code == 404


async def test_binding_semantics(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "bind")
    await client.create("pods", pod("web-0"), "bind")
    status, body = await raw(
        client,
        "POST",
        "/api/v1/namespaces/bind/pods/web-0/binding",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "web-0", "annotations": {"why": "test"}},
            "target": {"kind": "Node", "name": "node-1"},
        },
    )
    assert status == 201
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    bound = await client.get("pods", "web-0", "bind")
    assert bound["spec"]["nodeName"] == "node-1"
    assert bound["metadata"]["annotations"] == {"why": "test"}
    assert {"type": "PodScheduled", "status": "True"}.items() <= bound["status"]["conditions"][0].items()
    with pytest.raises(ApiError) as again:
        await client.bind("bind", "web-0", "node-2")
    assert again.value.code == 409 and 'pod web-0 is already assigned to node "node-1"' in again.value.status["message"]
    await client.create("pods", pod("web-1"), "bind")
    status, body = await raw(
        client,
        "POST",
        "/api/v1/namespaces/bind/pods/web-1/binding",
        {"kind": "Binding", "metadata": {"name": "other"}, "target": {"name": "n"}},
    )
    assert status == 400 and body["message"] == "name in URL does not match name in Binding object"
    status, body = await raw(
        client,
        "POST",
        "/api/v1/namespaces/bind/pods/web-1/binding",
        {"kind": "Binding", "metadata": {"name": "web-1", "uid": "not-it"}, "target": {"name": "n"}},
    )
    assert status == 409


async def test_graceful_pod_deletion_contract(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "del")
    await client.create("pods", pod("bound", node="n1"), "del")
    marked = await client.delete("pods", "bound", "del")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30 and marked["metadata"]["deletionTimestamp"]
    still = await client.get("pods", "bound", "del")
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    await client.delete("pods", "bound", "del", grace_period_seconds=0)
    with pytest.raises(ApiError) as gone:
        await client.get("pods", "bound", "del")
    assert gone.value.code == 404

    await client.create("pods", pod("unbound"), "del")
    removed = await client.delete("pods", "unbound", "del")
    assert removed["metadata"]["name"] == "unbound"
    with pytest.raises(ApiError):
        await client.get("pods", "unbound", "del")

    await client.create("pods", pod("short", node="n1"), "del")
    status, body = await raw(client, "DELETE", "/api/v1/namespaces/del/pods/short?gracePeriodSeconds=5")
    assert status == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 5


async def test_finalizers_hold_deletion_until_removed(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("configmaps", {"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}}, "default")
    marked = await client.delete("configmaps", "fin", "default")
    assert marked["metadata"]["deletionTimestamp"]
    await client.patch("configmaps", "fin", {"metadata": {"finalizers": None}}, "default")
    with pytest.raises(ApiError) as gone:
        await client.get("configmaps", "fin", "default")
    assert gone.value.code == 404


async def test_namespace_deletion_removes_contents(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "doomed")
    await client.create("configmaps", {"metadata": {"name": "c"}}, "doomed")
    await client.create("pods", pod("p", node="n1"), "doomed")
    terminating = await client.delete("namespaces", "doomed")
    assert terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as forbidden:
        await client.create("configmaps", {"metadata": {"name": "late"}}, "doomed")
    assert forbidden.value.code == 403

    async def contents_deleted() -> None:
        while (await client.list("configmaps", "doomed"))["items"] or not (await client.get("pods", "p", "doomed"))[
            "metadata"
        ].get("deletionTimestamp"):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(contents_deleted(), 10)
    assert (await client.get("namespaces", "doomed"))["status"]["phase"] == "Terminating"
    await client.delete("pods", "p", "doomed", grace_period_seconds=0)

    async def namespace_gone() -> None:
        while True:
            try:
                await client.get("namespaces", "doomed")
            except ApiError as err:
                assert err.code == 404
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(namespace_gone(), 15)


async def test_patch_types_and_scale_subresource(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create(
        "deployments",
        {
            "metadata": {"name": "sc", "labels": {"a": "1"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "sc"}},
                "template": {
                    "metadata": {"labels": {"app": "sc"}},
                    "spec": {"containers": [{"name": "c", "image": "i:1"}]},
                },
            },
        },
        "default",
    )
    smp = await client.patch(
        "deployments",
        "sc",
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}}},
        "default",
        patch_type=STRATEGIC_MERGE_PATCH,
    )
    assert smp["spec"]["template"]["spec"]["containers"][0]["image"] == "i:2"
    jp = await client.patch(
        "deployments",
        "sc",
        [{"op": "replace", "path": "/metadata/labels/a", "value": "2"}],
        "default",
        patch_type=JSON_PATCH,
    )
    assert jp["metadata"]["labels"] == {"a": "2"}
    with pytest.raises(ApiError) as failed:
        await client.patch(
            "deployments",
            "sc",
            [{"op": "test", "path": "/metadata/labels/a", "value": "9"}],
            "default",
            patch_type=JSON_PATCH,
        )
    assert failed.value.code == 422
    scale = await client.request("GET", "/apis/apps/v1/namespaces/default/deployments/sc/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"]["selector"] == "app=sc"
    scaled = await client.patch("deployments", "sc", {"spec": {"replicas": 5}}, "default", subresource="scale")
    assert scaled["spec"]["replicas"] == 5
    assert (await client.get("deployments", "sc", "default"))["spec"]["replicas"] == 5
    put = await client.request(
        "PUT", "/apis/apps/v1/namespaces/default/deployments/sc/scale", body={**scaled, "spec": {"replicas": 1}}
    )
    assert put["spec"]["replicas"] == 1


async def test_strict_field_validation(apiserver: ApiServer) -> None:
    client = apiserver.client
    body = {"metadata": {"name": "strict", "bogus": 1}, "spec": {"containers": [{"name": "c", "image": "i"}], "foo": 1}}
    status, error = await raw(client, "POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict", body)
    assert status == 400 and error["reason"] == "BadRequest"
    assert 'unknown field "metadata.bogus"' in error["message"] and 'unknown field "spec.foo"' in error["message"]
    status, _ = await raw(client, "POST", "/api/v1/namespaces/default/pods", body)
    assert status == 201


async def test_logs_need_a_container_choice_and_a_node(apiserver: ApiServer) -> None:
    client = apiserver.client
    two = {
        "metadata": {"name": "two"},
        "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
    }
    await client.create("pods", two, "default")
    with pytest.raises(ApiError) as choose:
        await client.request_text("/api/v1/namespaces/default/pods/two/log")
    assert choose.value.code == 400
    assert choose.value.status["message"] == "a container name must be specified for pod two, choose one of: [a b]"
    with pytest.raises(ApiError) as unbound:
        await client.request_text("/api/v1/namespaces/default/pods/two/log", params={"container": "a"})
    assert "does not have a host assigned" in unbound.value.status["message"]


async def test_discovery_and_health(apiserver: ApiServer) -> None:
    client = apiserver.client
    core = await client.request("GET", "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["namespaced"] is True
    assert by_name["pods/binding"]["kind"] == "Binding" and by_name["pods/status"]["verbs"] == [
        "get",
        "patch",
        "update",
    ]
    apps = await client.request("GET", "/apis/apps/v1")
    assert {"group": "autoscaling", "version": "v1"}.items() <= {r["name"]: r for r in apps["resources"]}[
        "deployments/scale"
    ].items()
    groups = await client.request("GET", "/apis")
    assert {g["name"] for g in groups["groups"]} == {
        "apps",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "autoscaling",
        "policy",
        "metrics.k8s.io",
        "authentication.k8s.io",
        "certificates.k8s.io",
        "rbac.authorization.k8s.io",
        "authorization.k8s.io",
    }
    assert {"name": "pods/eviction", "group": "policy", "version": "v1"}.items() <= by_name["pods/eviction"].items()
    assert (await client.request("GET", "/version"))["gitVersion"] == "v1.32.0-pocketkube"
    index = await client.request("GET", "/openapi/v3")
    doc = await client.request("GET", index["paths"]["apis/apps/v1"]["serverRelativeURL"])
    patch_op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch_op["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in [p["name"] for p in patch_op["parameters"]]
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/livez", "/readyz"):
            async with session.get(apiserver.url + path) as resp:
                assert resp.status == 200 and await resp.text() == "ok"
        async with session.get(apiserver.url + "/metrics") as resp:
            metrics = await resp.text()
    assert 'apiserver_request_total{code="200",resource="pods",subresource="",verb="LIST"}' in metrics
    assert "apiserver_request_duration_seconds_bucket" in metrics and "apiserver_registered_watchers" in metrics


async def test_table_output(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "tbl")
    await client.create("pods", pod("t1", node="n1"), "tbl")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, table = await raw(client, "GET", "/api/v1/namespaces/tbl/pods", headers={"Accept": accept})
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["t1", "0/1", "Pending", "0"] and cells[6] == "n1"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_pod_spec_and_workload_selector_are_immutable(apiserver: ApiServer) -> None:
    client = apiserver.client
    await client.create("pods", pod("fixed", image="app:1"), "default")
    new_image = await client.patch(
        "pods",
        "fixed",
        {"spec": {"containers": [{"name": "main", "image": "app:2"}]}},
        "default",
        patch_type=STRATEGIC_MERGE_PATCH,
    )
    assert new_image["spec"]["containers"][0]["image"] == "app:2"
    with pytest.raises(ApiError) as moved:
        await client.patch("pods", "fixed", {"spec": {"nodeName": "elsewhere"}}, "default")
    assert moved.value.code == 422 and "pod updates may not change fields" in moved.value.status["message"]
    assert moved.value.status["details"]["causes"][0]["field"] == "spec"

    await client.create(
        "replicasets",
        {
            "metadata": {"name": "rs"},
            "spec": {
                "selector": {"matchLabels": {"app": "rs"}},
                "template": {
                    "metadata": {"labels": {"app": "rs", "v": "1"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
        "default",
    )
    with pytest.raises(ApiError) as reselect:
        await client.patch("replicasets", "rs", {"spec": {"selector": {"matchLabels": {"v": "1"}}}}, "default")
    assert reselect.value.code == 422 and "field is immutable" in reselect.value.status["message"]


async def test_delete_collection_with_selector(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "bulk")
    for name, tier in (("a", "fe"), ("b", "fe"), ("c", "be")):
        await client.create("configmaps", {"metadata": {"name": name, "labels": {"tier": tier}}}, "bulk")
    deleted = await client.request("DELETE", "/api/v1/namespaces/bulk/configmaps", params={"labelSelector": "tier=fe"})
    assert deleted["kind"] == "ConfigMapList" and sorted(o["metadata"]["name"] for o in deleted["items"]) == ["a", "b"]
    assert [o["metadata"]["name"] for o in (await client.list("configmaps", "bulk"))["items"]] == ["c"]


async def test_many_watchers_see_every_write_in_order(apiserver: ApiServer) -> None:
    client = apiserver.client
    await make_namespace(client, "fanout")
    start = (await client.list("configmaps", "fanout"))["metadata"]["resourceVersion"]
    writes, watchers = 80, 12

    async def watch_all() -> list[int]:
        revisions: list[int] = []
        async for event in client.watch("configmaps", "fanout", resource_version=start):
            if event.type == "BOOKMARK":
                continue
            revisions.append(int(event.object["metadata"]["resourceVersion"]))
            if len(revisions) == writes:
                return revisions
        return revisions

    tasks = [asyncio.create_task(watch_all()) for _ in range(watchers)]

    async def writer(offset: int) -> None:
        for i in range(offset, writes, 4):
            await client.create("configmaps", {"metadata": {"name": f"cm-{i}"}}, "fanout")

    await asyncio.gather(*(writer(k) for k in range(4)))
    results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert all(r == results[0] for r in results)
    assert len(results[0]) == writes and results[0] == sorted(set(results[0]))
