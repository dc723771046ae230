"""The resource metrics API (`metrics.k8s.io/v1beta1`), served as metrics-server serves it.

A background task scrapes every kubelet's `/stats/summary` once per
resolution (`--metrics-resolution`, 15 s by default) and keeps the last
two points per node and per container; CPU usage is the rate between
them, memory the working set of the newest. Requests read that memory
and never reach a kubelet, so `kubectl top` and the HPA cost no scrape.
A node, pod or container with fewer than two usable points is left out,
as metrics-server does.

For the HorizontalPodAutoscaler (pod CPU of a scale target):

    GET /apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={selector}

answers a `PodMetricsList`; per item `metadata.name`, `timestamp`,
`window` (a Go duration such as "15.002s") and `containers[].usage.cpu`
(a quantity: "1234567n" nanocores, "250m", "1") and `.memory` ("10240Ki").
Pods without metrics yet are absent from `items`. With control.client:
`await client.request("GET", METRICS_RESOURCES[1].path(namespace), params={"labelSelector": selector})`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import prometheus_client
from aiohttp import web

from control.api import errors
from control.api.errors import ApiError
from control.api.quantity import parse_quantity
from control.api.resources import METRICS_RESOURCES, resource
from control.api.selectors import fields_match, parse_field_selector, parse_label_selector
from control.apiserver import discovery, tables
from control.apiserver.kubelet_client import KubeletClient
from control.apiserver.registry import ListOptions, Registry

log = logging.getLogger(__name__)

Object = dict[str, Any]

GROUP_VERSION = "metrics.k8s.io/v1beta1"
PREFIX = f"/apis/{GROUP_VERSION}"
DEFAULT_RESOLUTION = 15.0  # metrics-server's --metric-resolution
KUBELET_REQUEST_TIMEOUT = 10.0  # metrics-server's --kubelet-request-timeout
FRESH_CONTAINER_MIN_AGE = 10.0  # metrics-server: younger containers give inaccurate rates from their start

SCRAPES = prometheus_client.Counter(
    "apiserver_metrics_kubelet_scrapes_total", "Kubelet /stats/summary scrapes for the metrics API.", ["result"]
)
SCRAPE_DURATION = prometheus_client.Histogram(
    "apiserver_metrics_scrape_duration_seconds",
    "Time to scrape all kubelets once.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# -- points and rates ----------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One sample of a node or container (metrics-server's MetricsPoint)."""

    start_time: float  # seconds since the epoch; cumulative CPU was zero then
    timestamp: float  # when the CPU counter was read
    cpu_ns: int  # cumulative CPU time, nanoseconds
    memory_bytes: int  # working set


@dataclass(frozen=True)
class Usage:
    """A rate between two points, as served."""

    nanocores: int
    memory_bytes: int
    timestamp: float  # the newer point's
    window: float  # seconds between the points

    def resources(self) -> Object:
        return {"cpu": format_cpu(self.nanocores), "memory": format_memory(self.memory_bytes)}


def usage_between(last: Point, prev: Point) -> Usage | None:
    """CPU as (cpu ns difference) / (seconds between); None when the counters went backwards (a restart)."""
    if last.start_time < prev.start_time or last.cpu_ns < prev.cpu_ns or last.timestamp <= prev.timestamp:
        return None
    window = last.timestamp - prev.timestamp
    return Usage(int((last.cpu_ns - prev.cpu_ns) / window), last.memory_bytes, last.timestamp, window)


def _kept_previous(new: Point, last: Point | None, prev: Point | None) -> Point | None:
    """The older point to pair with `new`: the stored last if `new` is newer, else the stored prev if older."""
    if last is None:
        return None
    if new.timestamp > last.timestamp:
        return last
    if prev is not None and prev.timestamp < new.timestamp:
        return prev
    return None


class NodeStore:
    """The last two points per node."""

    def __init__(self) -> None:
        self.last: dict[str, Point] = {}
        self.prev: dict[str, Point] = {}

    def store(self, batch: Mapping[str, Point]) -> None:
        """Replace with a scrape's points; a node missing from the batch loses its metrics."""
        prev = {}
        for name, point in batch.items():
            kept = _kept_previous(point, self.last.get(name), self.prev.get(name))
            if kept is not None:
                prev[name] = kept
        self.last, self.prev = dict(batch), prev

    def usage(self, name: str) -> Usage | None:
        last, prev = self.last.get(name), self.prev.get(name)
        return None if last is None or prev is None else usage_between(last, prev)


PodKey = tuple[str, str]  # (namespace, name)


