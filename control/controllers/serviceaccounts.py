"""Every namespace gets a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap.

Two controllers, as in kube-controller-manager: the service account
controller (re-creates `default` whenever it is missing) and the root CA
publisher (keeps `kube-root-ca.crt` holding the cluster CA under `ca.crt`,
which the kubelet projects into every pod next to its token).  Both are
keyed by namespace and skip namespaces that are terminating.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from control.api.errors import ApiError
from control.client import Client, Informer, Object, name_of, namespace_of
from control.controllers.base import Controller

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the "
    "internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters."
)


def _terminating(namespace: Object | None) -> bool:
    return namespace is None or bool(namespace.get("metadata", {}).get("deletionTimestamp")) or (
        namespace.get("status") or {}
    ).get("phase") == "Terminating"


def _ignorable(err: ApiError) -> bool:
    """Someone made it first (409), or the namespace is going away (403 terminating, 404)."""
    return err.code in (403, 404, 409)


class ServiceAccountsController(Controller):
    """Creates the `default` ServiceAccount in every namespace (and again after it is deleted)."""

    name = "serviceaccount"

    def __init__(self, client: Client, namespaces: Informer, accounts: Informer):
        super().__init__()
        self.client = client
        self.namespaces = namespaces
        self.accounts = accounts
        namespaces.add_handler(self._on_namespace)
        accounts.add_handler(self._on_account)

    def all_keys(self) -> Iterable[str]:
        return [name_of(ns) for ns in self.namespaces.items()]

    def _on_namespace(self, kind: str, namespace: Object, _prev: Object | None) -> None:
        if kind != "DELETED":
            self.queue.add(name_of(namespace))

    def _on_account(self, kind: str, account: Object, _prev: Object | None) -> None:
        if kind == "DELETED" and name_of(account) == DEFAULT_SERVICE_ACCOUNT:
            self.queue.add(namespace_of(account) or "")

    async def sync(self, key: str) -> None:
        if _terminating(self.namespaces.get(key)) or self.accounts.get(DEFAULT_SERVICE_ACCOUNT, key) is not None:
            return
        try:
            await self.client.create("serviceaccounts", {"metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}, key)
            log.info("namespace %s: created ServiceAccount %s", key, DEFAULT_SERVICE_ACCOUNT)
        except ApiError as err:
            if not _ignorable(err):
                raise


class RootCAPublisher(Controller):
    """Keeps `kube-root-ca.crt` in every namespace holding the cluster CA bundle (`--root-ca-file`)."""

    name = "root-ca-cert-publisher"

    def __init__(self, client: Client, namespaces: Informer, configmaps: Informer, root_ca: str):
        super().__init__()
        if "BEGIN CERTIFICATE" not in root_ca:
            raise ValueError("--root-ca-file holds no PEM certificate")
        self.client = client
        self.namespaces = namespaces
        self.configmaps = configmaps
        self.root_ca = root_ca
        namespaces.add_handler(self._on_namespace)
        configmaps.add_handler(self._on_configmap)

    def all_keys(self) -> Iterable[str]:
        return [name_of(ns) for ns in self.namespaces.items()]

    def _on_namespace(self, kind: str, namespace: Object, _prev: Object | None) -> None:
        if kind != "DELETED":
            self.queue.add(name_of(namespace))

    def _on_configmap(self, _kind: str, configmap: Object, _prev: Object | None) -> None:
        if name_of(configmap) == ROOT_CA_CONFIGMAP:
            self.queue.add(namespace_of(configmap) or "")

    async def sync(self, key: str) -> None:
        if _terminating(self.namespaces.get(key)):
            return
        current = self.configmaps.get(ROOT_CA_CONFIGMAP, key)
        data = {ROOT_CA_KEY: self.root_ca}
        try:
            if current is None:
                configmap = {
                    "metadata": {
                        "name": ROOT_CA_CONFIGMAP,
                        "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION},
                    },
                    "data": data,
                }
                await self.client.create("configmaps", configmap, key)
                log.info("namespace %s: published %s", key, ROOT_CA_CONFIGMAP)
            elif current.get("data") != data:
                fixed = {k: v for k, v in current.items() if k != "binaryData"}
                await self.client.update("configmaps", {**fixed, "data": data})
                log.info("namespace %s: updated %s", key, ROOT_CA_CONFIGMAP)
        except ApiError as err:
            if not _ignorable(err):
                raise
