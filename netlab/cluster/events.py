"""Recording core/v1 Events (what `kubectl describe` and `kubectl get events` show).

Components call `EventRecorder.event(obj, type, reason, message)` and carry on: events are
posted by one background thread, so a slow apiserver never holds up scheduling or a sync. As
upstream's event correlator does, a repeat of an identical event (same object, type, reason
and message) within ten minutes bumps `count` and `lastTimestamp` of the existing Event
instead of creating another, so a pod retried every few seconds shows one FailedScheduling
line "x12", not twelve. The queue is bounded; when it is full events are dropped (logged), as
client-go's broadcaster drops them, because events are advice and must never back-pressure the
control loop.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from netlab.cluster.client import ApiClient
from netlab.cluster.status import ApiError
from netlab.errors import Unavailable

log = logging.getLogger(__name__)
Obj = dict[str, Any]

AGGREGATE_WINDOW = 600.0
CACHE_SIZE = 4096


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


def render_event(
    component: str, obj: Obj, type_: str, reason: str, message: str, now: float, host: str = ""
) -> Obj:
    """A new Event about `obj` (named `<object>.<hex nanoseconds>`, as client-go names them)."""
    ref = involved(obj)
    stamp = rfc3339(now)
    source = {"component": component}
    if host:
        source["host"] = host
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{ref['name']}.{int(now * 1e9):x}",
            "namespace": ref.get("namespace") or "default",
        },
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": source,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": host or component,
    }


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    last: float


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "", capacity: int = 1000) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: queue.Queue[tuple[Obj, str, str, str, float] | None] = queue.Queue(capacity)
        self._seen: collections.OrderedDict[tuple[str, str, str, str], _Seen] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.posted = 0

    def start(self) -> EventRecorder:
        self._thread = threading.Thread(target=self._run, name=f"events-{self.component}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event has been posted (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((obj, type_, reason, message, time.time()))
        except queue.Full:
            self.dropped += 1
            log.debug("event queue full: dropping %s %s", reason, message)

    def normal(self, obj: Obj, reason: str, message: str) -> None:
        self.event(obj, "Normal", reason, message)

    def warning(self, obj: Obj, reason: str, message: str) -> None:
        self.event(obj, "Warning", reason, message)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._post(*item)
            except ApiError as e:
                # events in a namespace being deleted are refused; that is expected
                log.log(logging.DEBUG if e.code == 403 else logging.INFO, "cannot record event: %s", e)
            except Unavailable as e:
                log.info("cannot record event: %s", e)
            except Exception:
                log.exception("cannot record event")
            finally:
                self._queue.task_done()

    def _post(self, obj: Obj, type_: str, reason: str, message: str, now: float) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("uid") or meta.get("name")), type_, reason, message)
        seen = self._seen.get(key)
        if seen is not None and now - seen.last < AGGREGATE_WINDOW:
            seen.count += 1
            seen.last = now
            self._seen.move_to_end(key)
            try:
                self.client.patch(
                    "events",
                    seen.name,
                    {"count": seen.count, "lastTimestamp": rfc3339(now)},
                    seen.namespace,
                )
                self.posted += 1
                return
            except ApiError as e:
                if e.code != 404:
                    raise
                # the event expired or was deleted: record a fresh one
        ev = render_event(self.component, obj, type_, reason, message, now, self.host)
        self.client.create("events", ev, ev["metadata"]["namespace"])
        self.posted += 1
        self._seen[key] = _Seen(ev["metadata"]["name"], ev["metadata"]["namespace"], 1, now)
        self._seen.move_to_end(key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
