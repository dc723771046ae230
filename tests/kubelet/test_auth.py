"""The kubelet API's authn/authz filter against a real API server (HTTPS, Node,RBAC) and its real reviews.

The kubelet server runs in-process over HTTPS with a serving certificate from
the API server's CA and FakeRuntime containers; it asks the real API server
(`python -m control.apiserver` on the session's etcd) with its node token:
TokenReviews for bearer tokens, SubjectAccessReviews for every caller. Callers
use static tokens and client certificates from the same CA; RBAC bindings are
real objects. A FakeClock drives the answer caches.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control import pki
from control.api.errors import ApiError
from control.cli_support import add_common
from control.client import Client
from control.clock import FakeClock
from kubelet import cli as kubelet_cli
from kubelet.auth import (
    AUTHORIZED_CACHE_TTL,
    TOKEN_CACHE_TTL,
    UNAUTHORIZED_CACHE_TTL,
    AuthSettings,
    KubeletAuth,
    request_attributes,
)
from kubelet.server import KubeletServer, serving_context
from tests.conftest import EtcdServer, free_port
from tests.control.authz_server import AuthzServer, Identity, start_authz_server
from tests.kubelet.harness import Harness, c, make_pod

RBAC = "rbac.authorization.k8s.io"
WAIT_SECONDS = 10.0
NODE = "pkt-kauth-w1"

IDENTITIES = {
    "admin": Identity("kauth-admin-token", "kubernetes-admin", ("system:masters",)),
    "node": Identity("kauth-node-token", f"system:node:{NODE}", ("system:nodes",)),
    "other-node": Identity("kauth-other-node-token", "system:node:pkt-kauth-w2", ("system:nodes",)),
    "viewer": Identity("kauth-viewer-token", "kauth-viewer"),
    "proxier": Identity("kauth-proxier-token", "kauth-proxier", ("kauth-proxiers",)),
    "stats": Identity("kauth-stats-token", "kauth-stats"),
    "flipper": Identity("kauth-flipper-token", "kauth-flipper"),
}


@pytest.fixture(scope="module")
def server(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthzServer]:
    yield from start_authz_server(etcd_server, tmp_path_factory.mktemp("pkt-kauth"), IDENTITIES)


def _role(name: str, subresources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": [f"nodes/{s}" for s in subresources], "verbs": verbs}],
    }


def _binding(name: str, role: str, kind: str, subject: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": kind, "name": subject, **({"apiGroup": RBAC} if kind != "ServiceAccount" else {})}],
    }


async def _sar_allowed(admin: Client, user: str, groups: list[str], verb: str, subresource: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": groups,
            "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": subresource, "name": NODE},
        },
    }
    answer = await admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    return bool(answer["status"]["allowed"])


async def _until_api_server_says(admin: Client, user: str, allowed: bool, verb: str = "get") -> None:
    """Bounded wait for the API server's RBAC cache to see a binding change (asked directly, not via the kubelet)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while await _sar_allowed(admin, user, [], verb, "proxy") != allowed:
        assert time.monotonic() < deadline, f"API server never answered allowed={allowed} for {user}"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def rbac(server: AuthzServer) -> Iterator[None]:
    """viewer: the `view` ClusterRole; proxier (by group): nodes/proxy get+create; stats: nodes/stats get."""
    suffix = server.suffix

    async def apply(create: bool) -> None:
        async with server.client("admin") as admin:
            objects = [
                ("clusterroles", _role(f"pkt-node-proxy-{suffix}", ["proxy"], ["get", "create"])),
                ("clusterroles", _role(f"pkt-node-stats-{suffix}", ["stats"], ["get"])),
                ("clusterrolebindings", _binding(f"pkt-viewer-{suffix}", "view", "User", "kauth-viewer")),
                (
                    "clusterrolebindings",
                    _binding(f"pkt-proxiers-{suffix}", f"pkt-node-proxy-{suffix}", "Group", "kauth-proxiers"),
                ),
                (
                    "clusterrolebindings",
                    _binding(f"pkt-stats-{suffix}", f"pkt-node-stats-{suffix}", "User", "kauth-stats"),
                ),
            ]
            for plural, obj in objects:
                if create:
                    await admin.create(plural, obj)
                else:
                    await admin.delete(plural, obj["metadata"]["name"])
            if create:
                deadline = time.monotonic() + WAIT_SECONDS
                while not await _sar_allowed(admin, "kauth-stats", [], "get", "stats"):
                    assert time.monotonic() < deadline, "stats binding never took effect"
                    await asyncio.sleep(0.1)
                while not await _sar_allowed(admin, "kauth-proxier", ["kauth-proxiers"], "create", "proxy"):
                    assert time.monotonic() < deadline, "proxy binding never took effect"
                    await asyncio.sleep(0.1)

    asyncio.run(apply(True))
    try:
        yield
    finally:
        asyncio.run(apply(False))


