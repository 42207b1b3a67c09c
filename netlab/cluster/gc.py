"""Garbage collection by ownerReferences, and namespace cleanup, inside the apiserver.

Upstream runs these in kube-controller-manager; a lab apiserver that deletes a Deployment
should leave no orphaned ReplicaSets and Pods even before any controller runs, so they live
here, driven by the watch caches:

- Background (kubectl's default): when an owner disappears, each dependent that has no other
  live owner is deleted; one that has is only stripped of the reference.
- Foreground: an owner with the `foregroundDeletion` finalizer has its dependents deleted; when
  none blocking (`blockOwnerDeletion`) remain, the finalizer is removed and the owner goes.
- Orphan: an owner with the `orphan` finalizer has the references to it removed from its
  dependents, then the finalizer.
- A deleted namespace has its contents deleted, then disappears.

Before deleting a dependent whose owner seems absent from the caches, the owner is read from
etcd by name: the caches of different resources may lag each other by a few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from netlab.cluster import resources
from netlab.cluster.registry import Registry
from netlab.cluster.resources import Resource
from netlab.cluster.status import ApiError
from netlab.cluster.watchcache import Change, WatchCache

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class GarbageCollector:
    def __init__(self, registry: Registry, caches: dict[str, WatchCache]) -> None:
        self.registry = registry
        self.caches = caches
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        for cache in caches.values():
            cache.listeners.append(self._listener(cache.res))
        registry.on_namespace_deleting = lambda ns: self._queue.put_nowait(("namespace", ns))

    def _listener(self, res: Resource) -> Callable[[Change], None]:
        return lambda ch: self._observe(res, ch)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.sweep()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def sweep(self) -> None:
        """Look at every object once (at start): owners being deleted, dependents without owners."""
        for cache in self.caches.values():
            for obj in list(cache.objects.values()):
                self._observe(cache.res, Change("MODIFIED", "", obj, obj, 0))
                for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                    self._queue.put_nowait(("orphan-check", (cache.res, obj, ref)))

    def _observe(self, res: Resource, ch: Change) -> None:
        meta = ch.obj.get("metadata") or {}
        if ch.type == "DELETED":
            if meta.get("uid"):
                self._queue.put_nowait(("owner-gone", meta["uid"]))
            for ref in meta.get("ownerReferences") or []:
                # a foreground owner may be waiting for this dependent
                owner_res = resources.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
                if owner_res is not None and ref.get("blockOwnerDeletion"):
                    ns = meta.get("namespace") if owner_res.namespaced else None
                    self._queue.put_nowait(("owner-finalizing", (owner_res, ns, ref.get("name"))))
            return
        if meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if "foregroundDeletion" in finalizers or "orphan" in finalizers:
                self._queue.put_nowait(("owner-finalizing", (res, meta.get("namespace"), meta["name"])))
            if res is resources.NAMESPACES:
                self._queue.put_nowait(("namespace", meta["name"]))
        if ch.type == "ADDED" and meta.get("ownerReferences"):
            # an object created with an owner that is already gone is collected too
            for ref in meta["ownerReferences"]:
                self._queue.put_nowait(("orphan-check", (res, ch.obj, ref)))

    async def _run(self) -> None:
        while True:
            what, arg = await self._queue.get()
            try:
                if what == "owner-gone":
                    await self._owner_gone(arg)
                elif what == "owner-finalizing":
                    await self._owner_finalizing(*arg)
                elif what == "namespace":
                    await self._namespace(arg)
                elif what == "orphan-check":
                    await self._orphan_check(*arg)
            except ApiError as e:
                if e.code not in (404, 409):
                    log.warning("garbage collection (%s) failed: %s", what, e.message)
            except Exception:
                log.exception("garbage collection (%s) failed", what)

    def _dependents(self, uid: str) -> list[tuple[Resource, Obj]]:
        out = []
        for cache in self.caches.values():
            for obj in cache.objects.values():
                for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                    if ref.get("uid") == uid:
                        out.append((cache.res, obj))
                        break
        return out

    async def _owner_alive(self, dependent: Obj, ref: dict[str, Any]) -> bool:
        owner_res = resources.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if owner_res is None:
            return True  # a kind we do not serve: never collect on its account
        ns = (dependent.get("metadata") or {}).get("namespace") if owner_res.namespaced else None
        owner = await self.registry.store.get_or_none(owner_res, ns, str(ref.get("name", "")))
        return owner is not None and (owner.get("metadata") or {}).get("uid") == ref.get("uid")

    async def _owner_gone(self, uid: str) -> None:
        for res, dep in self._dependents(uid):
            meta = dep["metadata"]
            others = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
            alive = [r for r in others if await self._owner_alive(dep, r)]
            if alive:
                await self._drop_ref(res, dep, uid)
            else:
                await self._delete(res, dep, "Background")

    async def _orphan_check(self, res: Resource, dep: Obj, ref: dict[str, Any]) -> None:
        if not await self._owner_alive(dep, ref):
            await self._owner_gone(str(ref.get("uid")))

    async def _owner_finalizing(self, res: Resource, ns: str | None, name: str) -> None:
        owner = await self.registry.store.get_or_none(res, ns, name)
        if owner is None:
            return
        meta = owner["metadata"]
        finalizers = meta.get("finalizers") or []
        uid = meta["uid"]
        if "orphan" in finalizers:
            for dres, dep in self._dependents(uid):
                await self._drop_ref(dres, dep, uid)
            await self._remove_finalizer(res, ns, name, "orphan")
        elif "foregroundDeletion" in finalizers:
            deps = self._dependents(uid)
            for dres, dep in deps:
                if not (dep["metadata"].get("deletionTimestamp")):
                    await self._delete(dres, dep, "Foreground")
            blocking = [
                d
                for _, d in deps
                if any(
                    r.get("uid") == uid and r.get("blockOwnerDeletion")
                    for r in d["metadata"].get("ownerReferences") or []
                )
            ]
            if not blocking:
                await self._remove_finalizer(res, ns, name, "foregroundDeletion")
            # otherwise: each dependent's DELETED event re-queues the owner below

    async def _delete(self, res: Resource, obj: Obj, policy: str) -> None:
        meta = obj["metadata"]
        try:
            await self.registry.delete(
                res,
                meta.get("namespace"),
                meta["name"],
                {
                    "propagationPolicy": policy,
                    "gracePeriodSeconds": None,
                    "preconditions": {"uid": meta.get("uid")},
                },
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _drop_ref(self, res: Resource, obj: Obj, uid: str) -> None:
        meta = obj["metadata"]

        def drop(o: Obj) -> Obj:
            refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                o["metadata"]["ownerReferences"] = refs
            else:
                o["metadata"].pop("ownerReferences", None)
            return o

        try:
            await self.registry.mutate(res, meta.get("namespace"), meta["name"], drop)
        except ApiError as e:
            if e.code != 404:
                raise

    async def _remove_finalizer(self, res: Resource, ns: str | None, name: str, finalizer: str) -> None:
        def remove(o: Obj) -> Obj:
            fins = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]
            if fins:
                o["metadata"]["finalizers"] = fins
            else:
                o["metadata"].pop("finalizers", None)
            return o

        try:
            await self.registry.mutate(res, ns, name, remove)
        except ApiError as e:
            if e.code != 404:
                raise

    async def _namespace(self, name: str) -> None:
        ns_obj = await self.registry.store.get_or_none(resources.NAMESPACES, None, name)
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for res in resources.RESOURCES:
            if not res.namespaced:
                continue
            page = await self.registry.store.list(res, name)
            for obj in page.items:
                remaining += 1
                try:
                    await self.registry.delete(res, name, obj["metadata"]["name"], {"gracePeriodSeconds": 0})
                except ApiError as e:
                    if e.code != 404:
                        raise
        if remaining:
            # finalizers or kubelets may hold some objects: look again shortly
            asyncio.get_running_loop().call_later(1.0, self._queue.put_nowait, ("namespace", name))
            return
        try:
            await self.registry.store.delete(resources.NAMESPACES, ns_obj)
        except ApiError as e:
            if e.code == 409:
                self._queue.put_nowait(("namespace", name))
            elif e.code != 404:
                raise
