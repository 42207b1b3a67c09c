"""The ReplicaSet controller: keep `spec.replicas` active pods matching the selector.

Pure part:
- `claim`: which pods are the ReplicaSet's (controller reference to its uid and matching the
  selector), which orphans it adopts (matching, no controller, not being deleted) and which it
  releases (its reference, labels no longer matching);
- `plan_replicas`: how many to create, or which to delete in `podutil.deletion_order`, at most
  500 per sync (upstream's burst);
- `slow_start`: creations go out in batches of 1, 2, 4, ... so a template the apiserver rejects
  costs one failed request, not five hundred;
- `replicaset_status`: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
  observedGeneration and the ReplicaFailure condition.

Loop: ReplicaSets and pods come from the shared informers; pod events go to the owning
ReplicaSet (or, for orphans, to every ReplicaSet whose selector matches), and `Expectations`
keep a sync from acting on a cache that has not yet seen its own creations and deletions.
Pods that become ready under `minReadySeconds` are looked at again when they become available.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from netlab.cluster.client import ApiClient
from netlab.cluster.controllers import podutil
from netlab.cluster.controllers.base import (
    Controller,
    Expectations,
    adopt_patch,
    controller_ref,
    namespace_terminating,
    ns_key,
    owner_ref,
    release_patch,
)
from netlab.cluster.events import EventRecorder
from netlab.cluster.informer import Informer, index_by_controller, index_by_namespace, key_of
from netlab.cluster.selectors import LabelSelector, selector_from_object
from netlab.cluster.status import ApiError
from netlab.errors import Unavailable

log = logging.getLogger(__name__)
Obj = dict[str, Any]

BURST = 500
KIND = "ReplicaSet"
API_VERSION = "apps/v1"


def selector_of(obj: Obj) -> LabelSelector | None:
    """The object's selector; None when it is malformed or empty (it then selects nothing)."""
    sel = (obj.get("spec") or {}).get("selector")
    if not sel:
        return None
    try:
        parsed = selector_from_object(sel)
    except ValueError:
        return None
    return None if parsed.empty else parsed


def labels_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


@dataclass(frozen=True)
class Claim:
    owned: tuple[Obj, ...]
    adopt: tuple[Obj, ...]
    release: tuple[Obj, ...]


def claim(owner: Obj, pods: Sequence[Obj]) -> Claim:
    """Upstream's PodControllerRefManager.ClaimPods, decided from the cache."""
    uid = owner["metadata"]["uid"]
    selector = selector_of(owner)
    owner_deleting = podutil.is_deleting(owner)
    owned, adopt, release = [], [], []
    for pod in pods:
        ref = controller_ref(pod)
        matches = selector is not None and selector.matches(labels_of(pod))
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                owned.append(pod)
            elif not owner_deleting:
                release.append(pod)
        elif matches and not owner_deleting and not podutil.is_deleting(pod):
            adopt.append(pod)
    return Claim(tuple(owned), tuple(adopt), tuple(release))


@dataclass(frozen=True)
class Failure:
    reason: str  # FailedCreate or FailedDelete
    message: str


@dataclass(frozen=True)
class ReplicaPlan:
    create: int = 0
    delete: tuple[Obj, ...] = ()


def plan_replicas(active: Sequence[Obj], replicas: int, now: float, burst: int = BURST) -> ReplicaPlan:
    diff = len(active) - replicas
    if diff < 0:
        return ReplicaPlan(create=min(-diff, burst))
    if diff > 0:
        return ReplicaPlan(delete=tuple(podutil.deletion_order(active, now)[: min(diff, burst)]))
    return ReplicaPlan()


def slow_start(count: int, initial: int = 1) -> list[int]:
    """Batch sizes 1, 2, 4, ... summing to `count`."""
    out = []
    size = initial
    while count > 0:
        out.append(min(size, count))
        count -= out[-1]
        size *= 2
    return out


