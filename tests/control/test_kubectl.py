"""The real kubectl 1.32 and the official kubernetes Python client against the server."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
from pathlib import Path
from collections.abc import Callable

import kubernetes
import pytest
from aiohttp import web

from control.api.errors import ApiError

from tests.conftest import ApiServer, free_port

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: kc
  labels: {app: web, tier: fe}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: kc
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 80
"""


@pytest.fixture
async def kc_namespace(apiserver: ApiServer) -> str:
    try:
        await apiserver.client.create("namespaces", {"metadata": {"name": "kc"}})
    except ApiError as err:
        assert err.code == 409
    return "kc"


async def test_apply_unchanged_then_configured(
    apiserver: ApiServer, kubectl: Kubectl, kc_namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    first = kubectl("apply", "-f", str(manifest))
    assert first.stdout.splitlines() == ["deployment.apps/web created", "service/web created"]
    again = kubectl("apply", "-f", str(manifest))
    assert again.stdout.splitlines() == ["deployment.apps/web unchanged", "service/web unchanged"]
    await apiserver.client.patch("deployments", "web", {"metadata": {"labels": {"owner": "ops"}}}, "kc")
    manifest.write_text(
        MANIFEST.replace("nginx:1.25", "nginx:1.26").replace("labels: {app: web, tier: fe}", "labels: {app: web}")
    )
    changed = kubectl("apply", "-f", str(manifest))
    assert changed.stdout.splitlines() == ["deployment.apps/web configured", "service/web unchanged"]
    live = await apiserver.client.get("deployments", "web", "kc")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert live["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert live["metadata"]["generation"] == 2


async def test_apply_rejects_unknown_fields_with_default_validation(
    kubectl: Kubectl, kc_namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: kc\nfoo: bar\n")
    result = kubectl("apply", "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert 'unknown field "foo"' in result.stderr


async def test_get_output_formats(apiserver: ApiServer, kubectl: Kubectl, kc_namespace: str) -> None:
    client = apiserver.client
    await client.create(
        "pods",
        {
            "metadata": {"name": "getme", "labels": {"role": "x"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]},
        },
        "kc",
    )
    await client.create(
        "nodes",
        {
            "metadata": {"name": "node-a", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0-pocketkube"},
            },
        },
    )
    wide = kubectl("get", "pods", "-n", "kc", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]
    row = next(line.split() for line in wide if line.startswith("getme"))
    assert row[:4] == ["getme", "0/1", "Pending", "0"] and row[6] == "node-a"
    everywhere = kubectl("get", "pods", "-A", "-l", "role=x").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"] and everywhere[1].split()[:2] == ["kc", "getme"]
    as_yaml = kubectl("get", "pod", "getme", "-n", "kc", "-o", "json").stdout
    assert json.loads(as_yaml)["spec"]["dnsPolicy"] == "ClusterFirst"
    nodes = kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert nodes[0].split()[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    node_row = next(line.split() for line in nodes if line.startswith("node-a"))
    assert node_row[1:3] == ["Ready", "control-plane"] and node_row[4:6] == ["v1.32.0-pocketkube", "192.168.56.11"]
    svc = kubectl("get", "svc", "kubernetes", "-n", "default").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc[1].split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    namespaces = kubectl("get", "ns").stdout
    assert "kube-system" in namespaces and "Active" in namespaces


async def test_scale_patch_delete_and_logs_routing(
    apiserver: ApiServer, kubectl: Kubectl, kc_namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST.replace("name: web\n  namespace", "name: web2\n  namespace"))
    kubectl("apply", "-f", str(manifest))
    kubectl("scale", "deployment", "web2", "-n", "kc", "--replicas=4")
    assert (await apiserver.client.get("deployments", "web2", "kc"))["spec"]["replicas"] == 4
    kubectl(
        "patch",
        "deployment",
        "web2",
        "-n",
        "kc",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}',
    )
    containers = (await apiserver.client.get("deployments", "web2", "kc"))["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "side"]
    kubectl(
        "patch",
        "deployment",
        "web2",
        "-n",
        "kc",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":1}]',
    )
    assert (await apiserver.client.get("deployments", "web2", "kc"))["spec"]["replicas"] == 1
    deleted = kubectl("delete", "deployment", "web2", "-n", "kc")
    assert deleted.stdout.strip() == 'deployment.apps "web2" deleted'
    with pytest.raises(ApiError):
        await apiserver.client.get("deployments", "web2", "kc")

    await apiserver.client.create(
        "pods",
        {
            "metadata": {"name": "lonely"},
            "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
        },
        "kc",
    )
    unbound = kubectl("logs", "lonely", "-c", "a", "-n", "kc", check=False)
    assert unbound.returncode != 0 and "pod lonely does not have a host assigned" in unbound.stderr


async def test_logs_are_proxied_to_the_nodes_kubelet(apiserver: ApiServer, kubectl: Kubectl, kc_namespace: str) -> None:
    """A stand-in kubelet on 127.0.0.1 records what the apiserver forwards for `kubectl logs`."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def container_logs(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query)))
        return web.Response(text="line one\nline two\n")

    fake = web.Application()
    fake.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    runner = web.AppRunner(fake)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = apiserver.client
        await client.create(
            "nodes",
            {
                "metadata": {"name": "log-node"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                },
            },
        )
        await client.create(
            "pods",
            {
                "metadata": {"name": "talker"},
                "spec": {"nodeName": "log-node", "containers": [{"name": "app", "image": "i"}]},
            },
            "kc",
        )
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None, lambda: kubectl("logs", "talker", "-n", "kc", "--tail=5", "--timestamps")
        )
        assert result.stdout == "line one\nline two\n"
        assert seen == [("/containerLogs/kc/talker/app", {"tailLines": "5", "timestamps": "true"})]
    finally:
        await runner.cleanup()


async def test_kubectl_delete_waits_for_graceful_pod(apiserver: ApiServer, kubectl: Kubectl, kc_namespace: str) -> None:
    """kubectl waits (list+watch on metadata.name) until the kubelet's final delete removes the pod."""
    client = apiserver.client
    await client.create(
        "pods",
        {"metadata": {"name": "graceful"}, "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i"}]}},
        "kc",
    )
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    waiter = threading.Thread(target=lambda: result.setdefault("r", kubectl("delete", "pod", "graceful", "-n", "kc")))
    waiter.start()

    async def marked() -> None:
        while not (await client.get("pods", "graceful", "kc"))["metadata"].get("deletionTimestamp"):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(marked(), 20)
    assert waiter.is_alive()
    await client.delete("pods", "graceful", "kc", grace_period_seconds=0)
    await asyncio.get_running_loop().run_in_executor(None, waiter.join, 30)
    assert not waiter.is_alive()
    assert result["r"].stdout.strip() == 'pod "graceful" deleted'


def test_official_python_client(apiserver_module: object, etcd_server: object) -> None:
    config = kubernetes.client.Configuration()
    config.host = apiserver_module.url  # type: ignore[attr-defined]
    api_client = kubernetes.client.ApiClient(config)
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    try:
        core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name="pyclient")))
        created = core.create_namespaced_config_map(
            "pyclient",
            kubernetes.client.V1ConfigMap(
                metadata=kubernetes.client.V1ObjectMeta(name="cfg", labels={"a": "b"}), data={"k": "v"}
            ),
        )
        assert created.metadata is not None and created.metadata.uid and created.data == {"k": "v"}
        listed = core.list_namespaced_config_map("pyclient", label_selector="a=b")
        assert [c.metadata and c.metadata.name for c in listed.items] == ["cfg"]
        assert core.read_namespaced_config_map("cfg", "pyclient").data == {"k": "v"}

        deployment = kubernetes.client.V1Deployment(
            metadata=kubernetes.client.V1ObjectMeta(name="pyweb"),
            spec=kubernetes.client.V1DeploymentSpec(
                replicas=2,
                selector=kubernetes.client.V1LabelSelector(match_labels={"app": "pyweb"}),
                template=kubernetes.client.V1PodTemplateSpec(
                    metadata=kubernetes.client.V1ObjectMeta(labels={"app": "pyweb"}),
                    spec=kubernetes.client.V1PodSpec(
                        containers=[kubernetes.client.V1Container(name="web", image="nginx")]
                    ),
                ),
            ),
        )
        made = apps.create_namespaced_deployment("pyclient", deployment)
        assert made.spec is not None and made.spec.strategy is not None
        assert made.spec.strategy.type == "RollingUpdate" and made.spec.revision_history_limit == 10

        with pytest.raises(kubernetes.client.ApiException) as missing:
            core.read_namespaced_pod("ghost", "pyclient")
        assert missing.value.status == 404

        assert listed.metadata is not None
        rv = listed.metadata.resource_version
        core.patch_namespaced_config_map("cfg", "pyclient", {"data": {"k": "v2"}})
        stream = kubernetes.watch.Watch()
        events = []
        for event in stream.stream(core.list_namespaced_config_map, "pyclient", resource_version=rv, timeout_seconds=5):
            events.append((event["type"], event["object"].metadata.name, event["object"].data))
            if len(events) == 1:
                stream.stop()
        assert events == [("MODIFIED", "cfg", {"k": "v2"})]
    finally:
        api_client.close()


