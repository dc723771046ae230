"""Pod workers: make the containers of each pod bound to this node match its spec, and report its status.

One asyncio task per pod runs `sync_pod` whenever the pod changes and once a
`resync_period` (to notice containers that exited).  A pod is a sandbox
container (the network namespace) plus its app containers joined to it;
every decision is taken from what the runtime reports, so a restarted
kubelet adopts running pods instead of recreating them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

from control.api.errors import ApiError
from control.clock import Clock
from kubelet import metrics
from kubelet.dns import DNSConfigError, pod_hostname, pod_hosts, pod_resolv_conf
from kubelet.envvars import EnvError, container_env, referenced_sources
from kubelet.probes import ProbeManager
from control.api.quantity import milli_value, whole_value
from kubelet.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    LABEL_TYPE,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    ImageNeverPull,
    ImageNotFound,
    ImagePullError,
    Mount,
    RuntimeFailure,
)
from control.api.timestamps import now_rfc3339
from control.events import NORMAL, WARNING, EventRecorder
from kubelet.status import ContainerView, pod_status, restart_wanted
from kubelet.serviceaccount import ProjectedVolumes
from kubelet.volumes import container_mounts, prepare_volumes

log = logging.getLogger(__name__)

Object = dict[str, Any]
CPU_PERIOD = 100_000  # microseconds, as the kubelet sets it
MIN_CPU_SHARES = 2
DEFAULT_GRACE_SECONDS = 30
MIN_GRACE_AFTER_HOOK = 2  # seconds SIGTERM still gets when a preStop hook used up the grace period
LABEL_SANDBOX_ATTEMPT = "io.kubernetes.sandbox.attempt"


class PodApi(Protocol):
    """The calls the workers make to the API server (`control.client.Client` has them)."""

    async def get(self, plural: str, name: str, namespace: str | None = None) -> Object: ...

    async def update_status(self, plural: str, obj: Object) -> Object: ...

    async def delete(
        self, plural: str, name: str, namespace: str | None = None, *, grace_period_seconds: int | None = None
    ) -> Object: ...

    async def create(self, plural: str, obj: Object, namespace: str | None = None) -> Object: ...

    async def patch(self, plural: str, name: str, patch: Any, namespace: str | None = None) -> Object: ...

    async def request(self, method: str, path: str, *, body: Any = None) -> Any: ...


class PodNetwork(Protocol):
    """What the workers need from the node's pod network (`kubelet.network.NodeNetwork`)."""

    async def setup_pod(self, pod_uid: str, sandbox_pid: int) -> str: ...

    async def teardown_pod(self, pod_uid: str) -> None: ...

    def pod_ip(self, pod_uid: str) -> str | None: ...

    def allocated_pods(self) -> set[str]: ...


@dataclass
class NodeSettings:
    """The node-level settings the pod workers apply to every pod."""

    node_name: str
    node_ip: str
    root_dir: Path
    cluster_dns: list[str]
    cluster_domain: str = "cluster.local"
    node_resolv_conf: str | None = None  # content of --resolv-conf; None when the flag is empty
    infra_image: str = "pocketkube/pause:latest"
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    allocatable: dict[str, str] = field(default_factory=dict)  # the Node's, for resourceFieldRef of unset limits
    resync_period: float = 1.0
    housekeeping_period: float = 10.0


def go_duration(seconds: float) -> str:
    """Seconds as Go prints a time.Duration (10s, 1m20s, 5m0s), for messages Kubernetes users know."""
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class _BackoffEntry:
    delay: float
    updated: float


class Backoff:
    """Kubernetes' per-container restart backoff: initial delay, doubling to a cap, forgotten after 2x the cap."""

    def __init__(self, clock: Clock, initial: float, maximum: float):
        self.clock, self.initial, self.maximum = clock, initial, maximum
        self._entries: dict[str, _BackoffEntry] = {}

    def _live(self, key: str) -> _BackoffEntry | None:
        entry = self._entries.get(key)
        if entry is not None and self.clock.now() - entry.updated > 2 * self.maximum:
            del self._entries[key]
            return None
        return entry

    def remaining(self, key: str, since: float) -> float:
        """Seconds still to wait after an event at `since` (0 when a retry may go now)."""
        entry = self._live(key)
        return 0.0 if entry is None else max(0.0, since + entry.delay - self.clock.now())

    def delay(self, key: str) -> float:
        entry = self._live(key)
        return self.initial if entry is None else entry.delay

    def next(self, key: str) -> None:
        """Record a retry: the first uses the initial delay, each further one doubles it."""
        entry = self._live(key)
        delay = self.initial if entry is None else min(entry.delay * 2, self.maximum)
        self._entries[key] = _BackoffEntry(delay, self.clock.now())

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def default_pull_policy(image: str) -> str:
    """Kubernetes' default: Always for `:latest` or untagged images, else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.split("/")[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


class ResourceSettings(TypedDict, total=False):
    memory_limit: int
    cpu_quota: int
    cpu_period: int
    cpu_shares: int


def resource_settings(container: Object) -> ResourceSettings:
    """Docker's memory limit, CPU quota/period and shares from the container's resources."""
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    settings: ResourceSettings = {}
    if "memory" in limits:
        settings["memory_limit"] = whole_value(limits["memory"])
    if "cpu" in limits:
        settings["cpu_quota"] = max(1000, milli_value(limits["cpu"]) * CPU_PERIOD // 1000)
        settings["cpu_period"] = CPU_PERIOD
    cpu_request = requests.get("cpu", limits.get("cpu"))
    shares = milli_value(cpu_request) * 1024 // 1000 if cpu_request is not None else 0
    settings["cpu_shares"] = max(MIN_CPU_SHARES, shares)
    return settings


def _grace_of(pod: Object) -> int:
    """The pod's terminationGracePeriodSeconds (default 30)."""
    value = pod.get("spec", {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if value is None else int(value)


def pod_labels(pod: Object) -> dict[str, str]:
    meta = pod["metadata"]
    return {LABEL_POD_UID: meta["uid"], LABEL_POD_NAME: meta["name"], LABEL_POD_NAMESPACE: meta.get("namespace", "")}


def describe(pod: Object) -> str:
    """`name_namespace(uid)`, as the kubelet names pods in messages."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace', '')}({meta['uid']})"


def _revision(obj: Object) -> int | None:
    """metadata.resourceVersion as a number (pocketkube's are etcd revisions), or None."""
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


@dataclass
class _Written:
    """The last status this kubelet wrote for a pod, and what the API server stored."""

    computed: Object
    stored: Object | None
    revision: int | None

    def overwritten_in(self, pod: Object) -> bool:
        """Whether `pod` (from the informer) carries a newer status than ours, written by someone else."""
        revision = _revision(pod)
        if revision is None or self.revision is None or revision <= self.revision:
            return False  # our write, or an older copy the informer has not caught up from
        return pod.get("status") != self.stored


class PodWorkers:
    """Runs every pod bound to this node."""

    def __init__(
        self,
        api: PodApi,
        runtime: ContainerRuntime,
        network: PodNetwork,
        settings: NodeSettings,
        services: Callable[[], Iterable[Object]],
        clock: Clock,
    ):
        self.api, self.runtime, self.network, self.settings = api, runtime, network, settings
        self.services, self.clock = services, clock
        self.backoff = Backoff(clock, settings.backoff_initial, settings.backoff_max)
        self.probes = ProbeManager(runtime, clock, self._probe_failed)
        self.events = EventRecorder(api, "kubelet", host=settings.node_name)
        self.projected = ProjectedVolumes(api)
        self._reported: dict[str, tuple[str, str]] = {}  # uid/container -> (container id, waiting reason) last told
        self._pods: dict[str, Object] = {}
        self._gone: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._first_seen: dict[str, float] = {}
        self._start_time: dict[str, str] = {}
        self._started: set[str] = set()
        self._exit_seen: dict[str, float] = {}
        self._written: dict[str, _Written] = {}
        self._pull_failed: dict[str, tuple[float, str]] = {}  # uid/container -> (when, why) of the last failed pull

    # -- feeding pods in ---------------------------------------------------

    def update(self, pod: Object) -> None:
        """A pod bound to this node was added or changed."""
        uid = pod["metadata"]["uid"]
        self._pods[uid] = pod
        self._kick(uid)

    def remove(self, pod: Object) -> None:
        """A pod vanished from the API: stop and clean up what it left."""
        uid = pod["metadata"]["uid"]
        self._pods[uid] = pod
        self._gone.add(uid)
        self._kick(uid)

    def _kick(self, uid: str) -> None:
        task = self._workers.get(uid)
        if task is None or task.done():
            self._wake[uid] = asyncio.Event()
            self._workers[uid] = asyncio.create_task(self._work(uid), name=f"pod-{uid}")
        else:
            self._wake[uid].set()

    def known_pods(self) -> dict[str, Object]:
        return {uid: pod for uid, pod in self._pods.items() if uid not in self._gone}

    async def _work(self, uid: str) -> None:
        wake = self._wake[uid]
        while True:
            wake.clear()
            pod = self._pods[uid]
            try:
                if uid in self._gone:
                    await self.terminate_pod(pod, delete_from_api=False)
                    break
                if await self.sync_pod(pod):
                    break
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.POD_WORKER_ERRORS.inc()
                log.exception("sync of pod %s failed", describe(pod))
            await self._wait(wake, self.settings.resync_period)
        if self._pods.get(uid) is pod:
            del self._pods[uid], self._workers[uid], self._wake[uid]
            self._gone.discard(uid)
        else:  # news arrived while this worker was finishing: a fresh worker handles it once this one is done
            asyncio.get_running_loop().call_soon(self._kick, uid)

    async def _wait(self, wake: asyncio.Event, seconds: float) -> None:
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self.clock.sleep(seconds))}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def close(self) -> None:
        """Stop the workers (the containers keep running, to be adopted by the next kubelet)."""
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    # -- one sync ----------------------------------------------------------

    def pod_dir(self, uid: str) -> Path:
        return self.settings.root_dir / "pods" / uid

    async def sync_pod(self, pod: Object) -> bool:
        """Bring one pod one step closer to its spec and write its status; True once it is gone for good."""
        meta = pod["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            await self.terminate_pod(pod, delete_from_api=True)
            return True
        self._first_seen.setdefault(uid, self.clock.now())
        start_time = (pod.get("status") or {}).get("startTime") or self._start_time.setdefault(uid, now_rfc3339())
        self._start_time[uid] = start_time
        sandboxes, instances = await self._containers_of(uid)
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        specs = pod.get("spec", {}).get("containers") or []
        init_specs = pod.get("spec", {}).get("initContainers") or []
        pod_ip = self.network.pod_ip(uid) or ""
        if pod.get("spec", {}).get("hostNetwork"):
            pod_ip = self.settings.node_ip
        if terminal:  # a finished pod is never started again; it only gives back its sandbox and address
            views = [self._view_of(spec, instances.get(spec["name"], [])) for spec in specs]
            init_views = [self._view_of(spec, instances.get(spec["name"], [])) for spec in init_specs]
            await self._stop_sandbox(pod, sandboxes)
            pod_ip = pod_ip or (pod.get("status") or {}).get("podIP", "")
        else:
            init_views, views, pod_ip = await self._run_pod(pod, sandboxes, instances, pod_ip)
            await self.projected.refresh(pod)
        status = pod_status(
            pod,
            views,
            init_views=init_views,
            pod_ip=pod_ip,
            host_ip=self.settings.node_ip,
            start_time=start_time,
            now=now_rfc3339(),
        )
        if uid not in self._started and views and all(v.current is not None and v.current.running for v in views):
            self._started.add(uid)
            metrics.POD_START_DURATION.observe(self.clock.now() - self._first_seen[uid])
        await self._report_changes(pod, init_views + views)
        await self._write_status(pod, status)
        return False

    async def _run_pod(
        self,
        pod: Object,
        sandboxes: list[ContainerState],
        instances: dict[str, list[ContainerState]],
        pod_ip: str,
    ) -> tuple[list[ContainerView], list[ContainerView], str]:
        """Sandbox up, then init containers one at a time to success, then the app containers (with probes)."""
        sandbox = sandboxes[-1] if sandboxes else None
        config_error = ""
        if sandbox is not None and sandbox.running and not pod_ip:
            # a sandbox whose network setup failed half-way is not repaired but replaced, as Kubernetes does
            log.warning("pod %s: sandbox %s has no pod IP; replacing it", describe(pod), sandbox.id[:12])
            await self.runtime.stop_container(sandbox.id, 0)
            sandbox = await self.runtime.inspect(sandbox.id)
        if sandbox is None or not sandbox.running:
            try:
                sandbox, pod_ip = await self._start_sandbox(pod, sandbox, instances)
                _, instances = await self._containers_of(pod["metadata"]["uid"])  # the old sandbox's were stopped
            except Exception as err:  # runtime, network or DNS config: reported on the pod, retried next sync
                metrics.RUNTIME_OPERATION_ERRORS.labels("run_sandbox").inc()
                log.warning("pod %s: sandbox: %s", describe(pod), err)
                sandbox, config_error = None, f"failed to set up the pod sandbox: {err}"

        if sandbox is not None:
            await self._remove_old_sandboxes(sandboxes, sandbox)

        def held_back(spec: Object) -> ContainerView:
            view = self._view_of(spec, instances.get(spec["name"], []))
            view.waiting_reason = "ContainerCreating" if sandbox is None else "PodInitializing"
            view.waiting_message = config_error
            return view

        init_views, views, initialized = [], [], True
        init_policy = "Never" if pod.get("spec", {}).get("restartPolicy") == "Never" else "OnFailure"
        for spec in pod.get("spec", {}).get("initContainers") or []:
            if sandbox is None or not initialized:
                init_views.append(held_back(spec))
                continue
            view = await self._sync_container(pod, spec, instances.get(spec["name"], []), sandbox, pod_ip, init_policy)
            current = view.current
            initialized = current is not None and current.status == "exited" and current.exit_code == 0
            initialized = initialized and not view.waiting_reason
            init_views.append(view)
        for spec in pod.get("spec", {}).get("containers") or []:
            if sandbox is None or not initialized:
                views.append(held_back(spec))
                continue
            view = await self._sync_container(pod, spec, instances.get(spec["name"], []), sandbox, pod_ip)
            await self._probe(pod, view, pod_ip)
            views.append(view)
        return init_views, views, pod_ip

    async def _remove_old_sandboxes(self, sandboxes: list[ContainerState], current: ContainerState) -> None:
        """Remove dead sandboxes but the newest, as Kubernetes' container GC does, so reboots leave no pile.

        The newest dead one stays: the previous containers (kept for `logs --previous`) were in it.
        """
        dead = [s for s in sandboxes if s.id != current.id and not s.running]
        for old in dead[:-1]:
            await self.runtime.remove_container(old.id)

    async def _report_changes(self, pod: Object, views: list[ContainerView]) -> None:
        """Events for what changed since the last sync: a container started, or began waiting for a reason."""
        for view in views:
            key = f"{pod['metadata']['uid']}/{view.spec['name']}"
            current_id = view.current.id if view.current is not None and view.current.running else ""
            seen = (current_id, view.waiting_reason)
            before = self._reported.get(key, ("", ""))
            self._reported[key] = seen
            name = view.spec["name"]
            if current_id and current_id != before[0]:
                await self.events.record("pods", pod, NORMAL, "Created", f"Created container {name}")
                await self.events.record("pods", pod, NORMAL, "Started", f"Started container {name}")
            if view.waiting_reason and view.waiting_reason != before[1]:
                if view.waiting_reason == "CrashLoopBackOff":
                    message = f"Back-off restarting failed container {name} in pod {describe(pod)}"
                    await self.events.record("pods", pod, WARNING, "BackOff", message)
                elif view.waiting_reason not in ("ContainerCreating", "PodInitializing"):
                    message = f"Error: {view.waiting_reason}: {view.waiting_message}".rstrip(": ")
                    await self.events.record("pods", pod, WARNING, "Failed", message)

    async def _containers_of(self, uid: str) -> tuple[list[ContainerState], dict[str, list[ContainerState]]]:
        """The pod's sandboxes (oldest first) and its app containers by name (lowest restart count first)."""
        containers = await self.runtime.list_containers({LABEL_POD_UID: uid})
        sandboxes = sorted(
            (c for c in containers if c.labels.get(LABEL_TYPE) == TYPE_SANDBOX),
            key=lambda c: int(c.labels.get(LABEL_SANDBOX_ATTEMPT, "0")),
        )
        instances: dict[str, list[ContainerState]] = {}
        for state in containers:
            if state.labels.get(LABEL_TYPE) == TYPE_CONTAINER:
                instances.setdefault(state.labels.get(LABEL_CONTAINER_NAME, ""), []).append(state)
        for found in instances.values():
            found.sort(key=lambda s: s.restart_count)
        return sandboxes, instances

    def _view_of(self, spec: Object, found: list[ContainerState]) -> ContainerView:
        return ContainerView(spec, found[-1] if found else None, found[-2] if len(found) > 1 else None)

    async def _probe(self, pod: Object, view: ContainerView, pod_ip: str) -> None:
        """Startup, then liveness (a failing container is stopped, to be restarted by policy), then readiness."""
        current = view.current
        if current is None or not current.running or view.waiting_reason:
            return
        startup = await self.probes.startup(view.spec, current, pod_ip)
        view.startup_done = startup == "started"
        if startup == "starting":
            return
        if startup == "failed" or not await self.probes.alive(view.spec, current, pod_ip):
            probe = "startup" if startup == "failed" else "liveness"
            log.info("pod %s: container %s failed its %s probe", describe(pod), view.spec["name"], probe)
            message = f"Container {view.spec['name']} failed {probe} probe, will be restarted"
            await self._kill(pod, current, _grace_of(pod), message)
            self.probes.forget({current.id})
            view.current = await self.runtime.inspect(current.id)
            return
        view.probe_ready = await self.probes.ready(view.spec, current, pod_ip)

    async def _probe_failed(self, state: ContainerState, message: str) -> None:
        """An `Unhealthy` event on the container's pod (named by the container's labels)."""
        pod = {
            "metadata": {
                "name": state.labels.get(LABEL_POD_NAME, ""),
                "namespace": state.labels.get(LABEL_POD_NAMESPACE, ""),
                "uid": state.labels.get(LABEL_POD_UID, ""),
            }
        }
        await self.events.record("pods", pod, WARNING, "Unhealthy", message)

    async def _start_sandbox(
        self, pod: Object, dead: ContainerState | None, instances: dict[str, list[ContainerState]]
    ) -> tuple[ContainerState, str]:
        """A fresh sandbox with networking and the pod's resolv.conf/hosts; old app containers are stopped."""
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        if dead is not None:
            for found in instances.values():
                for state in found:
                    if state.running:
                        await self.runtime.stop_container(state.id, 0)
            await self.network.teardown_pod(uid)
        attempt = 0 if dead is None else int(dead.labels.get(LABEL_SANDBOX_ATTEMPT, "0")) + 1
        labels = {**pod_labels(pod), LABEL_TYPE: TYPE_SANDBOX, LABEL_SANDBOX_ATTEMPT: str(attempt)}
        host_network = bool(spec.get("hostNetwork"))
        await self.runtime.ensure_image(self.settings.infra_image, "IfNotPresent")
        config = ContainerConfig(
            name=f"k8s_POD_{meta['name']}_{meta.get('namespace', '')}_{uid}_{attempt}",
            image=self.settings.infra_image,
            labels=labels,
            hostname=None if host_network else pod_hostname(pod),
            network_mode="host" if host_network else "none",
        )
        sandbox_id = await self.runtime.create_container(config)
        await self.runtime.start_container(sandbox_id)
        sandbox = await self.runtime.inspect(sandbox_id)
        if sandbox is None or not sandbox.running:
            raise RuntimeFailure(f"sandbox {sandbox_id[:12]} exited right after starting")
        pod_ip = self.settings.node_ip if host_network else await self.network.setup_pod(uid, sandbox.pid)
        self._write_pod_files(pod, pod_ip)
        log.info("pod %s: sandbox %s up with IP %s", describe(pod), sandbox_id[:12], pod_ip)
        return sandbox, pod_ip

    def _write_pod_files(self, pod: Object, pod_ip: str) -> None:
        directory = self.pod_dir(pod["metadata"]["uid"])
        directory.mkdir(parents=True, exist_ok=True)
        resolv = pod_resolv_conf(
            pod,
            cluster_dns=self.settings.cluster_dns,
            cluster_domain=self.settings.cluster_domain,
            node_resolv=self.settings.node_resolv_conf,
        )
        (directory / "resolv.conf").write_text(resolv)
        (directory / "hosts").write_text(pod_hosts(pod, pod_ip, self.settings.cluster_domain))

    async def _sync_container(
        self,
        pod: Object,
        spec: Object,
        found: list[ContainerState],
        sandbox: ContainerState,
        pod_ip: str,
        restart_policy: str | None = None,
    ) -> ContainerView:
        """Create, start or restart one container as its state and the restart policy (the pod's by default) say."""
        view = self._view_of(spec, found)
        current = view.current
        key = f"{pod['metadata']['uid']}/{spec['name']}"
        if current is not None and current.running:
            return view
        if current is not None and current.pending_start:
            await self.runtime.start_container(current.id)
            view.current = await self.runtime.inspect(current.id)
            return view
        if current is not None and not current.running:
            policy = restart_policy or pod.get("spec", {}).get("restartPolicy") or "Always"
            if not restart_wanted(policy, current.exit_code):
                return view
            exited_at = self._exit_seen.setdefault(current.id, self.clock.now())
            if self.backoff.remaining(key, exited_at) > 0:
                view.waiting_reason = "CrashLoopBackOff"
                view.waiting_message = (
                    f"back-off {go_duration(self.backoff.delay(key))} restarting failed "
                    f"container={spec['name']} pod={describe(pod)}"
                )
                return view
            self.backoff.next(key)
        pull_failed = self._pull_failed.get(key)
        if pull_failed is not None and self.backoff.remaining(f"{key}/pull", pull_failed[0]) > 0:
            view.waiting_reason = "ImagePullBackOff"
            view.waiting_message = f'Back-off pulling image "{spec.get("image")}": ErrImagePull: {pull_failed[1]}'
            return view
        restart_count = current.restart_count + 1 if current is not None else 0
        try:
            new_id = await self._create_app_container(pod, spec, sandbox, pod_ip, restart_count)
        except (ImagePullError, ImageNotFound) as err:
            metrics.RUNTIME_OPERATION_ERRORS.labels("pull_image").inc()
            self.backoff.next(f"{key}/pull")
            self._pull_failed[key] = (self.clock.now(), str(err))
            view.waiting_reason, view.waiting_message = "ErrImagePull", str(err)
            message = f'Failed to pull image "{spec.get("image")}": {err}'
            await self.events.record("pods", pod, WARNING, "Failed", message)
            return view
        except ImageNeverPull as err:
            view.waiting_reason, view.waiting_message = "ErrImageNeverPull", str(err)
            return view
        except (EnvError, DNSConfigError, ValueError) as err:
            view.waiting_reason, view.waiting_message = "CreateContainerConfigError", str(err)
            return view
        except RuntimeFailure as err:
            metrics.RUNTIME_OPERATION_ERRORS.labels("create_container").inc()
            view.waiting_reason, view.waiting_message = "CreateContainerError", str(err)
            return view
        self._pull_failed.pop(key, None)
        for stale in found[:-1]:  # keep only the instance just replaced, for `logs --previous`
            await self.runtime.remove_container(stale.id)
            self._exit_seen.pop(stale.id, None)
        self.probes.forget({c.id for c in found})
        view.current, view.previous = await self.runtime.inspect(new_id), current
        return view

    async def _create_app_container(
        self, pod: Object, spec: Object, sandbox: ContainerState, pod_ip: str, restart_count: int
    ) -> str:
        meta = pod["metadata"]
        image = spec.get("image")
        if not image:
            raise ValueError(f"container {spec.get('name')!r} has no image")
        await self.runtime.ensure_image(image, spec.get("imagePullPolicy") or default_pull_policy(image))
        with_ips = {**pod, "status": {**(pod.get("status") or {}), "podIP": pod_ip, "hostIP": self.settings.node_ip}}
        if pod_ip:
            with_ips["status"]["podIPs"] = [{"ip": pod_ip}]
        directory = self.pod_dir(meta["uid"])
        namespace = meta.get("namespace", "")
        volumes = await prepare_volumes(
            pod, directory, lambda plural, name: self._fetch_data(plural, name, namespace), self.projected
        )
        sources = {
            (plural, name): await self._fetch_data(plural, name, namespace) for plural, name in referenced_sources(spec)
        }
        config = ContainerConfig(
            name=f"k8s_{spec['name']}_{meta['name']}_{meta.get('namespace', '')}_{meta['uid']}_{restart_count}",
            image=image,
            labels={
                **pod_labels(pod),
                LABEL_TYPE: TYPE_CONTAINER,
                LABEL_CONTAINER_NAME: spec["name"],
                LABEL_RESTART_COUNT: str(restart_count),
            },
            entrypoint=spec.get("command"),
            cmd=spec.get("args"),
            env=container_env(with_ips, spec, self.services(), sources, self.settings.allocatable),
            working_dir=spec.get("workingDir"),
            network_mode=f"container:{sandbox.id}",
            mounts=[
                Mount(str(directory / "resolv.conf"), "/etc/resolv.conf"),
                Mount(str(directory / "hosts"), "/etc/hosts"),
                *container_mounts(spec, volumes),
            ],
            **resource_settings(spec),
        )
        container_id = await self.runtime.create_container(config)
        await self.runtime.start_container(container_id)
        hook = (spec.get("lifecycle") or {}).get("postStart")
        started = await self.runtime.inspect(container_id)
        if hook and started is not None and started.running:
            grace = _grace_of(pod)
            if not await self.probes.run_action(hook, spec, started, pod_ip, grace):
                message = f"PostStartHook failed in container {spec['name']}"
                await self.events.record("pods", pod, WARNING, "FailedPostStartHook", message)
                await self._kill(pod, started, grace, f"Container {spec['name']} failed its postStart hook")
        return container_id

    async def _kill(self, pod: Object, state: ContainerState, grace: int, why: str) -> None:
        """Kubernetes' container kill: Killing event, the preStop hook (within the grace period), SIGTERM, SIGKILL."""
        await self.events.record("pods", pod, NORMAL, "Killing", why)
        name = state.labels.get(LABEL_CONTAINER_NAME, "")
        spec: Object = next((c for c in pod.get("spec", {}).get("containers") or [] if c.get("name") == name), {})
        hook = (spec.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            began = self.clock.now()
            pod_ip = self.network.pod_ip(pod["metadata"]["uid"]) or ""
            if not await self.probes.run_action(hook, spec, state, pod_ip, grace):
                message = f"PreStopHook failed in container {name}"
                await self.events.record("pods", pod, WARNING, "FailedPreStopHook", message)
            grace = max(MIN_GRACE_AFTER_HOOK, int(grace - (self.clock.now() - began)))
        await self.runtime.stop_container(state.id, grace)

    async def _fetch_data(self, plural: str, name: str, namespace: str) -> dict[str, str] | None:
        """A ConfigMap's or Secret's data (Secret values decoded), or None when it does not exist."""
        try:
            obj = await self.api.get(plural, name, namespace)
        except ApiError as err:
            if err.code == 404:
                return None
            raise
        data = dict(obj.get("data") or {})
        if plural == "secrets":
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            data.update(obj.get("stringData") or {})
        return data

    async def _stop_sandbox(self, pod: Object, sandboxes: list[ContainerState]) -> None:
        """A finished pod keeps its containers (for logs) but not its sandbox or address."""
        for sandbox in sandboxes:
            if sandbox.running:
                await self.runtime.stop_container(sandbox.id, 0)
                await self.network.teardown_pod(pod["metadata"]["uid"])

    async def _write_status(self, pod: Object, status: Object) -> None:
        """Write when the status changed, or when someone else (the node lifecycle controller) changed it since."""
        meta = pod["metadata"]
        uid = meta["uid"]
        written = self._written.get(uid)
        if written is not None and written.computed == status and not written.overwritten_in(pod):
            return
        try:
            stored = await self.api.update_status("pods", {**pod, "status": status})
        except ApiError as err:
            if err.code == 404:
                return
            if err.code != 409:
                raise
            fresh = await self.api.get("pods", meta["name"], meta.get("namespace"))
            if fresh["metadata"].get("uid") != uid:
                return
            stored = await self.api.update_status("pods", {**fresh, "status": status})
        self._written[uid] = _Written(status, stored.get("status"), _revision(stored))

    # -- ending pods -------------------------------------------------------

    async def terminate_pod(self, pod: Object, *, delete_from_api: bool) -> None:
        """Stop (SIGTERM, SIGKILL after the grace period), tear down, remove; then finish the API deletion."""
        meta = pod["metadata"]
        uid = meta["uid"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = _grace_of(pod) if grace is None else int(grace)
        containers = await self.runtime.list_containers({LABEL_POD_UID: uid})
        apps = [c for c in containers if c.labels.get(LABEL_TYPE) == TYPE_CONTAINER and c.running]
        await asyncio.gather(
            *(self._kill(pod, c, grace, f"Stopping container {c.labels.get(LABEL_CONTAINER_NAME, '')}") for c in apps)
        )
        for sandbox in (c for c in containers if c.labels.get(LABEL_TYPE) == TYPE_SANDBOX and c.running):
            await self.runtime.stop_container(sandbox.id, 0)
        await self.network.teardown_pod(uid)
        for container in containers:
            await self.runtime.remove_container(container.id)
            self._exit_seen.pop(container.id, None)
        self.probes.forget({c.id for c in containers})
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
        self._forget(uid)
        log.info("pod %s: terminated", describe(pod))
        if delete_from_api:
            try:
                await self.api.delete("pods", meta["name"], meta.get("namespace"), grace_period_seconds=0)
            except ApiError as err:
                if err.code != 404:
                    raise

    def _forget(self, uid: str) -> None:
        self.projected.forget(uid)
        for table in (self._first_seen, self._start_time, self._written):
            table.pop(uid, None)
        for keyed in (self._reported, self._pull_failed):
            for key in [k for k in keyed if k.startswith(f"{uid}/")]:
                del keyed[key]
        self._started.discard(uid)
        self.backoff.forget_prefix(f"{uid}/")

    async def cleanup_orphans(self) -> None:
        """Remove containers and addresses of pods this kubelet does not know (call once the pod list synced)."""
        known = set(self._pods)
        containers = await self.runtime.list_containers()
        orphans: dict[str, Object] = {}
        for state in containers:
            uid = state.labels.get(LABEL_POD_UID, "")
            if uid not in known:
                orphans[uid] = {
                    "metadata": {
                        "uid": uid,
                        "name": state.labels.get(LABEL_POD_NAME, ""),
                        "namespace": state.labels.get(LABEL_POD_NAMESPACE, ""),
                    },
                    "spec": {"terminationGracePeriodSeconds": 0},
                }
        for uid in self.network.allocated_pods() - known:
            orphans.setdefault(uid, {"metadata": {"uid": uid, "name": "", "namespace": ""}, "spec": {}})
        for pod in orphans.values():
            log.info("removing leftovers of unknown pod %s", describe(pod))
            pod["spec"]["terminationGracePeriodSeconds"] = 0
            await self.terminate_pod(pod, delete_from_api=False)
        running = [c for c in containers if c.running and c.labels.get(LABEL_POD_UID) in known]
        metrics.RUNNING_PODS.set(sum(1 for c in running if c.labels.get(LABEL_TYPE) == TYPE_SANDBOX))
        metrics.RUNNING_CONTAINERS.labels("running").set(
            sum(1 for c in running if c.labels.get(LABEL_TYPE) == TYPE_CONTAINER)
        )

    async def housekeeping(self, synced: asyncio.Event) -> None:
        """Forever: once the pod list has synced, clean up orphans every housekeeping period."""
        await synced.wait()
        while True:
            try:
                await self.cleanup_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")
            await self.clock.sleep(self.settings.housekeeping_period)
