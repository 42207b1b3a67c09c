"""List-and-watch caches of API objects for the scheduler and controllers (client-go's informer).

An `Informer` keeps every object of one resource (optionally narrowed by namespace and
selectors) in memory, kept current by one watch, and tells registered handlers about each
add, update and delete after its cache has changed. It pages the initial list, resumes the
watch from the last resourceVersion it saw (bookmarks included) whenever the server ends the
stream, and re-lists when the server answers 410 Gone or the connection fails for longer than a
resume can cover; a re-list is compared with the cache, so objects deleted while the watch was
down reach `on_delete` too. An optional periodic resync replays every object to `on_update`.

Indexes (`add_index`) answer "which pods are on node X" or "which pods does owner U have"
without scanning. Readers on other threads get consistent snapshots (`list`, `by_index`);
the objects are shared with the cache and must not be mutated: copy before changing one.

Each informer is one daemon thread running the watch; `stop()` interrupts the stream at once
by shutting its socket down, so tests and `netlab down` never wait for a watch timeout.
Built here rather than on the official client's `watch.Watch`, which neither caches nor
re-lists.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from netlab.cluster.client import ApiClient, Gone, resolve
from netlab.cluster.status import ApiError
from netlab.errors import Unavailable

log = logging.getLogger(__name__)
Obj = dict[str, Any]
ObjList = list[Obj]  # the `list` method below shadows the builtin inside the class

AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj], None]
IndexFunc = Callable[[Obj], Iterable[str]]

PAGE = 500
RETRY_MIN = 0.2
RETRY_MAX = 5.0


def key_of(obj: Obj) -> str:
    """`namespace/name` for namespaced objects, `name` otherwise (client-go's MetaNamespaceKey)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


def resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class _Handlers:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


class Informer:
    def __init__(
        self,
        client: ApiClient,
        resource: str,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resync: float = 0.0,
        watch_timeout: int = 300,
    ) -> None:
        self._res = resolve(resource)  # an unknown resource fails here, not on the watch thread
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync = resync
        self.watch_timeout = watch_timeout
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._handlers: list[_Handlers] = []
        self._lock = threading.RLock()  # the cache and indexes
        self._dispatch = threading.Lock()  # handlers run one event at a time
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._response: requests.Response | None = None
        self.last_resource_version = ""
        self.relists = 0

    # configuration -------------------------------------------------------------------------

    def add_handler(
        self,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None:
        """Handlers run on the informer's thread; objects already cached are replayed as adds."""
        h = _Handlers(on_add, on_update, on_delete)
        with self._dispatch:
            self._handlers.append(h)
            if on_add:
                for obj in self.list():
                    self._call(on_add, obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        with self._lock:
            self._indexers[name] = fn
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            self._indexes[name] = index

    # reading -------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._items.get(key)

    def list(self, namespace: str | None = None) -> ObjList:
        with self._lock:
            if namespace is None:
                return list(self._items.values())
            prefix = f"{namespace}/"
            return [o for k, o in self._items.items() if k.startswith(prefix)]

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def by_index(self, name: str, value: str) -> ObjList:
        with self._lock:
            return [self._items[k] for k in self._indexes[name].get(value, ())]

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        t = threading.Thread(target=self._run, name=f"informer-{self.resource}", daemon=True)
        self._threads.append(t)
        t.start()
        if self.resync > 0:
            r = threading.Thread(target=self._resync_loop, name=f"resync-{self.resource}", daemon=True)
            self._threads.append(r)
            r.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._interrupt()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _interrupt(self) -> None:
        resp = self._response
        if resp is None:
            return
        # closing a socket does not wake a thread blocked reading it; shutting it down does
        with contextlib.suppress(Exception):
            sock = resp.raw.connection.sock  # type: ignore[union-attr]
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            resp.close()

    # the watch loop ------------------------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_MIN
        need_list = True
        while not self._stopping.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._watch()
                delay = RETRY_MIN
            except Gone:
                log.info(
                    "%s: watch expired at resourceVersion %s; listing again",
                    self.resource,
                    self.last_resource_version,
                )
                need_list = True
            except (Unavailable, ApiError, requests.RequestException, OSError, ValueError) as e:
                if self._stopping.is_set():
                    break
                log.warning("%s: list/watch failed (%s); retrying in %.1fs", self.resource, e, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                # a short outage resumes from the last resourceVersion; the server says 410 if not
                need_list = need_list or not self.last_resource_version
            except Exception:
                if self._stopping.is_set():
                    break
                log.exception("%s: informer loop failed; listing again", self.resource)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                need_list = True

    def _relist(self) -> None:
        items: ObjList = []
        token = ""
        rv = ""
        while True:
            page = self.client.list(
                self.resource,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=PAGE,
                continue_token=token,
            )
            for item in page.get("items") or []:
                # list items may omit kind and apiVersion; watch events carry them
                item.setdefault("kind", self._res.kind)
                item.setdefault("apiVersion", self._res.api_version)
                items.append(item)
            meta = page.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            token = str(meta.get("continue") or "")
            if not token:
                break
        self._replace(items)
        self.last_resource_version = rv
        self.relists += 1
        self._synced.set()

    def _watch(self) -> None:
        params: dict[str, Any] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.last_resource_version,
            "timeoutSeconds": self.watch_timeout,
        }
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        resp = self.client.request(
            "GET",
            self.client.path(self.resource, self.namespace),
            params=params,
            stream=True,
            timeout=self.watch_timeout + 30,
        )
        self._response = resp
        try:
            if self._stopping.is_set():
                return
            for line in resp.iter_lines():
                if not line:
                    continue
                ev = json.loads(line)
                kind = ev.get("type")
                obj = ev.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 500)
                    if code == 410:
                        raise Gone(code, obj.get("reason", ""), obj.get("message", ""))
                    raise ApiError(code, obj.get("reason", ""), obj.get("message", ""))
                rv = resource_version(obj)
                if kind == "BOOKMARK":
                    self.last_resource_version = rv or self.last_resource_version
                    continue
                if kind in ("ADDED", "MODIFIED"):
                    self._upsert(obj)
                elif kind == "DELETED":
                    self._remove(obj)
                if rv:
                    self.last_resource_version = rv
        finally:
            self._response = None
            resp.close()

    # cache changes -------------------------------------------------------------------------

    def _index_add(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indexes[name].setdefault(value, set()).add(key)

    def _index_remove(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indexes[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _store(self, obj: Obj) -> Obj | None:
        key = key_of(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._index_remove(key, old)
            self._items[key] = obj
            self._index_add(key, obj)
        return old

    def _upsert(self, obj: Obj) -> None:
        with self._dispatch:
            old = self._store(obj)
            for h in self._handlers:
                if old is None and h.on_add:
                    self._call(h.on_add, obj)
                elif old is not None and h.on_update:
                    self._call(h.on_update, old, obj)

    def _remove(self, obj: Obj) -> None:
        key = key_of(obj)
        with self._dispatch:
            with self._lock:
                old = self._items.pop(key, None)
                if old is not None:
                    self._index_remove(key, old)
            for h in self._handlers:
                if h.on_delete:
                    self._call(h.on_delete, obj)

    def _replace(self, items: ObjList) -> None:
        fresh = {key_of(o): o for o in items}
        with self._lock:
            gone = [o for k, o in self._items.items() if k not in fresh]
        for obj in gone:
            self._remove(obj)
        for obj in items:
            current = self.get(key_of(obj))
            if current is None or resource_version(current) != resource_version(obj):
                self._upsert(obj)

    def _resync_loop(self) -> None:
        while not self._stopping.wait(self.resync):
            if not self.synced:
                continue
            with self._dispatch:
                for obj in self.list():
                    for h in self._handlers:
                        if h.on_update:
                            self._call(h.on_update, obj, obj)

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: event handler failed", self.resource)


def index_by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def index_by_controller(obj: Obj) -> list[str]:
    """The uid of the object's controller (the ownerReference with `controller: true`)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return [str(ref.get("uid"))]
    return []


def index_by_node(obj: Obj) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []
