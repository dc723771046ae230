"""The container runtime the kubelet drives: an interface, Docker behind it, and a fake for tests.

Every container carries Kubernetes' labels (pod uid/name/namespace,
container name, restart count, sandbox or app), so a restarted kubelet finds
and adopts what already runs instead of starting it again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from collections.abc import Callable

import docker
import docker.errors

from control.api.timestamps import now_rfc3339

log = logging.getLogger(__name__)

LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_RESTART_COUNT = "io.kubernetes.container.restartCount"
LABEL_TYPE = "io.kubernetes.docker.type"
TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"

T = TypeVar("T")


class RuntimeFailure(Exception):
    """A runtime operation failed; the message says which and why."""


class ImageNotFound(RuntimeFailure):
    """The image is neither present nor pullable."""


class ImagePullError(RuntimeFailure):
    """Pulling an image failed (the container waits with reason ErrImagePull, then ImagePullBackOff)."""


class ImageNeverPull(RuntimeFailure):
    """The image is absent and imagePullPolicy is Never (reason ErrImageNeverPull)."""


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    """What to create; `entrypoint`/`cmd` None means the image's own."""

    name: str
    image: str
    labels: dict[str, str]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    hostname: str | None = None
    network_mode: str = "none"
    mounts: list[Mount] = field(default_factory=list)
    memory_limit: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_shares: int | None = None


@dataclass
class ContainerState:
    """One container as the runtime reports it."""

    id: str
    name: str
    image: str
    image_id: str
    labels: dict[str, str]
    status: str  # created, running, exited, dead, ...
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ""  # RFC 3339, empty if never started
    finished_at: str = ""
    pid: int = 0

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def start_failed(self) -> bool:
        """Docker leaves a container whose process could not start (no such executable) "created" with an error."""
        return self.status == "created" and bool(self.error)

    @property
    def pending_start(self) -> bool:
        return self.status == "created" and not self.error

    @property
    def restart_count(self) -> int:
        return int(self.labels.get(LABEL_RESTART_COUNT, "0"))


@dataclass(frozen=True)
class ContainerStats:
    """One sample of a container's resource use, as the Summary API needs it."""

    timestamp: float  # seconds since the epoch
    cpu_usage_ns: int  # cumulative CPU time
    memory_usage_bytes: int
    memory_working_set_bytes: int  # usage minus inactive file cache, as cAdvisor counts it
    memory_rss_bytes: int


def stats_from_docker(data: dict[str, Any], timestamp: float) -> ContainerStats:
    """Docker's stats JSON (cgroup v1 or v2 field names) as a ContainerStats."""
    memory = data.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    usage = int(memory.get("usage") or 0)
    inactive_file = int(detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0)
    return ContainerStats(
        timestamp=timestamp,
        cpu_usage_ns=int(((data.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0),
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - inactive_file),
        memory_rss_bytes=int(detail.get("total_rss", detail.get("anon", 0)) or 0),
    )


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_seconds: int | None = None


class ContainerRuntime(ABC):
    """The operations the pod workers need from a container engine."""

    @abstractmethod
    async def version(self) -> str:
        """`docker://<version>`, for the Node's containerRuntimeVersion."""

    @abstractmethod
    async def image_id(self, image: str) -> str | None:
        """The local image's id, or None when it is absent."""

    @abstractmethod
    async def pull_image(self, image: str) -> None: ...

    @abstractmethod
    async def create_container(self, config: ContainerConfig) -> str:
        """Create (not start) a container; return its id."""

    @abstractmethod
    async def start_container(self, container_id: str) -> None: ...

    @abstractmethod
    async def stop_container(self, container_id: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""

    @abstractmethod
    async def remove_container(self, container_id: str) -> None:
        """Remove a container; a missing one is not an error."""

    @abstractmethod
    async def inspect(self, container_id: str) -> ContainerState | None: ...

    @abstractmethod
    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        """Every kubelet-made container (running or not) carrying all these labels."""

    @abstractmethod
    def logs(self, container_id: str, options: LogOptions) -> AsyncGenerator[bytes, None]: ...

    @abstractmethod
    async def exec_in(self, container_id: str, command: list[str]) -> int:
        """Run a command in a running container (for exec probes); return its exit code."""

    @abstractmethod
    async def container_stats(self, container_id: str) -> ContainerStats | None:
        """A sample of a running container's CPU and memory use; None when it is gone or not running."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    async def ensure_image(self, image: str, pull_policy: str) -> str:
        """Make `image` present per imagePullPolicy, as Kubernetes does; return its id.

        Always pulls every time and a failed pull is an error even when an
        older copy is present (no silent fallback); IfNotPresent pulls only
        an absent image; Never never pulls.
        """
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"imagePullPolicy {pull_policy!r} is not one of {', '.join(PULL_POLICIES)}")
        present = await self.image_id(image)
        if pull_policy == "Never" or (pull_policy == "IfNotPresent" and present is not None):
            if present is None:
                raise ImageNeverPull(f'Container image "{image}" is not present with pull policy of Never')
            return present
        try:
            await self.pull_image(image)
        except RuntimeFailure as err:
            raise ImagePullError(f'failed to pull image "{image}": {err}') from err
        found = await self.image_id(image)
        if found is None:
            raise ImagePullError(f'failed to pull image "{image}": not present after pulling')
        return found


def _docker_time(value: str | None) -> str:
    """Docker's nanosecond timestamps as RFC 3339 seconds; Docker's zero time as empty."""
    if not value or value.startswith("0001-"):
        return ""
    return value.split(".")[0].rstrip("Z") + "Z"


def _state_from_inspect(data: dict[str, Any]) -> ContainerState:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    return ContainerState(
        id=data["Id"],
        name=data.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        image_id=data.get("Image", ""),
        labels=config.get("Labels") or {},
        status=state.get("Status", ""),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or "",
        started_at=_docker_time(state.get("StartedAt")),
        finished_at=_docker_time(state.get("FinishedAt")),
        pid=int(state.get("Pid") or 0),
    )


class DockerRuntime(ContainerRuntime):
    """A dockerd through the docker SDK; blocking calls run on a private thread pool."""

    def __init__(self, base_url: str, workers: int = 16):
        try:
            self.client = docker.DockerClient(base_url=base_url, timeout=120)
        except docker.errors.DockerException as err:
            raise RuntimeFailure(f"cannot reach dockerd at {base_url}: {err}") from err
        self.api = self.client.api
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker")

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except docker.errors.ImageNotFound as err:
            raise ImageNotFound(f"{what}: {err.explanation or err}") from err
        except docker.errors.DockerException as err:
            explanation = getattr(err, "explanation", None)
            raise RuntimeFailure(f"{what}: {explanation or err}") from err

    async def version(self) -> str:
        info = await self._call("version", self.api.version)
        return f"docker://{info.get('Version', 'unknown')}"

    async def image_id(self, image: str) -> str | None:
        try:
            data = await self._call(f"inspect image {image}", self.api.inspect_image, image)
        except ImageNotFound:
            return None
        return str(data["Id"])

    async def pull_image(self, image: str) -> None:
        await self._call(f"pull {image}", self.api.pull, image)  # the SDK splits repository, tag and digest

    async def create_container(self, config: ContainerConfig) -> str:
        host_config = self.api.create_host_config(
            network_mode=config.network_mode,
            binds=[f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}" for m in config.mounts],
            mem_limit=config.memory_limit,
            memswap_limit=config.memory_limit,  # as Kubernetes: no swap beyond the limit
            cpu_quota=config.cpu_quota,
            cpu_period=config.cpu_period,
            cpu_shares=config.cpu_shares,
        )
        created = await self._call(
            f"create container {config.name}",
            self.api.create_container,
            config.image,
            command=config.cmd,
            entrypoint=config.entrypoint,
            environment=config.env,
            working_dir=config.working_dir,
            hostname=config.hostname,
            labels=config.labels,
            name=config.name,
            host_config=host_config,
        )
        return str(created["Id"])

    async def start_container(self, container_id: str) -> None:
        await self._call(f"start {container_id[:12]}", self.api.start, container_id)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        try:
            await self._call(f"stop {container_id[:12]}", self.api.stop, container_id, timeout=timeout)
        except RuntimeFailure as err:
            if "No such container" not in str(err):
                raise

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._call(f"remove {container_id[:12]}", self.api.remove_container, container_id, force=True)
        except RuntimeFailure as err:
            if "No such container" not in str(err) and "already in progress" not in str(err):
                raise

    async def inspect(self, container_id: str) -> ContainerState | None:
        try:
            data = await self._call(f"inspect {container_id[:12]}", self.api.inspect_container, container_id)
        except RuntimeFailure as err:
            if "No such container" in str(err):
                return None
            raise
        return _state_from_inspect(data)

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        wanted = [LABEL_TYPE] + [f"{k}={v}" for k, v in (labels or {}).items()]
        found = await self._call("list containers", self.api.containers, all=True, filters={"label": wanted})
        states = []
        for summary in found:
            state = await self.inspect(summary["Id"])
            if state is not None:
                states.append(state)
        return states

    async def logs(self, container_id: str, options: LogOptions) -> AsyncGenerator[bytes, None]:
        """Stream log chunks; a reader thread feeds the loop, and closing the stream ends it."""
        stream = await self._call(
            f"logs {container_id[:12]}",
            self.api.logs,
            container_id,
            stream=True,
            follow=options.follow,
            timestamps=options.timestamps,
            tail=options.tail_lines if options.tail_lines is not None else "all",
            since=options.since_seconds,
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def pump() -> None:
            """Never blocks on the consumer, so closing the stream always ends this thread."""
            try:
                for chunk in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Exception:  # the stream was closed under us, or the loop is gone
                pass
            finally:
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, None)
                except RuntimeError:
                    pass

        threading.Thread(target=pump, name=f"logs-{container_id[:12]}", daemon=True).start()
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
        finally:
            stream.close()

    async def exec_in(self, container_id: str, command: list[str]) -> int:
        exec_id = await self._call(f"exec in {container_id[:12]}", self.api.exec_create, container_id, command)
        await self._call(f"exec in {container_id[:12]}", self.api.exec_start, exec_id["Id"])
        result = await self._call(f"exec in {container_id[:12]}", self.api.exec_inspect, exec_id["Id"])
        return int(result.get("ExitCode") or 0)

    async def container_stats(self, container_id: str) -> ContainerStats | None:
        try:
            data = await self._call(
                f"stats {container_id[:12]}", self.api.stats, container_id, stream=False, one_shot=True
            )
        except RuntimeFailure as err:
            if "No such container" in str(err):
                return None
            raise
        if not (data.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage"):
            return None  # a stopped container reports zeros
        return stats_from_docker(data, time.time())

    async def close(self) -> None:
        self.client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class FakeRuntime(ContainerRuntime):
    """An in-memory runtime for tests: containers run until the test says they exit."""

    def __init__(self, images: dict[str, str] | None = None):
        self.images = dict(images or {"busybox:latest": "sha256:busybox", "pocketkube/pause:latest": "sha256:pause"})
        self.containers: dict[str, ContainerState] = {}
        self.configs: dict[str, ContainerConfig] = {}
        self.output: dict[str, bytes] = {}
        self.pulls: list[str] = []
        self.unpullable: set[str] = set()  # images the fake registry refuses even when a local copy exists
        self.stops: list[tuple[str, int]] = []
        self.execs: list[tuple[str, list[str]]] = []
        self.exec_results: dict[tuple[str, ...], int] = {}
        self.stats: dict[str, ContainerStats] = {}  # what container_stats answers, set by tests
        self._ids = itertools.count(1)

    async def version(self) -> str:
        return "docker://fake"

    async def image_id(self, image: str) -> str | None:
        return self.images.get(image)

    async def pull_image(self, image: str) -> None:
        self.pulls.append(image)
        if image not in self.images or image in self.unpullable:
            raise ImageNotFound(f"pull {image}: not in the fake registry")

    async def create_container(self, config: ContainerConfig) -> str:
        if any(c.name == config.name for c in self.containers.values()):
            raise RuntimeFailure(f"create container {config.name}: name already in use")
        if config.image not in self.images:
            raise ImageNotFound(f"create container {config.name}: no such image {config.image}")
        container_id = f"{next(self._ids):064x}"
        self.containers[container_id] = ContainerState(
            container_id, config.name, config.image, self.images[config.image], dict(config.labels), "created"
        )
        self.configs[container_id] = config
        return container_id

    async def start_container(self, container_id: str) -> None:
        state = self.containers[container_id]
        state.status, state.started_at, state.pid = "running", now_rfc3339(), 1000 + int(container_id, 16)

    def exit(self, container_id: str, code: int, oom_killed: bool = False) -> None:
        """Make a running container exit, as its process would."""
        state = self.containers[container_id]
        state.status, state.exit_code, state.oom_killed = "exited", code, oom_killed
        state.finished_at, state.pid = now_rfc3339(), 0

    async def exec_in(self, container_id: str, command: list[str]) -> int:
        """The exit code a test set for this command (`exec_results`), else 0."""
        self.execs.append((container_id, command))
        return self.exec_results.get(tuple(command), 0)

    async def container_stats(self, container_id: str) -> ContainerStats | None:
        state = self.containers.get(container_id)
        return self.stats.get(container_id) if state is not None and state.running else None

    async def close(self) -> None:
        self.containers.clear()

    def find(self, container_name: str, restart_count: int | None = None) -> ContainerState:
        """The app container with this name (and restart count), for tests to act on."""
        for state in self.containers.values():
            if state.labels.get(LABEL_CONTAINER_NAME) == container_name and (
                restart_count is None or state.restart_count == restart_count
            ):
                return state
        raise KeyError(container_name)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        self.stops.append((container_id, timeout))
        state = self.containers.get(container_id)
        if state is not None and state.running:
            self.exit(container_id, 137 if timeout == 0 else 143)

    async def remove_container(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    async def inspect(self, container_id: str) -> ContainerState | None:
        state = self.containers.get(container_id)
        return None if state is None else ContainerState(**{**state.__dict__, "labels": dict(state.labels)})

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        wanted = labels or {}
        return [
            ContainerState(**{**s.__dict__, "labels": dict(s.labels)})
            for s in self.containers.values()
            if all(s.labels.get(k) == v for k, v in wanted.items())
        ]

    async def logs(self, container_id: str, options: LogOptions) -> AsyncGenerator[bytes, None]:
        if container_id not in self.containers:
            raise RuntimeFailure(f"logs {container_id[:12]}: No such container")
        lines = self.output.get(container_id, b"").splitlines(keepends=True)
        if options.tail_lines is not None:
            lines = lines[-options.tail_lines :] if options.tail_lines else []
        for line in lines:
            yield line
