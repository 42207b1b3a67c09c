"""What every controller shares: the worker loop, expectations, and owner references.

`Controller` is client-go's controller shape: informer handlers call `enqueue(key)`, worker
threads take keys from a `WorkQueue` and call `sync(key)`; an exception retries the key with
per-key back-off, a success forgets its failures. Because a key is never synced by two workers
at once, a sync may read the caches, decide and write without locks of its own.

`Expectations` is client-go's ControllerExpectations: after a ReplicaSet creates or deletes
pods it must not act again on a cache that does not show those changes yet, or it would create
the same pods twice. It records what it expects, the pod handlers tick expectations off as the
watch delivers them, and `satisfied` tells the sync when the cache has caught up (or, after
five minutes, that it should stop waiting for events that were lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netlab.cluster.client import ApiClient
from netlab.cluster.informer import Informer, key_of
from netlab.cluster.status import ApiError
from netlab.cluster.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]

EXPECTATIONS_TTL = 300.0


class Controller:
    name = "controller"

    def __init__(self, client: ApiClient, workers: int = 2) -> None:
        self.client = client
        self.workers = workers
        self.queue = WorkQueue(self.name)
        self._threads: list[threading.Thread] = []

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def enqueue_changes(self, informer: Informer) -> None:
        """Sync an object's own key whenever it is added, updated or deleted."""
        informer.add_handler(
            lambda obj: self.enqueue(key_of(obj)),
            lambda old, obj: self.enqueue(key_of(obj)),
            lambda obj: self.enqueue(key_of(obj)),
        )

    def sync(self, key: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"{self.name}-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.queue.shutdown()
        for t in self._threads:
            t.join(timeout)

    def _worker(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.sync(key)
            except Exception as e:
                n = self.queue.failures(key)
                if isinstance(e, ApiError) and e.code == 409:
                    # a cache a step behind our own last write: expected, retried at once
                    log.debug("%s: %s changed meanwhile: %s", self.name, key, e.message)
                elif n < 3:
                    log.info("%s: syncing %s failed (will retry): %s", self.name, key, e)
                else:
                    log.warning(
                        "%s: syncing %s failed %d times: %s",
                        self.name,
                        key,
                        n + 1,
                        e,
                        exc_info=not isinstance(e, OSError) and n == 3,
                    )
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)


@dataclass
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    at: float = 0.0


class Expectations:
    def __init__(self, ttl: float = EXPECTATIONS_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_key: dict[str, _Expected] = {}

    def expect(self, key: str, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        with self._lock:
            self._by_key[key] = _Expected(adds, set(deletes), time.monotonic())

    def observed_add(self, key: str) -> None:
        with self._lock:
            e = self._by_key.get(key)
            if e is not None and e.adds > 0:
                e.adds -= 1

    def observed_delete(self, key: str, uid: str) -> None:
        with self._lock:
            e = self._by_key.get(key)
            if e is not None:
                e.deletes.discard(uid)

    def lower(self, key: str, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        """Creations or deletions that failed and will never show up in the watch."""
        with self._lock:
            e = self._by_key.get(key)
            if e is not None:
                e.adds = max(0, e.adds - adds)
                e.deletes.difference_update(deletes)

    def satisfied(self, key: str) -> bool:
        with self._lock:
            e = self._by_key.get(key)
            if e is None:
                return True
            return (e.adds <= 0 and not e.deletes) or time.monotonic() - e.at > self.ttl

    def forget(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)


def namespace_terminating(e: Exception) -> bool:
    """The apiserver refused a create because the namespace is being deleted: nothing to retry."""
    return (
        isinstance(e, ApiError)
        and e.code == 403
        and (
            any(c.reason == "NamespaceTerminating" for c in e.causes)
            or "because it is being terminated" in e.message
        )
    )


# owner references --------------------------------------------------------------------------


def controller_ref(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_ref(owner: Obj, kind: str, api_version: str) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def adopt_patch(obj: Obj, ref: Obj) -> Obj:
    """A strategic merge patch adding `ref` (ownerReferences merge on uid), guarded by uid."""
    return {"metadata": {"ownerReferences": [ref], "uid": obj["metadata"]["uid"]}}


def release_patch(obj: Obj, owner_uid: str) -> Obj:
    return {
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": obj["metadata"]["uid"],
        }
    }


def ns_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"