def replicaset_status(rs: Obj, owned: Sequence[Obj], now: float, failure: Failure | None = None) -> Obj:
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    active = [p for p in owned if podutil.is_active(p)]
    status: Obj = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(
            1 for p in active if all(labels_of(p).get(k) == v for k, v in template_labels.items())
        ),
        "readyReplicas": sum(1 for p in active if podutil.is_ready(p)),
        "availableReplicas": sum(1 for p in active if podutil.is_available(p, min_ready, now)),
        "observedGeneration": (rs.get("metadata") or {}).get("generation", 0),
    }
    old = {c.get("type"): c for c in (rs.get("status") or {}).get("conditions") or []}
    conditions = [c for t, c in old.items() if t != "ReplicaFailure"]
    if failure:
        previous = old.get("ReplicaFailure")
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": failure.reason,
                "message": failure.message,
                "lastTransitionTime": previous["lastTransitionTime"]
                if previous and previous.get("lastTransitionTime")
                else _rfc3339(now),
            }
        )
    if conditions:
        status["conditions"] = conditions
    return status


def status_differs(current: Obj, wanted: Obj) -> bool:
    keys = set(current) | set(wanted)
    return any((current.get(k) or 0) != (wanted.get(k) or 0) for k in keys if k != "conditions") or (
        (current.get("conditions") or []) != (wanted.get("conditions") or [])
    )


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class ReplicaSetController(Controller):
    name = "replicaset"

    def __init__(
        self,
        client: ApiClient,
        replicasets: Informer,
        pods: Informer,
        recorder: EventRecorder,
        workers: int = 4,
        create_parallelism: int = 8,
    ) -> None:
        super().__init__(client, workers)
        self.rs = replicasets
        self.pods = pods
        self.recorder = recorder
        self.expectations = Expectations()
        self._pool = ThreadPoolExecutor(create_parallelism, thread_name_prefix="rs-pods")
        pods.add_index("namespace", index_by_namespace)
        pods.add_index("controller", index_by_controller)
        replicasets.add_index("namespace", index_by_namespace)
        replicasets.add_handler(
            lambda o: self.enqueue(key_of(o)),
            self._rs_updated,
            self._rs_deleted,
        )
        pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # handlers ------------------------------------------------------------------------------

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(key_of(new))

    def _rs_deleted(self, rs: Obj) -> None:
        key = key_of(rs)
        self.expectations.forget(key)
        self.enqueue(key)

    def _owner_key(self, pod: Obj) -> str | None:
        """The key of the ReplicaSet controlling `pod`, if one we know (uid checked)."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != KIND:
            return None
        key = ns_key(pod["metadata"]["namespace"], str(ref.get("name")))
        rs = self.rs.get(key)
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _matching(self, pod: Obj) -> list[str]:
        out = []
        for rs in self.rs.by_index("namespace", pod["metadata"]["namespace"]):
            sel = selector_of(rs)
            if sel is not None and sel.matches(labels_of(pod)):
                out.append(key_of(rs))
        return out

    def _pod_added(self, pod: Obj) -> None:
        if podutil.is_deleting(pod):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_add(key)
            self.enqueue(key)
        elif controller_ref(pod) is None:
            for k in self._matching(pod):
                self.enqueue(k)

    def _pod_updated(self, old: Obj, pod: Obj) -> None:
        if old is pod or old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
            return
        if podutil.is_deleting(pod) and not podutil.is_deleting(old):
            self._pod_deleted(pod)
            return
        old_key, key = self._owner_key(old), self._owner_key(pod)
        if old_key and old_key != key:
            self.enqueue(old_key)
        if key is not None:
            self.enqueue(key)
            spec = (self.rs.get(key) or {}).get("spec") or {}
            wait = podutil.available_in(pod, int(spec.get("minReadySeconds") or 0), time.time())
            if wait is not None and not podutil.is_ready(old):
                self.queue.add_after(key, wait + 0.05)
        if labels_of(old) != labels_of(pod) and controller_ref(pod) is None:
            for k in self._matching(pod):
                self.enqueue(k)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_delete(key, pod["metadata"]["uid"])
            self.enqueue(key)

    # sync ----------------------------------------------------------------------------------

    def sync(self, key: str) -> None:
        rs = self.rs.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        ns = rs["metadata"]["namespace"]
        candidates = self.pods.by_index("namespace", ns)
        c = claim(rs, candidates)
        owned = list(c.owned)
        ref = owner_ref(rs, KIND, API_VERSION)
        for pod in c.adopt:
            try:
                owned.append(
                    self.client.patch(
                        "pods", pod["metadata"]["name"], adopt_patch(pod, ref), ns, patch_type="strategic"
                    )
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        for pod in c.release:
            try:
                self.client.patch(
                    "pods",
                    pod["metadata"]["name"],
                    release_patch(pod, rs["metadata"]["uid"]),
                    ns,
                    patch_type="strategic",
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        failure = None
        now = time.time()
        if self.expectations.satisfied(key) and not podutil.is_deleting(rs):
            active = [p for p in owned if podutil.is_active(p)]
            plan = plan_replicas(active, int((rs.get("spec") or {}).get("replicas", 1)), now)
            failure = self._carry_out(key, rs, plan)
        self._update_status(rs, owned, now, failure)
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        waits = [w for p in owned if (w := podutil.available_in(p, min_ready, now)) is not None]
        if waits:
            self.queue.add_after(key, min(waits) + 0.05)
        if failure is not None:
            raise RuntimeError(failure.message)  # retried with back-off

    def _carry_out(self, key: str, rs: Obj, plan: ReplicaPlan) -> Failure | None:
        meta = rs["metadata"]
        ns = meta["namespace"]
        if plan.create:
            self.expectations.expect(key, adds=plan.create)
            template = (rs.get("spec") or {}).get("template") or {}
            pod = podutil.pod_from_template(
                template, ns, f"{meta['name']}-", owner_ref(rs, KIND, API_VERSION)
            )
            created = 0
            for batch in slow_start(plan.create):
                results = list(self._pool.map(lambda _: self._create(rs, pod), range(batch)))
                errors = [r for r in results if isinstance(r, Exception)]
                created += batch - len(errors)
                if errors:
                    self.expectations.lower(key, adds=plan.create - created)
                    if all(namespace_terminating(e) for e in errors):
                        return None
                    return Failure("FailedCreate", f"Error creating: {errors[0]}")
            return None
        if plan.delete:
            self.expectations.expect(key, deletes=[p["metadata"]["uid"] for p in plan.delete])
            deleted: list[Exception | None] = list(self._pool.map(lambda p: self._delete(rs, p), plan.delete))
            errors = [r for r in deleted if r is not None]
            if errors:
                return Failure("FailedDelete", f"Error deleting: {errors[0]}")
        return None

    def _create(self, rs: Obj, pod: Obj) -> Obj | Exception:
        try:
            created = self.client.create("pods", pod, rs["metadata"]["namespace"])
        except (ApiError, Unavailable) as e:
            if namespace_terminating(e):
                return e  # the namespace is going away with everything in it
            self.recorder.warning(rs, "FailedCreate", f"Error creating: {e}")
            return e
        self.recorder.normal(rs, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return created

    def _delete(self, rs: Obj, pod: Obj) -> Exception | None:
        meta = pod["metadata"]
        key = key_of(rs)
        try:
            self.client.delete("pods", meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if e.code in (404, 409):  # already gone, or a different pod by that name now
                self.expectations.observed_delete(key, meta["uid"])
                return None
            self.expectations.lower(key, deletes=[meta["uid"]])
            self.recorder.warning(rs, "FailedDelete", f"Error deleting: {e}")
            return e
        except Unavailable as e:
            self.expectations.lower(key, deletes=[meta["uid"]])
            return e
        self.recorder.normal(rs, "SuccessfulDelete", f"Deleted pod: {meta['name']}")
        return None

    def _update_status(self, rs: Obj, owned: Sequence[Obj], now: float, failure: Failure | None) -> None:
        wanted = replicaset_status(rs, owned, now, failure)
        if not status_differs(rs.get("status") or {}, wanted):
            return
        meta = rs["metadata"]
        patch = {"status": {**wanted, "conditions": wanted.get("conditions")}}
        try:
            self.client.patch("replicasets", meta["name"], patch, meta["namespace"], subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise
