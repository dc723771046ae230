"""The HTTP face of the API server: Kubernetes REST paths over aiohttp.

Requests are resolved against the resource table (`/api/v1/...`,
`/apis/<group>/<version>/...`, namespaced or not, with subresources),
turned into Registry calls, and answered in Kubernetes' wire format:
objects, lists, Tables for kubectl, chunked watch streams, and Status
bodies for every failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import AsyncIterator, Awaitable, Callable

import aetcd
import aiohttp
import grpc
import prometheus_client
from aiohttp import web

from control.api import errors
from control.api.errors import ApiError
from control.api.resources import Resource, group_versions, resource
from control.api.selectors import parse_field_selector, parse_label_selector
from control.apiserver import discovery, openapi_v2, protobuf, remotecommand, tables
from control.apiserver.allocator import ServiceIPRange
from control.apiserver import csr
from control.apiserver.authn import USER, Authentication
from control.apiserver.authz.filter import Authorization
from control.apiserver.bootstraptokens import BootstrapTokenAuthenticator
from control.apiserver.cache import DEFAULT_HISTORY
from control.apiserver.eviction import check_eviction_body, evict
from control.apiserver.kubelet_client import KubeletClient
from control.apiserver.limits import Limits, RequestLimiter
from control.apiserver.metrics_api import DEFAULT_RESOLUTION, PREFIX as METRICS_PREFIX, MetricsApi
from control.apiserver.registry import DeleteOptions, ListOptions, Registry, WriteOptions
from control.apiserver.serviceaccounts import ServiceAccountConfig, ServiceAccountTokens
from control.apiserver.storage import Storage

log = logging.getLogger(__name__)

Object = dict[str, Any]

REQUESTS = prometheus_client.Counter(
    "apiserver_request_total",
    "API requests by verb, resource, subresource and HTTP code.",
    ["verb", "resource", "subresource", "code"],
)
LATENCY = prometheus_client.Histogram(
    "apiserver_request_duration_seconds",
    "API request latency (watches: until the stream ends).",
    ["verb", "resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WATCHES = prometheus_client.Gauge(
    "apiserver_registered_watchers", "Watch streams currently open, by resource.", ["resource"]
)

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
ENCODED_EVENTS = 4096  # recent watch events kept encoded for fan-out
STARTUP_ATTEMPTS = 60  # one a second: the bring-up starts etcd just before the apiserver
VERB_KEY = web.RequestKey("pk_verb", str)
RESOURCE_KEY = web.RequestKey("pk_resource", str)
SUBRESOURCE_KEY = web.RequestKey("pk_subresource", str)


@dataclass(frozen=True)
class ServerConfig:
    """What the HTTP layer needs beyond the registry."""

    advertise_address: str = "127.0.0.1"
    port: int = 6443
    kubelet_port: int = 10250
    kubelet_ssl: ssl.SSLContext | None = None  # HTTPS to kubelets: our client certificate, their CA
    bookmark_interval: float = 30.0
    default_watch_timeout: float = 1800.0
    compaction_interval: float = 300.0  # Kubernetes' --etcd-compaction-interval default
    watch_cache_size: int = DEFAULT_HISTORY  # changes kept per resource for resuming watches
    limits: Limits = Limits()  # body size, in-flight requests, watches per client, slow clients
    # seconds between kubelet stats scrapes for metrics.k8s.io; None: no scraping (the CLI always
    # sets it; in-process test servers hold Nodes with made-up addresses that must not be dialled)
    metrics_resolution: float | None = None
    authorization_modes: tuple[str, ...] = ("AlwaysAllow",)  # --authorization-mode, in order
    admission_plugins: tuple[str, ...] = ()  # --enable-admission-plugins (NodeRestriction)
    service_accounts: ServiceAccountConfig = ServiceAccountConfig()  # token issuer and keys


@dataclass(frozen=True)
class Target:
    """A resolved resource path."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _status_response(err: ApiError) -> web.Response:
    return _json(err.status, err.code)


# -- path resolution ---------------------------------------------------------


