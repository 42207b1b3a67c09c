"""One etcd watch per resource, fanned out to every API watcher of that resource.

This is kube-apiserver's watch-cache shape: each cache lists its prefix once at start, then
follows a single etcd watch (with `prev_kv` and progress notifications) on a thread, and keeps
(a) the current objects, which serve the synthetic ADDED events of a watch without a
resourceVersion and let the garbage collector find dependents without reading etcd, and (b) a
ring of recent events, which serves watches that resume from a resourceVersion.

A watch from a resourceVersion older than what the ring still covers (its "horizon", which moves
forward when the ring overflows and when the store is compacted) is answered with an in-stream
410 Expired, exactly as upstream's cache does; clients re-list. All cache state is touched only
on the event loop, so registering a watcher and replaying the ring is atomic with respect to new
events.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netlab.cluster import codec
from netlab.cluster.resources import Resource
from netlab.cluster.store import Store, decode
from netlab.errors import NetlabError
from netlab.etcd import Compacted, Event, Progress, prefix_end

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass
class Change:
    type: str  # ADDED, MODIFIED, DELETED
    key: str
    obj: Obj
    prev: Obj | None
    revision: int
    # the watch-stream line, encoded once for all the watchers that receive this change
    line: bytes | None = field(default=None, compare=False, repr=False)


def match_all(obj: Obj) -> bool:
    """The selector of a watch without label or field selectors."""
    return True


@dataclass(eq=False)
class Subscriber:
    """One API watch: a queue of changes (None means: the cache dropped this watcher, 410)."""

    prefix: str
    match: Callable[[Obj], bool]
    since: int = 0  # changes at or before this revision are already known to the client
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def offer(self, ch: Change) -> None:
        """Queue `ch` as this watcher sees it. The change itself is queued whenever it can be,
        so its encoded line is shared by every watcher it reaches."""
        if ch.revision <= self.since or not ch.key.startswith(self.prefix):
            return
        if self.match is match_all:
            if ch.type != "DELETED" or ch.prev is not None:
                self.queue.put_nowait(ch)
            return
        now = self.match(ch.obj) if ch.type != "DELETED" else False
        before = ch.prev is not None and self.match(ch.prev)
        if ch.type == "DELETED":
            if before:
                self.queue.put_nowait(ch)
        elif now and before:
            self.queue.put_nowait(ch)
        elif now:
            # a new object, or one that entered the selector: ADDED to this watcher
            added = ch if ch.type == "ADDED" else Change("ADDED", ch.key, ch.obj, ch.prev, ch.revision)
            self.queue.put_nowait(added)
        elif before:
            # the object left the selector: to this watcher it is gone
            self.queue.put_nowait(Change("DELETED", ch.key, ch.obj, ch.prev, ch.revision))


class WatchCache:
    def __init__(self, res: Resource, store: Store, capacity: int = 10000) -> None:
        self.res = res
        self.store = store
        self.objects: dict[str, Obj] = {}
        self.ring: collections.deque[Change] = collections.deque()
        self.capacity = capacity
        self.horizon = 0  # watches from a resourceVersion below this get 410
        self.revision = 0  # everything up to here has been applied
        self.subscribers: set[Subscriber] = set()
        self.listeners: list[Callable[[Change], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._relist()
        self.ready.set()

    async def _relist(self) -> None:
        prefix = self.res.prefix()
        r = await self.store.call(self.store.etcd.range, prefix, prefix_end(prefix))
        self.objects = {kv.key: decode(kv) for kv in r.kvs}
        self.revision = self.horizon = r.revision
        self.ring.clear()
        self._watch = await self.store.call(
            self.store.etcd.watch,
            prefix,
            prefix=True,
            start_revision=r.revision + 1,
            prev_kv=True,
            progress_notify=True,
        )
        self._thread = threading.Thread(
            target=self._follow, args=(self._watch,), daemon=True, name=f"watch-{self.res.plural}"
        )
        self._thread.start()

    def _follow(self, watch: Any) -> None:
        """Thread: read the etcd watch, decode, and hand batches to the loop."""
        assert self._loop is not None
        try:
            for item in watch:
                if isinstance(item, Progress):
                    self._loop.call_soon_threadsafe(self._progress, item.revision)
                elif isinstance(item, Event):
                    self._loop.call_soon_threadsafe(self._apply, self._change(item))
        except Compacted:
            if not self._stopping:
                self._loop.call_soon_threadsafe(self._restart)
        except NetlabError as e:
            if not self._stopping:
                log.warning("watch on %s ended: %s; restarting", self.res.plural, e)
                self._loop.call_soon_threadsafe(self._restart)

    def _change(self, ev: Event) -> Change:
        prev = decode(ev.prev_kv) if ev.prev_kv else None
        if ev.type == "DELETE":
            obj = dict(prev) if prev else {"metadata": {}}
            obj["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(ev.kv.mod_revision)}
            return Change("DELETED", ev.kv.key, obj, prev, ev.kv.mod_revision)
        obj = codec.loads(ev.kv.value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(ev.kv.mod_revision)
        return Change("ADDED" if prev is None else "MODIFIED", ev.kv.key, obj, prev, ev.kv.mod_revision)

    def _progress(self, revision: int) -> None:
        self.revision = max(self.revision, revision)

    def _apply(self, ch: Change) -> None:
        if ch.type == "DELETED":
            self.objects.pop(ch.key, None)
        else:
            self.objects[ch.key] = ch.obj
        self.ring.append(ch)
        while len(self.ring) > self.capacity:
            self.horizon = self.ring.popleft().revision
        self.revision = max(self.revision, ch.revision)
        for sub in list(self.subscribers):
            sub.offer(ch)
        for fn in self.listeners:
            try:
                fn(ch)
            except Exception:  # a listener bug must not stop the cache
                log.exception("watch listener failed")

    def _restart(self) -> None:
        """etcd lost our place (compaction, restart): every watcher gets 410 and we re-list."""
        for sub in list(self.subscribers):
            sub.queue.put_nowait(None)
        self.subscribers.clear()
        if not self._stopping and self._loop is not None:
            self._loop.create_task(self._relist_later())

    async def _relist_later(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await self._relist()
                return
            except NetlabError as e:
                log.warning("re-listing %s failed: %s", self.res.plural, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def compacted(self, revision: int) -> None:
        """The store was compacted at `revision`: resuming from before it is no longer possible."""
        self.horizon = max(self.horizon, revision)
        while self.ring and self.ring[0].revision <= revision:
            self.ring.popleft()

    def subscribe(self, prefix: str, match: Callable[[Obj], bool], since: int | None) -> Subscriber | None:
        """Register a watcher. `since=None`: synthetic ADDED for every current object first.
        Returns None when `since` is older than the horizon (the caller answers 410)."""
        sub = Subscriber(prefix, match, since or 0)
        if since is None:
            for key in sorted(self.objects):
                obj = self.objects[key]
                if key.startswith(prefix) and match(obj):
                    sub.queue.put_nowait(
                        Change("ADDED", key, obj, None, int(obj["metadata"]["resourceVersion"]))
                    )
            sub.since = self.revision
        else:
            if since < self.horizon:
                return None
            for ch in self.ring:
                if ch.revision > since:
                    sub.offer(ch)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        for sub in list(self.subscribers):
            sub.queue.put_nowait(None)
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch.stop()
