"""API semantics on top of etcd storage: what create, update, patch, delete,
list and watch mean for each resource, with Kubernetes' Status errors.

The HTTP layer (`app.py`) parses requests and renders responses; everything
a Kubernetes apiserver's "registry" and "strategy" code decides lives here:
server-set metadata, defaulting and validation, the status subresource
split, optimistic concurrency, graceful pod deletion, namespace
termination, pod binding, scale, and ClusterIP allocation.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from collections.abc import AsyncIterator, Callable, Sequence

from control.api import errors
from control.api.errors import ApiError
from control.api.resources import RESOURCES, Resource, resource
from control.api.selectors import (
    FieldRequirement,
    Selector,
    fields_match,
    format_selector,
    from_label_selector,
    matches,
)
from control.apiserver import patch as patching
from control.apiserver.allocator import (
    ALLOCATION_PREFIX,
    NODE_PORT_PREFIX,
    NODE_PORTS,
    RangeFull,
    ServiceIPRange,
    node_port_key,
    pick_node_port,
)
from control.apiserver.cache import DEFAULT_HISTORY, LISTS, WatchCache
from control.apiserver.endpoint_reconciler import EndpointReconciler
from control.apiserver.storage import (
    Change,
    Compacted,
    Extra,
    KeyExists,
    KeyNotFound,
    PreconditionFailed,
    RevisionConflict,
    Storage,
    Stored,
)
from control.apiserver.validation import apply_defaults, unknown_fields, validate

log = logging.getLogger(__name__)

Object = dict[str, Any]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_RETRIES = 10
_STALE = "the object has been modified; please apply your changes to the latest version and try again"


def now_rfc3339(offset_seconds: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_seconds))


@dataclass(frozen=True)
class ListOptions:
    label_selector: Selector = ()
    field_selector: tuple[FieldRequirement, ...] = ()
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(frozen=True)
class WriteOptions:
    strict: bool = False  # ?fieldValidation=Strict
    dry_run: bool = False


@dataclass(frozen=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


def _meta(obj: Object) -> Object:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _dict(value: Any) -> Object:
    """`value` if it is a JSON object, else an empty one (bodies are untrusted)."""
    return value if isinstance(value, dict) else {}


Extras = list[Extra]


def _wants_node_ports(spec: Object) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


def _node_ports(obj: Object) -> set[int]:
    return {
        p["nodePort"] for p in _dict(obj.get("spec")).get("ports") or [] if isinstance(p, dict) and p.get("nodePort")
    }


_POD_MUTABLE = (
    "spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds, "
    "spec.tolerations (only additions to existing tolerations), spec.terminationGracePeriodSeconds "
    "(allow it to be set to 1 if it was previously negative)"
)


def _check_pod_update(current: Object, new: Object) -> None:
    """Pods are immutable but for images, the deadline and added tolerations (ValidatePodUpdate)."""

    def comparable(spec: Any) -> Object:
        spec = copy.deepcopy(_dict(spec))
        for field in ("containers", "initContainers"):
            for container in spec.get(field) or []:
                if isinstance(container, dict):
                    container.pop("image", None)
        for field in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
            spec.pop(field, None)
        return spec

    old_spec, new_spec = _dict(current.get("spec")), _dict(new.get("spec"))
    if isinstance(new.get("spec"), dict):
        apply_defaults("Pod", new)
    if comparable(old_spec) != comparable(new_spec):
        name = str(_meta(new).get("name", ""))
        raise errors.invalid(
            "Pod",
            name,
            [
                (
                    "spec",
                    "FieldValueForbidden",
                    f"Forbidden: pod updates may not change fields other than {_POD_MUTABLE}",
                )
            ],
        )
    old_tolerations = old_spec.get("tolerations") or []
    new_tolerations = new_spec.get("tolerations") or []
    if any(t not in new_tolerations for t in old_tolerations):
        raise errors.invalid(
            "Pod",
            str(_meta(new).get("name", "")),
            [
                (
                    "spec.tolerations",
                    "FieldValueForbidden",
                    "Forbidden: existing toleration can not be modified except its tolerationSeconds",
                )
            ],
        )


def _forbidden(message: str) -> ApiError:
    return ApiError(errors.status_failure(403, "Forbidden", message))


def _generate_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet: no vowels, no 0/1/3
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _qos_class(spec: Object) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    requests_any = limits_all = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if requests or limits:
            requests_any = True
        for res_name in ("cpu", "memory"):
            if res_name not in limits or requests.get(res_name, limits[res_name]) != limits[res_name]:
                guaranteed = False
        limits_all = limits_all or bool(limits)
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any or limits_all else "BestEffort"


def _spec_part(obj: Object) -> Object:
    """Everything but metadata and status: a change here bumps metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def encode_continue(revision: int, key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError) as err:
        raise errors.bad_request(f"continue key is not valid: {err}") from None


# The garbage collector's finalizers, by DeleteOptions.propagationPolicy.
PROPAGATION_FINALIZERS = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}


