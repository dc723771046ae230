"""Service accounts in the API server, on real etcd: TokenRequest, the JWTs it issues, their authenticator,
TokenReview, pod admission, bootstrap tokens and CertificateSigningRequests."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from control import pki
from control.api.errors import ApiError
from control.api.resources import resource
from control.apiserver.bootstraptokens import token_secret
from control.apiserver.registry import Registry
from control.apiserver.serviceaccounts import (
    DEFAULT_ISSUER,
    TOKEN_MOUNT_PATH,
    ServiceAccountTokens,
    load_public_keys,
    load_signing_key,
    sign_jwt,
)
from control.client import Client
from tests.conftest import EtcdServer
from tests.control.sa_apiserver import keyed_apiserver

Object = dict[str, Any]


@dataclass
class Server:
    url: str
    client: Client
    registry: Registry
    keys: pki.CertPaths
    foreign: pki.CertPaths


@pytest.fixture
async def server(etcd_server: EtcdServer, tmp_path: Path) -> AsyncIterator[Server]:
    """An API server with a service-account signing key, on the test's loop; plus a Registry on its etcd prefix."""
    foreign = pki.ensure_key_pair(tmp_path / "foreign")
    async with keyed_apiserver(etcd_server.url, tmp_path) as keyed, Client(keyed.url) as client:
        yield Server(keyed.url, client, keyed.registry, keyed.keys, foreign)


async def make_namespace(client: Client) -> str:
    name = f"pkt-sa-{uuid.uuid4().hex[:8]}"
    await client.create("namespaces", {"metadata": {"name": name}})
    return name


async def request_token(client: Client, namespace: str, account: str, **spec: Any) -> Object:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    path = resource("serviceaccounts").path(namespace, account, "token")
    result: Object = await client.request("POST", path, body=body)
    return result


def claims_of(token: str) -> tuple[Object, Object]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload)))


async def review(client: Client, token: str, audiences: list[str] | None = None) -> Object:
    spec: Object = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    result: Object = await client.request("POST", resource("tokenreviews").path(), body=body)
    return result


async def status_with_token(url: str, token: str, path: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status


def pod(name: str, **spec: Any) -> Object:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


async def test_token_request_issues_a_bound_rs256_jwt(server: Server) -> None:
    ns = await make_namespace(server.client)
    account = await server.client.create("serviceaccounts", {"metadata": {"name": "robot"}}, ns)
    created = await server.client.create("pods", pod("p", serviceAccountName="robot"), ns)
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": created["metadata"]["uid"]}
    answer = await request_token(server.client, ns, "robot", expirationSeconds=1200, boundObjectRef=ref)
    assert answer["kind"] == "TokenRequest" and answer["apiVersion"] == "authentication.k8s.io/v1"
    token = answer["status"]["token"]
    header, claims = claims_of(token)
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == DEFAULT_ISSUER
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot"
    assert claims["aud"] == [DEFAULT_ISSUER]
    assert claims["exp"] - claims["iat"] == 1200 and claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 120
    private = claims["kubernetes.io"]
    assert private["namespace"] == ns
    assert private["serviceaccount"] == {"name": "robot", "uid": account["metadata"]["uid"]}
    assert private["pod"] == {"name": "p", "uid": created["metadata"]["uid"]}
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))
    assert answer["status"]["expirationTimestamp"] == expires
    # the signature verifies with sa.pub, and the token authenticates as the service account
    public = serialization.load_pem_public_key(server.keys.cert.read_bytes())
    signed, signature = token.rsplit(".", 1)
    assert isinstance(public, rsa.RSAPublicKey)
    raw_signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public.verify(raw_signature, signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    reviewed = await review(server.client, token)
    assert reviewed["status"]["authenticated"] is True
    user = reviewed["status"]["user"]
    assert user["username"] == f"system:serviceaccount:{ns}:robot"
    assert user["uid"] == account["metadata"]["uid"]
    assert set(user["groups"]) == {"system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"}
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    assert await status_with_token(server.url, token, f"/api/v1/namespaces/{ns}/pods") == 200


async def test_token_request_checks_its_input(server: Server) -> None:
    ns = await make_namespace(server.client)
    await server.client.create("serviceaccounts", {"metadata": {"name": "robot"}}, ns)
    with pytest.raises(ApiError) as short:
        await request_token(server.client, ns, "robot", expirationSeconds=60)
    assert short.value.code == 422 and "may not specify a duration less than 10 minutes" in str(short.value)
    with pytest.raises(ApiError) as missing:
        await request_token(server.client, ns, "nobody")
    assert missing.value.code == 404 and 'serviceaccounts "nobody" not found' in str(missing.value)
    other = await server.client.create("pods", pod("other"), ns)  # runs as `default`
    with pytest.raises(ApiError) as wrong_account:
        await request_token(server.client, ns, "robot", boundObjectRef={"kind": "Pod", "name": "other"})
    assert wrong_account.value.code == 400 and "different serviceaccount name" in str(wrong_account.value)
    await server.client.create("serviceaccounts", {"metadata": {"name": "default"}}, ns)
    stale = {"kind": "Pod", "name": "other", "uid": str(uuid.uuid4())}
    with pytest.raises(ApiError) as conflict:
        await request_token(server.client, ns, "default", boundObjectRef=stale)
    assert conflict.value.code == 409 and stale["uid"] in str(conflict.value) and other["metadata"]["uid"]
    with pytest.raises(ApiError) as kind:
        await request_token(server.client, ns, "default", boundObjectRef={"kind": "Deployment", "name": "x"})
    assert kind.value.code == 422 and "boundObjectRef.kind" in str(kind.value)


async def test_authenticator_rejects_expired_foreign_and_orphaned_tokens(server: Server) -> None:
    ns = await make_namespace(server.client)
    await server.client.create("serviceaccounts", {"metadata": {"name": "robot"}}, ns)
    now = [time.time()]
    tokens = ServiceAccountTokens(
        server.registry,
        load_public_keys([server.keys.cert]),
        load_signing_key(server.keys.key),
        now=lambda: now[0],
    )
    issued = (await tokens.token_request(ns, "robot", {"spec": {"expirationSeconds": 600}}))["status"]["token"]
    user = await tokens.authenticate_token(issued)
    assert user is not None and user.name == f"system:serviceaccount:{ns}:robot"
    now[0] += 599
    assert await tokens.authenticate_token(issued) is not None
    now[0] += 2
    assert await tokens.authenticate_token(issued) is None, "expired"
    now[0] -= 601

    # the same claims signed with another key
    _, claims = claims_of(issued)
    forged = sign_jwt(claims, load_signing_key(server.foreign.key))
    assert await tokens.authenticate_token(forged) is None
    assert await status_with_token(server.url, forged, "/api/v1/namespaces") == 401
    assert (await review(server.client, forged))["status"]["authenticated"] is False
    # another issuer, or an audience that is not this API server's
    own_key = load_signing_key(server.keys.key)
    assert await tokens.authenticate_token(sign_jwt({**claims, "iss": "https://evil"}, own_key)) is None
    assert await tokens.authenticate_token(sign_jwt({**claims, "aud": ["vault"]}, own_key)) is None
    assert await tokens.authenticate_token(sign_jwt(claims, own_key)) is not None, "the same claims, re-signed, pass"
    assert (await review(server.client, issued, ["vault"]))["status"]["authenticated"] is False
    assert await tokens.authenticate_token("not.a.jwt") is None

    # deleted, and re-created under the same name: the old token names the old uid
    await server.client.delete("serviceaccounts", "robot", ns)
    assert await tokens.authenticate_token(issued) is None
    await server.client.create("serviceaccounts", {"metadata": {"name": "robot"}}, ns)
    assert await tokens.authenticate_token(issued) is None

    # bound to a pod: valid until the pod goes
    created = await server.client.create("pods", pod("p", serviceAccountName="robot"), ns)
    bound = await tokens.token_request(
        ns, "robot", {"spec": {"boundObjectRef": {"kind": "Pod", "name": "p", "uid": created["metadata"]["uid"]}}}
    )
    assert await tokens.authenticate_token(bound["status"]["token"]) is not None
    await server.client.delete("pods", "p", ns, grace_period_seconds=0)
    assert await tokens.authenticate_token(bound["status"]["token"]) is None


async def test_pod_admission_adds_the_token_volume(server: Server) -> None:
    ns = await make_namespace(server.client)
    created = await server.client.create(
        "pods",
        {
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
        ns,
    )
    spec = created["spec"]
    assert spec["serviceAccountName"] == "default"
    volumes = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(volumes) == 1 and len(volumes[0]["name"]) == len("kube-api-access-") + 5
    sources = volumes[0]["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for container in spec["initContainers"] + spec["containers"]:
        assert {"name": volumes[0]["name"], "readOnly": True, "mountPath": TOKEN_MOUNT_PATH} in container[
            "volumeMounts"
        ]

    opted_out = await server.client.create("pods", pod("q", automountServiceAccountToken=False), ns)
    assert opted_out["spec"]["serviceAccountName"] == "default"
    assert not opted_out["spec"].get("volumes")
    await server.client.create(
        "serviceaccounts", {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False}, ns
    )
    quiet = await server.client.create("pods", pod("r", serviceAccountName="quiet"), ns)
    assert not quiet["spec"].get("volumes")
    with pytest.raises(ApiError) as forbidden:
        await server.client.create("pods", pod("s", serviceAccountName="ghost"), ns)
    assert forbidden.value.code == 403
    assert f'error looking up service account {ns}/ghost: serviceaccount "ghost" not found' in str(forbidden.value)


async def test_without_a_signing_key_pods_get_no_token_volume(apiserver: Any) -> None:
    client = apiserver.client
    ns = await make_namespace(client)
    created = await client.create("pods", pod("p"), ns)
    assert created["spec"]["serviceAccountName"] == "default"
    assert not created["spec"].get("volumes")
    await client.create("serviceaccounts", {"metadata": {"name": "default"}}, ns)
    with pytest.raises(ApiError) as err:
        await request_token(client, ns, "default")
    assert err.value.code == 404 and "serviceaccounts/token" in str(err.value)


async def test_bootstrap_tokens_authenticate_until_expired_or_wrong(server: Server) -> None:
    token = f"{uuid.uuid4().hex[:6]}.{uuid.uuid4().hex[:16]}"
    token_id = token.split(".")[0]
    await server.client.create("secrets", token_secret(token, ttl_seconds=3600), "kube-system")
    reviewed = await review(server.client, token)
    assert reviewed["status"]["authenticated"] is True
    assert reviewed["status"]["user"]["username"] == f"system:bootstrap:{token_id}"
    assert set(reviewed["status"]["user"]["groups"]) == {
        "system:bootstrappers",
        "system:bootstrappers:kubeadm:default-node-token",
        "system:authenticated",
    }
    wrong = token_id + "." + "0" * 16
    assert (await review(server.client, wrong))["status"]["authenticated"] is False
    assert await status_with_token(server.url, wrong, "/api/v1/namespaces") == 401
    expired_token = f"{uuid.uuid4().hex[:6]}.{uuid.uuid4().hex[:16]}"
    await server.client.create("secrets", token_secret(expired_token, ttl_seconds=-1), "kube-system")
    assert (await review(server.client, expired_token))["status"]["authenticated"] is False
    with pytest.raises(ValueError, match="bootstrap token"):
        token_secret("not-a-token")


def node_csr(node: str, org: str = "system:nodes") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
        ]
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode()


async def test_csr_records_the_requester_and_approval_changes_only_conditions(server: Server) -> None:
    token = f"{uuid.uuid4().hex[:6]}.{uuid.uuid4().hex[:16]}"
    await server.client.create("secrets", token_secret(token, ttl_seconds=3600), "kube-system")
    name = f"pkt-csr-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "request": node_csr("w9"),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
            "username": "system:node:forged",
            "groups": ["system:masters"],
        },
    }
    async with Client(server.url, token=token) as bootstrap:
        created = await bootstrap.create("certificatesigningrequests", body)
    assert created["spec"]["username"] == f"system:bootstrap:{token.split('.')[0]}"
    assert "system:masters" not in created["spec"]["groups"]
    assert "system:bootstrappers" in created["spec"]["groups"]
    path = resource("certificatesigningrequests").path(None, name, "approval")
    approved = {
        **created,
        "spec": {**created["spec"], "signerName": "changed"},
        "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]},
    }
    stored = await server.client.request("PUT", path, body=approved)
    assert stored["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert [c["type"] for c in stored["status"]["conditions"]] == ["Approved"]
    denied = {**stored, "status": {"conditions": [{"type": "Denied", "status": "True", "reason": "No"}]}}
    with pytest.raises(ApiError) as flip:
        await server.client.request("PUT", path, body=denied)
    assert flip.value.code == 422
    bad = {**body, "metadata": {"name": name + "-bad"}, "spec": {**body["spec"], "request": "bm90IGEgY3Ny"}}
    with pytest.raises(ApiError) as invalid:
        await server.client.create("certificatesigningrequests", bad)
    assert invalid.value.code == 422 and "spec.request" in str(invalid.value)


async def kubectl(server: Server, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """The real kubectl against the in-loop server, without blocking the loop that serves it."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: pkt\n  cluster:\n    server: {server.url}\n"
        "users:\n- name: pkt\n  user: {}\n"
        "contexts:\n- name: pkt\n  context:\n    cluster: pkt\n    user: pkt\n"
        "current-context: pkt\n"
    )
    process = await asyncio.create_subprocess_exec(
        "/usr/bin/kubectl",
        "--kubeconfig",
        str(config),
        "--cache-dir",
        str(tmp_path / "cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_kubectl_create_token_and_certificate_approve(server: Server, tmp_path: Path) -> None:
    ns = await make_namespace(server.client)
    await server.client.create("serviceaccounts", {"metadata": {"name": "robot"}}, ns)
    code, out, err = await kubectl(server, tmp_path, "create", "token", "robot", "-n", ns, "--duration", "20m")
    assert code == 0, err
    _, claims = claims_of(out.strip())
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot" and claims["exp"] - claims["iat"] == 1200
    assert (await review(server.client, out.strip()))["status"]["authenticated"] is True

    name = f"pkt-csr-{uuid.uuid4().hex[:6]}"
    spec = {"request": node_csr("w3"), "signerName": "example.com/manual", "usages": ["client auth"]}
    await server.client.create("certificatesigningrequests", {"metadata": {"name": name}, "spec": spec})
    code, out, err = await kubectl(server, tmp_path, "certificate", "approve", name)
    assert code == 0, err
    conditions = (await server.client.get("certificatesigningrequests", name))["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [("Approved", "True", "KubectlApprove")]
    code, out, err = await kubectl(server, tmp_path, "get", "csr", name)
    assert code == 0 and name in out, err


async def test_kubectl_tables_for_accounts_and_csrs(server: Server, tmp_path: Path) -> None:
    ns = await make_namespace(server.client)
    await server.client.create("serviceaccounts", {"metadata": {"name": "robot"}}, ns)
    code, out, err = await kubectl(server, tmp_path, "get", "serviceaccounts", "-n", ns)
    assert code == 0, err
    assert out.split("\n")[0].split() == ["NAME", "SECRETS", "AGE"] and out.split("\n")[1].split()[:2] == ["robot", "0"]
    name = f"pkt-csr-{uuid.uuid4().hex[:6]}"
    spec = {
        "request": node_csr("w4"),
        "signerName": "example.com/x",
        "usages": ["client auth"],
        "expirationSeconds": 3600,
    }
    await server.client.create("certificatesigningrequests", {"metadata": {"name": name}, "spec": spec})
    code, out, err = await kubectl(server, tmp_path, "get", "csr", name)
    assert code == 0, err
    header, row = out.split("\n")[0].split(), out.split("\n")[1].split()
    assert header == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert row[0] == name and row[2:] == ["example.com/x", "system:anonymous", "60m", "Pending"]