async def test_kubectl_create_generators_send_protobuf(apiserver: ApiServer, kubectl: Kubectl) -> None:
    """`kubectl create namespace|configmap|secret|service` send protobuf bodies; the server decodes them."""
    client = apiserver.client
    assert kubectl("create", "namespace", "proto").stdout.strip() == "namespace/proto created"
    assert (await client.get("namespaces", "proto"))["status"]["phase"] == "Active"
    kubectl("create", "configmap", "settings", "-n", "proto", "--from-literal=a=b", "--from-literal=c=d")
    assert (await client.get("configmaps", "settings", "proto"))["data"] == {"a": "b", "c": "d"}
    kubectl("create", "secret", "generic", "pw", "-n", "proto", "--from-literal=pw=hunter2")
    secret = await client.get("secrets", "pw", "proto")
    assert secret["type"] == "Opaque" and base64.b64decode(secret["data"]["pw"]) == b"hunter2"
    kubectl("create", "service", "clusterip", "svc", "-n", "proto", "--tcp=80:8080")
    svc = await client.get("services", "svc", "proto")
    assert svc["spec"]["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert svc["spec"]["selector"] == {"app": "svc"} and svc["spec"]["clusterIP"].startswith("10.")
    kubectl(
        "create",
        "deployment",
        "gen",
        "-n",
        "proto",
        "--image=nginx:1.25",
        "--port=80",
        "--replicas=3",
        "--",
        "sleep",
        "9",
    )
    deployment = await client.get("deployments", "gen", "proto")
    assert deployment["metadata"]["labels"] == {"app": "gen"} and deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sleep", "9"] and container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["image"] == "nginx:1.25" and container["imagePullPolicy"] == "IfNotPresent"
