"""A real API server over HTTPS on a real TLS etcd: who may talk to it, and who it thinks they are.

The API server runs as `python -m control.apiserver` with the TLS flags the bring-up passes;
etcd requires client certificates. Clients are the project's Client (from a kubeconfig),
raw aiohttp, and kubectl with a generated kubeconfig.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from control import pki
from control.api.errors import ApiError
from control.apiserver import cli as apiserver_cli
from control.apiserver.authn import ANONYMOUS, USER
from control.apiserver.storage import EtcdTLS, Storage
from control.client import Client, KubeconfigError
from control.clock import FakeClock
from kubelet.auth import KubeletAuth
from kubelet.server import KubeletServer, serving_context
from pocket.kubeconfig import Credentials, write_kubeconfig
from tests.conftest import ETCD, KUBECTL, free_port
from tests.kubelet.harness import Harness, c, make_pod
from tests.processes import stop, wait_ready

TOKEN = "pkt-" + uuid.uuid4().hex


@dataclass
class TLSCluster:
    pki_dir: Path
    ca: pki.CA
    etcd_url: str
    api_url: str
    work: Path

    def identity(self, name: str, spec: pki.CertSpec) -> pki.CertPaths:
        return pki.ensure_cert(self.pki_dir, self.ca, name, spec)

    def kubeconfig(self, name: str, spec: pki.CertSpec | None = None, token: str | None = None) -> Path:
        path = self.work / f"{name}.kubeconfig"
        paths = self.identity(name, spec) if spec else None
        write_kubeconfig(
            path,
            self.api_url,
            Credentials(
                self.ca.paths.cert.read_bytes(),
                paths.cert.read_bytes() if paths else None,
                paths.key.read_bytes() if paths else None,
                token,
            ),
        )
        return path




@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    """etcd with --client-cert-auth and an API server with every TLS flag, both on 127.0.0.1."""
    work = tmp_path_factory.mktemp("pkt-tls")
    pki_dir = work / "pki"
    ca = pki.ensure_ca(pki_dir)
    etcd_cert = pki.ensure_cert(pki_dir, ca, "etcd-server", pki.etcd_serving("127.0.0.1"))
    etcd_client = pki.ensure_cert(pki_dir, ca, "apiserver-etcd-client", pki.APISERVER_ETCD_CLIENT)
    serving = pki.ensure_cert(pki_dir, ca, "apiserver", pki.apiserver_serving(("127.0.0.1",), "10.96.0.1"))
    kubelet_client = pki.ensure_cert(pki_dir, ca, "apiserver-kubelet-client", pki.APISERVER_KUBELET_CLIENT)
    tokens = work / "tokens.csv"
    tokens.write_text(f'{TOKEN},jane,uid-jane,"developers,testers"\n')
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url, peer_url = f"https://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    etcd_log = work / "etcd.log"
    etcd = subprocess.Popen(
        [ETCD, "--name", "pkt-tls", "--data-dir", str(work / "etcd")]
        + ["--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url]
        + ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
        + ["--initial-cluster", f"pkt-tls={peer_url}", "--client-cert-auth"]
        + [
            "--trusted-ca-file",
            str(ca.paths.cert),
            "--cert-file",
            str(etcd_cert.cert),
            "--key-file",
            str(etcd_cert.key),
        ],
        stdout=etcd_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    api_log = work / "apiserver.log"
    api = None
    try:
        wait_ready(lambda: (work / "etcd" / "member").exists(), "etcd", etcd, etcd_log)
        api = subprocess.Popen(
            [sys.executable, "-m", "control.apiserver", "--etcd-servers", etcd_url]
            + ["--bind-address", "127.0.0.1", "--port", str(api_port), "--advertise-address", "127.0.0.1"]
            + ["--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key)]
            + ["--client-ca-file", str(ca.paths.cert), "--token-auth-file", str(tokens)]
            + ["--etcd-cafile", str(ca.paths.cert), "--etcd-certfile", str(etcd_client.cert)]
            + ["--etcd-keyfile", str(etcd_client.key)]
            + [
                "--kubelet-client-certificate",
                str(kubelet_client.cert),
                "--kubelet-client-key",
                str(kubelet_client.key),
            ]
            + ["--kubelet-certificate-authority", str(ca.paths.cert)],
            stdout=api_log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        context = ssl.create_default_context(cafile=str(ca.paths.cert))

        def ready() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{api_port}/readyz", timeout=2, context=context) as r:
                return r.status == 200

        wait_ready(ready, "apiserver", api, api_log)
        yield TLSCluster(pki_dir, ca, etcd_url, f"https://127.0.0.1:{api_port}", work)
    finally:
        if api is not None:
            stop(api)
        stop(etcd)


@pytest.fixture
async def admin(tls_cluster: TLSCluster) -> AsyncIterator[Client]:
    client = Client.from_kubeconfig(tls_cluster.kubeconfig("admin", pki.ADMIN))
    try:
        yield client
    finally:
        await client.close()


def _ca_only(tls_cluster: TLSCluster) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_cluster.ca.paths.cert))


async def test_no_credentials_get_401_status_except_health_and_version(tls_cluster: TLSCluster) -> None:
    connector = aiohttp.TCPConnector(ssl=_ca_only(tls_cluster))
    async with aiohttp.ClientSession(connector=connector) as session:
        for path in ("/api/v1/namespaces", "/api", "/apis/apps/v1/namespaces/default/deployments", "/metrics"):
            async with session.get(tls_cluster.api_url + path) as resp:
                assert resp.status == 401, path
                body = await resp.json()
            assert body == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }
        async with session.get(tls_cluster.api_url + "/api", headers={"Authorization": "Bearer not-a-token"}) as resp:
            assert resp.status == 401
        for path in ("/healthz", "/livez", "/readyz", "/version"):
            async with session.get(tls_cluster.api_url + path) as resp:
                assert resp.status == 200, path


async def test_plain_http_is_refused(tls_cluster: TLSCluster) -> None:
    plain = tls_cluster.api_url.replace("https://", "http://")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(plain + "/healthz") as resp:
                await resp.read()


async def test_unknown_ca_is_refused_both_ways(tls_cluster: TLSCluster, tmp_path: Path) -> None:
    # A client certificate from another CA fails the handshake ...
    other = pki.ensure_ca(tmp_path / "other")
    rogue = pki.ensure_cert(tmp_path / "other", other, "rogue", pki.ADMIN)
    context = _ca_only(tls_cluster)
    context.load_cert_chain(rogue.cert, rogue.key)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(tls_cluster.api_url + "/api/v1/namespaces") as resp:
                await resp.read()
    # ... and a client that trusts only another CA does not accept the server.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(
            tls_cluster.api_url + "/healthz",
            timeout=5,
            context=ssl.create_default_context(cafile=str(other.paths.cert)),
        )


async def test_admin_certificate_through_kubeconfig_reads_and_writes(admin: Client) -> None:
    name = f"pkt-tls-{uuid.uuid4().hex[:8]}"
    await admin.create("namespaces", {"metadata": {"name": name}})
    names = [n["metadata"]["name"] for n in (await admin.list("namespaces"))["items"]]
    assert name in names


async def test_watch_and_informer_work_over_tls(admin: Client) -> None:
    listed = await admin.list("namespaces")
    name = f"pkt-tlsw-{uuid.uuid4().hex[:8]}"
    await admin.create("namespaces", {"metadata": {"name": name}})
    async for event in admin.watch(
        "namespaces", resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=10
    ):
        if event.type == "ADDED" and event.object["metadata"]["name"] == name:
            break
    else:
        pytest.fail("watch over TLS ended without the new namespace")


async def test_static_token_user(tls_cluster: TLSCluster) -> None:
    client = Client.from_kubeconfig(tls_cluster.kubeconfig("jane", token=TOKEN))
    try:
        assert (await client.list("namespaces"))["kind"] == "NamespaceList"
    finally:
        await client.close()
    stranger = Client.from_kubeconfig(tls_cluster.kubeconfig("stranger", token="pkt-wrong"))
    try:
        with pytest.raises(ApiError) as caught:
            await stranger.list("namespaces")
        assert (caught.value.code, caught.value.reason) == (401, "Unauthorized")
    finally:
        await stranger.close()


def _kubectl(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(home / "cache"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        timeout=60,
    )


def test_kubectl_with_generated_kubeconfig(tls_cluster: TLSCluster, tmp_path: Path) -> None:
    admin = tls_cluster.kubeconfig("admin", pki.ADMIN)
    name = f"pkt-tlsk-{uuid.uuid4().hex[:8]}"
    created = _kubectl(admin, tmp_path, "create", "namespace", name)
    assert created.returncode == 0, created.stderr
    got = _kubectl(admin, tmp_path, "get", "namespace", name, "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == name
    stranger = tls_cluster.kubeconfig("stranger", token="pkt-not-a-token")
    refused = _kubectl(stranger, tmp_path, "get", "namespaces")
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr


def test_etcd_refuses_a_client_without_certificate(tls_cluster: TLSCluster) -> None:
    context = _ca_only(tls_cluster)
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        with urllib.request.urlopen(tls_cluster.etcd_url + "/v3/kv/range", data=b'{"key":"Lw=="}', context=context):
            pass


async def test_storage_needs_a_client_certificate_for_etcd(tls_cluster: TLSCluster) -> None:
    paths = tls_cluster.identity("apiserver-etcd-client", pki.APISERVER_ETCD_CLIENT)
    with_cert = Storage(
        tls_cluster.etcd_url,
        f"/pkt-{uuid.uuid4().hex[:8]}",
        tls=EtcdTLS(str(tls_cluster.ca.paths.cert), str(paths.cert), str(paths.key)),
    )
    try:
        assert await with_cert.revision() > 0
    finally:
        await with_cert.close()
    other = pki.ensure_ca(tls_cluster.work / "other-ca")
    rogue = pki.ensure_cert(tls_cluster.work / "other-ca", other, "rogue", pki.APISERVER_ETCD_CLIENT)
    rogue_storage = Storage(
        tls_cluster.etcd_url, "/pkt-rogue", tls=EtcdTLS(str(tls_cluster.ca.paths.cert), str(rogue.cert), str(rogue.key))
    )
    try:
        with pytest.raises(Exception, match="(?i)unavailable|handshake|certificate|connect"):
            await rogue_storage.revision()
    finally:
        await rogue_storage.close()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    apiserver_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


async def test_certificate_subject_becomes_request_user(tls_cluster: TLSCluster) -> None:
    """CN -> user name, O -> groups, plus system:authenticated, as later middlewares see it on request[USER]."""
    serving = tls_cluster.identity("apiserver", pki.apiserver_serving(("127.0.0.1",), "10.96.0.1"))
    security = apiserver_cli.security_from_args(
        _args(
            "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
            "--client-ca-file", str(tls_cluster.ca.paths.cert),
        )
    )  # fmt: skip
    seen: list[object] = []

    async def whoami(request: web.Request) -> web.Response:
        seen.append(request[USER])
        return web.Response(text="ok")

    app = web.Application(middlewares=[security.authentication.middleware])
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=security.serving).start()
    try:
        node = tls_cluster.identity("node-w1", pki.node_client("w1"))
        context = _ca_only(tls_cluster)
        context.load_cert_chain(node.cert, node.key)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            async with session.get(f"https://127.0.0.1:{port}/whoami") as resp:
                assert resp.status == 200
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_ca_only(tls_cluster))) as session:
            async with session.get(f"https://127.0.0.1:{port}/whoami") as resp:
                assert resp.status == 401
    finally:
        await runner.cleanup()
    assert len(seen) == 1
    user = seen[0]
    assert (user.name, user.groups) == ("system:node:w1", ("system:nodes", "system:authenticated"))  # type: ignore[attr-defined]


def test_bad_tls_flags_are_named(tls_cluster: TLSCluster) -> None:
    with pytest.raises(ValueError, match="--tls-cert-file and --tls-private-key-file must be given together"):
        apiserver_cli.security_from_args(_args("--tls-cert-file", "/nonexistent.crt"))
    with pytest.raises(ValueError, match="--client-ca-file needs --tls-cert-file"):
        apiserver_cli.security_from_args(_args("--client-ca-file", str(tls_cluster.ca.paths.cert)))
    with pytest.raises(ValueError, match="--tls-cert-file /nonexistent.crt: no such file"):
        apiserver_cli.security_from_args(
            _args("--tls-cert-file", "/nonexistent.crt", "--tls-private-key-file", "/nonexistent.key")
        )
    bad = tls_cluster.work / "bad-tokens.csv"
    bad.write_text("only-a-token\n")
    with pytest.raises(ValueError, match="bad-tokens.csv line 1"):
        apiserver_cli.security_from_args(_args("--token-auth-file", str(bad)))
    with pytest.raises(ValueError, match="--etcd-servers https:// needs --etcd-cafile"):
        apiserver_cli.security_from_args(_args("--etcd-servers", tls_cluster.etcd_url))


@pytest.fixture
async def tls_kubelet(tls_cluster: TLSCluster, tmp_path: Path) -> AsyncIterator[tuple[Harness, str]]:
    """A kubelet API server (FakeRuntime) on HTTPS with its serving certificate, trusting the cluster CA.

    Its callers are checked by SubjectAccessReviews to this (AlwaysAllow) API server, asked as node w1;
    who RBAC lets in is tests/kubelet/test_auth.py's subject.
    """
    h = Harness(tmp_path)
    serving = tls_cluster.identity("kubelet-w1", pki.kubelet_serving("w1", "127.0.0.1"))
    tls = serving_context(str(serving.cert), str(serving.key), str(tls_cluster.ca.paths.cert))
    client = Client.from_kubeconfig(tls_cluster.kubeconfig("node-w1", pki.node_client("w1")))
    server = KubeletServer(h.runtime, h.workers.known_pods, "w1", tls=tls, auth=KubeletAuth(client, "w1", FakeClock()))
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        yield h, f"https://127.0.0.1:{port}"
    finally:
        await server.stop()
        await h.workers.close()
        await client.close()


async def test_logs_flow_through_the_api_server_to_a_tls_kubelet(
    tls_cluster: TLSCluster, tls_kubelet: tuple[Harness, str], admin: Client
) -> None:
    """kubectl logs -> API server (its kubelet-client certificate) -> kubelet over HTTPS."""
    h, url = tls_kubelet
    pod = make_pod(c())
    h.workers.update(pod)
    await h.sync(pod)
    h.runtime.output[h.runtime.find("app", 0).id] = b"hello over tls\n"
    node_name = f"pkt-tls-{uuid.uuid4().hex[:8]}"
    namespace = f"pkt-tlsl-{uuid.uuid4().hex[:8]}"
    await admin.create("namespaces", {"metadata": {"name": namespace}})
    node = await admin.create("nodes", {"metadata": {"name": node_name}})
    node["status"] = {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": int(url.rsplit(":", 1)[1])}},
    }
    await admin.update_status("nodes", node)
    # The kubelet looks pods up by namespace/name; the API object only has to name the node.
    h.workers.update({**pod, "metadata": {**pod["metadata"], "namespace": namespace}})
    await admin.create(
        "pods",
        {"metadata": {"name": "web", "namespace": namespace}, "spec": {"nodeName": node_name, "containers": [c()]}},
    )
    try:
        logs = await admin.request_text(f"/api/v1/namespaces/{namespace}/pods/web/log")
        assert logs == "hello over tls\n"
    finally:
        await admin.delete("nodes", node_name)


def test_kubeconfig_problems_are_named(tls_cluster: TLSCluster, tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="No such file"):
        Client.from_kubeconfig(tmp_path / "missing")
    admin = tls_cluster.kubeconfig("admin", pki.ADMIN)
    with pytest.raises(KubeconfigError, match="no context named 'other'"):
        Client.from_kubeconfig(admin, context="other")
    config = yaml.safe_load(admin.read_text())
    del config["users"][0]["user"]["client-key-data"]
    broken = tmp_path / "broken"
    broken.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeconfigError, match="needs both client-certificate and key"):
        Client.from_kubeconfig(broken)
    config["users"][0]["user"] = {"client-certificate": "nope.crt", "client-key": "nope.key"}
    broken.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeconfigError, match=f"client-certificate {tmp_path}/nope.crt"):
        Client.from_kubeconfig(broken)


async def test_anonymous_auth_lets_credential_less_requests_in_as_system_anonymous(tls_cluster: TLSCluster) -> None:
    serving = tls_cluster.identity("apiserver", pki.apiserver_serving(("127.0.0.1",), "10.96.0.1"))
    security = apiserver_cli.security_from_args(
        _args("--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
              "--anonymous-auth=true")
    )  # fmt: skip
    seen: list[object] = []

    async def whoami(request: web.Request) -> web.Response:
        seen.append(request[USER])
        return web.Response(text="ok")

    app = web.Application(middlewares=[security.authentication.middleware])
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=security.serving).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_ca_only(tls_cluster))) as session:
            async with session.get(f"https://127.0.0.1:{port}/whoami") as resp:
                assert resp.status == 200
            async with session.get(f"https://127.0.0.1:{port}/whoami", headers={"Authorization": "Bearer x"}) as resp:
                assert resp.status == 401  # presented but wrong credentials are never anonymous
    finally:
        await runner.cleanup()
    assert seen == [ANONYMOUS]