def resolve(path: str) -> tuple[str, Target | None]:
    """Map a URL path to (group version, target); target None for the group-version root."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        gv, rest = parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise _not_found_path(path)
    resources = {r.plural: r for r in group_versions().get(gv, [])}
    if not resources:
        raise _not_found_path(path)
    if not rest:
        return gv, None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in resources and resources[rest[2]].namespaced:
        namespace, rest = rest[1], rest[2:]
    res = resources.get(rest[0])
    if res is None or len(rest) > 3:
        raise _not_found_path(path)
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and sub not in res.subresources:
        raise _not_found_path(path)
    return gv, Target(res, namespace, name, sub)


def _not_found_path(path: str) -> ApiError:
    return ApiError(errors.status_failure(404, "NotFound", "the server could not find the requested resource", {}))


# -- request helpers ---------------------------------------------------------


PROTOBUF = "application/vnd.kubernetes.protobuf"
_JSON_BODIES = (
    "application/json",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/octet-stream",
    "text/plain",
)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    if request.content_type == PROTOBUF:
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as err:
            raise ApiError(
                errors.status_failure(415, "UnsupportedMediaType", f"unsupported protobuf request body: {err}")
            ) from None
    if request.content_type not in _JSON_BODIES:
        raise errors.unsupported_media_type(request.content_type)
    try:
        return json.loads(raw)
    except UnicodeDecodeError as err:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: body is not UTF-8: {err}") from None
    except json.JSONDecodeError as err:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {err}") from None


def _write_options(request: web.Request) -> WriteOptions:
    validation = request.query.get("fieldValidation", "")
    if validation not in ("", "Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f"fieldValidation parameter unsupported: {validation!r} (supported: Ignore, Warn, Strict)"
        )
    dry_run = request.query.getall("dryRun", [])
    if any(v != "All" for v in dry_run):
        raise errors.bad_request('dryRun: Unsupported value: only "All" is supported')
    return WriteOptions(strict=validation == "Strict", dry_run=bool(dry_run))


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"{name}: invalid integer {value!r}") from None


def _list_options(request: web.Request, res: Resource) -> ListOptions:
    limit = _int_param(request, "limit") or 0
    if limit < 0:
        raise errors.bad_request("limit must be non-negative")
    return ListOptions(
        label_selector=parse_label_selector(request.query.get("labelSelector")),
        field_selector=parse_field_selector(request.query.get("fieldSelector"), res.plural),
        limit=limit,
        continue_token=request.query.get("continue", ""),
        resource_version=request.query.get("resourceVersion", ""),
        resource_version_match=request.query.get("resourceVersionMatch", ""),
    )


async def _delete_options(request: web.Request) -> DeleteOptions:
    body = await _body(request) or {}
    if not isinstance(body, dict):
        raise errors.bad_request("the body of a DELETE request must be a DeleteOptions object")
    return _parse_delete_options(body, request)


def _parse_delete_options(body: Object, request: web.Request) -> DeleteOptions:
    """DeleteOptions from a JSON body (DELETE, or an Eviction's deleteOptions) and the query."""
    grace = body.get("gracePeriodSeconds")
    if grace is None:
        grace = _int_param(request, "gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise errors.bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}")
    policy = body.get("propagationPolicy") or request.query.get("propagationPolicy")
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise errors.bad_request(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: "Background", "Foreground", "Orphan"'
        )
    preconditions = body.get("preconditions") or {}
    dry_run = body.get("dryRun") or request.query.getall("dryRun", [])
    return DeleteOptions(
        grace_period_seconds=grace,
        propagation_policy=policy,
        uid=preconditions.get("uid"),
        resource_version=preconditions.get("resourceVersion"),
        dry_run=bool(dry_run),
    )


def _is_true(value: str | None) -> bool:
    return value in ("1", "true", "True")


# -- the handler -------------------------------------------------------------


class ApiHandler:
    """Dispatches resource requests to the registry."""

    def __init__(self, registry: Registry, config: ServerConfig, authentication: Authentication):
        self.registry = registry
        self.config = config
        self.authentication = authentication
        self.service_accounts = ServiceAccountTokens.from_config(registry, config.service_accounts)
        self.kubelets = KubeletClient(config.kubelet_port, config.kubelet_ssl)
        self._encoded_events: dict[tuple[str, str, str, str], bytes] = {}

    def _encoded_event(self, plural: str, kind: str, obj: Object) -> bytes:
        """A watch event's line, encoded once for all the watchers that receive it.

        (type, uid, resourceVersion) names one content of one object, so
        a thousand watchers of a resource cost one json.dumps per change.
        """
        meta = obj.get("metadata") or {}
        key = (plural, kind, str(meta.get("uid", meta.get("name"))), str(meta.get("resourceVersion")))
        line = self._encoded_events.get(key)
        if line is None:
            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            if len(self._encoded_events) >= ENCODED_EVENTS:
                del self._encoded_events[next(iter(self._encoded_events))]
            self._encoded_events[key] = line
        return line

    async def handle(self, request: web.Request) -> web.StreamResponse:
        gv, target = resolve(request.path)
        if target is None:
            if request.method != "GET":
                raise errors.method_not_allowed()
            return _json(discovery.api_resource_list(gv))
        request[RESOURCE_KEY] = target.resource.plural
        request[SUBRESOURCE_KEY] = target.subresource or ""
        if target.resource.namespaced and target.namespace is None and target.name is not None:
            raise _not_found_path(request.path)
        if target.name is None:
            return await self._collection(request, target)
        if target.subresource is None:
            return await self._object(request, target)
        return await self._subresource(request, target)

    async def _collection(self, request: web.Request, t: Target) -> web.StreamResponse:
        res = t.resource
        if request.method == "GET":
            if _is_true(request.query.get("watch")):
                request[VERB_KEY] = "WATCH"
                return await self._watch(request, t)
            request[VERB_KEY] = "LIST"
            listed = await self.registry.list(res, t.namespace, _list_options(request, res))
            return self._render_list(request, res, listed)
        if request.method == "POST":
            if res.namespaced and t.namespace is None:
                raise errors.method_not_allowed()
            if res.plural == "tokenreviews":
                chain = self.authentication.token_authenticators
                return _json(await self.service_accounts.review(await _body(request), chain), 201)
            body = await self._admit(request, res, t.namespace, await _body(request))
            created = await self.registry.create(res, t.namespace, body, _write_options(request))
            return _json(created, 201)
        if request.method == "DELETE":
            request[VERB_KEY] = "DELETECOLLECTION"
            listed = await self.registry.list(res, t.namespace, _list_options(request, res))
            options = await _delete_options(request)
            deleted = []
            for obj in listed["items"]:
                meta = obj["metadata"]
                try:
                    deleted.append(await self.registry.delete(res, meta.get("namespace"), meta["name"], options))
                except ApiError as err:
                    if err.code != 404:
                        raise
            return _json({**listed, "items": deleted})
        raise errors.method_not_allowed()

    async def _object(self, request: web.Request, t: Target) -> web.StreamResponse:
        res, name = t.resource, t.name or ""
        if request.method == "GET":
            obj = await self.registry.get(res, t.namespace, name)
            if tables.wants_table(request.headers.get("Accept", "")):
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                return _json(tables.to_table(res.kind, [obj], meta, request.query.get("includeObject", "Metadata")))
            return _json(obj)
        if request.method == "PUT":
            return _json(
                await self.registry.update(res, t.namespace, name, await _body(request), _write_options(request))
            )
        if request.method == "PATCH":
            patch_type = self._patch_type(request)
            return _json(
                await self.registry.patch(
                    res, t.namespace, name, patch_type, await _body(request), _write_options(request)
                )
            )
        if request.method == "DELETE":
            # 200 even when only marked for deletion (graceful pods, finalizers,
            # namespaces): Kubernetes keeps 202 for orphanDependents=false only.
            return _json(await self.registry.delete(res, t.namespace, name, await _delete_options(request)))
        raise errors.method_not_allowed()

    async def _admit(self, request: web.Request, res: Resource, namespace: str | None, body: Any) -> Any:
        """Create-time admission: a pod's service account and token volume; a CSR's requester."""
        if res.plural == "pods":
            await self.service_accounts.admit_pod(namespace or "", body)
        elif res.plural == "certificatesigningrequests":
            body = csr.prepare_create(body, request.get(USER))
        return body

    @staticmethod
    def _patch_type(request: web.Request) -> str:
        content_type = request.content_type
        if content_type == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(f"{content_type} (server-side apply is not implemented)")
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        return PATCH_TYPES[content_type]

    async def _subresource(self, request: web.Request, t: Target) -> web.StreamResponse:
        res, name, sub = t.resource, t.name or "", t.subresource
        if sub == "status":
            if request.method == "GET":
                return _json(await self.registry.get(res, t.namespace, name))
            if request.method == "PUT":
                body = await _body(request)
                return _json(
                    await self.registry.update(res, t.namespace, name, body, _write_options(request), "status")
                )
            if request.method == "PATCH":
                patch_type = self._patch_type(request)
                body = await _body(request)
                return _json(
                    await self.registry.patch(
                        res, t.namespace, name, patch_type, body, _write_options(request), "status"
                    )
                )
        elif sub == "binding" and request.method == "POST":
            return _json(await self.registry.bind(t.namespace or "", name, await _body(request)), 201)
        elif sub == "scale":
            ns = t.namespace or ""
            if request.method == "GET":
                return _json(await self.registry.get_scale(res, ns, name))
            if request.method == "PUT":
                return _json(
                    await self.registry.update_scale(res, ns, name, await _body(request), _write_options(request))
                )
            if request.method == "PATCH":
                patch_type = self._patch_type(request)
                body = await _body(request)
                return _json(await self.registry.patch_scale(res, ns, name, patch_type, body, _write_options(request)))
        elif sub == "log" and request.method == "GET":
            return await self._logs(request, t.namespace or "", name)
        elif sub == "eviction" and request.method == "POST":
            body = check_eviction_body(await _body(request), name)
            options = _parse_delete_options(body, request)
            return _json(await evict(self.registry, t.namespace or "", name, options), 201)
        elif sub == "exec" and request.method in ("GET", "POST"):
            return await self._exec(request, t.namespace or "", name)
        elif sub == "token" and request.method == "POST":
            return _json(await self.service_accounts.token_request(t.namespace or "", name, await _body(request)), 201)
        elif sub == "approval":
            if request.method == "GET":
                return _json(await self.registry.get(res, None, name))
            if request.method in ("PUT", "PATCH"):
                approval_patch = self._patch_type(request) if request.method == "PATCH" else None
                body = await _body(request)
                return _json(
                    await csr.update_approval(
                        self.registry, name, request.method, body, approval_patch, _write_options(request)
                    )
                )
        raise errors.method_not_allowed()

    def _render_list(self, request: web.Request, res: Resource, listed: Object) -> web.Response:
        if tables.wants_table(request.headers.get("Accept", "")):
            return _json(
                tables.to_table(
                    res.kind, listed["items"], listed["metadata"], request.query.get("includeObject", "Metadata")
                )
            )
        return _json(listed)

    # -- watch ---------------------------------------------------------------

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        res = t.resource
        options = _list_options(request, res)
        bookmarks = _is_true(request.query.get("allowWatchBookmarks"))
        timeout = _int_param(request, "timeoutSeconds")
        deadline = time.monotonic() + (timeout if timeout is not None else self.config.default_watch_timeout)
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        include = request.query.get("includeObject", "Metadata")
        events = self.registry.watch(
            res, t.namespace, options.resource_version, options.label_selector, options.field_selector
        )
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, Object] | ApiError | None] = asyncio.Queue(maxsize=1000)
        producer = asyncio.create_task(_pump(events, queue))
        WATCHES.labels(res.plural).inc()
        last_rv = options.resource_version
        first_table = True
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), min(remaining, self.config.bookmark_interval))
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break
                    if bookmarks and last_rv and time.monotonic() < deadline:
                        await _send(response, {"type": "BOOKMARK", "object": _bookmark(res, last_rv)})
                    continue
                if item is None:
                    break
                if isinstance(item, ApiError):
                    await _send(response, {"type": "ERROR", "object": item.status})
                    break
                kind, obj = item
                if kind == "PROGRESS":
                    last_rv = str(obj["rv"])
                    continue
                last_rv = obj["metadata"]["resourceVersion"]
                if as_table:
                    obj = tables.to_table(res.kind, [obj], {"resourceVersion": last_rv}, include)
                    if not first_table:
                        obj["columnDefinitions"] = []
                    first_table = False
                    await _send(response, {"type": kind, "object": obj})
                else:
                    await response.write(self._encoded_event(res.plural, kind, obj))
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            log.debug("watch client went away")
        finally:
            WATCHES.labels(res.plural).dec()
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        try:
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response

    # -- logs ----------------------------------------------------------------

    async def _pod_container(self, request: web.Request, namespace: str, name: str) -> tuple[Object, str]:
        """The pod and the container a logs/exec request means (`container`, or the only one)."""
        pod = await self.registry.get(resource("pods"), namespace, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        init = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                choices = " ".join(str(c) for c in containers)
                message = f"a container name must be specified for pod {name}, choose one of: [{choices}]"
                if init:
                    message += f" or one of the init containers: [{' '.join(str(c) for c in init)}]"
                raise errors.bad_request(message)
            container = containers[0]
        elif container not in containers and container not in init:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return pod, str(container)

    async def _kubelet_base(self, pod: Object) -> str:
        """`http://<InternalIP>:<kubelet port>` of the node the pod is bound to."""
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        return self.kubelets.base_url(await self.registry.get(resource("nodes"), None, node_name))

    async def _exec(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        # the pod's errors first: kubectl retries a refused WebSocket over SPDY and shows that answer
        pod, container = await self._pod_container(request, namespace, name)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            phase = pod["status"]["phase"]
            raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        base = await self._kubelet_base(pod)
        protocols = remotecommand.check_exec_request(request)
        url = f"{base}/exec/{namespace}/{name}/{container}"
        session = self.kubelets.session(aiohttp.ClientTimeout(total=None, sock_connect=10))
        return await remotecommand.proxy_exec(request, url, protocols, session)

    async def _logs(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pod, container = await self._pod_container(request, namespace, name)
        base = await self._kubelet_base(pod)
        params = {
            k: request.query[k]
            for k in ("follow", "tailLines", "timestamps", "sinceSeconds", "previous", "limitBytes", "sinceTime")
            if k in request.query
        }
        url = f"{base}/containerLogs/{namespace}/{name}/{container}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        try:
            async with self.kubelets.session(timeout) as session:
                async with session.get(url, params=params) as upstream:
                    if upstream.status >= 400:
                        text = await upstream.text()
                        raise ApiError(
                            errors.status_failure(
                                upstream.status,
                                "BadRequest" if upstream.status == 400 else "InternalError",
                                text.strip() or f"kubelet returned {upstream.status}",
                            )
                        )
                    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                    return response
        except aiohttp.ClientError as err:
            raise errors.internal_error(f'Get "{url}": {err}') from None


async def _pump(events: AsyncIterator[tuple[str, Object]], queue: asyncio.Queue[Any]) -> None:
    """Move watch events into the queue the streaming loop reads; errors and the end go in too."""
    try:
        async for event in events:
            await queue.put(event)
    except ApiError as err:
        await queue.put(err)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # etcd went away: end the stream, the client re-watches
        log.warning("watch ended: %s", err)
        await queue.put(errors.internal_error(f"watch ended: {err}"))
    else:
        await queue.put(None)


async def _send(response: web.StreamResponse, event: Object) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _bookmark(res: Resource, rv: str) -> Object:
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": {"resourceVersion": rv}}


# -- middleware and the application ------------------------------------------


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Status bodies for every failure; request metrics."""
    started = time.monotonic()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except ApiError as err:
        code = err.code
        return _status_response(err)
    except web.HTTPException as err:
        code = err.status
        if err.status == 404:
            return _status_response(_not_found_path(request.path))
        if err.status == 405:
            return _status_response(errors.method_not_allowed())
        raise
    except (grpc.aio.AioRpcError, aetcd.ClientError) as err:
        code = 503
        log.warning("etcd request failed", extra={"path": request.path, "error": str(err)})
        return _status_response(errors.service_unavailable(f"storage (etcd) is unavailable: {err}"))
    except Exception as err:
        log.exception("request %s %s failed", request.method, request.path)
        code = 500
        return _status_response(errors.internal_error(str(err) or type(err).__name__))
    finally:
        verb = request.get(VERB_KEY, request.method)
        plural = request.get(RESOURCE_KEY, "")
        REQUESTS.labels(verb, plural, request.get(SUBRESOURCE_KEY, ""), str(code)).inc()
        LATENCY.labels(verb, plural).observe(time.monotonic() - started)


async def _compact_forever(storage: Storage, interval: float) -> None:
    """Compact etcd history each interval to the revision seen one interval earlier, as kube-apiserver does.

    Watchers and continue tokens older than that get 410 Expired and relist.
    """
    previous = 0
    while True:
        await asyncio.sleep(interval)
        try:
            current = await storage.revision()
            if previous:
                await storage.compact(previous)
                log.info("compacted etcd", extra={"revision": previous})
            previous = current
        except (grpc.aio.AioRpcError, aetcd.ClientError) as err:
            log.warning("etcd compaction failed", extra={"error": str(err)})


def create_app(
    storage: Storage, ip_range: ServiceIPRange, config: ServerConfig, authentication: Authentication | None = None
) -> web.Application:
    """The API server application; startup creates the default objects.

    Without `authentication` every caller is system:anonymous (plain-HTTP test servers).
    """
    authentication = authentication or Authentication(anonymous=True)
    registry = Registry(storage, ip_range, config.watch_cache_size)
    handler = ApiHandler(registry, config, authentication)
    authentication.add_token_authenticator(BootstrapTokenAuthenticator(registry))
    authentication.add_token_authenticator(handler.service_accounts)
    metrics_api = MetricsApi(registry, handler.kubelets, config.metrics_resolution or DEFAULT_RESOLUTION)
    limiter = RequestLimiter(config.limits, resolve)
    authorization = Authorization(registry, config.authorization_modes, config.admission_plugins)
    app = web.Application(
        middlewares=[_observe, authentication.middleware, limiter.middleware, authorization.middleware],
        client_max_size=config.limits.max_request_body_bytes,
    )
    background: list[asyncio.Task[None]] = []

    async def startup(_: web.Application) -> None:
        """Wait for etcd (it may start after us), then create the default objects."""
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            try:
                await storage.connect()
                await registry.ensure_defaults(config.advertise_address, config.port)
                background.extend(await authorization.start())
                background.append(asyncio.create_task(_compact_forever(storage, config.compaction_interval)))
                if config.metrics_resolution is not None:
                    background.append(asyncio.create_task(metrics_api.scrape_forever()))
                return
            except (ApiError, OSError, aetcd.ClientError, grpc.aio.AioRpcError) as err:
                if attempt == STARTUP_ATTEMPTS:
                    raise RuntimeError(f"etcd unusable after {attempt} attempts: {err}") from err
                log.warning("waiting for etcd", extra={"attempt": attempt, "error": str(err)})
                await asyncio.sleep(1.0)

    async def cleanup(_: web.Application) -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await registry.close()
        await storage.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(storage.revision(), 5)
        except Exception as err:
            return web.Response(status=500, text=f"[-]etcd failed: {err}\nreadyz check failed\n")
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(), headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def version(_: web.Request) -> web.Response:
        return _json(discovery.version_info())

    async def api(request: web.Request) -> web.Response:
        return _json(discovery.api_versions(request.host))

    async def apis(_: web.Request) -> web.Response:
        return _json(discovery.api_group_list())

    async def api_group(request: web.Request) -> web.Response:
        group = discovery.api_group(request.match_info["group"])
        if group is None:
            raise _not_found_path(request.path)
        return _json(group)

    async def openapi_index(_: web.Request) -> web.Response:
        return _json(discovery.openapi_index())

    async def openapi_doc(request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        gv = (
            tail[len("api/") :] if tail.startswith("api/") else tail[len("apis/") :] if tail.startswith("apis/") else ""
        )
        doc = discovery.openapi_document(gv)
        if doc is None:
            raise _not_found_path(request.path)
        return _json(doc)

    async def openapi_v2_doc(request: web.Request) -> web.Response:
        if openapi_v2.wants_protobuf(request.headers.get("Accept", "")):
            return web.Response(body=openapi_v2.protobuf_bytes(), content_type=openapi_v2.PROTOBUF)
        return web.Response(body=openapi_v2.json_bytes(), content_type=openapi_v2.JSON)

    for path in ("/healthz", "/livez"):
        app.router.add_get(path, ok)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/openapi/v2", openapi_v2_doc)
    app.router.add_get("/openapi/v3", openapi_index)
    app.router.add_get("/openapi/v3/{tail:.+}", openapi_doc)
    app.router.add_get("/apis/{group}", api_group)
    app.router.add_route("*", METRICS_PREFIX, metrics_api.handle)
    app.router.add_route("*", METRICS_PREFIX + "/{tail:.+}", metrics_api.handle)
    authorization.add_routes(app)
    app.router.add_route("*", "/api/{tail:.+}", handler.handle)
    app.router.add_route("*", "/apis/{group}/{tail:.+}", handler.handle)
    return app
