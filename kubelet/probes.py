"""Startup, readiness and liveness probes (httpGet, tcpSocket, exec) with Kubernetes' timing fields.

The same handlers (plus `sleep`) run the containers' lifecycle hooks.

Each sync asks `ProbeManager` about every running container; a probe runs
when it is due (after `initialDelaySeconds`, then every `periodSeconds`,
bounded by `timeoutSeconds`), and a result flips only after
`successThreshold`/`failureThreshold` consecutive outcomes.  State is keyed
by container id, so a restarted container starts over (not ready).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from control.clock import Clock
from kubelet.runtime import ContainerRuntime, ContainerState, RuntimeFailure

log = logging.getLogger(__name__)

Object = dict[str, Any]
FailureReporter = Callable[[ContainerState, str], Awaitable[None]]


@dataclass
class _ProbeState:
    first_seen: float
    last_run: float | None = None
    successes: int = 0
    failures: int = 0
    result: bool = False


def _port(container: Object, port: int | str) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a number nor a named port of container {container.get('name')!r}")


class ProbeManager:
    """Runs probes for the pod workers and remembers their results per container instance."""

    def __init__(self, runtime: ContainerRuntime, clock: Clock, on_failure: FailureReporter | None = None):
        self.runtime, self.clock, self.on_failure = runtime, clock, on_failure
        self._states: dict[tuple[str, str], _ProbeState] = {}

    async def ready(self, container: Object, state: ContainerState, pod_ip: str) -> bool:
        """Readiness: True without a probe; else not ready until the probe has succeeded."""
        probe = container.get("readinessProbe")
        if not probe:
            return True
        return await self._check("readiness", probe, container, state, pod_ip, initial=False)

    async def alive(self, container: Object, state: ContainerState, pod_ip: str) -> bool:
        """Liveness: True without a probe, and until failureThreshold probes in a row have failed."""
        probe = container.get("livenessProbe")
        if not probe:
            return True
        return await self._check("liveness", probe, container, state, pod_ip, initial=True)

    async def startup(self, container: Object, state: ContainerState, pod_ip: str) -> str:
        """ "started" (no probe, or it has succeeded once), "starting", or "failed" (failureThreshold reached)."""
        probe = container.get("startupProbe")
        if not probe:
            return "started"
        entry = self._states.get((state.id, "startup"))
        if entry is not None and entry.result:
            return "started"  # never probed again for this container instance
        if await self._check("startup", probe, container, state, pod_ip, initial=False):
            return "started"
        entry = self._states[(state.id, "startup")]
        return "failed" if entry.failures >= int(probe.get("failureThreshold") or 3) else "starting"

    def forget(self, container_ids: set[str]) -> None:
        """Drop the probe state of these (replaced or removed) containers."""
        for key in [k for k in self._states if k[0] in container_ids]:
            del self._states[key]

    async def _check(
        self, kind: str, probe: Object, container: Object, state: ContainerState, pod_ip: str, initial: bool
    ) -> bool:
        now = self.clock.now()
        entry = self._states.setdefault((state.id, kind), _ProbeState(first_seen=now, result=initial))
        period = float(probe.get("periodSeconds") or 10)
        if now - entry.first_seen < float(probe.get("initialDelaySeconds") or 0):
            return entry.result
        if entry.last_run is not None and now - entry.last_run < period:
            return entry.result
        entry.last_run = now
        failure = await self._attempt(probe, container, state, pod_ip, float(probe.get("timeoutSeconds") or 1))
        if failure is not None and self.on_failure is not None:
            await self.on_failure(state, f"{kind.capitalize()} probe failed: {failure}")
        if failure is None:
            entry.successes, entry.failures = entry.successes + 1, 0
            if entry.successes >= int(probe.get("successThreshold") or 1):
                entry.result = True
        else:
            entry.successes, entry.failures = 0, entry.failures + 1
            if entry.failures >= int(probe.get("failureThreshold") or 3):
                entry.result = False
        return entry.result

    async def run_probe(self, probe: Object, container: Object, state: ContainerState, pod_ip: str) -> bool:
        """One probe attempt, bounded by timeoutSeconds; any error counts as a failure."""
        return await self.run_action(probe, container, state, pod_ip, float(probe.get("timeoutSeconds") or 1))

    async def run_action(
        self, action: Object, container: Object, state: ContainerState, pod_ip: str, timeout: float
    ) -> bool:
        """A probe's or lifecycle hook's handler (httpGet, tcpSocket, exec, sleep) within `timeout` seconds."""
        return await self._attempt(action, container, state, pod_ip, timeout) is None

    async def _attempt(
        self, action: Object, container: Object, state: ContainerState, pod_ip: str, timeout: float
    ) -> str | None:
        """Run a handler; None on success, else why it failed."""
        try:
            if "httpGet" in action:
                return await self._http(action["httpGet"], container, pod_ip, timeout)
            if "tcpSocket" in action:
                return await self._tcp(action["tcpSocket"], container, pod_ip, timeout)
            if "exec" in action:
                command = list(action["exec"].get("command") or [])
                code = await asyncio.wait_for(self.runtime.exec_in(state.id, command), timeout)
                return None if code == 0 else f"command {command} exited with {code}"
            if "sleep" in action:
                await self.clock.sleep(min(float(action["sleep"].get("seconds") or 0), timeout))
                return None
        except TimeoutError:
            return f"timed out after {timeout:g}s"
        except (OSError, aiohttp.ClientError, ValueError, RuntimeFailure) as err:
            return str(err) or type(err).__name__
        return "the handler has none of httpGet, tcpSocket, exec, sleep"

    async def _http(self, action: Object, container: Object, pod_ip: str, timeout: float) -> str | None:
        scheme = (action.get("scheme") or "HTTP").lower()
        host = action.get("host") or pod_ip
        path = action.get("path") or "/"
        if not path.startswith("/"):
            path = "/" + path
        url = f"{scheme}://{host}:{_port(container, action['port'])}{path}"
        headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
        headers.setdefault("User-Agent", "kube-probe/1.32")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers=headers, ssl=False, allow_redirects=False) as resp:
                return None if 200 <= resp.status < 400 else f"HTTP probe failed with statuscode: {resp.status}"

    async def _tcp(self, action: Object, container: Object, pod_ip: str, timeout: float) -> str | None:
        host = action.get("host") or pod_ip
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, _port(container, action["port"])), timeout)
        writer.close()
        await writer.wait_closed()
        return None