class Registry:
    """All API operations, against one Storage."""

    def __init__(self, storage: Storage, ip_range: ServiceIPRange, watch_cache_size: int = DEFAULT_HISTORY):
        self.storage = storage
        self.ip_range = ip_range
        self.cache = WatchCache(storage, watch_cache_size)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self.endpoint_reconciler: EndpointReconciler | None = None

    async def close(self) -> None:
        if self.endpoint_reconciler is not None:
            try:  # a clean stop leaves the `kubernetes` endpoints at once, not when its lease expires
                await asyncio.wait_for(self.endpoint_reconciler.remove(), 3)
            except Exception as err:  # storage may already be gone; the lease then simply expires
                log.warning("could not remove this API server's lease", extra={"error": str(err)})
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.cache.close()

    # -- keys and errors -----------------------------------------------------

    def key(self, res: Resource, namespace: str | None, name: str) -> str:
        return res.storage_key(name, namespace)

    def prefix(self, res: Resource, namespace: str | None) -> str:
        return res.storage_prefix(namespace)

    @staticmethod
    def not_found(res: Resource, name: str) -> ApiError:
        return errors.not_found(res.plural, name, res.group)

    async def _read(self, res: Resource, namespace: str | None, name: str) -> Stored:
        stored = await self.storage.get(self.key(res, namespace, name))
        if stored is None:
            raise self.not_found(res, name)
        return stored

    # -- reads ---------------------------------------------------------------

    async def get(self, res: Resource, namespace: str | None, name: str) -> Object:
        return (await self._read(res, namespace, name)).obj

    async def list(self, res: Resource, namespace: str | None, options: ListOptions) -> Object:
        """A list object, paged by `limit`/`continue` at one consistent revision."""
        revision, start_after = 0, None
        if options.continue_token:
            if options.resource_version not in ("", "0"):
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            revision, start_after = decode_continue(options.continue_token)
        elif options.resource_version_match:
            if not options.resource_version:
                raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
            if options.resource_version_match == "Exact":
                revision = self._parse_rv(options.resource_version)
            elif options.resource_version_match != "NotOlderThan":
                raise errors.bad_request(
                    f'resourceVersionMatch "{options.resource_version_match}" is not supported: '
                    'supported values: "Exact", "NotOlderThan"'
                )
        if not options.continue_token and options.resource_version_match != "Exact":
            cached = await self._list_from_cache(res, namespace, options)
            if cached is not None:
                LISTS.labels(res.plural, "cache").inc()
                return cached
        LISTS.labels(res.plural, "etcd").inc()
        items: list[Object] = []
        prefix = self.prefix(res, namespace)
        last_key, more = None, False
        chunk = max(options.limit, 100) if options.limit else 0
        while True:
            try:
                batch, snapshot, more = await self.storage.list(
                    prefix, revision=revision, start_after=start_after, limit=chunk
                )
            except Compacted as err:
                raise self._continue_expired(options, err) from None
            revision = revision or snapshot
            for index, stored in enumerate(batch):
                if self._selected(stored.obj, options.label_selector, options.field_selector):
                    items.append(stored.obj)
                last_key = stored.key
                if options.limit and len(items) >= options.limit:
                    more = more or index < len(batch) - 1
                    break
            if options.limit and len(items) >= options.limit:
                break
            if not more or not batch:
                more = False
                break
            start_after = batch[-1].key
        metadata: Object = {"resourceVersion": str(revision)}
        if more and last_key is not None:
            metadata["continue"] = encode_continue(revision, last_key)
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": metadata, "items": items}

    async def _list_from_cache(self, res: Resource, namespace: str | None, options: ListOptions) -> Object | None:
        """The list from the watch cache; None when the cache cannot promise the asked-for freshness.

        `resourceVersion=0` takes the cache as it is; none (a consistent
        read) or N (not older than N) first makes sure the cache holds
        etcd's current state.  Later pages (`continue`) read etcd at the
        first page's revision, which the cache's contents equalled.
        """
        cache = await self.cache.resource(res.storage_prefix(None))
        if options.resource_version == "0":
            revision = cache.revision
        else:
            wanted = self._parse_rv(options.resource_version) if options.resource_version else 0
            fresh = await cache.wait_fresh(wanted)
            if fresh is None:
                return None
            revision = fresh
        items: list[Object] = []
        last_key = ""
        metadata: Object = {"resourceVersion": str(revision)}
        for key, obj in cache.snapshot(self.prefix(res, namespace)):
            if not self._selected(obj, options.label_selector, options.field_selector):
                continue
            if options.limit and len(items) >= options.limit:
                metadata["continue"] = encode_continue(revision, last_key)
                break
            items.append(obj)
            last_key = key
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": metadata, "items": items}

    def _continue_expired(self, options: ListOptions, err: Compacted) -> ApiError:
        if options.continue_token:
            message = (
                "The provided continue parameter is too old to display a consistent list result. You can start a "
                "new list without the continue parameter, or use the continue token in this response to retrieve "
                "the remainder of the results. Continuing with the provided token results in an inconsistent list - "
                "objects that were created, modified, or deleted between the time the first chunk was returned "
                "and now may show up in the list."
            )
            _, start = decode_continue(options.continue_token)
            status = errors.status_failure(410, "Expired", message)
            status["metadata"] = {"continue": encode_continue(err.compacted, start)}
            return ApiError(status)
        return errors.gone("The resourceVersion for the provided list is too old.")  # kube-apiserver's words

    @staticmethod
    def _parse_rv(value: str) -> int:
        try:
            rv = int(value)
            if rv < 0:
                raise ValueError
            return rv
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{value}"') from None

    @staticmethod
    def _selected(obj: Object, labels: Selector, fields: tuple[FieldRequirement, ...]) -> bool:
        return matches(labels, (obj.get("metadata") or {}).get("labels")) and fields_match(fields, obj)

    async def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        labels: Selector,
        fields: tuple[FieldRequirement, ...],
    ) -> AsyncIterator[tuple[str, Object]]:
        """(type, object) pairs per §4.1; ("PROGRESS", {"rv": n}) marks filtered-out progress.

        Served by the watch cache.  Without a resourceVersion (or "0") the
        current state comes first as ADDED, taken from the cache in the same
        step as the subscription, so nothing falls between.  With one, the
        cache's history replays what came after it; a resourceVersion older
        than the history is served by a watch on etcd (410 if compacted).
        With a selector, an object that stops (starts) matching is sent as
        DELETED (ADDED).
        """
        prefix = self.prefix(res, namespace)
        cache = await self.cache.resource(res.storage_prefix(None))
        if resource_version in ("", "0"):
            start = cache.revision
            initial = [obj for _, obj in cache.snapshot(prefix) if self._selected(obj, labels, fields)]
            subscription = cache.subscribe(start)
        else:
            start = self._parse_rv(resource_version)
            initial = []
            subscription = cache.subscribe(start)
        if subscription is None:
            async for event in self._watch_etcd(prefix, start, labels, fields):
                yield event
            return
        try:
            for obj in initial:
                yield "ADDED", obj
            while (change := await subscription.next()) is not None:
                if change.key.startswith(prefix):
                    yield self._watch_event(change, labels, fields)
        finally:
            cache.unsubscribe(subscription)

    async def _watch_etcd(
        self, prefix: str, start: int, labels: Selector, fields: tuple[FieldRequirement, ...]
    ) -> AsyncIterator[tuple[str, Object]]:
        try:
            async for change in self.storage.watch(prefix, start):
                yield self._watch_event(change, labels, fields)
        except Compacted as err:
            raise errors.gone(f"too old resource version: {start} ({err.compacted})") from None

    def _watch_event(
        self, change: Change, labels: Selector, fields: tuple[FieldRequirement, ...]
    ) -> tuple[str, Object]:
        prev_match = change.prev is not None and not change.created and self._selected(change.prev, labels, fields)
        if change.kind == "DELETE":
            if change.prev is not None and self._selected(change.prev, labels, fields):
                gone = copy.deepcopy(change.prev)
                _meta(gone)["resourceVersion"] = str(change.revision)
                return "DELETED", gone
        else:
            assert change.obj is not None
            now_match = self._selected(change.obj, labels, fields)
            if now_match and prev_match:
                return "MODIFIED", change.obj
            if now_match:
                return "ADDED", change.obj
            if prev_match:
                return "DELETED", change.obj
        return "PROGRESS", {"rv": change.revision}

    # -- body checks ---------------------------------------------------------

    def _check_body(self, res: Resource, namespace: str | None, body: Any, options: WriteOptions) -> Object:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request must be a {res.kind} object")
        body = copy.deepcopy(body)
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({res.api_version})"
            )
        if kind and kind != res.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
        if options.strict:
            unknown = unknown_fields(res.kind, body)
            if unknown:
                raise errors.bad_request(
                    "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown)
                )
        body = {
            "apiVersion": res.api_version,
            "kind": res.kind,
            **{k: v for k, v in body.items() if k not in ("apiVersion", "kind")},
        }
        meta = _meta(body)
        if res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if namespace:
                meta["namespace"] = namespace
            elif not body_ns:
                raise errors.bad_request("the namespace of the object is required")
        else:
            meta.pop("namespace", None)
        return body

    def _validate(self, res: Resource, obj: Object) -> None:
        causes = validate(res.kind, obj)
        if causes:
            raise errors.invalid(res.kind, str(_meta(obj).get("name", "")), causes, res.group)

    async def _check_namespace(self, namespace: str) -> None:
        ns = await self.storage.get(self.key(resource("namespaces"), None, namespace))
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if _meta(ns.obj).get("deletionTimestamp"):
            raise _forbidden(f"unable to create new content in namespace {namespace} because it is being terminated")

    # -- create --------------------------------------------------------------

    async def create(self, res: Resource, namespace: str | None, body: Any, options: WriteOptions) -> Object:
        obj = self._check_body(res, namespace, body, options)
        meta = _meta(obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_generate_suffix()}"
        if res.namespaced:
            await self._check_namespace(meta["namespace"])
        for server_set in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(server_set, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if "spec" in obj:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        self._prepare_create_status(res, obj)
        apply_defaults(res.kind, obj)
        self._validate(res, obj)
        if options.dry_run:
            return obj
        name = meta["name"]
        key = self.key(res, meta.get("namespace"), name)
        if res.kind != "Service":
            try:
                return await self.storage.create(key, obj)
            except KeyExists:
                raise errors.already_exists(res.plural, name, res.group) from None
        requested_ip = self._requested_ip(obj)
        unallocated = copy.deepcopy(obj)
        taken_ips: set[str] = set()
        taken_ports: set[int] = set()
        for _ in range(MAX_RETRIES):
            extras = self._create_extras(obj, taken_ips) + self._node_port_extras(None, obj, taken_ports)
            try:
                return await self.storage.create(key, obj, extras)
            except KeyExists:
                raise errors.already_exists(res.plural, name, res.group) from None
            except PreconditionFailed:
                taken_ips, taken_ports = await self._taken()
                if requested_ip in taken_ips:
                    raise errors.invalid(
                        "Service",
                        name,
                        [
                            (
                                "spec.clusterIPs",
                                "FieldValueInvalid",
                                f'Invalid value: ["{requested_ip}"]: failed to allocate IP {requested_ip}: '
                                "provided IP is already allocated",
                            )
                        ],
                    ) from None
                self._check_requested_ports(None, unallocated, taken_ports)
                obj = copy.deepcopy(unallocated)
        raise errors.internal_error(f"could not allocate addresses for {name} after {MAX_RETRIES} attempts")

    def _prepare_create_status(self, res: Resource, obj: Object) -> None:
        if res.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(_dict(obj.get("spec")))}
        elif res.kind != "Node" and "status" in res.subresources:
            obj["status"] = {}

    # -- ClusterIP -----------------------------------------------------------

    @staticmethod
    def _requested_ip(obj: Object) -> str | None:
        spec = _dict(obj.get("spec"))
        ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        return ip if ip and ip != "None" else None

    async def _taken(self) -> tuple[set[str], set[int]]:
        """Every allocated ClusterIP and node port, read after a lost allocation race."""
        ips = {key.rsplit("/", 1)[1] for key in await self.storage.keys(ALLOCATION_PREFIX)}
        ports = {int(key.rsplit("/", 1)[1]) for key in await self.storage.keys(NODE_PORT_PREFIX)}
        return ips, ports

    def _create_extras(self, obj: Object, taken: set[str]) -> Extras:
        spec = obj["spec"]
        if spec.get("type") == "ExternalName":
            return []
        if spec.get("clusterIP") == "None" or spec.get("clusterIPs") == ["None"]:
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return []
        if not spec.get("clusterIP") and spec.get("clusterIPs"):
            spec["clusterIP"] = spec["clusterIPs"][0]
        requested = spec.get("clusterIP")
        name = _meta(obj)["name"]
        if requested:
            if not self.ip_range.contains(requested):
                raise errors.invalid(
                    "Service",
                    name,
                    [
                        (
                            "spec.clusterIPs",
                            "FieldValueInvalid",
                            f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: the provided IP '
                            f"({requested}) is not in the valid range. "
                            f"The range of valid IPs is {self.ip_range.network}",
                        )
                    ],
                )
            ip = requested
        else:
            try:
                ip = self.ip_range.candidates(taken, 1)[0]
            except RangeFull:
                raise errors.internal_error(
                    f"failed to allocate a serviceIP: range {self.ip_range.network} is full"
                ) from None
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
        owner = f"{_meta(obj).get('namespace')}/{name}".encode()
        return [Extra(self.ip_range.key(ip), owner, must_be_absent=True)]

    def _delete_extras(self, res: Resource, obj: Object) -> Extras:
        if res.kind != "Service":
            return []
        ip = self._requested_ip(obj)
        released = [Extra(self.ip_range.key(ip), None)] if ip else []
        return released + [Extra(node_port_key(port), None) for port in _node_ports(obj)]

    # -- node ports ----------------------------------------------------------

    def _node_port_extras(self, current: Object | None, new: Object, taken: set[int]) -> Extras:
        """Allocate node ports `new` needs (and `current` lacked); release the ones it dropped."""
        spec = new["spec"]
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if current is not None:
            old_ports = {
                (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                for p in _dict(current.get("spec")).get("ports") or []
            }
            for port in ports:
                if not port.get("nodePort") and old_ports.get((port.get("port"), port.get("protocol", "TCP"))):
                    port["nodePort"] = old_ports[(port.get("port"), port.get("protocol", "TCP"))]
        if not _wants_node_ports(spec):
            for port in ports:
                port.pop("nodePort", None)
        else:
            self._check_requested_ports(current, new, set())
            used = set(taken) | {p["nodePort"] for p in ports if p.get("nodePort")}
            for port in ports:
                if not port.get("nodePort"):
                    try:
                        port["nodePort"] = pick_node_port(used, self._rng)
                    except RangeFull as err:
                        raise errors.internal_error(f"failed to allocate a nodePort: {err}") from None
                    used.add(port["nodePort"])
        before = _node_ports(current) if current is not None else set()
        after = _node_ports(new)
        owner = f"{_meta(new).get('namespace')}/{_meta(new).get('name')}".encode()
        return [Extra(node_port_key(p), owner, must_be_absent=True) for p in sorted(after - before)] + [
            Extra(node_port_key(p), None) for p in sorted(before - after)
        ]

    @staticmethod
    def _check_requested_ports(current: Object | None, new: Object, taken: set[int]) -> None:
        """422 for a requested node port outside the range or already held by another Service."""
        before = _node_ports(current) if current is not None else set()
        for index, port in enumerate(_dict(new.get("spec")).get("ports") or []):
            value = port.get("nodePort") if isinstance(port, dict) else None
            if not value or value in before:
                continue
            why = None
            if not isinstance(value, int) or value not in NODE_PORTS:
                why = (
                    "provided port is not in the valid range. "
                    f"The range of valid ports is {NODE_PORTS.start}-{NODE_PORTS.stop - 1}"
                )
            elif value in taken:
                why = "provided port is already allocated"
            if why:
                raise errors.invalid(
                    "Service",
                    str(_meta(new).get("name", "")),
                    [(f"spec.ports[{index}].nodePort", "FieldValueInvalid", f"Invalid value: {value}: {why}")],
                )

    # -- update and patch ----------------------------------------------------

    async def update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        options: WriteOptions,
        subresource: str | None = None,
    ) -> Object:
        new = self._check_body(res, namespace, body, options)
        body_name = _meta(new).get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        _meta(new)["name"] = name
        precondition = _meta(new).get("resourceVersion") or None
        return await self._update(res, namespace, name, lambda _current: new, precondition, options, subresource)

    async def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch_body: Any,
        options: WriteOptions,
        subresource: str | None = None,
    ) -> Object:
        explicit_rv = None
        if isinstance(patch_body, dict):
            explicit_rv = (
                (patch_body.get("metadata") or {}).get("resourceVersion")
                if isinstance(patch_body.get("metadata"), dict)
                else None
            )
        if patch_type == "json" and isinstance(patch_body, list):
            explicit_rv = next(
                (
                    op.get("value")
                    for op in patch_body
                    if isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" and op.get("op") != "test"
                ),
                None,
            )

        def compute(current: Object) -> Object:
            patched = apply_patch(res.kind, current, patch_type, patch_body)
            if options.strict and isinstance(patched, dict):
                unknown = unknown_fields(res.kind, patched)
                if unknown:
                    raise errors.bad_request(
                        "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown)
                    )
            checked = self._check_body(res, namespace, patched, WriteOptions())
            meta = _meta(checked)
            if meta.get("name") != name:
                raise errors.bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                )
            if not explicit_rv:
                meta["resourceVersion"] = _meta(current).get("resourceVersion")
            return checked

        return await self._update(res, namespace, name, compute, explicit_rv, options, subresource)

    async def _update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        compute: Callable[[Object], Object],
        precondition: str | None,
        options: WriteOptions,
        subresource: str | None,
    ) -> Object:
        """Read, compute the new object, compare-and-swap; retry when no RV was pinned."""
        taken_ports: set[int] = set()
        for _ in range(MAX_RETRIES):
            stored = await self._read(res, namespace, name)
            current = stored.obj
            if precondition is not None and precondition != _meta(current)["resourceVersion"]:
                raise errors.conflict(res.plural, name, _STALE, res.group)
            requested = compute(copy.deepcopy(current))
            new = self._merge_update(res, current, requested, subresource)
            apply_defaults(res.kind, new)
            self._validate(res, new)
            if new == current:
                return current
            if options.dry_run:
                return new
            key = self.key(res, namespace, name)
            extras = (
                self._node_port_extras(current, new, taken_ports)
                if res.kind == "Service" and subresource is None
                else []
            )
            try:
                saved = await self.storage.update(key, new, stored.revision, extras)
            except RevisionConflict:
                if precondition is not None:
                    raise errors.conflict(res.plural, name, _STALE, res.group) from None
                continue
            except PreconditionFailed:
                _, taken_ports = await self._taken()
                self._check_requested_ports(current, requested, taken_ports)
                continue
            except KeyNotFound:
                raise self.not_found(res, name) from None
            return await self._finish_if_deleting(res, namespace, saved)
        raise errors.conflict(res.plural, name, _STALE, res.group)

    def _merge_update(self, res: Resource, current: Object, requested: Object, subresource: str | None) -> Object:
        """The object to store: the status subresource changes only status, the main resource never does."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in requested:
                new["status"] = requested["status"]
            else:
                new.pop("status", None)
            return new
        new = requested
        meta, old_meta = _meta(new), _meta(current)
        for immutable in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace"):
            if immutable in old_meta:
                meta[immutable] = old_meta[immutable]
            else:
                meta.pop(immutable, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "status" in res.subresources:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if res.kind == "Service":
            self._keep_cluster_ip(current, new)
        elif res.kind == "Pod":
            _check_pod_update(current, new)
        elif res.kind in ("Deployment", "ReplicaSet"):
            old_selector, selector = _dict(current.get("spec")).get("selector"), _dict(new.get("spec")).get("selector")
            if selector != old_selector:
                raise errors.invalid(
                    res.kind,
                    str(meta.get("name", "")),
                    [
                        (
                            "spec.selector",
                            "FieldValueInvalid",
                            f"Invalid value: {json.dumps(selector)}: field is immutable",
                        )
                    ],
                    res.group,
                )
        elif res.kind in ("RoleBinding", "ClusterRoleBinding") and new.get("roleRef") != current.get("roleRef"):
            ref = _dict(new.get("roleRef"))
            shown = (
                f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
                f'Name:"{ref.get("name", "")}"}}'
            )
            raise errors.invalid(
                res.kind,
                str(meta.get("name", "")),
                [("roleRef", "FieldValueInvalid", f"Invalid value: {shown}: cannot change roleRef")],
                res.group,
            )
        if "spec" in new or "generation" in old_meta:
            generation = int(old_meta.get("generation") or 1)
            meta["generation"] = generation + 1 if _spec_part(new) != _spec_part(current) else generation
        return new

    def _keep_cluster_ip(self, current: Object, new: Object) -> None:
        """ClusterIPs are immutable; node ports the old type needed go when the type stops needing them."""
        old_spec, spec = current.get("spec") or {}, new.get("spec")
        if not isinstance(spec, dict):
            return
        if _wants_node_ports(old_spec) and not _wants_node_ports(spec):
            old_node_ports = _node_ports(current)
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and port.get("nodePort") in old_node_ports:
                    del port["nodePort"]
        for field in ("clusterIP", "clusterIPs"):
            if field in old_spec and not spec.get(field):
                spec[field] = old_spec[field]
        if spec.get("clusterIP") != old_spec.get("clusterIP") or spec.get("clusterIPs") != old_spec.get("clusterIPs"):
            name = _meta(new).get("name", "")
            field = "spec.clusterIP" if spec.get("clusterIP") != old_spec.get("clusterIP") else "spec.clusterIPs"
            value = spec.get("clusterIP") if field == "spec.clusterIP" else spec.get("clusterIPs")
            raise errors.invalid(
                "Service",
                name,
                [(field, "FieldValueInvalid", f"Invalid value: {json.dumps(value)}: field is immutable")],
            )

    async def _finish_if_deleting(self, res: Resource, namespace: str | None, obj: Object) -> Object:
        """An object being deleted goes once its last finalizer is removed."""
        meta = _meta(obj)
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return obj
        if res.kind == "Pod" and (meta.get("deletionGracePeriodSeconds") or 0) > 0:
            return obj
        if res.kind == "Namespace":
            return obj
        try:
            await self.storage.delete(
                self.key(res, namespace, meta["name"]), int(meta["resourceVersion"]), self._delete_extras(res, obj)
            )
        except (KeyNotFound, RevisionConflict):
            pass
        return obj

    # -- delete --------------------------------------------------------------

    async def delete(self, res: Resource, namespace: str | None, name: str, options: DeleteOptions) -> Object:
        """Delete as Kubernetes does; returns the object (gone, or marked for deletion)."""
        for _ in range(MAX_RETRIES):
            stored = await self._read(res, namespace, name)
            obj = stored.obj
            meta = _meta(obj)
            if options.uid and options.uid != meta.get("uid"):
                raise errors.conflict(
                    res.plural,
                    name,
                    f"Precondition failed: UID in precondition: {options.uid}, UID in object meta: {meta.get('uid')}",
                    res.group,
                )
            if options.resource_version and options.resource_version != meta.get("resourceVersion"):
                raise errors.conflict(
                    res.plural,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {options.resource_version}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                    res.group,
                )
            if options.dry_run:
                return obj
            if res.kind == "Namespace":
                return await self._terminate_namespace(stored)
            marked = self._mark_for_deletion(res, obj, options)
            try:
                if marked is not None:
                    if marked == obj:
                        return obj
                    return await self.storage.update(self.key(res, namespace, name), marked, stored.revision)
                await self.storage.delete(
                    self.key(res, namespace, name), stored.revision, self._delete_extras(res, obj)
                )
                return obj
            except RevisionConflict:
                continue
            except KeyNotFound:
                raise self.not_found(res, name) from None
        raise errors.conflict(res.plural, name, _STALE, res.group)

    def _mark_for_deletion(self, res: Resource, obj: Object, options: DeleteOptions) -> Object | None:
        """The object with deletionTimestamp set, or None when it goes at once.

        Foreground and Orphan propagation add the garbage collector's
        finalizer, so the object stays (marked) until its dependents are
        deleted or released. Pods own nothing here, so for them every policy
        is Background and graceful termination is untouched.
        """
        meta = _meta(obj)
        finalizer = PROPAGATION_FINALIZERS.get(options.propagation_policy or "")
        if finalizer and res.kind != "Pod" and not meta.get("deletionTimestamp"):
            obj = copy.deepcopy(obj)
            meta = _meta(obj)
            meta["finalizers"] = [*(f for f in meta.get("finalizers") or [] if f != finalizer), finalizer]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            marked = copy.deepcopy(obj)
            _meta(marked)["deletionTimestamp"] = now_rfc3339()
            _meta(marked)["deletionGracePeriodSeconds"] = 0
            return marked
        if res.kind != "Pod":
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        grace = options.grace_period_seconds
        if grace is None:
            grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed") or grace <= 0:
            return None
        existing = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and existing is not None and existing <= grace:
            return obj
        marked = copy.deepcopy(obj)
        _meta(marked)["deletionTimestamp"] = now_rfc3339(grace)
        _meta(marked)["deletionGracePeriodSeconds"] = grace
        return marked

    # -- namespaces ----------------------------------------------------------

    async def _terminate_namespace(self, stored: Stored) -> Object:
        ns = copy.deepcopy(stored.obj)
        meta = _meta(ns)
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = 0
            ns.setdefault("status", {})["phase"] = "Terminating"
            try:
                ns = await self.storage.update(stored.key, ns, stored.revision)
            except RevisionConflict:
                raise errors.conflict("namespaces", meta["name"], _STALE) from None
        self.start_namespace_cleanup(meta["name"])
        return ns

    def start_namespace_cleanup(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._empty_namespace(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _empty_namespace(self, name: str) -> None:
        """Delete everything in a terminating namespace, then the namespace (the namespace controller's job)."""
        namespaced = [r for r in RESOURCES if r.namespaced]
        while True:
            remaining = 0
            for res in namespaced:
                for stored in (await self.storage.list(self.prefix(res, name)))[0]:
                    remaining += 1
                    try:
                        await self.delete(res, name, _meta(stored.obj)["name"], DeleteOptions())
                    except ApiError as err:
                        if err.code != 404:
                            log.warning("namespace %s cleanup: %s", name, err)
            if remaining == 0:
                break
            await asyncio.sleep(1.0)
        ns_res = resource("namespaces")
        namespace = await self.storage.get(self.key(ns_res, None, name))
        if namespace is not None:
            try:
                await self.storage.delete(namespace.key, namespace.revision)
            except (KeyNotFound, RevisionConflict):
                log.info("namespace %s changed during cleanup", name)

    # -- pods/binding --------------------------------------------------------

    async def bind(self, namespace: str, name: str, body: Any) -> Object:
        if not isinstance(body, dict) or body.get("kind") not in (None, "Binding"):
            raise errors.bad_request("the body of a pods/binding request must be a Binding object")
        meta = _dict(body.get("metadata"))
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request("name in URL does not match name in Binding object")
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("namespace in URL does not match namespace in Binding object")
        target = _dict(body.get("target"))
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid(
                "Binding",
                name,
                [
                    (
                        "target.kind",
                        "FieldValueNotSupported",
                        'Unsupported value: "' + str(target.get("kind")) + '": supported values: "Node"',
                    )
                ],
            )
        node = target.get("name")
        if not node:
            raise errors.invalid("Binding", name, [("target.name", "FieldValueRequired", "Required value")])
        pods = resource("pods")
        for _ in range(MAX_RETRIES):
            stored = await self._read(pods, namespace, name)
            pod = copy.deepcopy(stored.obj)
            pod_meta = _meta(pod)
            why = None
            if pod_meta.get("deletionTimestamp"):
                why = f"pod {name} is being deleted, cannot be assigned to a host"
            elif (pod.get("spec") or {}).get("nodeName"):
                why = f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
            elif meta.get("uid") and meta["uid"] != pod_meta.get("uid"):
                why = (
                    f"Precondition failed: UID in precondition: {meta['uid']}, "
                    f"UID in object meta: {pod_meta.get('uid')}"
                )
            elif meta.get("resourceVersion") and meta["resourceVersion"] != pod_meta.get("resourceVersion"):
                why = _STALE
            if why:
                raise errors.conflict("pods/binding", name, why)
            pod.setdefault("spec", {})["nodeName"] = node
            if meta.get("annotations"):
                pod_meta.setdefault("annotations", {}).update(meta["annotations"])
            conditions = [
                c for c in pod.setdefault("status", {}).get("conditions") or [] if c.get("type") != "PodScheduled"
            ]
            conditions.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
            )
            pod["status"]["conditions"] = conditions
            try:
                await self.storage.update(stored.key, pod, stored.revision)
            except RevisionConflict:
                continue
            except KeyNotFound:
                raise self.not_found(pods, name) from None
            return errors.status_success(201)
        raise errors.conflict("pods/binding", name, _STALE)

    # -- scale ---------------------------------------------------------------

    @staticmethod
    def to_scale(obj: Object) -> Object:
        meta = _meta(obj)
        selector = (obj.get("spec") or {}).get("selector") or {}
        try:
            reqs = from_label_selector(selector)
        except ApiError:
            reqs = ()
        selector_text = format_selector(reqs)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector_text},
        }

    async def get_scale(self, res: Resource, namespace: str, name: str) -> Object:
        return self.to_scale(await self.get(res, namespace, name))

    async def update_scale(self, res: Resource, namespace: str, name: str, scale: Any, options: WriteOptions) -> Object:
        return await self._write_scale(res, namespace, name, lambda _current: scale, options)

    async def patch_scale(
        self, res: Resource, namespace: str, name: str, patch_type: str, patch_body: Any, options: WriteOptions
    ) -> Object:
        return await self._write_scale(
            res, namespace, name, lambda current: apply_patch("Scale", current, patch_type, patch_body), options
        )

    async def _write_scale(
        self, res: Resource, namespace: str, name: str, compute: Callable[[Object], Any], options: WriteOptions
    ) -> Object:
        for _ in range(MAX_RETRIES):
            stored = await self._read(res, namespace, name)
            scale = compute(self.to_scale(stored.obj))
            if not isinstance(scale, dict) or scale.get("kind") not in (None, "Scale"):
                raise errors.bad_request("the body of a scale request must be an autoscaling/v1 Scale object")
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    name,
                    [
                        (
                            "spec.replicas",
                            "FieldValueInvalid",
                            f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
                        )
                    ],
                    "autoscaling",
                )
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != stored.obj["metadata"]["resourceVersion"]:
                raise errors.conflict(res.plural, name, _STALE, res.group)
            new = copy.deepcopy(stored.obj)
            if new["spec"].get("replicas") == replicas:
                return self.to_scale(new)
            new["spec"]["replicas"] = replicas
            _meta(new)["generation"] = int(_meta(new).get("generation") or 1) + 1
            if options.dry_run:
                return self.to_scale(new)
            try:
                saved = await self.storage.update(stored.key, new, stored.revision)
            except RevisionConflict:
                if rv:
                    raise errors.conflict(res.plural, name, _STALE, res.group) from None
                continue
            return self.to_scale(saved)
        raise errors.conflict(res.plural, name, _STALE, res.group)

    # -- startup -------------------------------------------------------------

    async def ensure_defaults(self, advertise_address: str, port: int) -> None:
        """Default namespaces, the `kubernetes` Service and its Endpoints; resume namespace cleanup."""
        namespaces = resource("namespaces")
        for name in DEFAULT_NAMESPACES:
            try:
                await self.create(namespaces, None, {"metadata": {"name": name}}, WriteOptions())
            except ApiError as err:
                if err.code != 409:
                    raise
        services = resource("services")
        service = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": self.ip_range.first(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
        }
        try:
            await self.create(services, "default", service, WriteOptions())
        except ApiError as err:
            if err.code != 409:
                raise
        if self.endpoint_reconciler is None:  # startup retries this method until etcd answers
            reconciler = EndpointReconciler(self.storage, self.publish_kubernetes_endpoints, advertise_address, port)
            await reconciler.reconcile()
            self.endpoint_reconciler = reconciler
            task = asyncio.get_running_loop().create_task(self.endpoint_reconciler.run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for stored in (await self.storage.list(self.prefix(namespaces, None)))[0]:
            if _meta(stored.obj).get("deletionTimestamp"):
                self.start_namespace_cleanup(_meta(stored.obj)["name"])

    async def publish_kubernetes_endpoints(self, ips: Sequence[str], port: int) -> None:
        """The `kubernetes` Endpoints and EndpointSlice: the live API servers (see endpoint_reconciler)."""
        subsets = [
            {
                "addresses": [{"ip": ip} for ip in ips],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ]
        wanted = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": subsets,
        }
        await self._ensure_content(resource("endpoints"), wanted, {"subsets": subsets})
        # Written here as upstream's endpoint reconciler does, so kproxy finds the API server with no controllers.
        addresses = {
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        labels = {"kubernetes.io/service-name": "kubernetes"}
        meta = {"name": "kubernetes", "namespace": "default", "labels": labels}
        await self._ensure_content(resource("endpointslices"), {"metadata": meta, **addresses}, addresses)

    async def _ensure_content(self, res: Resource, wanted: Object, content: Object) -> None:
        """Create `wanted` in default, or merge-patch `content` into it when what is stored differs."""
        name = wanted["metadata"]["name"]
        try:
            await self.create(res, "default", wanted, WriteOptions())
        except ApiError as err:
            if err.code != 409:
                raise
            current = await self.get(res, "default", name)
            if any(current.get(field) != value for field, value in content.items()):
                await self.patch(res, "default", name, "merge", dict(content), WriteOptions())


def apply_patch(kind: str, current: Object, patch_type: str, patch_body: Any) -> Any:
    """Apply a patch of type "json", "merge" or "strategic"; errors become 422/400 Status."""
    try:
        if patch_type == "json":
            return patching.json_patch(current, patch_body)
        if patch_type == "merge":
            if not isinstance(patch_body, dict):
                raise patching.PatchError("a merge patch must be a JSON object")
            return patching.merge_patch(current, patch_body)
        if patch_type == "strategic":
            return patching.strategic_merge_patch(current, patch_body, kind)
    except patching.PatchError as err:
        raise ApiError(errors.status_failure(422, "Invalid", f"the patch could not be applied: {err}")) from None
    raise errors.unsupported_media_type(patch_type)
