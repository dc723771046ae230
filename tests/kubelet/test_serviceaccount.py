"""The kubelet's projected token volume against a real API server: files, token validity, refresh at 80%."""

from __future__ import annotations

import stat
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

import pytest

from control.api.errors import ApiError
from control.client import Client
from kubelet.serviceaccount import ProjectedVolumes
from kubelet.volumes import VolumeError, prepare_volumes
from tests.conftest import EtcdServer
from tests.control.sa_apiserver import keyed_apiserver

CA_PEM = "-----BEGIN CERTIFICATE-----\nnot checked by the kubelet\n-----END CERTIFICATE-----\n"


async def _fetch(client: Client, namespace: str, plural: str, name: str) -> dict[str, str] | None:
    try:
        return dict((await client.get(plural, name, namespace)).get("data") or {})
    except ApiError as err:
        if err.code == 404:
            return None
        raise


async def _review(client: Client, token: str) -> dict:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    result: dict = await client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
    return result["status"]


async def test_projected_volume_holds_token_ca_and_namespace_and_refreshes(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    async with keyed_apiserver(etcd_server.url, tmp_path) as server, Client(server.url) as client:
        ns = f"pkt-kt-{uuid.uuid4().hex[:8]}"
        await client.create("namespaces", {"metadata": {"name": ns}})
        await client.create("serviceaccounts", {"metadata": {"name": "default"}}, ns)
        await client.create("configmaps", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": CA_PEM}}, ns)
        pod = await client.create(
            "pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, ns
        )
        now = [time.time()]
        projected = ProjectedVolumes(client, now=lambda: now[0])
        paths = await prepare_volumes(
            pod, tmp_path / "pod", lambda plural, name: _fetch(client, ns, plural, name), projected
        )
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
        directory = paths[volume["name"]]
        assert (directory / "ca.crt").read_text() == CA_PEM
        assert (directory / "namespace").read_text() == ns
        first = (directory / "token").read_text()
        assert stat.S_IMODE((directory / "token").stat().st_mode) == 0o644
        reviewed = await _review(client, first)
        assert reviewed["authenticated"] and reviewed["user"]["username"] == f"system:serviceaccount:{ns}:default"
        assert reviewed["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]

        now[0] += 0.79 * 3607
        await projected.refresh(pod)
        assert (directory / "token").read_text() == first, "not yet at 80% of its lifetime"
        now[0] += 0.02 * 3607
        await projected.refresh(pod)
        second = (directory / "token").read_text()
        assert second != first
        assert (await _review(client, second))["authenticated"]

        projected.forget(pod["metadata"]["uid"])
        now[0] += 3607
        await projected.refresh(pod)
        assert (directory / "token").read_text() == second, "a forgotten pod's token is left alone"


async def test_token_request_failure_names_the_account(etcd_server: EtcdServer, tmp_path: Path) -> None:
    async with keyed_apiserver(etcd_server.url, tmp_path) as server, Client(server.url) as client:
        ns = f"pkt-kt-{uuid.uuid4().hex[:8]}"
        await client.create("namespaces", {"metadata": {"name": ns}})
        pod = await client.create(  # admitted while `default` does not exist yet (no controller manager here)
            "pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, ns
        )
        projected = ProjectedVolumes(client)

        def fetch(plural: str, name: str) -> Awaitable[dict[str, str] | None]:
            return _fetch(client, ns, plural, name)

        with pytest.raises(VolumeError, match='failed to fetch token for service account "default"'):
            await prepare_volumes(pod, tmp_path / "pod", fetch, projected)
        unsupported = {"name": "v", "projected": {"sources": [{"clusterTrustBundle": {}}]}}
        with pytest.raises(VolumeError, match="projected source"):
            await projected.project(pod, unsupported, tmp_path / "v", fetch)
