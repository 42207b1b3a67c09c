"""`netlab scheduler`: assign pending pods to nodes through `pods/binding`.

The decisions are `netlab.cluster.scheduling` (pure); this module is the loop around them,
shaped like kube-scheduler's:

- Two informers (all pods, all nodes) feed a cache of `NodeInfo`s: every pod bound to a node
  counts against it, whether the watch has shown it yet or not.
- Pending pods (no `spec.nodeName`, our `schedulerName`, not terminal or being deleted) wait
  in an active queue. The loop takes them in batches, decides each against the cache and
  *assumes* the result at once (the pod counts on its node before the binding is even sent),
  so the next decision already sees it. Bindings then go out on a pool of `parallelism`
  threads; the loop never waits for the apiserver, which is what makes hundreds of bindings
  per second possible from one Python process.
- A pod that fits nowhere gets `PodScheduled=False` (reason `Unschedulable`) and a
  `FailedScheduling` event with upstream's reason tally, and waits: it is retried when a node
  is added or changes in a way that matters (labels, taints, allocatable, readiness,
  unschedulable) or an assigned pod goes away, but not before its back-off (1 s doubling to
  10 s) has passed; every pod is retried at least every `flush_interval` regardless.
- A binding that fails un-assumes the pod: 409 means someone else bound it or it is being
  deleted (the watch will tell), anything else retries with back-off.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from netlab.cluster import scheduling
from netlab.cluster.client import ApiClient
from netlab.cluster.events import EventRecorder, rfc3339
from netlab.cluster.informer import Informer, key_of
from netlab.cluster.scheduling import NodeInfo, PodInfo
from netlab.cluster.status import ApiError
from netlab.errors import Unavailable

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"
BATCH = 64


@dataclass
class _Waiting:
    not_before: float  # back-off ends
    since: float
    moved: bool = False  # a cluster event happened that may make it schedulable


@dataclass
class Stats:
    bound: int = 0
    unschedulable: int = 0
    bind_errors: int = 0
    first_bind: float = 0.0
    last_bind: float = 0.0

    @property
    def bindings_per_second(self) -> float:
        span = self.last_bind - self.first_bind
        return (self.bound - 1) / span if self.bound > 1 and span > 0 else 0.0


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _node_facts(node: Obj) -> tuple[Any, ...]:
    """What about a node can change a scheduling decision (heartbeat-only updates do not)."""
    return (
        (node.get("metadata") or {}).get("labels"),
        (node.get("spec") or {}).get("taints"),
        bool((node.get("spec") or {}).get("unschedulable")),
        (node.get("status") or {}).get("allocatable"),
        scheduling.node_ready_status(node),
    )


class Scheduler:
    def __init__(
        self,
        client: ApiClient,
        *,
        name: str = DEFAULT_SCHEDULER,
        parallelism: int = 16,
        backoff_initial: float = 1.0,
        backoff_max: float = 10.0,
        flush_interval: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.flush_interval = flush_interval
        self.rng = rng or random.Random()
        self.pods = Informer(client, "pods")
        self.nodes = Informer(client, "nodes")
        self.recorder = EventRecorder(client, name)
        self.stats = Stats()
        self._cond = threading.Condition()
        self._node_infos: dict[str, NodeInfo] = {}
        self._placed: dict[str, tuple[str, PodInfo]] = {}  # uid -> (node, pod): bound or assumed
        self._assumed: set[str] = set()
        self._active: dict[str, None] = {}  # an ordered set of pod keys
        self._waiting: dict[str, _Waiting] = {}
        self._attempts: dict[str, int] = {}
        self._binder = ThreadPoolExecutor(parallelism, thread_name_prefix="bind")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)

    # lifecycle -----------------------------------------------------------------------------

    def start(self, sync_timeout: float = 60.0) -> None:
        self.recorder.start()
        self.nodes.start()
        self.pods.start()
        if not (self.nodes.wait_synced(sync_timeout) and self.pods.wait_synced(sync_timeout)):
            self.stop()
            raise Unavailable(f"scheduler: could not list pods and nodes from {self.client.server}")
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        self.pods.stop()
        self.nodes.stop()
        self._binder.shutdown(wait=True, cancel_futures=True)
        self.recorder.stop()

    def run(self, stop: threading.Event) -> None:
        """Start, block until `stop` is set, stop."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    # what the cache says -------------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return len(self._active) + len(self._waiting)

    def node_info(self, name: str) -> NodeInfo | None:
        with self._cond:
            return self._node_infos.get(name)

    # informer handlers (informer threads) --------------------------------------------------

    def _responsible(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and (spec.get("schedulerName") or DEFAULT_SCHEDULER) == self.name
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
            and not is_terminal(pod)
        )

    def _pod_added(self, pod: Obj) -> None:
        self._pod_updated(None, pod)

    def _pod_updated(self, old: Obj | None, pod: Obj) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        key = key_of(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        with self._cond:
            if node:
                self._active.pop(key, None)
                self._waiting.pop(key, None)
                self._attempts.pop(key, None)
                if is_terminal(pod):
                    if uid in self._placed:
                        self._unplace(uid)
                        self._move_waiting()
                else:
                    self._place(uid, node, pod)
                return
            if uid in self._placed:
                return  # assumed: this event predates our binding
            if not self._responsible(pod):
                self._active.pop(key, None)
                self._waiting.pop(key, None)
                return
            changed = (
                old is None
                or old.get("spec") != pod.get("spec")
                or ((old.get("metadata") or {}).get("labels") != (pod.get("metadata") or {}).get("labels"))
            )
            if key in self._waiting and not changed:
                return
            self._waiting.pop(key, None)
            if key not in self._active:
                self._active[key] = None
                self._cond.notify()

    def _pod_deleted(self, pod: Obj) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        key = key_of(pod)
        with self._cond:
            self._active.pop(key, None)
            self._waiting.pop(key, None)
            self._attempts.pop(key, None)
            if uid in self._placed:
                self._unplace(uid)
                self._move_waiting()

    def _node_added(self, node: Obj) -> None:
        name = str((node.get("metadata") or {}).get("name"))
        with self._cond:
            pods = [pi for n, pi in self._placed.values() if n == name]
            self._node_infos[name] = NodeInfo.from_node(node, pods)
            self._move_waiting()

    def _node_updated(self, old: Obj, node: Obj) -> None:
        if old is node or _node_facts(old) == _node_facts(node):
            return
        name = str((node.get("metadata") or {}).get("name"))
        with self._cond:
            current = self._node_infos.get(name)
            self._node_infos[name] = current.with_node(node) if current else NodeInfo.from_node(node)
            self._move_waiting()

    def _node_deleted(self, node: Obj) -> None:
        with self._cond:
            self._node_infos.pop(str((node.get("metadata") or {}).get("name")), None)

    # cache (callers hold the lock) ---------------------------------------------------------

    def _place(self, uid: str, node: str, pod: Obj | PodInfo) -> None:
        current = self._placed.get(uid)
        terminating = (
            pod.terminating if isinstance(pod, PodInfo) else bool(pod["metadata"].get("deletionTimestamp"))
        )
        if current is not None and current[0] == node and current[1].terminating == terminating:
            self._assumed.discard(uid)
            return
        if current is not None:
            self._unplace(uid)
        info = pod if isinstance(pod, PodInfo) else scheduling.pod_info(pod)
        self._placed[uid] = (node, info)
        ni = self._node_infos.get(node)
        if ni is not None:
            ni.add_pod(info)

    def _unplace(self, uid: str) -> None:
        self._assumed.discard(uid)
        current = self._placed.pop(uid, None)
        if current is not None and current[0] in self._node_infos:
            self._node_infos[current[0]].remove_pod(uid)

    def _move_waiting(self) -> None:
        for w in self._waiting.values():
            w.moved = True
        if self._waiting:
            self._cond.notify()

    def _promote(self, now: float) -> float | None:
        """Move waiting pods that may be retried now; the time until the next one may be."""
        nxt: float | None = None
        for key, w in list(self._waiting.items()):
            due = w.not_before if w.moved else max(w.not_before, w.since + self.flush_interval)
            if due <= now:
                del self._waiting[key]
                self._active[key] = None
            else:
                nxt = due - now if nxt is None else min(nxt, due - now)
        return nxt

    def _backoff(self, key: str) -> float:
        n = self._attempts.get(key, 0) + 1
        self._attempts[key] = n
        return float(min(self.backoff_initial * 2 ** (n - 1), self.backoff_max))

    def _wait(self, key: str, moved: bool = False) -> None:
        now = time.monotonic()
        self._active.pop(key, None)
        self._waiting[key] = _Waiting(now + self._backoff(key), now, moved)

    # the loop ------------------------------------------------------------------------------

    def _next_batch(self) -> list[str]:
        with self._cond:
            while not self._stop.is_set():
                nxt = self._promote(time.monotonic())
                if self._active:
                    batch: list[str] = []
                    while self._active and len(batch) < BATCH:
                        key = next(iter(self._active))
                        del self._active[key]
                        batch.append(key)
                    return batch
                self._cond.wait(min(nxt, 1.0) if nxt is not None else 1.0)
        return []

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key in self._next_batch():
                try:
                    self._schedule_one(key)
                except Exception:
                    log.exception("scheduling %s failed", key)
                    with self._cond:
                        self._wait(key)

    def _schedule_one(self, key: str) -> None:
        with self._cond:
            pod = self.pods.get(key)
            if pod is None or not self._responsible(pod):
                return
            uid = str(pod["metadata"].get("uid"))
            if uid in self._placed:
                return
            info = scheduling.pod_info(pod)
            decision = scheduling.schedule(info, list(self._node_infos.values()), self.rng)
            if decision.node is not None:
                self._place(uid, decision.node, info)
                self._assumed.add(uid)
                self._binder.submit(self._bind, pod, decision.node)
                return
            self._wait(key)
            self.stats.unschedulable += 1
        self._binder.submit(self._report_unschedulable, pod, decision.message)

    # apiserver calls (binder threads) ------------------------------------------------------

    def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], str(meta.get("uid"))
        try:
            self.client.bind(ns, name, node)
        except (ApiError, Unavailable) as e:
            code = e.code if isinstance(e, ApiError) else 0
            with self._cond:
                self.stats.bind_errors += 1
                if uid in self._assumed:
                    self._unplace(uid)
                if code not in (404, 409):
                    self._wait(key_of(pod), moved=True)
            if code not in (404, 409):
                log.warning("binding %s/%s to %s failed: %s", ns, name, node, e)
            return
        now = time.monotonic()
        with self._cond:
            self.stats.bound += 1
            self.stats.first_bind = self.stats.first_bind or now
            self.stats.last_bind = now
            self._attempts.pop(key_of(pod), None)
        self.recorder.normal(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {node}")

    def _report_unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        self.recorder.warning(pod, "FailedScheduling", message)
        current: Obj = next(
            (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
            {},
        )
        if (current.get("status"), current.get("reason"), current.get("message")) == (
            "False",
            "Unschedulable",
            message,
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": current.get("lastTransitionTime")
            if current.get("status") == "False"
            else rfc3339(),
        }
        try:
            self.client.patch(
                "pods",
                meta["name"],
                {"status": {"conditions": [condition]}},
                meta["namespace"],
                patch_type="strategic",
                subresource="status",
            )
        except (ApiError, Unavailable) as e:
            log.info("cannot mark %s/%s unschedulable: %s", meta["namespace"], meta["name"], e)
