"""CSR approval and signing: the rules on their own, then both controllers against a real API server."""

from __future__ import annotations

import asyncio
import base64
import datetime
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from control import pki
from control.api.resources import resource
from control.apiserver.bootstraptokens import generate_token, token_secret
from control.client import Client, Informer
from control.controllers.certificates import (
    KUBELET_CLIENT_SIGNER,
    ClusterSigner,
    CSRApprovingController,
    CSRSigningController,
    SigningError,
    approval_reason,
    parse_request,
)
from tests.conftest import ApiServer
from tests.controllers.helpers import eventually

Object = dict[str, Any]


def request_pem(common_name: str, orgs: tuple[str, ...] = ("system:nodes",), sans: tuple[str, ...] = ()) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    return base64.b64encode(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)).decode()


def csr_object(
    request: str,
    *,
    username: str = "",
    groups: tuple[str, ...] = (),
    usages: tuple[str, ...] = ("digital signature", "client auth"),
    signer: str = KUBELET_CLIENT_SIGNER,
    **spec: Any,
) -> Object:
    return {
        "metadata": {"name": f"pkt-csr-{uuid.uuid4().hex[:8]}"},
        "spec": {
            "request": request,
            "signerName": signer,
            "usages": list(usages),
            "username": username,
            "groups": list(groups),
            **spec,
        },
    }


@pytest.fixture
def ca(tmp_path: Path) -> pki.CA:
    return pki.ensure_ca(tmp_path / "pki")


@pytest.fixture
def signer(ca: pki.CA) -> ClusterSigner:
    return ClusterSigner.from_files(ca.paths.cert, ca.paths.key, 24 * 3600)


def test_approval_rules() -> None:
    node = request_pem("system:node:w1")

    def reason(obj: Object) -> str | None:
        return approval_reason(obj, parse_request(obj))

    bootstrapper = ("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated")
    assert reason(csr_object(node, username="system:bootstrap:abcdef", groups=bootstrapper)) == (
        "Auto approving kubelet client certificate after SubjectAccessReview."
    )
    assert reason(csr_object(node, username="system:node:w1", groups=("system:nodes",))) == (
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    )
    assert reason(csr_object(node, username="system:node:w2", groups=("system:nodes",))) is None, "not its own"
    assert reason(csr_object(node, username="jane", groups=("system:authenticated",))) is None
    assert reason(csr_object(request_pem("system:node:w1", ("system:masters",)), groups=bootstrapper)) is None
    assert reason(csr_object(request_pem("system:node:w1", sans=("w1",)), groups=bootstrapper)) is None
    assert reason(csr_object(request_pem("jane", ()), groups=bootstrapper)) is None
    assert reason(csr_object(node, groups=bootstrapper, usages=("server auth",))) is None
    assert reason(csr_object(node, groups=bootstrapper, signer="kubernetes.io/kubelet-serving")) is None


def test_signing_follows_the_request_and_the_ca(ca: pki.CA, signer: ClusterSigner) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)  # certificates carry whole seconds
    obj = csr_object(request_pem("system:node:w1"), expirationSeconds=3600)
    certificate = x509.load_pem_x509_certificate(signer.sign(obj, now).encode())
    certificate.verify_directly_issued_by(ca.certificate)
    assert pki.subject_of(certificate) == ("system:node:w1", ("system:nodes",))
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate.not_valid_after_utc - now == datetime.timedelta(seconds=3600)
    longer = x509.load_pem_x509_certificate(signer.sign(csr_object(request_pem("system:node:w1")), now).encode())
    assert longer.not_valid_after_utc - now == datetime.timedelta(hours=24), "capped by --cluster-signing-duration"
    with pytest.raises(SigningError, match="organization"):
        signer.sign(csr_object(request_pem("system:node:w1", ("system:masters",))))
    with pytest.raises(SigningError, match="subject alternative names"):
        signer.sign(csr_object(request_pem("system:node:w1", sans=("w1",))))
    with pytest.raises(SigningError, match="not a subset"):
        signer.sign(csr_object(request_pem("system:node:w1"), usages=("server auth",)))
    with pytest.raises(SigningError, match="not one this controller signs"):
        signer.sign(csr_object(request_pem("system:node:w1"), signer="example.com/other"))


def test_signer_files_are_checked(ca: pki.CA, tmp_path: Path) -> None:
    other = pki.ensure_ca(tmp_path / "other")
    with pytest.raises(ValueError, match="does not belong to"):
        ClusterSigner.from_files(ca.paths.cert, other.paths.key, 3600)
    with pytest.raises(ValueError, match="--cluster-signing-cert-file"):
        ClusterSigner.from_files(tmp_path / "missing.crt", ca.paths.key, 3600)


@pytest.fixture
async def controllers(apiserver: ApiServer, signer: ClusterSigner) -> AsyncIterator[None]:
    client = apiserver.client
    csrs = Informer(client, "certificatesigningrequests")
    task = asyncio.create_task(csrs.run())
    await csrs.synced.wait()
    running = [CSRApprovingController(client, csrs), CSRSigningController(client, csrs, signer)]
    tasks = [task] + [asyncio.create_task(c.run(resync_period=60)) for c in running]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _condition(csr: Object, kind: str) -> Object | None:
    return next((c for c in (csr.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


async def test_a_joining_node_gets_its_certificate(apiserver: ApiServer, controllers: None, ca: pki.CA) -> None:
    client = apiserver.client
    token = generate_token()
    await client.create("secrets", token_secret(token, ttl_seconds=600), "kube-system")
    body = csr_object(request_pem("system:node:w7"))
    async with Client(apiserver.url, token=token) as joining:
        await joining.create("certificatesigningrequests", body)
    name = body["metadata"]["name"]

    async def signed() -> Object | None:
        csr = await client.get("certificatesigningrequests", name)
        return csr if (csr.get("status") or {}).get("certificate") else None

    csr = await eventually(signed, what="CSR approved and signed")
    approved = _condition(csr, "Approved")
    assert approved is not None and approved["reason"] == "AutoApproved"
    certificate = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    certificate.verify_directly_issued_by(ca.certificate)
    assert pki.subject_of(certificate) == ("system:node:w7", ("system:nodes",))


async def test_other_requests_wait_for_a_human_and_bad_ones_fail(apiserver: ApiServer, controllers: None) -> None:
    client = apiserver.client
    anonymous = csr_object(request_pem("system:node:w8"))  # the plain-HTTP test server's caller: system:anonymous
    await client.create("certificatesigningrequests", anonymous)
    bad = csr_object(request_pem("system:node:w8"), usages=("digital signature", "server auth"))
    created = await client.create("certificatesigningrequests", bad)
    approval = {
        **created,
        "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Admin", "message": "by hand"}]},
    }
    path = resource("certificatesigningrequests").path(None, created["metadata"]["name"], "approval")
    await client.request("PUT", path, body=approval)

    async def failed() -> Object | None:
        csr = await client.get("certificatesigningrequests", created["metadata"]["name"])
        return _condition(csr, "Failed")

    condition = await eventually(failed, what="signer marks the bad request Failed")
    assert condition["reason"] == "SignerValidationFailure" and "not a subset" in condition["message"]
    waiting = await client.get("certificatesigningrequests", anonymous["metadata"]["name"])
    assert not (waiting.get("status") or {}).get("conditions"), "an anonymous request is never auto-approved"
    assert not (waiting.get("status") or {}).get("certificate")
