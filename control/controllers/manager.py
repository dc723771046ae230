"""The controller manager: shared informers and every controller in one process."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from control.client import Client, Informer
from control.clock import Clock, RealClock
from control.controllers.base import Controller
from control.controllers.bootstraptokens import FIELD_SELECTOR as BOOTSTRAP_TOKENS, TokenCleaner
from control.controllers.certificates import ClusterSigner, CSRApprovingController, CSRSigningController
from control.controllers.deployment import DeploymentController
from control.controllers.endpoints import EndpointsController
from control.controllers.endpointslice import EndpointSliceController
from control.controllers.garbagecollector import GarbageCollector
from control.controllers.hpa import ApiPodMetricsSource, HorizontalController, HpaSettings
from control.controllers.loadbalancer import DEFAULT_POOL, LoadBalancerController, parse_pool
from control.controllers.nodeipam import NodeIpamController
from control.controllers.nodelifecycle import (
    DEFAULT_EVICTION_TIMEOUT,
    DEFAULT_GRACE,
    DEFAULT_MONITOR_PERIOD,
    LEASE_NAMESPACE,
    NodeLifecycleController,
)
from control.controllers.replicaset import ReplicaSetController
from control.controllers.serviceaccounts import (
    DEFAULT_SERVICE_ACCOUNT,
    ROOT_CA_CONFIGMAP,
    RootCAPublisher,
    ServiceAccountsController,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    node_monitor_grace_period: float = DEFAULT_GRACE
    pod_eviction_timeout: float = DEFAULT_EVICTION_TIMEOUT
    node_monitor_period: float = DEFAULT_MONITOR_PERIOD
    resync_period: float = 30.0
    load_balancer_pool: str = DEFAULT_POOL
    hpa: HpaSettings = HpaSettings()
    root_ca: str = ""  # --root-ca-file's PEM, published as kube-root-ca.crt; "" publishes nothing
    signer: ClusterSigner | None = None  # --cluster-signing-cert-file/-key-file; None signs no CSRs


class ControllerManager:
    """Builds the informers once and hands them to each controller, as kube-controller-manager's shared factory does."""

    def __init__(self, client: Client, settings: Settings, clock: Clock | None = None):
        self.client = client
        self.settings = settings
        self.informers = {
            plural: Informer(client, plural)
            for plural in (
                "pods",
                "nodes",
                "services",
                "endpoints",
                "endpointslices",
                "replicasets",
                "deployments",
                "horizontalpodautoscalers",
            )
        }
        self.informers["leases"] = Informer(client, "leases", LEASE_NAMESPACE)
        self.informers["namespaces"] = Informer(client, "namespaces")
        self.informers["serviceaccounts"] = Informer(
            client, "serviceaccounts", field_selector=f"metadata.name={DEFAULT_SERVICE_ACCOUNT}"
        )
        self.informers["certificatesigningrequests"] = Informer(client, "certificatesigningrequests")
        self.informers["secrets"] = Informer(client, "secrets", "kube-system", field_selector=BOOTSTRAP_TOKENS)
        if settings.root_ca:
            self.informers["configmaps"] = Informer(
                client, "configmaps", field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}"
            )
        inf = self.informers
        # The node IPAM controller validates the CIDR flags, so it is built first.
        self.controllers: list[Controller] = [
            NodeIpamController(client, inf["nodes"], settings.cluster_cidr, settings.node_cidr_mask_size),
            ReplicaSetController(client, inf["replicasets"], inf["pods"], clock=clock),
            DeploymentController(client, inf["deployments"], inf["replicasets"]),
            EndpointsController(client, inf["services"], inf["pods"], inf["endpoints"]),
            EndpointSliceController(client, inf["services"], inf["pods"], inf["endpoints"], inf["endpointslices"]),
            GarbageCollector(
                client,
                {p: inf[p] for p in ("deployments", "replicasets", "pods")},
                dependents=("replicasets", "pods"),
            ),
            LoadBalancerController(client, inf["services"], parse_pool(settings.load_balancer_pool)),
            ServiceAccountsController(client, inf["namespaces"], inf["serviceaccounts"]),
            CSRApprovingController(client, inf["certificatesigningrequests"]),
            TokenCleaner(client, inf["secrets"]),
        ]
        if settings.root_ca:
            self.controllers.append(RootCAPublisher(client, inf["namespaces"], inf["configmaps"], settings.root_ca))
        if settings.signer is not None:
            self.controllers.append(CSRSigningController(client, inf["certificatesigningrequests"], settings.signer))
        self.node_lifecycle = NodeLifecycleController(
            client,
            inf["nodes"],
            inf["leases"],
            inf["pods"],
            grace=settings.node_monitor_grace_period,
            eviction_timeout=settings.pod_eviction_timeout,
            monitor_period=settings.node_monitor_period,
            clock=clock or RealClock(),
        )
        self.hpa = HorizontalController(
            client, inf["horizontalpodautoscalers"], inf["pods"], ApiPodMetricsSource(client), settings.hpa, clock=clock
        )
        self.tasks: list[asyncio.Task[None]] = []

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers.values())

    def healthy(self) -> bool:
        return bool(self.tasks) and not any(t.done() for t in self.tasks)

    async def run(self) -> None:
        """Run until cancelled; a crashed controller ends the whole manager (and /healthz says so first)."""
        self.tasks = [asyncio.create_task(i.run(), name=f"informer-{p}") for p, i in self.informers.items()]
        try:
            for informer in self.informers.values():
                await informer.synced.wait()
            self.tasks += [
                asyncio.create_task(c.run(self.settings.resync_period), name=c.name) for c in self.controllers
            ]
            self.tasks.append(asyncio.create_task(self.node_lifecycle.run(), name=self.node_lifecycle.name))
            # HPAs resync on their own period (--horizontal-pod-autoscaler-sync-period), not the manager's.
            self.tasks.append(asyncio.create_task(self.hpa.run(self.settings.hpa.sync_period), name=self.hpa.name))
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
