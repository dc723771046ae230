"""The asyncio API client every pocketkube component uses.

`Client` speaks the Kubernetes REST API (JSON) and raises `ApiError` with
the server's Status object on failure.  `Informer` keeps a local cache of
one resource by list-then-watch, relisting when the watch expires (410), as
client-go's reflector does; components read the cache and react to events
instead of polling the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp
import yaml

from control.api.errors import ApiError, status_failure
from control.api.resources import Resource, resource

log = logging.getLogger(__name__)

Object = dict[str, Any]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: Object


def namespace_of(obj: Object) -> str | None:
    return obj.get("metadata", {}).get("namespace")


def name_of(obj: Object) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def key_of(obj: Object) -> str:
    """`namespace/name` (or `name` for cluster-scoped objects), as client-go keys caches."""
    ns = namespace_of(obj)
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used: missing file, context, cluster or credential file."""


def _named(config: Object, section: str, name: str, path: Path) -> Object:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return dict(entry.get(section[:-1]) or {})
    raise KubeconfigError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def _pem(entry: Object, key: str, base: Path, path: Path) -> bytes | None:
    """`<key>-data` (base64) or `<key>` (a file, relative to the kubeconfig's directory), as client-go reads them."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"kubeconfig {path}: {key}-data is not base64") from None
    file = entry.get(key)
    if not file:
        return None
    try:
        return (base / file).read_bytes()
    except OSError as err:
        raise KubeconfigError(f"kubeconfig {path}: {key} {base / file}: {err.strerror or err}") from None


def ssl_context_for(ca: bytes | None, cert: bytes | None, key: bytes | None, insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context: trust `ca` (else the system store), present `cert`/`key` if given."""
    context = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert and key:
        # ssl loads a certificate chain from files only; the temporary files live just for this call.
        with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
            cert_file.write(cert)
            key_file.write(key)
            cert_file.flush()
            key_file.flush()
            context.load_cert_chain(cert_file.name, key_file.name)
    return context


class Client:
    """A Kubernetes API client bound to one server URL.

    Resources are named by their plural ("pods", "deployments"); the group
    and version come from `control.api.resources`.
    """

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        user_agent: str = "pocketkube",
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.server = server.rstrip("/")
        self._headers = {"User-Agent": user_agent, "Accept": JSON}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path, *, context: str | None = None, user_agent: str = "pocketkube", timeout: float = 30.0
    ) -> Client:
        """A client for a kubeconfig's (current) context: server, CA, client certificate or bearer token."""
        path = Path(path)
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise KubeconfigError(f"kubeconfig {path}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise KubeconfigError(f"kubeconfig {path}: not YAML: {err}") from None
        if not isinstance(config, dict):
            raise KubeconfigError(f"kubeconfig {path}: not a Config object")
        name = context or config.get("current-context")
        if not name:
            raise KubeconfigError(f"kubeconfig {path}: no current-context")
        ctx = _named(config, "contexts", name, path)
        cluster = _named(config, "clusters", str(ctx.get("cluster")), path)
        user = _named(config, "users", str(ctx.get("user")), path) if ctx.get("user") else {}
        server = cluster.get("server")
        if not server:
            raise KubeconfigError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")
        base = path.parent
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (_pem(user, "tokenFile", base, path) or b"").decode().strip()
        cert, key = _pem(user, "client-certificate", base, path), _pem(user, "client-key", base, path)
        if bool(cert) != bool(key):
            raise KubeconfigError(f"kubeconfig {path}: user {ctx.get('user')!r} needs both client-certificate and key")
        ssl_context = None
        if str(server).startswith("https://"):
            try:
                ssl_context = ssl_context_for(
                    _pem(cluster, "certificate-authority", base, path),
                    cert,
                    key,
                    bool(cluster.get("insecure-skip-tls-verify")),
                )
            except ssl.SSLError as err:
                raise KubeconfigError(f"kubeconfig {path}: TLS material does not load: {err}") from None
        return cls(str(server), token=token, user_agent=user_agent, timeout=timeout, ssl_context=ssl_context)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of this client's connections (the kubelet reloads a rotated certificate into it)."""
        return self._ssl_context

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl_context) if self._ssl_context is not None else None
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- raw requests ------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """Send one request; return the decoded JSON body or raise ApiError."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        try:
            async with self.session.request(
                method,
                self.server + path,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                text = await resp.text()
                return _decode(resp.status, text)
        except aiohttp.ClientError as err:
            raise ApiError(status_failure(503, "ServiceUnavailable", f"{method} {path}: {err}")) from err

    async def request_text(self, path: str, params: dict[str, str] | None = None) -> str:
        """GET a non-JSON body (pod logs)."""
        async with self.session.get(self.server + path, params=params, timeout=self._timeout) as resp:
            text = await resp.text()
            if resp.status >= 400:
                _decode(resp.status, text)
            return text

    # -- verbs -------------------------------------------------------------

    async def get(self, plural: str, name: str, namespace: str | None = None) -> Object:
        return await self.request("GET", resource(plural).path(namespace, name))

    async def list(
        self,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Object:
        """The list object: `items` plus `metadata.resourceVersion`."""
        params = _selector_params(label_selector, field_selector)
        return await self.request("GET", resource(plural).path(namespace), params=params)

    async def create(self, plural: str, obj: Object, namespace: str | None = None) -> Object:
        res = resource(plural)
        ns = namespace or namespace_of(obj)
        return await self.request("POST", res.path(ns), body=_with_type(res, obj))

    async def update(self, plural: str, obj: Object) -> Object:
        """PUT the whole object; 409 Conflict if its resourceVersion is stale."""
        res = resource(plural)
        return await self.request("PUT", res.path(namespace_of(obj), name_of(obj)), body=_with_type(res, obj))

    async def update_status(self, plural: str, obj: Object) -> Object:
        """PUT to the status subresource: only `status` changes."""
        res = resource(plural)
        path = res.path(namespace_of(obj), name_of(obj), "status")
        return await self.request("PUT", path, body=_with_type(res, obj))

    async def patch(
        self,
        plural: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str | None = None,
    ) -> Object:
        path = resource(plural).path(namespace, name, subresource)
        return await self.request("PATCH", path, body=patch, content_type=patch_type)

    async def delete(
        self,
        plural: str,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> Object:
        """DELETE an object.

        A pod bound to a node is deleted gracefully: the server sets
        `metadata.deletionTimestamp` and the kubelet finishes the deletion
        with `grace_period_seconds=0` once its containers have stopped.
        """
        options: Object = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        return await self.request("DELETE", resource(plural).path(namespace, name), body=options)

    async def bind(self, namespace: str, pod: str, node: str) -> Object:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        return await self.request("POST", resource("pods").path(namespace, pod, "binding"), body=body)

    async def watch(
        self,
        plural: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events; ends when the server closes the stream.

        An ERROR event (for example 410 Expired) is raised as ApiError.
        """
        params = _selector_params(label_selector, field_selector)
        params["watch"] = "1"
        params["allowWatchBookmarks"] = "true"
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        url = self.server + resource(plural).path(namespace)
        no_total = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)
        try:
            async with self.session.get(url, params=params, timeout=no_total) as resp:
                if resp.status >= 400:
                    _decode(resp.status, await resp.text())
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise ApiError(event.get("object") or status_failure(500, "InternalError", "watch error"))
                    yield WatchEvent(event["type"], event["object"])
        except aiohttp.ClientError as err:
            raise ApiError(status_failure(503, "ServiceUnavailable", f"watch {plural}: {err}")) from err


