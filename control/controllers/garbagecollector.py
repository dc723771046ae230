"""Garbage collector: delete objects whose owners are gone.

A dependent whose every `ownerReferences` entry points at an object that no
longer exists (same kind, name and uid) is deleted with Background
propagation, so its own dependents follow (Deployment -> ReplicaSet ->
Pod).  References to some missing owners while others remain are dropped
instead.  Owners deleted with `propagationPolicy=Foreground` or `Orphan`
carry the `foregroundDeletion` / `orphan` finalizer: the collector deletes
or releases their dependents, then removes the finalizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from control.api.errors import ApiError
from control.api.resources import resource_for_kind
from control.client import Client, Informer, Object, key_of, name_of, namespace_of
from control.controllers.base import Controller

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


def owner_refs(obj: Object) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def dangling(refs: list[dict[str, Any]], present: dict[str, bool]) -> tuple[bool, list[dict[str, Any]]]:
    """(delete the dependent?, references to keep) given which owner uids still exist.

    Delete only when every owner is gone; otherwise keep the references to
    owners that exist.
    """
    if not refs:
        return False, refs
    alive = [r for r in refs if present.get(str(r.get("uid")), True)]
    return not alive, alive


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, client: Client, informers: dict[str, Informer], dependents: Iterable[str]):
        """informers: plural -> informer, for owners and dependents; dependents: plurals to collect."""
        super().__init__()
        self.client = client
        self.informers = informers
        self.dependents = [p for p in dependents if p in informers]
        for plural, informer in informers.items():
            informer.add_handler(self._handler(plural))

    def _handler(self, plural: str) -> Callable[[str, Object, Object | None], None]:
        def on_event(kind: str, obj: Object, _prev: Object | None) -> None:
            if plural in self.dependents and owner_refs(obj) and kind != "DELETED":
                self.queue.add(f"{plural}|{key_of(obj)}")
            meta = obj.get("metadata") or {}
            if kind == "DELETED" or meta.get("deletionTimestamp"):
                for dep_plural, dep in self._dependents_of(str(meta.get("uid"))):
                    self.queue.add(f"{dep_plural}|{key_of(dep)}")
                if {FOREGROUND, ORPHAN} & set(meta.get("finalizers") or []):
                    self.queue.add(f"owner:{plural}|{key_of(obj)}")
            if kind == "DELETED":  # an owner waiting in foreground deletion may now be free to go
                for owner_key in self._owner_keys(obj):
                    self.queue.add(owner_key)

        return on_event

    def _owner_keys(self, obj: Object) -> list[str]:
        keys = []
        for ref in owner_refs(obj):
            res = resource_for_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
            if res is not None and res.plural in self.informers:
                namespace = namespace_of(obj) if res.namespaced else None
                keys.append(
                    f"owner:{res.plural}|{namespace}/{ref.get('name')}"
                    if namespace
                    else f"owner:{res.plural}|{ref.get('name')}"
                )
        return keys

    def all_keys(self) -> Iterable[str]:
        for plural in self.dependents:
            for obj in self.informers[plural].items():
                if owner_refs(obj):
                    yield f"{plural}|{key_of(obj)}"
        for plural, informer in self.informers.items():
            for obj in informer.items():
                if {FOREGROUND, ORPHAN} & set((obj.get("metadata") or {}).get("finalizers") or []):
                    yield f"owner:{plural}|{key_of(obj)}"

    def _dependents_of(self, uid: str) -> list[tuple[str, Object]]:
        return [
            (plural, obj)
            for plural in self.dependents
            for obj in self.informers[plural].items()
            if any(str(r.get("uid")) == uid for r in owner_refs(obj))
        ]

    def _cached(self, plural: str, key: str) -> Object | None:
        namespace, _, name = key.rpartition("/")
        return self.informers[plural].get(name, namespace or None)

    async def _owner_exists(self, ref: dict[str, Any], namespace: str | None) -> bool:
        """Cache first; a miss is confirmed against the server, since the cache may lag a new owner."""
        res = resource_for_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if res is None:
            return True  # a kind we cannot check: never delete on a guess
        ns = namespace if res.namespaced else None
        informer = self.informers.get(res.plural)
        if informer is not None:
            cached = informer.get(str(ref.get("name")), ns)
            if cached is not None and cached["metadata"].get("uid") == ref.get("uid"):
                return True
        try:
            live = await self.client.get(res.plural, str(ref.get("name")), ns)
        except ApiError as err:
            if err.code == 404:
                return False
            raise
        return live["metadata"].get("uid") == ref.get("uid")

    async def sync(self, key: str) -> None:
        if key.startswith("owner:"):
            await self._finish_owner(key.removeprefix("owner:"))
            return
        plural, _, obj_key = key.partition("|")
        obj = self._cached(plural, obj_key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        refs = owner_refs(obj)
        present = {str(r.get("uid")): await self._owner_exists(r, namespace_of(obj)) for r in refs}
        delete, keep = dangling(refs, present)
        if delete:
            log.info("deleting %s %s: its owners are gone", plural, obj_key)
            try:
                await self.client.delete(plural, name_of(obj), namespace_of(obj), propagation_policy="Background")
            except ApiError as err:
                if err.code != 404:
                    raise
        elif len(keep) != len(refs):
            patch = {"metadata": {"ownerReferences": keep}}
            await self.client.patch(plural, name_of(obj), patch, namespace_of(obj))

    async def _finish_owner(self, key: str) -> None:
        """An owner being deleted with foreground or orphan propagation: handle dependents, drop the finalizer."""
        plural, _, obj_key = key.partition("|")
        owner = self._cached(plural, obj_key)
        if owner is None:
            return
        meta = owner["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        dependents = self._dependents_of(str(meta.get("uid")))
        if ORPHAN in finalizers:
            for dep_plural, dep in dependents:
                keep = [r for r in owner_refs(dep) if r.get("uid") != meta.get("uid")]
                patch = {"metadata": {"ownerReferences": keep}}
                await self.client.patch(dep_plural, name_of(dep), patch, namespace_of(dep))
            finalizers.remove(ORPHAN)
        elif FOREGROUND in finalizers:
            blocking = [
                (p, d)
                for p, d in dependents
                if any(r.get("uid") == meta.get("uid") and r.get("blockOwnerDeletion") for r in owner_refs(d))
            ]
            for dep_plural, dep in blocking:
                if not dep["metadata"].get("deletionTimestamp"):
                    namespace = namespace_of(dep)
                    await self.client.delete(dep_plural, name_of(dep), namespace, propagation_policy="Foreground")
            if blocking:
                return  # the dependents' DELETED events bring us back
            finalizers.remove(FOREGROUND)
        else:
            return
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
        await self.client.patch(plural, name_of(owner), patch, namespace_of(owner))