class PodStore:
    """The last two points per container of each pod."""

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self.last: dict[PodKey, dict[str, Point]] = {}
        self.prev: dict[PodKey, dict[str, Point]] = {}

    def store(self, batch: Mapping[PodKey, Mapping[str, Point]]) -> None:
        """Replace with a scrape's points.

        A container that started within the last resolution (but at least
        10 s ago) is paired with its own start, when its CPU counter was
        zero, so a new pod gets metrics after one scrape, as in metrics-server.
        """
        last: dict[PodKey, dict[str, Point]] = {}
        prev: dict[PodKey, dict[str, Point]] = {}
        for key, containers in batch.items():
            stored_last, stored_prev = self.last.get(key, {}), self.prev.get(key, {})
            kept: dict[str, Point] = {}
            for name, point in containers.items():
                age = point.timestamp - point.start_time
                if 0 < age < self.resolution and age >= FRESH_CONTAINER_MIN_AGE:
                    kept[name] = Point(point.start_time, point.start_time, 0, point.memory_bytes)
                    continue
                old = stored_last.get(name)
                if old is not None and point.start_time < old.timestamp:  # not restarted since
                    previous = _kept_previous(point, old, stored_prev.get(name))
                    if previous is not None:
                        kept[name] = previous
            if kept:
                prev[key] = kept
            last[key] = dict(containers)
        self.last, self.prev = last, prev

    def usage(self, key: PodKey) -> tuple[list[tuple[str, Usage]], float, float] | None:
        """Per-container usage, with the earliest container timestamp and its window; None unless every
        container has a previous point (metrics-server's rule)."""
        last, prev = self.last.get(key), self.prev.get(key)
        if last is None or prev is None:
            return None
        containers: list[tuple[str, Usage]] = []
        for name, point in sorted(last.items()):
            if name not in prev:
                return None
            usage = usage_between(point, prev[name])
            if usage is not None:
                containers.append((name, usage))
        if not containers:
            return None
        earliest = min((u for _, u in containers), key=lambda u: u.timestamp)
        return containers, earliest.timestamp, earliest.window


# -- the kubelet Summary -------------------------------------------------------


def parse_time(value: Any) -> float | None:
    """RFC 3339 (with or without fractional seconds) as epoch seconds; None if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    whole, dot, rest = text.partition(".")
    if dot:  # fromisoformat wants at most 6 fractional digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{whole}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _point(start: Any, stats: Mapping[str, Any]) -> Point | None:
    """A point from a Summary entry; None when a field metrics need is missing."""
    cpu, memory = stats.get("cpu") or {}, stats.get("memory") or {}
    start_time, timestamp = parse_time(start), parse_time(cpu.get("time"))
    cpu_ns, working_set = cpu.get("usageCoreNanoSeconds"), memory.get("workingSetBytes")
    if start_time is None or timestamp is None or not isinstance(cpu_ns, int) or not isinstance(working_set, int):
        return None
    return Point(start_time, timestamp, cpu_ns, working_set)


def points_from_summary(summary: Object) -> tuple[Point | None, dict[PodKey, dict[str, Point]]]:
    """The node's point and each pod's container points from a kubelet's `/stats/summary`."""
    node = summary.get("node") or {}
    node_point = _point(node.get("startTime"), node)
    pods: dict[PodKey, dict[str, Point]] = {}
    for entry in summary.get("pods") or []:
        ref = entry.get("podRef") or {}
        containers = {}
        for container in entry.get("containers") or []:
            point = _point(container.get("startTime"), container)
            if point is not None and container.get("name"):
                containers[str(container["name"])] = point
        if containers and ref.get("name"):
            pods[(str(ref.get("namespace", "")), str(ref["name"]))] = containers
    return node_point, pods


# -- wire formats ----------------------------------------------------------------

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def format_cpu(nanocores: int) -> str:
    """A nanocore count as Kubernetes prints a DecimalSI quantity of scale -9 ("1500u", "250m", "2")."""
    if nanocores == 0:
        return "0"
    mantissa, exponent = nanocores, -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    shift = exponent % 3  # down to a multiple of 3, as Quantity's canonical form does
    mantissa, exponent = mantissa * 10**shift, exponent - shift
    while exponent > 18:
        mantissa, exponent = mantissa * 1000, exponent - 3
    return f"{mantissa}{_DECIMAL_SUFFIXES[exponent]}"


def format_memory(size: int) -> str:
    """Bytes as Kubernetes prints a BinarySI quantity: the largest power-of-1024 suffix that divides exactly."""
    if -1024 < size < 1024:
        return str(size)
    power = 0
    while size % 1024 == 0 and power < len(_BINARY_SUFFIXES) - 1:
        size, power = size // 1024, power + 1
    return f"{size}{_BINARY_SUFFIXES[power]}"