def _selector_params(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _with_type(res: Resource, obj: Object) -> Object:
    return {"apiVersion": res.api_version, "kind": res.kind, **obj}


def _decode(status: int, text: str) -> Any:
    try:
        body = json.loads(text) if text else {}
    except json.JSONDecodeError:
        body = None
    if status >= 400:
        if isinstance(body, dict) and body.get("kind") == "Status":
            raise ApiError(body)
        raise ApiError(status_failure(status, "Unknown", text.strip() or f"HTTP {status}"))
    if body is None:
        raise ApiError(status_failure(500, "InternalError", f"response is not JSON: {text[:200]!r}"))
    return body


EventHandler = Callable[[str, Object, Object | None], Awaitable[None] | None]


class Informer:
    """A list+watch cache of one resource, with change callbacks.

    Handlers get (event type, object, previous object or None); a handler
    that must see a consistent world should read `items()` rather than
    accumulate events.  `synced` is set once the first list has landed.
    """

    def __init__(
        self,
        client: Client,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        retry_delay: float = 1.0,
    ):
        self.client = client
        self.plural = plural
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.retry_delay = retry_delay
        self.synced = asyncio.Event()
        self._cache: dict[str, Object] = {}
        self._handlers: list[EventHandler] = []
        self.resource_version = ""

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def items(self) -> list[Object]:
        return list(self._cache.values())

    def get(self, name: str, namespace: str | None = None) -> Object | None:
        return self._cache.get(f"{namespace}/{name}" if namespace else name)

    def by_namespace(self, namespace: str) -> Iterable[Object]:
        return (o for o in self._cache.values() if namespace_of(o) == namespace)

    async def run(self) -> None:
        """List and watch forever, relisting after expiry or errors."""
        while True:
            try:
                await self._list()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.code != 410:
                    log.info("informer %s: %s; retrying", self.plural, err)
                    await asyncio.sleep(self.retry_delay)
            except Exception:  # a bug must not kill the cache for good
                log.exception("informer %s failed; retrying", self.plural)
                await asyncio.sleep(self.retry_delay)

    async def _list(self) -> None:
        listed = await self.client.list(
            self.plural,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        fresh = {key_of(o): o for o in listed.get("items") or []}
        old = self._cache
        self._cache = fresh
        self.resource_version = listed.get("metadata", {}).get("resourceVersion", "")
        for key, obj in old.items():
            if key not in fresh:
                await self._dispatch("DELETED", obj, obj)
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                await self._dispatch("ADDED", obj, None)
            elif prev.get("metadata", {}).get("resourceVersion") != obj.get("metadata", {}).get("resourceVersion"):
                await self._dispatch("MODIFIED", obj, prev)
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.client.watch(
            self.plural,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ):
            rv = event.object.get("metadata", {}).get("resourceVersion")
            if rv:
                self.resource_version = rv
            if event.type == "BOOKMARK":
                continue
            key = key_of(event.object)
            prev = self._cache.get(key)
            if event.type == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = event.object
            await self._dispatch(event.type, event.object, prev)

    async def _dispatch(self, kind: str, obj: Object, prev: Object | None) -> None:
        for handler in self._handlers:
            try:
                result = handler(kind, obj, prev)
                if result is not None:
                    await result
            except Exception:
                log.exception("informer %s: handler failed on %s %s", self.plural, kind, key_of(obj))
