"""The service account controller and the root CA publisher against a real API server on etcd."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control import pki
from control.api.errors import ApiError
from control.client import Client, Informer
from control.controllers.serviceaccounts import (
    DESCRIPTION_ANNOTATION,
    ROOT_CA_CONFIGMAP,
    RootCAPublisher,
    ServiceAccountsController,
)
from tests.conftest import ApiServer
from tests.controllers.helpers import eventually, make_namespace


async def _get(client: Client, plural: str, name: str, namespace: str | None) -> dict | None:
    try:
        return await client.get(plural, name, namespace)
    except ApiError as err:
        if err.code == 404:
            return None
        raise


@pytest.fixture
def root_ca(tmp_path: Path) -> str:
    return pki.ensure_ca(tmp_path / "pki").paths.cert.read_text()


@pytest.fixture
async def controllers(apiserver: ApiServer, root_ca: str) -> AsyncIterator[None]:
    client = apiserver.client
    namespaces = Informer(client, "namespaces")
    accounts = Informer(client, "serviceaccounts", field_selector="metadata.name=default")
    configmaps = Informer(client, "configmaps", field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
    running = [
        ServiceAccountsController(client, namespaces, accounts),
        RootCAPublisher(client, namespaces, configmaps, root_ca),
    ]
    informers = [namespaces, accounts, configmaps]
    tasks = [asyncio.create_task(i.run()) for i in informers]
    for informer in informers:
        await informer.synced.wait()
    tasks += [asyncio.create_task(c.run(resync_period=60)) for c in running]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_every_namespace_gets_default_account_and_root_ca(
    apiserver: ApiServer, controllers: None, root_ca: str
) -> None:
    client = apiserver.client
    ns = await make_namespace(client)
    account = await eventually(lambda: _get(client, "serviceaccounts", "default", ns), what="default SA")
    configmap = await eventually(lambda: _get(client, "configmaps", ROOT_CA_CONFIGMAP, ns), what="root CA")
    assert configmap["data"] == {"ca.crt": root_ca}
    assert "kube-apiserver" in configmap["metadata"]["annotations"][DESCRIPTION_ANNOTATION]
    for existing in ("default", "kube-system"):
        await eventually(functools.partial(_get, client, "serviceaccounts", "default", existing), what=existing)

    await client.delete("serviceaccounts", "default", ns)

    async def recreated() -> dict | None:
        again = await _get(client, "serviceaccounts", "default", ns)
        return again if again and again["metadata"]["uid"] != account["metadata"]["uid"] else None

    await eventually(recreated, what="default SA re-created after deletion")

    await client.update("configmaps", {**configmap, "data": {"ca.crt": "tampered"}})

    async def restored() -> bool:
        current = await _get(client, "configmaps", ROOT_CA_CONFIGMAP, ns)
        return bool(current and current["data"] == {"ca.crt": root_ca})

    await eventually(restored, what="root CA ConfigMap restored")
    await client.delete("configmaps", ROOT_CA_CONFIGMAP, ns)
    await eventually(restored, what="root CA ConfigMap re-created")


async def test_terminating_namespace_is_left_alone(apiserver: ApiServer, controllers: None) -> None:
    client = apiserver.client
    ns = await make_namespace(client)
    await eventually(lambda: _get(client, "serviceaccounts", "default", ns), what="default SA")
    await client.delete("namespaces", ns)

    async def gone() -> bool:
        return await _get(client, "namespaces", ns, None) is None

    await eventually(gone, timeout=30, what="namespace deleted (nothing re-created in it)")


def test_publisher_wants_a_certificate(apiserver: ApiServer) -> None:
    client = apiserver.client
    with pytest.raises(ValueError, match="--root-ca-file holds no PEM certificate"):
        RootCAPublisher(client, Informer(client, "namespaces"), Informer(client, "configmaps"), "not a cert")