def format_duration(seconds: float) -> str:
    """A window as Go's time.Duration prints it (metav1.Duration): "15.002s", "1m0.5s", "500ms"."""
    total = round(seconds * 1e9)
    if total == 0:
        return "0s"
    sign, total = ("-", -total) if total < 0 else ("", total)
    if total < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if total >= size:
                return sign + _fraction(total, size) + unit
    hours, rest = divmod(total, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _fraction(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}.{str(rest).rjust(width, '0').rstrip('0')}"


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the API ---------------------------------------------------------------------

NODE_METRICS, POD_METRICS = METRICS_RESOURCES


class MetricsApi:
    """Scrapes kubelets in the background and answers metrics.k8s.io requests from memory."""

    def __init__(self, registry: Registry, kubelets: KubeletClient, resolution: float = DEFAULT_RESOLUTION):
        if resolution <= 0:
            raise ValueError(f"metrics resolution must be positive, not {resolution}")
        self.registry, self.kubelets, self.resolution = registry, kubelets, resolution
        self.scrape_timeout = min(KUBELET_REQUEST_TIMEOUT, resolution * 0.9)
        self.nodes = NodeStore()
        self.pods = PodStore(resolution)
        self._failing: set[str] = set()  # nodes whose last scrape failed, to log transitions only

    # -- scraping ----------------------------------------------------------------

    async def scrape_forever(self) -> None:
        """Scrape every resolution until cancelled; a failed round is logged and the next one tried."""
        while True:
            started = time.monotonic()
            try:
                await self.scrape_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # etcd away: keep the last points, try again next round
                log.warning("metrics scrape failed", extra={"error": str(err)})
            await asyncio.sleep(max(0.0, self.resolution - (time.monotonic() - started)))

    async def scrape_once(self) -> None:
        """One round: every node's summary, at once, into the stores."""
        started = time.monotonic()
        nodes = (await self.registry.list(resource("nodes"), None, ListOptions()))["items"]
        async with self.kubelets.session(aiohttp.ClientTimeout(total=self.scrape_timeout)) as session:
            summaries = await asyncio.gather(*(self._summary(session, node) for node in nodes))
        node_batch: dict[str, Point] = {}
        pod_batch: dict[PodKey, dict[str, Point]] = {}
        failed: dict[str, str] = {}
        for node, summary in zip(nodes, summaries, strict=True):
            name = node["metadata"]["name"]
            if isinstance(summary, str):
                failed[name] = summary
                continue
            node_point, pods = points_from_summary(summary)
            if node_point is not None:
                node_batch[name] = node_point
            pod_batch.update(pods)
        self.nodes.store(node_batch)
        self.pods.store(pod_batch)
        self._log_failures(failed)
        SCRAPE_DURATION.observe(time.monotonic() - started)

    def _log_failures(self, failed: dict[str, str]) -> None:
        """One line when nodes start failing (a thousand address-less nodes are one line), one on recovery."""
        newly = sorted(set(failed) - self._failing)
        if newly:
            log.warning(
                "cannot scrape kubelet stats",
                extra={"nodes": newly[:5], "count": len(newly), "error": failed[newly[0]]},
            )
        recovered = sorted(self._failing - set(failed))
        if recovered:
            log.info("kubelet stats scrapes recovered", extra={"nodes": recovered[:5], "count": len(recovered)})
        self._failing = set(failed)

    async def _summary(self, session: aiohttp.ClientSession, node: Object) -> Object | str:
        """The node's Summary, or why it could not be had."""
        try:
            url = f"{self.kubelets.base_url(node)}/stats/summary"
            async with session.get(url) as response:
                if response.status != 200:
                    raise ValueError(f"kubelet answered {response.status}: {(await response.text())[:200]}")
                summary = await response.json(content_type=None)
                if not isinstance(summary, dict):
                    raise ValueError("kubelet summary is not a JSON object")
        except ApiError as err:
            SCRAPES.labels("error").inc()
            return str(err.status["message"])
        except (ValueError, aiohttp.ClientError, TimeoutError) as err:
            SCRAPES.labels("error").inc()
            return str(err) or type(err).__name__
        SCRAPES.labels("success").inc()
        return summary

    # -- requests ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """GET of the group version, nodes, a node, pods (all or a namespace's) or a pod; 405 otherwise."""
        parts = [p for p in request.path[len(PREFIX) :].split("/") if p]
        if not parts:
            self._read_only(request)
            return _json(discovery.api_resource_list(GROUP_VERSION))
        if parts[0] == "nodes" and len(parts) <= 2:
            self._read_only(request)
            if len(parts) == 1:
                return self._render(request, NODE_METRICS.kind, await self._node_list(request))
            return self._render(request, NODE_METRICS.kind, await self._node(parts[1]))
        if parts == ["pods"]:
            self._read_only(request)
            return self._render(request, POD_METRICS.kind, await self._pod_list(request, None))
        if len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == "pods":
            self._read_only(request)
            if len(parts) == 3:
                return self._render(request, POD_METRICS.kind, await self._pod_list(request, parts[1]))
            return self._render(request, POD_METRICS.kind, await self._pod(parts[1], parts[3]))
        raise ApiError(errors.status_failure(404, "NotFound", "the server could not find the requested resource"))

    @staticmethod
    def _read_only(request: web.Request) -> None:
        if request.method != "GET" or request.query.get("watch") in ("1", "true", "True"):
            raise errors.method_not_allowed()

    async def _node_list(self, request: web.Request) -> Object:
        options = ListOptions(label_selector=parse_label_selector(request.query.get("labelSelector")))
        fields = parse_field_selector(request.query.get("fieldSelector"), "nodemetrics")
        nodes = (await self.registry.list(resource("nodes"), None, options))["items"]
        items = [m for n in nodes if fields_match(fields, n) and (m := self._node_metrics(n)) is not None]
        return _list(NODE_METRICS.kind, sorted(items, key=lambda m: m["metadata"]["name"]))

    async def _node(self, name: str) -> Object:
        node = await self.registry.get(resource("nodes"), None, name)
        metrics = self._node_metrics(node)
        if metrics is None:
            raise errors.not_found("nodemetrics", name, "metrics.k8s.io")
        return {"kind": NODE_METRICS.kind, "apiVersion": GROUP_VERSION, **metrics}

    def _node_metrics(self, node: Object) -> Object | None:
        meta = node["metadata"]
        usage = self.nodes.usage(meta["name"])
        if usage is None:
            return None
        return {
            "metadata": _meta(meta, namespaced=False),
            "timestamp": _rfc3339(usage.timestamp),
            "window": format_duration(usage.window),
            "usage": usage.resources(),
        }

    async def _pod_list(self, request: web.Request, namespace: str | None) -> Object:
        options = ListOptions(label_selector=parse_label_selector(request.query.get("labelSelector")))
        fields = parse_field_selector(request.query.get("fieldSelector"), "podmetrics")
        pods = (await self.registry.list(resource("pods"), namespace, options))["items"]
        items = [m for p in pods if fields_match(fields, p) and (m := self._pod_metrics(p)) is not None]
        return _list(POD_METRICS.kind, sorted(items, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])))

    async def _pod(self, namespace: str, name: str) -> Object:
        pod = await self.registry.get(resource("pods"), namespace, name)
        metrics = self._pod_metrics(pod)
        if metrics is None:
            raise errors.not_found("podmetrics", f"{namespace}/{name}", "metrics.k8s.io")
        return {"kind": POD_METRICS.kind, "apiVersion": GROUP_VERSION, **metrics}

    def _pod_metrics(self, pod: Object) -> Object | None:
        meta = pod["metadata"]
        found = self.pods.usage((meta.get("namespace", ""), meta["name"]))
        if found is None:
            return None
        containers, timestamp, window = found
        return {
            "metadata": _meta(meta, namespaced=True),
            "timestamp": _rfc3339(timestamp),
            "window": format_duration(window),
            "containers": [{"name": name, "usage": usage.resources()} for name, usage in containers],
        }

    @staticmethod
    def _render(request: web.Request, kind: str, body: Object) -> web.Response:
        if not tables.wants_table(request.headers.get("Accept", "")):
            return _json(body)
        items = body["items"] if "items" in body else [body]
        return _json(_table(kind, items))


