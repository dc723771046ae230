"""The watch cache: lists and watches served from memory, fed by one etcd watch per resource.

As in kube-apiserver's cacher, each resource's cache lists its etcd prefix
once, then follows one etcd watch from that revision, keeping the current
objects and a bounded history of changes.  Watches subscribe to the cache
(current state and subscription taken in one step, so nothing falls in
between; a resourceVersion inside the history is replayed from it), so a
thousand watchers cost one etcd watch.

Consistent reads (a list without resourceVersion) must not be stale.
etcd 3.4's progress notifications are not ordered with events, so instead
the cache asks etcd one cheap question (`Storage.freshness`: the key count
and whether any key was written after the cache's revision); if the answer
matches what the cache holds, its contents *are* etcd's state at the
current revision, and the list carries that revision.  Otherwise it waits
briefly for its watch to catch up, and the caller falls back to etcd.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import prometheus_client

from control.apiserver.storage import Change, Storage

log = logging.getLogger(__name__)

Object = dict[str, Any]

LISTS = prometheus_client.Counter(
    "apiserver_watch_cache_lists_total", "Lists by resource and where they were served from.", ["resource", "source"]
)
DEFAULT_HISTORY = 1000  # changes kept per resource for watches that resume from a resourceVersion
SUBSCRIBER_BACKLOG = 5000  # a watcher this far behind is dropped (it re-watches), as Kubernetes does
FRESHNESS_ATTEMPTS = 20
FRESHNESS_WAIT = 0.05


class Subscription:
    """One watcher's queue of changes; ends (None) when dropped or when the cache stops."""

    def __init__(self) -> None:
        self._pending: deque[Change] = deque()
        self._wakeup = asyncio.Event()
        self.ended = False

    def offer(self, change: Change) -> None:
        """Queue a change; past the backlog the watcher ends after what it has (it resumes from history)."""
        if self.ended:
            return
        if len(self._pending) >= SUBSCRIBER_BACKLOG:
            self.end()
            return
        self._pending.append(change)
        self._wakeup.set()

    def end(self) -> None:
        self.ended = True
        self._wakeup.set()

    async def next(self) -> Change | None:
        while not self._pending:
            if self.ended:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pending.popleft()


class ResourceCache:
    """The objects under one resource's etcd prefix, kept current by one watch."""

    def __init__(self, storage: Storage, prefix: str, history: int = DEFAULT_HISTORY):
        self.storage = storage
        self.prefix = prefix
        self.history_size = history
        self.objects: dict[str, Object] = {}
        self.revision = 0  # the cache equals etcd's state of the prefix as of this revision's events
        self.oldest = 0  # the history holds every change with a revision > oldest
        self.history: deque[Change] = deque()
        self.failed = False
        self._subscribers: set[Subscription] = set()
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        items, revision, _ = await self.storage.list(self.prefix)
        self.objects = {stored.key: stored.obj for stored in items}
        self.revision = self.oldest = revision
        self._task = asyncio.create_task(self._follow(revision))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail()

    async def _follow(self, revision: int) -> None:
        try:
            async for change in self.storage.watch(self.prefix, revision):
                self._apply(change)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # etcd went away or compacted past us: watchers re-watch, the cache restarts
            log.warning("watch cache stopped", extra={"prefix": self.prefix, "error": str(err)})
        finally:
            self._fail()

    def _fail(self) -> None:
        self.failed = True
        for subscriber in self._subscribers:
            subscriber.end()
        self._subscribers.clear()
        self._advanced.set()

    def _apply(self, change: Change) -> None:
        if change.kind == "DELETE":
            self.objects.pop(change.key, None)
        else:
            assert change.obj is not None
            self.objects[change.key] = change.obj
        self.revision = change.revision
        self.history.append(change)
        if len(self.history) > self.history_size:
            self.oldest = self.history.popleft().revision
        for subscriber in list(self._subscribers):
            subscriber.offer(change)
            if subscriber.ended:
                self._subscribers.discard(subscriber)
        self._advanced.set()
        self._advanced = asyncio.Event()

    # -- reads ---------------------------------------------------------------

    def snapshot(self, prefix: str) -> list[tuple[str, Object]]:
        """(key, object) under `prefix` (a namespace's, or the whole resource) in key order, as etcd lists them."""
        return [(key, self.objects[key]) for key in sorted(k for k in self.objects if k.startswith(prefix))]

    def subscribe(self, after: int) -> Subscription | None:
        """Changes after revision `after`: replayed from history, then live; None if history no longer reaches."""
        if after < self.oldest or self.failed:
            return None
        subscriber = Subscription()
        for change in self.history:
            if change.revision > after:
                subscriber.offer(change)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscription) -> None:
        self._subscribers.discard(subscriber)

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    async def wait_fresh(self, not_older_than: int = 0) -> int | None:
        """Make the cache current: the etcd revision its contents equal, or None if it could not catch up."""
        for _ in range(FRESHNESS_ATTEMPTS):
            if self.failed:
                return None
            checked = self.revision
            advanced = self._advanced
            count, written, current = await self.storage.freshness(self.prefix, checked)
            if not written and count == len(self.objects) and self.revision == checked and current >= not_older_than:
                return current
            if self.revision == checked:
                try:
                    await asyncio.wait_for(advanced.wait(), FRESHNESS_WAIT)
                except TimeoutError:
                    pass
        return None


class WatchCache:
    """One ResourceCache per etcd prefix, started on first use and restarted after a failure."""

    def __init__(self, storage: Storage, history: int = DEFAULT_HISTORY):
        self.storage = storage
        self.history = history
        self._caches: dict[str, ResourceCache] = {}
        self._lock = asyncio.Lock()

    async def resource(self, prefix: str) -> ResourceCache:
        cache = self._caches.get(prefix)
        if cache is not None and not cache.failed:
            return cache
        async with self._lock:
            cache = self._caches.get(prefix)
            if cache is None or cache.failed:
                cache = ResourceCache(self.storage, prefix, self.history)
                await cache.start()
                self._caches[prefix] = cache
            return cache

    def watchers(self) -> int:
        return sum(cache.watchers for cache in self._caches.values())

    async def close(self) -> None:
        for cache in self._caches.values():
            await cache.stop()
        self._caches.clear()
