"""Node lifecycle: notice dead kubelets, taint their nodes, evict and clean up their pods.

Every `monitor_period` (upstream 5 s) the controller looks at each node:

- Heartbeats are the node's Lease in `kube-node-lease` (renewTime) and the Ready condition's
  lastHeartbeatTime. As upstream does, the controller times them by its *own* clock: it
  records when it saw either change, so clock skew between hosts does not matter. A node not
  heard from for `grace_period` (upstream's node-monitor-grace-period, 50 s) gets every
  condition set to `Unknown` ("Kubelet stopped posting node status."), and its ready pods
  get `Ready=False`, so Services stop sending them traffic.
- Taints follow the Ready condition (TaintNodesByCondition and the NoExecute taint manager):
  `Unknown` -> `node.kubernetes.io/unreachable`, `False` -> `node.kubernetes.io/not-ready`,
  each as NoSchedule and NoExecute; `spec.unschedulable` -> `node.kubernetes.io/unschedulable`
  NoSchedule. They are removed again when the kubelet reports Ready.
- Eviction: a pod on a node with NoExecute taints it does not tolerate is deleted; one that
  tolerates them for `tolerationSeconds` is deleted that long after the taint was added. (This
  apiserver does not add upstream's default 300 s tolerations, so pods without tolerations go
  at once.) The ReplicaSet then replaces it on a healthy node; the old pod stays Terminating
  until its kubelet returns or the node is deleted, as upstream.
- Pod garbage collection: pods bound to a node that has not existed for `orphan_quarantine`
  (upstream's 40 s; a node object may be recreated meanwhile) are deleted with grace 0,
  since no kubelet will ever confirm their deletion.

`plan_node` and `evictions` are pure; the controller applies their results.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.cluster.client import ApiClient
from netlab.cluster.controllers import podutil
from netlab.cluster.events import EventRecorder, rfc3339
from netlab.cluster.informer import Informer, index_by_node
from netlab.cluster.scheduling import TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE, tolerates
from netlab.cluster.status import ApiError
from netlab.errors import Unavailable

log = logging.getLogger(__name__)
Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
STOPPED = "Kubelet stopped posting node status."
MANAGED_TAINTS = (TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE)


def ready_status(node: Obj) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status") or "Unknown")
    return "Unknown"


def wanted_taints(node: Obj) -> list[Obj]:
    """The condition taints this node should carry, without timeAdded."""
    out: list[Obj] = []
    ready = ready_status(node)
    key = {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE}.get(ready)
    if key:
        out += [{"key": key, "effect": "NoSchedule"}, {"key": key, "effect": "NoExecute"}]
    if (node.get("spec") or {}).get("unschedulable"):
        out.append({"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"})
    return out


def reconcile_taints(node: Obj, now: float) -> list[Obj] | None:
    """The node's new taint list, or None when it is already right."""
    current = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    want = wanted_taints(node)

    def same(a: Obj, b: Obj) -> bool:
        return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")

    kept = [t for t in current if t.get("key") not in MANAGED_TAINTS or any(same(t, w) for w in want)]
    added = []
    for w in want:
        if not any(same(t, w) for t in kept):
            t = dict(w)
            if t["effect"] == "NoExecute":
                t["timeAdded"] = rfc3339(now)
            added.append(t)
    new = kept + added
    return None if new == current else new


def unknown_conditions(node: Obj, now: float) -> list[Obj]:
    """Every node condition set to Unknown, as upstream does for a silent kubelet."""
    stamp = rfc3339(now)
    conds = {c.get("type"): dict(c) for c in (node.get("status") or {}).get("conditions") or []}
    out = []
    for type_ in NODE_CONDITIONS:
        c = conds.pop(type_, None)
        if c is None:
            c = {"type": type_, "lastHeartbeatTime": stamp}
        if c.get("status") != "Unknown":
            c["lastTransitionTime"] = stamp
        c.update(status="Unknown", reason="NodeStatusUnknown", message=STOPPED)
        out.append(c)
    return out + list(conds.values())


@dataclass(frozen=True)
class Eviction:
    pod: Obj
    at: float  # epoch seconds; <= now means now