@dataclass
class Kubelet:
    url: str
    clock: FakeClock
    harness: Harness
    pki_dir: Path
    ca: pki.CA
    reviews: list[str]

    def context(self, identity: pki.CertSpec | None = None) -> ssl.SSLContext:
        """Trust the kubelet's CA; present a client certificate for `identity` if given."""
        context = ssl.create_default_context(cafile=str(self.ca.paths.cert))
        if identity is not None:
            paths = pki.ensure_cert(self.pki_dir, self.ca, "client-" + identity.common_name.replace(":", "-"), identity)
            context.load_cert_chain(paths.cert, paths.key)
        return context


class CountingClient(Client):
    """The real client, also noting the path of every request (to see which reviews the cache saved)."""

    def __init__(self, *args: Any, seen: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seen = seen

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.seen.append(path.rsplit("/", 1)[-1])
        return await super().request(method, path, **kwargs)


async def _start_kubelet(
    server: AuthzServer, tmp_path: Path, client: Client, settings: AuthSettings | None = None
) -> tuple[KubeletServer, Kubelet]:
    h = Harness(tmp_path)
    pod = make_pod(c())
    h.workers.update(pod)
    await h.sync(pod)
    h.runtime.output[h.runtime.find("app", 0).id] = b"log line\n"
    pki_dir = server.workdir / "pki"
    ca = pki.ensure_ca(pki_dir)
    serving = pki.ensure_cert(pki_dir, ca, "kubelet-serving", pki.kubelet_serving(NODE, "127.0.0.1"))
    clock = FakeClock()
    auth = KubeletAuth(client, NODE, clock, settings)
    kubelet = KubeletServer(
        h.runtime,
        h.workers.known_pods,
        NODE,
        tls=serving_context(str(serving.cert), str(serving.key), str(ca.paths.cert)),
        auth=auth,
    )
    port = free_port()
    await kubelet.start("127.0.0.1", port)
    seen = client.seen if isinstance(client, CountingClient) else []
    return kubelet, Kubelet(f"https://127.0.0.1:{port}", clock, h, pki_dir, ca, seen)


@pytest.fixture
async def kubelet(server: AuthzServer, rbac: None, tmp_path: Path) -> AsyncIterator[Kubelet]:
    """The kubelet asking as its node (system:node:<NODE>), counting the reviews it sends."""
    client = CountingClient(server.url, token=IDENTITIES["node"].token, ssl_context=server.ssl_context(), seen=[])
    started, info = await _start_kubelet(server, tmp_path, client)
    try:
        yield info
    finally:
        await started.stop()
        await info.harness.workers.close()
        await client.close()


LOGS = "/containerLogs/default/web/app"


async def _call(
    kubelet: Kubelet,
    path: str,
    *,
    token: str | None = None,
    cert: pki.CertSpec | None = None,
    method: str = "GET",
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(ssl=kubelet.context(cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, kubelet.url + path, headers=headers) as resp:
            return resp.status, await resp.text()


def _token(who: str) -> str:
    return IDENTITIES[who].token


def test_paths_and_methods_map_to_node_subresources_and_verbs() -> None:
    cases = {
        ("GET", "/stats/summary"): ("get", "stats"),
        ("GET", "/stats"): ("get", "stats"),
        ("GET", "/statsz"): ("get", "proxy"),
        ("GET", "/metrics"): ("get", "metrics"),
        ("GET", "/metrics/cadvisor"): ("get", "metrics"),
        ("GET", "/logs/syslog"): ("get", "log"),
        ("GET", "/spec/"): ("get", "spec"),
        ("GET", "/containerLogs/ns/pod/c"): ("get", "proxy"),
        ("POST", "/exec/ns/pod/c"): ("create", "proxy"),
        ("PUT", "/run/ns/pod/c"): ("update", "proxy"),
        ("PATCH", "/pods"): ("patch", "proxy"),
        ("DELETE", "/pods"): ("delete", "proxy"),
        ("GET", "/healthz"): ("get", "proxy"),
    }
    for (method, path), want in cases.items():
        attrs = request_attributes(method, path)
        assert (attrs.verb, attrs.subresource) == want, (method, path)


async def test_no_credentials_or_a_bad_token_is_401(kubelet: Kubelet) -> None:
    for path in ("/healthz", "/stats/summary", LOGS, "/exec/default/web/app"):
        status, body = await _call(kubelet, path)
        assert status == 401, path
        assert '"reason": "Unauthorized"' in body
    status, _ = await _call(kubelet, LOGS, token="pkt-not-a-token")
    assert status == 401
    assert "tokenreviews" in kubelet.reviews and "subjectaccessreviews" not in kubelet.reviews


async def test_a_viewer_is_forbidden_logs_and_exec(kubelet: Kubelet) -> None:
    status, body = await _call(kubelet, LOGS, token=_token("viewer"))
    assert status == 403
    assert "Forbidden (user=kauth-viewer, verb=get, resource=nodes, subresource=proxy)" in body
    status, body = await _call(kubelet, "/exec/default/web/app", token=_token("viewer"), method="POST")
    assert status == 403
    assert "verb=create, resource=nodes, subresource=proxy" in body
    status, _ = await _call(kubelet, "/stats/summary", token=_token("viewer"))
    assert status == 403


async def test_nodes_proxy_grants_logs_and_exec_but_not_stats(kubelet: Kubelet) -> None:
    status, body = await _call(kubelet, LOGS, token=_token("proxier"))
    assert (status, body) == (200, "log line\n")
    # past authorization: this FakeRuntime kubelet has no exec route, so the router answers (not the filter)
    status, _ = await _call(kubelet, "/exec/default/web/app", token=_token("proxier"), method="POST")
    assert status not in (401, 403)
    status, _ = await _call(kubelet, "/stats/summary", token=_token("proxier"))
    assert status == 403
    status, body = await _call(kubelet, "/stats/summary", token=_token("stats"))
    assert status == 200 and '"nodeName": "pkt-kauth-w1"' in body
    status, _ = await _call(kubelet, LOGS, token=_token("stats"))
    assert status == 403


async def test_client_certificates_the_api_server_and_other_nodes(kubelet: Kubelet) -> None:
    status, body = await _call(kubelet, LOGS, cert=pki.APISERVER_KUBELET_CLIENT)
    assert (status, body) == (200, "log line\n")
    status, _ = await _call(kubelet, "/stats/summary", cert=pki.ADMIN)
    assert status == 200
    status, body = await _call(kubelet, "/stats/summary", cert=pki.node_client("pkt-kauth-w2"))
    assert status == 403 and "user=system:node:pkt-kauth-w2" in body
    status, _ = await _call(kubelet, LOGS, cert=pki.CertSpec("kauth-viewer"))
    assert status == 403
    status, _ = await _call(kubelet, LOGS, cert=pki.CertSpec("kauth-someone", ("kauth-proxiers",)))
    assert status == 200
    # a token of another node is no better than its certificate
    status, _ = await _call(kubelet, LOGS, token=_token("other-node"))
    assert status == 403


async def test_a_certificate_from_another_ca_fails_the_handshake(kubelet: Kubelet, tmp_path: Path) -> None:
    stranger_ca = pki.ensure_ca(tmp_path / "stranger")
    paths = pki.ensure_cert(tmp_path / "stranger", stranger_ca, "admin", pki.ADMIN)
    context = kubelet.context()
    context.load_cert_chain(paths.cert, paths.key)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(kubelet.url + LOGS) as resp:
                await resp.read()


async def test_answers_are_cached_for_their_ttl(kubelet: Kubelet) -> None:
    """One TokenReview and one SubjectAccessReview serve repeated calls until the FakeClock moves past their TTL."""
    for _ in range(3):
        assert (await _call(kubelet, LOGS, token=_token("proxier")))[0] == 200
    assert kubelet.reviews == ["tokenreviews", "subjectaccessreviews"]
    await kubelet.clock.advance(TOKEN_CACHE_TTL)
    assert (await _call(kubelet, LOGS, token=_token("proxier")))[0] == 200
    assert kubelet.reviews == ["tokenreviews", "subjectaccessreviews", "tokenreviews"]
    await kubelet.clock.advance(AUTHORIZED_CACHE_TTL - TOKEN_CACHE_TTL)
    assert (await _call(kubelet, LOGS, token=_token("proxier")))[0] == 200
    assert kubelet.reviews[-1] == "subjectaccessreviews"
    # a different verb on the same subresource is a different question
    before = len(kubelet.reviews)
    await _call(kubelet, "/exec/default/web/app", token=_token("proxier"), method="POST")
    assert kubelet.reviews[before:] == ["subjectaccessreviews"]


async def test_revoked_and_granted_rights_take_effect_after_the_cache_ttls(
    kubelet: Kubelet, server: AuthzServer
) -> None:
    """Allowed answers live 5 minutes, denied ones 30 seconds, on the kubelet's clock."""
    binding = _binding(f"pkt-flipper-{server.suffix}", f"pkt-node-proxy-{server.suffix}", "User", "kauth-flipper")
    flipper = _token("flipper")
    async with server.client("admin") as admin:
        await admin.create("clusterrolebindings", binding)
        try:
            await _until_api_server_says(admin, "kauth-flipper", True)
            assert (await _call(kubelet, LOGS, token=flipper))[0] == 200
            await admin.delete("clusterrolebindings", binding["metadata"]["name"])
            await _until_api_server_says(admin, "kauth-flipper", False)
            assert (await _call(kubelet, LOGS, token=flipper))[0] == 200  # still the cached allow
            await kubelet.clock.advance(AUTHORIZED_CACHE_TTL - 1)
            assert (await _call(kubelet, LOGS, token=flipper))[0] == 200
            await kubelet.clock.advance(1)
            assert (await _call(kubelet, LOGS, token=flipper))[0] == 403
            await admin.create("clusterrolebindings", binding)
            await _until_api_server_says(admin, "kauth-flipper", True)
            assert (await _call(kubelet, LOGS, token=flipper))[0] == 403  # the cached deny
            await kubelet.clock.advance(UNAUTHORIZED_CACHE_TTL)
            assert (await _call(kubelet, LOGS, token=flipper))[0] == 200
        finally:
            try:
                await admin.delete("clusterrolebindings", binding["metadata"]["name"])
            except ApiError as err:
                if err.code != 404:
                    raise


async def test_fails_closed_when_the_api_server_cannot_be_asked(
    server: AuthzServer, rbac: None, tmp_path: Path
) -> None:
    """Nobody gets in through an unreachable API server, nor through one that refuses the kubelet's reviews."""
    unreachable = Client(f"https://127.0.0.1:{free_port()}", token=_token("node"), ssl_context=server.ssl_context())
    started, kubelet = await _start_kubelet(server, tmp_path / "down", unreachable)
    try:
        status, body = await _call(kubelet, LOGS, token=_token("proxier"))
        assert status == 401 and "Unauthorized" in body
        status, body = await _call(kubelet, LOGS, cert=pki.APISERVER_KUBELET_CLIENT)
        assert status == 403 and "Authorization error (user=kube-apiserver-kubelet-client" in body
    finally:
        await started.stop()
        await kubelet.harness.workers.close()
        await unreachable.close()
    # the viewer may not create SubjectAccessReviews: a kubelet running with its credentials lets nobody in
    refused = server.client("viewer")
    started, kubelet = await _start_kubelet(server, tmp_path / "refused", refused)
    try:
        status, body = await _call(kubelet, LOGS, cert=pki.APISERVER_KUBELET_CLIENT)
        assert status == 403 and "SubjectAccessReview failed: 403" in body
    finally:
        await started.stop()
        await kubelet.harness.workers.close()
        await refused.close()


async def test_anonymous_and_always_allow_modes(server: AuthzServer, rbac: None, tmp_path: Path) -> None:
    """--anonymous-auth lets certificate-less callers be system:anonymous, who RBAC still refuses;
    --authorization-mode AlwaysAllow lets any authenticated caller in, and still no anonymous one."""
    client = server.client("node")
    started, kubelet = await _start_kubelet(server, tmp_path / "anon", client, AuthSettings(anonymous=True))
    try:
        status, body = await _call(kubelet, LOGS)
        assert status == 403 and "user=system:anonymous" in body
    finally:
        await started.stop()
        await kubelet.harness.workers.close()
    settings = AuthSettings(authorization_mode="AlwaysAllow", token_webhook=False)
    started, kubelet = await _start_kubelet(server, tmp_path / "allow", client, settings)
    try:
        assert (await _call(kubelet, LOGS, cert=pki.CertSpec("kauth-anyone")))[0] == 200
        assert (await _call(kubelet, LOGS, token=_token("proxier")))[0] == 401  # token webhook off
        assert (await _call(kubelet, LOGS))[0] == 401
    finally:
        await started.stop()
        await kubelet.harness.workers.close()
        await client.close()


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common(parser)
    kubelet_cli.add_arguments(parser)
    required = ["--node-name", "w1", "--node-ip", "127.0.0.1", "--docker-host", "unix:///x", "--root-dir", "/tmp/x"]
    return parser.parse_args([*required, *argv])


def test_flags_default_to_the_kubelet_configuration_defaults_and_parse_go_durations() -> None:
    assert kubelet_cli.auth_settings(_parse()) == AuthSettings(
        anonymous=False,
        token_webhook=True,
        token_cache_ttl=120.0,
        authorization_mode="Webhook",
        authorized_ttl=300.0,
        unauthorized_ttl=30.0,
    )
    args = _parse(
        "--anonymous-auth=true",
        "--authentication-token-webhook=false",
        "--authentication-token-webhook-cache-ttl",
        "1m30s",
        "--authorization-mode",
        "AlwaysAllow",
        "--authorization-webhook-cache-authorized-ttl",
        "10s",
        "--authorization-webhook-cache-unauthorized-ttl",
        "500ms",
    )
    assert kubelet_cli.auth_settings(args) == AuthSettings(True, False, 90.0, "AlwaysAllow", 10.0, 0.5)


def test_bad_flags_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, named in (
        (("--authorization-mode", "RBAC"), "--authorization-mode: invalid choice: 'RBAC'"),
        (("--authorization-webhook-cache-authorized-ttl", "5 minutes"), "invalid duration '5 minutes'"),
        (("--anonymous-auth=maybe",), "--anonymous-auth: want true or false, got 'maybe'"),
    ):
        with pytest.raises(SystemExit):
            _parse(*argv)
        assert named in capsys.readouterr().err
    with pytest.raises(ValueError, match="--authorization-mode: unknown mode 'Node'"):
        AuthSettings(authorization_mode="Node")


def test_an_https_kubelet_without_its_filter_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with pytest.raises(ValueError, match="needs its authn/authz filter"):
        KubeletServer(h.runtime, h.workers.known_pods, NODE, tls=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