def _meta(measured: Object, namespaced: bool) -> Object:
    """Name, namespace and labels of the measured object's metadata, created now (metrics are not stored)."""
    meta: Object = {"name": measured["name"]}
    if namespaced:
        meta["namespace"] = measured.get("namespace", "")
    if measured.get("labels"):
        meta["labels"] = dict(measured["labels"])
    meta["creationTimestamp"] = _rfc3339(time.time())
    return meta


def _list(kind: str, items: list[Object]) -> Object:
    return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def _table(kind: str, items: list[Object]) -> Object:
    """metrics-server's Table: name, cpu, memory (a pod's summed over containers), window."""
    columns = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name of the resource"},
        {"name": "cpu", "type": "string", "format": "quantity", "description": ""},
        {"name": "memory", "type": "string", "format": "quantity", "description": ""},
        {"name": "Window", "type": "string", "format": "duration", "description": ""},
    ]
    rows = []
    for item in items:
        if kind == POD_METRICS.kind:
            usages = [c["usage"] for c in item["containers"]]
            cpu = format_cpu(int(sum(parse_quantity(u["cpu"]) for u in usages) * 10**9))
            memory = format_memory(int(sum(parse_quantity(u["memory"]) for u in usages)))
        else:
            cpu, memory = item["usage"]["cpu"], item["usage"]["memory"]
        rows.append(
            {
                "cells": [item["metadata"]["name"], cpu, memory, item["window"]],
                "object": {"kind": kind, "apiVersion": GROUP_VERSION, "metadata": item["metadata"]},
            }
        )
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows}


def _json(body: Any) -> web.Response:
    return web.json_response(body)