def evictions(node: Obj, pods: Sequence[Obj]) -> list[Eviction]:
    """When each pod on `node` must go because of the node's NoExecute taints."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
    if not taints:
        return []
    out = []
    for pod in pods:
        if podutil.is_deleting(pod) or podutil.is_terminal(pod):
            continue
        tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]
        deadline = float("inf")
        for taint in taints:
            matching = [t for t in tolerations if tolerates(t, taint)]
            if not matching:
                deadline = 0.0
                break
            limits = [t.get("tolerationSeconds") for t in matching]
            if any(v is None for v in limits):
                continue  # tolerated forever
            added = podutil.parse_time(taint.get("timeAdded")) or 0.0
            deadline = min(deadline, added + max(0, min(int(v) for v in limits if v is not None)))
        if deadline != float("inf"):
            out.append(Eviction(pod, deadline))
    return out


@dataclass
class _Health:
    probe: float  # monotonic time the controller last saw a heartbeat change
    lease_renew: str = ""
    heartbeat: str = ""
    marked: bool = False  # pods already marked not ready for this outage


@dataclass
class NodeLifecycleController:
    client: ApiClient
    nodes: Informer
    leases: Informer
    pods: Informer
    recorder: EventRecorder
    monitor_period: float = 5.0
    grace_period: float = 50.0
    orphan_quarantine: float = 40.0
    _orphans: dict[str, float] = field(default_factory=dict)  # pod uid -> first seen without node
    _health: dict[str, _Health] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    name = "nodelifecycle"

    def __post_init__(self) -> None:
        self.pods.add_index("node", index_by_node)
        self.nodes.add_handler(self._node_seen, lambda old, n: self._node_seen(n), self._node_gone)
        self.leases.add_handler(self._lease_seen, lambda old, lease: self._lease_seen(lease))

    def _node_seen(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        beat = next(
            (
                str(c.get("lastHeartbeatTime") or "")
                for c in (node.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ),
            "",
        )
        with self._lock:
            h = self._health.get(name)
            if h is None:
                self._health[name] = _Health(time.monotonic(), heartbeat=beat)
            elif beat and beat != h.heartbeat:
                h.heartbeat, h.probe = beat, time.monotonic()

    def _node_gone(self, node: Obj) -> None:
        with self._lock:
            self._health.pop(node["metadata"]["name"], None)

    def _lease_seen(self, lease: Obj) -> None:
        name = lease["metadata"]["name"]
        renew = str((lease.get("spec") or {}).get("renewTime") or "")
        with self._lock:
            h = self._health.get(name)
            if h is None:
                self._health[name] = _Health(time.monotonic(), lease_renew=renew)
            elif renew and renew != h.lease_renew:
                h.lease_renew, h.probe = renew, time.monotonic()

    # loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.monitor_period):
            try:
                self.monitor()
            except (ApiError, Unavailable) as e:
                log.warning("node lifecycle: %s", e)
            except Exception:
                log.exception("node lifecycle pass failed")

    def silent(self, name: str) -> bool:
        with self._lock:
            h = self._health.get(name)
            return h is not None and time.monotonic() - h.probe > self.grace_period

    def monitor(self) -> None:
        """One pass over all nodes (also called directly by tests)."""
        now = time.time()
        known = set()
        for node in self.nodes.list():
            name = node["metadata"]["name"]
            known.add(name)
            if self.silent(name):
                node = self._mark_unknown(node, now)
            else:
                with self._lock:
                    if name in self._health:
                        self._health[name].marked = False
            node = self._taint(node, now)
            self._evict(node, now)
        self._collect_orphans(known)

    def _mark_unknown(self, node: Obj, now: float) -> Obj:
        name = node["metadata"]["name"]
        if ready_status(node) != "Unknown":
            log.warning("node %s: no heartbeat for %.0fs; marking it Unknown", name, self.grace_period)
            patch = {"status": {"conditions": unknown_conditions(node, now)}}
            try:
                node = self.client.patch("nodes", name, patch, subresource="status")
            except ApiError as e:
                if e.code == 404:
                    return node
                raise
            self.recorder.normal(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        with self._lock:
            h = self._health.get(name)
            done = h is None or h.marked
        if not done:
            self._mark_pods_not_ready(name, now)
            with self._lock:
                if name in self._health:
                    self._health[name].marked = True
        return node

    def _mark_pods_not_ready(self, node: str, now: float) -> None:
        for pod in self.pods.by_index("node", node):
            if not podutil.is_ready(pod) or podutil.is_terminal(pod):
                continue
            meta = pod["metadata"]
            cond = {
                "type": "Ready",
                "status": "False",
                "lastTransitionTime": rfc3339(now),
                "lastProbeTime": None,
            }
            try:
                self.client.patch(
                    "pods",
                    meta["name"],
                    {"status": {"conditions": [cond]}},
                    meta["namespace"],
                    patch_type="strategic",
                    subresource="status",
                )
            except ApiError as e:
                if e.code != 404:
                    raise
            self.recorder.warning(pod, "NodeNotReady", "Node is not ready")

    def _taint(self, node: Obj, now: float) -> Obj:
        taints = reconcile_taints(node, now)
        if taints is None:
            return node
        updated = copy.deepcopy(node)
        updated.setdefault("spec", {})["taints"] = taints
        if not taints:
            updated["spec"].pop("taints")
        try:
            return self.client.update("nodes", updated)
        except ApiError as e:
            if e.code in (404, 409):  # gone, or changed under us: next pass
                return node
            raise

    def _evict(self, node: Obj, now: float) -> None:
        for ev in evictions(node, self.pods.by_index("node", node["metadata"]["name"])):
            if ev.at > now:
                continue
            meta = ev.pod["metadata"]
            try:
                self.client.delete(
                    "pods", meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]}
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
                continue
            log.info("evicted %s/%s from node %s", meta["namespace"], meta["name"], node["metadata"]["name"])
            self.recorder.normal(
                ev.pod, "TaintManagerEviction", f"Marking for deletion Pod {meta['namespace']}/{meta['name']}"
            )

    def _collect_orphans(self, known: set[str]) -> None:
        if not self.nodes.synced:
            return
        now = time.monotonic()
        seen = set()
        for pod in self.pods.list():
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or node in known:
                continue
            meta = pod["metadata"]
            seen.add(meta["uid"])
            first = self._orphans.setdefault(meta["uid"], now)
            if now - first < self.orphan_quarantine:
                continue
            try:
                self.client.get("nodes", node)
                continue  # it exists after all (the cache lags)
            except ApiError as e:
                if e.code != 404:
                    raise
            log.info("deleting %s/%s: its node %s is gone", meta["namespace"], meta["name"], node)
            try:
                self.client.delete(
                    "pods",
                    meta["name"],
                    meta["namespace"],
                    grace_period=0,
                    preconditions={"uid": meta["uid"]},
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        for uid in list(self._orphans):
            if uid not in seen:
                del self._orphans[uid]
