"""Test doubles for the pod workers' API server and pod network (the runtime's fake lives beside the real one)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from control.api.errors import not_found

Object = dict[str, Any]


class FakeApi:
    """Records status writes and deletions; `pods` is what a GET returns."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], Object] = {}
        self.objects: dict[tuple[str, str, str], Object] = {}  # (plural, namespace, name) for everything else
        self.statuses: list[Object] = []
        self.deleted: list[tuple[str, str, int | None]] = []
        self.events: dict[str, Object] = {}  # Events by name, as created and patched
        self.token_requests: list[tuple[str, Object]] = []  # (path, TokenRequest body)

    async def get(self, plural: str, name: str, namespace: str | None = None) -> Object:
        if plural != "pods":
            found = self.objects.get((plural, namespace or "", name))
            if found is None:
                raise not_found(plural, name)
            return copy.deepcopy(found)
        pod = self.pods.get((namespace or "", name))
        if pod is None:
            raise not_found(plural, name)
        return copy.deepcopy(pod)

    async def update_status(self, plural: str, obj: Object) -> Object:
        self.statuses.append(copy.deepcopy(obj["status"]))
        meta = obj["metadata"]
        self.pods[(meta.get("namespace", ""), meta["name"])] = copy.deepcopy(obj)
        return obj

    async def delete(
        self, plural: str, name: str, namespace: str | None = None, *, grace_period_seconds: int | None = None
    ) -> Object:
        self.deleted.append((namespace or "", name, grace_period_seconds))
        self.pods.pop((namespace or "", name), None)
        return {}

    async def create(self, plural: str, obj: Object, namespace: str | None = None) -> Object:
        assert plural == "events", f"the kubelet creates only Events, not {plural}"
        self.events[obj["metadata"]["name"]] = copy.deepcopy(obj)
        return obj

    async def patch(self, plural: str, name: str, patch: Any, namespace: str | None = None) -> Object:
        assert plural == "events", f"the kubelet patches only Events, not {plural}"
        self.events[name].update(patch)
        return self.events[name]

    async def request(self, method: str, path: str, *, body: Any = None) -> Any:
        """The kubelet's one raw call: a TokenRequest for a projected service account token, answered with a
        token that expires when it asked (on the wall clock, as ProjectedVolumes reads it)."""
        assert method == "POST" and path.endswith("/token"), f"the kubelet requests only tokens, not {method} {path}"
        self.token_requests.append((path, copy.deepcopy(body)))
        expires = datetime.now(UTC) + timedelta(seconds=body["spec"]["expirationSeconds"])
        token = f"token-{len(self.token_requests)}"
        return {"status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    def event_reasons(self) -> list[tuple[str, str, int]]:
        return sorted((e["reason"], e["message"], e["count"]) for e in self.events.values())

    @property
    def last_status(self) -> Object:
        return self.statuses[-1]


class FakeNetwork:
    """Hands out addresses from 10.244.1.0/24 and remembers which pods are wired."""

    def __init__(self) -> None:
        self.ips: dict[str, str] = {}
        self.sandbox_pids: dict[str, int] = {}
        self.torn_down: list[str] = []
        self.fail_setups = 0  # how many setups to fail, as a broken netlink call would
        self._next = 2

    async def setup_pod(self, pod_uid: str, sandbox_pid: int) -> str:
        if self.fail_setups:
            self.fail_setups -= 1
            raise OSError("veth: No such device")
        if pod_uid not in self.ips:
            self.ips[pod_uid] = f"10.244.1.{self._next}"
            self._next += 1
        self.sandbox_pids[pod_uid] = sandbox_pid
        return self.ips[pod_uid]

    async def teardown_pod(self, pod_uid: str) -> None:
        self.torn_down.append(pod_uid)
        self.ips.pop(pod_uid, None)

    def pod_ip(self, pod_uid: str) -> str | None:
        return self.ips.get(pod_uid)

    def allocated_pods(self) -> set[str]:
        return set(self.ips)
