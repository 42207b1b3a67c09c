"""The Deployment controller: one ReplicaSet per pod template, rolled over by the strategy.

This follows `pkg/controller/deployment` closely, because `kubectl rollout status|history|undo`
and `kubectl describe deploy` read exactly what upstream writes:

- A template gets the ReplicaSet `<deployment>-<hash>`: `pod-template-hash=<hash>` is added to
  its selector, template labels and labels; the hash is FNV-32a of the template (plus
  `status.collisionCount`) rendered with upstream's `SafeEncodeString`. (Upstream hashes a Go
  dump of the struct, so the hash values differ from a real cluster's; the scheme does not.)
- Revisions: the new ReplicaSet gets `deployment.kubernetes.io/revision` = max(old) + 1, also
  when an old ReplicaSet is reused by `kubectl rollout undo` (its previous numbers go to
  `revision-history`); the Deployment carries its current revision; `desired-replicas` and
  `max-replicas` annotations record the size each ReplicaSet was scaled for, which is how a
  `kubectl scale` in the middle of a rollout is recognised and spread proportionally.
- RollingUpdate: maxSurge rounds up, maxUnavailable down (both 0 -> maxUnavailable 1). Scale
  the new ReplicaSet up within replicas + maxSurge (counting every ReplicaSet's
  `spec.replicas`); otherwise scale old ones down, unhealthy replicas first, never below
  replicas - maxUnavailable available pods (counting `status.availableReplicas`) and never
  more than `spec.replicas` of all sets minus that bound minus the new set's unavailable pods.
- Recreate: scale old ReplicaSets to 0, wait until none of their pods is left (even
  terminating ones), then create and scale the new one.
- Status and conditions as upstream's `calculateStatus` / `syncRolloutStatus`: Available
  (MinimumReplicasAvailable / MinimumReplicasUnavailable) and Progressing
  (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
  ProgressDeadlineExceeded).
- Old ReplicaSets at zero beyond `revisionHistoryLimit` are deleted, oldest revision first.

The pure functions take plain objects and return numbers or plans; `DeploymentController` reads
the caches, calls them in upstream's order and writes the results.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from netlab.cluster.client import ApiClient
from netlab.cluster.controllers import podutil
from netlab.cluster.controllers.base import (
    Controller,
    adopt_patch,
    controller_ref,
    ns_key,
    owner_ref,
    release_patch,
)
from netlab.cluster.controllers.replicaset import claim, labels_of, selector_of
from netlab.cluster.events import EventRecorder, rfc3339
from netlab.cluster.informer import Informer, index_by_controller, index_by_namespace, key_of
from netlab.cluster.status import ApiError

log = logging.getLogger(__name__)
Obj = dict[str, Any]

KIND = "Deployment"
API_VERSION = "apps/v1"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
SKIP_COPY = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
MAX_REVISION_HISTORY_CHARS = 2000

# condition reasons
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# templates and hashes ----------------------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """upstream's rand.SafeEncodeString: each character mapped into a vowel-free alphabet."""
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in text)


def _pruned(value: Any) -> Any:
    """Drop nulls and empty maps and lists, which upstream's semantic equality ignores."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    data = json.dumps(_pruned(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(4, "little") + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _pruned(t)  # type: ignore[no-any-return]


def templates_equal(a: Obj, b: Obj) -> bool:
    """upstream's EqualIgnoreHash."""
    return _without_hash(a) == _without_hash(b)


# numbers -----------------------------------------------------------------------------------


def replicas_of(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent field resolved against `total`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        pct = int(text[:-1])
        v = pct * total / 100
        return math.ceil(v) if round_up else math.floor(v)
    return int(text)


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for a rolling deployment; upstream's ResolveFenceposts."""
    ru = (((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate")) or {}
    replicas = replicas_of(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas_of(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas_of(d))


def total_replicas(rss: Sequence[Obj | None]) -> int:
    return sum(replicas_of(rs) for rs in rss if rs is not None)


def total_status(rss: Sequence[Obj | None], field: str) -> int:
    return sum(status_int(rs, field) for rs in rss if rs is not None)


def revision(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _created(rs: Obj) -> tuple[float, str]:
    meta = rs.get("metadata") or {}
    return (podutil.parse_time(meta.get("creationTimestamp")) or 0.0, str(meta.get("name")))


def by_creation(rss: Sequence[Obj]) -> list[Obj]:
    return sorted(rss, key=_created)


def find_new(d: Obj, rss: Sequence[Obj]) -> Obj | None:
    template = (d.get("spec") or {}).get("template") or {}
    for rs in by_creation(rss):
        if templates_equal((rs.get("spec") or {}).get("template") or {}, template):
            return rs
    return None


def active(rss: Sequence[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas_of(rs) > 0]


# rolling update ----------------------------------------------------------------------------


def new_rs_replicas(d: Obj, all_rss: Sequence[Obj | None], new_rs: Obj) -> int:
    """upstream's NewRSNewReplicas: what the new ReplicaSet should be scaled to now."""
    if not is_rolling(d):
        return replicas_of(d)
    current = total_replicas(all_rss)
    max_total = replicas_of(d) + max_surge(d)
    if current >= max_total:
        return replicas_of(new_rs)
    up = min(max_total - current, replicas_of(d) - replicas_of(new_rs))
    return replicas_of(new_rs) + up


def plan_old_scale_down(
    d: Obj, all_rss: Sequence[Obj], old_rss: Sequence[Obj], new_rs: Obj
) -> list[tuple[Obj, int]]:
    """upstream's reconcileOldReplicaSets: (old set, new size) pairs, in the order to apply.

    First unhealthy replicas of old sets (spec above available), within what the availability
    bound allows; then available ones while more than replicas - maxUnavailable are available."""
    old_total = total_replicas(old_rss)
    if old_total == 0:
        return []
    all_total = total_replicas(all_rss)
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = replicas_of(new_rs) - status_int(new_rs, "availableReplicas")
    max_scaled_down = all_total - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    sizes = {rs["metadata"]["name"]: replicas_of(rs) for rs in old_rss}
    ordered = by_creation([rs for rs in old_rss])
    # clean up unhealthy replicas first
    cleaned = 0
    for rs in ordered:
        name = rs["metadata"]["name"]
        if cleaned >= max_scaled_down:
            break
        spec, avail = sizes[name], status_int(rs, "availableReplicas")
        if spec == 0 or spec <= avail:
            continue
        n = min(max_scaled_down - cleaned, spec - avail)
        sizes[name] = spec - n
        cleaned += n
    # then scale down available ones while the bound allows
    available = total_status(all_rss, "availableReplicas")
    if available > min_available:
        budget = available - min_available
        done = 0
        for rs in ordered:
            name = rs["metadata"]["name"]
            if done >= budget:
                break
            if sizes[name] == 0:
                continue
            n = min(sizes[name], budget - done)
            sizes[name] -= n
            done += n
    return [
        (rs, sizes[rs["metadata"]["name"]])
        for rs in ordered
        if sizes[rs["metadata"]["name"]] != replicas_of(rs)
    ]


# scaling (kubectl scale during a rollout) ---------------------------------------------------


def _annotation_int(rs: Obj, key: str) -> int | None:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {})[key])
    except (KeyError, ValueError, TypeError):
        return None


def is_scaling_event(d: Obj, rss: Sequence[Obj | None]) -> bool:
    for rs in active(rss):
        desired = _annotation_int(rs, DESIRED_REPLICAS)
        if desired is not None and desired != replicas_of(d):
            return True
    return False


def _proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    if replicas_of(d) == 0:
        fraction = -replicas_of(rs)
    else:
        d_replicas = replicas_of(d) + max_surge(d)
        annotated = _annotation_int(rs, MAX_REPLICAS)
        if annotated is None or annotated == 0:
            annotated = status_int(d, "replicas") or 1
        fraction = math.floor(replicas_of(rs) * d_replicas / annotated + 0.5) - replicas_of(rs)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def saturated(d: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet runs the deployment's full size, all available (upstream's IsSaturated)."""
    return (
        rs is not None
        and replicas_of(rs) == replicas_of(d)
        and _annotation_int(rs, DESIRED_REPLICAS) == replicas_of(d)
        and status_int(rs, "availableReplicas") == replicas_of(d)
    )


def plan_scale(d: Obj, new_rs: Obj | None, old_rss: Sequence[Obj]) -> list[tuple[Obj, int]]:
    """upstream's `scale`: (set, size) pairs when the deployment's replicas changed."""
    actives = active([new_rs, *old_rss])
    if len(actives) <= 1:
        target = actives[0] if actives else (new_rs or (max(old_rss, key=_created) if old_rss else None))
        if target is None:
            return []
        if replicas_of(target) == replicas_of(d) and not replicas_annotations_differ(
            target, replicas_of(d), replicas_of(d) + max_surge(d)
        ):
            return []
        return [(target, replicas_of(d))]
    if saturated(d, new_rs):
        return [(rs, 0) for rs in active(old_rss)]
    if not is_rolling(d):
        return []
    allowed = replicas_of(d) + max_surge(d) if replicas_of(d) > 0 else 0
    to_add = allowed - total_replicas(actives)
    if to_add > 0:  # newer and bigger first
        ordered = sorted(actives, key=lambda rs: (-replicas_of(rs), -_created(rs)[0]))
    elif to_add < 0:  # older and bigger first
        ordered = sorted(actives, key=lambda rs: (-replicas_of(rs), _created(rs)[0]))
    else:
        ordered = list(actives)
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        p = _proportion(rs, d, to_add, added) if to_add else 0
        sizes[rs["metadata"]["name"]] = replicas_of(rs) + p
        added += p
    if ordered and to_add:
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    # every active set, resized or not: each gets the new replica annotations
    return [(rs, sizes[rs["metadata"]["name"]]) for rs in ordered]


# status and conditions ---------------------------------------------------------------------


def condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> Obj:
    stamp = rfc3339(now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    """upstream's SetDeploymentCondition: same status and reason is a no-op."""
    current = condition(status, cond["type"])
    if (
        current is not None
        and current.get("status") == cond["status"]
        and current.get("reason") == cond["reason"]
    ):
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [
        cond
    ]


def remove_condition(status: Obj, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


def calculate_status(all_rss: Sequence[Obj | None], new_rs: Obj | None, d: Obj, now: float) -> Obj:
    available = total_status(all_rss, "availableReplicas")
    unavailable = max(0, total_replicas(all_rss) - available)
    old = d.get("status") or {}
    status: Obj = {
        "observedGeneration": (d.get("metadata") or {}).get("generation", 0),
        "replicas": total_status(all_rss, "replicas"),
        "updatedReplicas": total_status([new_rs], "replicas"),
        "readyReplicas": total_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
        "conditions": [dict(c) for c in old.get("conditions") or []],
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas_of(d) - max_unavailable(d):
        set_condition(
            status,
            new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now),
        )
    else:
        set_condition(
            status,
            new_condition(
                "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.", now
            ),
        )
    return status


def has_progress_deadline(d: Obj) -> bool:
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and int(deadline) < 2**31 - 1


def complete(d: Obj, status: Obj) -> bool:
    n = replicas_of(d)
    return (
        int(status.get("updatedReplicas") or 0) == n
        and int(status.get("replicas") or 0) == n
        and int(status.get("availableReplicas") or 0) == n
        and int(status.get("observedGeneration") or 0)
        >= int((d.get("metadata") or {}).get("generation") or 0)
    )


def progressing(d: Obj, new_status: Obj) -> bool:
    old = d.get("status") or {}

    def get(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = get(old, "replicas") - get(old, "updatedReplicas")
    new_old = get(new_status, "replicas") - get(new_status, "updatedReplicas")
    return (
        get(new_status, "updatedReplicas") > get(old, "updatedReplicas")
        or new_old < old_old
        or get(new_status, "readyReplicas") > get(old, "readyReplicas")
        or get(new_status, "availableReplicas") > get(old, "availableReplicas")
    )


def timed_out(d: Obj, status: Obj, now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = condition(status, "Progressing")
    if cond is None or cond.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT):
        return cond is not None and cond.get("reason") == TIMED_OUT
    since = podutil.parse_time(cond.get("lastUpdateTime"))
    deadline = int((d.get("spec") or {}).get("progressDeadlineSeconds") or 600)
    return since is not None and since + deadline < now


def rollout_status(all_rss: Sequence[Obj | None], new_rs: Obj | None, d: Obj, now: float) -> Obj:
    """upstream's syncRolloutStatus: the status with the Progressing condition brought up to date."""
    status = calculate_status(all_rss, new_rs, d, now)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
        return status
    current = condition(status, "Progressing")
    is_complete = (
        status["replicas"] == status["updatedReplicas"]
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE
    )
    if is_complete:
        return status
    name = new_rs["metadata"]["name"] if new_rs is not None else None
    if complete(d, status):
        msg = (
            f'ReplicaSet "{name}" has successfully progressed.'
            if name
            else "Deployment has successfully progressed."
        )
        set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now))
    elif progressing(d, status):
        msg = (
            f'ReplicaSet "{name}" is progressing.'
            if name
            else f'Deployment "{d["metadata"]["name"]}" is progressing.'
        )
        cond = new_condition("Progressing", "True", RS_UPDATED, msg, now)
        if current is not None and current.get("status") == "True":
            cond["lastTransitionTime"] = current.get("lastTransitionTime")
        remove_condition(status, "Progressing")
        set_condition(status, cond)
    elif timed_out(d, status, now):
        msg = (
            f'ReplicaSet "{name}" has timed out progressing.'
            if name
            else "Deployment has timed out progressing."
        )
        set_condition(status, new_condition("Progressing", "False", TIMED_OUT, msg, now))
    return status


def status_equal(a: Obj, b: Obj) -> bool:
    def norm(s: Obj) -> Obj:
        return {k: v for k, v in s.items() if v not in (None, 0, [], {})}

    return norm(a) == norm(b)


# new ReplicaSets and annotations -----------------------------------------------------------


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


def replicas_annotations_differ(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = (rs.get("metadata") or {}).get("annotations") or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """upstream's SetNewReplicaSetAnnotations, editing `rs` in place; True if anything changed."""
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in SKIP_COPY and ann.get(k) != v:
            ann[k] = v
            changed = True
    old_text = ann.get(REVISION)
    try:
        old_rev = int(old_text) if old_text is not None else 0
    except ValueError:
        return changed
    if old_rev < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
            history.append(old_text)
            while len(",".join(history)) > MAX_REVISION_HISTORY_CHARS and len(history) > 1:
                history.pop(0)
            ann[REVISION_HISTORY] = ",".join(history)
    if not exists and set_replicas_annotations(rs, replicas_of(d), replicas_of(d) + max_surge(d)):
        changed = True
    return changed


def render_new_rs(d: Obj, hash_: str, replicas: int, new_revision: int) -> Obj:
    meta = d["metadata"]
    spec = d.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
    rs: Obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{hash_}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "ownerReferences": [owner_ref(d, KIND, API_VERSION)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }
    set_new_rs_annotations(d, rs, new_revision, exists=False)
    return rs


def cleanup_plan(d: Obj, old_rss: Sequence[Obj]) -> list[Obj]:
    """Old ReplicaSets to delete beyond revisionHistoryLimit (only empty, settled ones)."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        return []
    alive = [rs for rs in old_rss if not podutil.is_deleting(rs)]
    diff = len(alive) - int(limit)
    if diff <= 0:
        return []
    ordered = sorted(alive, key=lambda rs: (revision(rs), _created(rs)))
    out = []
    for rs in ordered[:diff]:
        meta = rs.get("metadata") or {}
        if (
            status_int(rs, "replicas") != 0
            or replicas_of(rs) != 0
            or int(meta.get("generation") or 0) > status_int(rs, "observedGeneration")
        ):
            continue
        out.append(rs)
    return out


# the controller ----------------------------------------------------------------------------


class DeploymentController(Controller):
    name = "deployment"

    def __init__(
        self,
        client: ApiClient,
        deployments: Informer,
        replicasets: Informer,
        pods: Informer,
        recorder: EventRecorder,
        workers: int = 4,
    ) -> None:
        super().__init__(client, workers)
        self.deployments = deployments
        self.rs = replicasets
        self.pods = pods
        self.recorder = recorder
        deployments.add_index("namespace", index_by_namespace)
        replicasets.add_index("namespace", index_by_namespace)
        pods.add_index("controller", index_by_controller)
        self.enqueue_changes(deployments)
        replicasets.add_handler(self._rs_changed, self._rs_updated, self._rs_changed)
        pods.add_handler(on_delete=self._pod_deleted)

    # handlers ------------------------------------------------------------------------------

    def _owner_key(self, rs: Obj) -> str | None:
        ref = controller_ref(rs)
        if ref is None or ref.get("kind") != KIND:
            return None
        key = ns_key(rs["metadata"]["namespace"], str(ref.get("name")))
        d = self.deployments.get(key)
        return key if d is not None and d["metadata"].get("uid") == ref.get("uid") else None

    def _matching(self, rs: Obj) -> list[str]:
        out = []
        for d in self.deployments.by_index("namespace", rs["metadata"]["namespace"]):
            sel = selector_of(d)
            if sel is not None and sel.matches(labels_of(rs)):
                out.append(key_of(d))
        return out

    def _rs_changed(self, rs: Obj) -> None:
        key = self._owner_key(rs)
        if key is not None:
            self.enqueue(key)
        elif controller_ref(rs) is None:
            for k in self._matching(rs):
                self.enqueue(k)

    def _rs_updated(self, old: Obj, rs: Obj) -> None:
        old_key = self._owner_key(old)
        if old_key is not None and old_key != self._owner_key(rs):
            self.enqueue(old_key)
        self._rs_changed(rs)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs.get(ns_key(pod["metadata"]["namespace"], str(ref.get("name"))))
        if rs is None:
            return
        key = self._owner_key(rs)
        d = self.deployments.get(key) if key else None
        if d is not None and not is_rolling(d):
            self.enqueue(key)  # type: ignore[arg-type]

    # sync ----------------------------------------------------------------------------------

    def sync(self, key: str) -> None:
        cached = self.deployments.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        now = time.time()
        rss = self._claim_replicasets(d)
        if podutil.is_deleting(d):
            new_rs = find_new(d, rss)
            self._write_status(d, calculate_status(self._all(new_rs, rss), new_rs, d, now))
            return
        spec = d.get("spec") or {}
        if spec.get("paused") or is_scaling_event(d, rss):
            self._sync_scale(d, rss, now)
            return
        if is_rolling(d):
            self._rollout_rolling(d, rss, now)
        else:
            self._rollout_recreate(d, rss, now)

    @staticmethod
    def _all(new_rs: Obj | None, rss: Sequence[Obj]) -> list[Obj | None]:
        olds: list[Obj | None] = [
            rs for rs in rss if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        return [*olds, new_rs]

    def _claim_replicasets(self, d: Obj) -> list[Obj]:
        ns = d["metadata"]["namespace"]
        c = claim(d, self.rs.by_index("namespace", ns))
        owned = list(c.owned)
        ref = owner_ref(d, KIND, API_VERSION)
        for rs in c.adopt:
            try:
                owned.append(
                    self.client.patch(
                        "replicasets",
                        rs["metadata"]["name"],
                        adopt_patch(rs, ref),
                        ns,
                        patch_type="strategic",
                    )
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        for rs in c.release:
            try:
                self.client.patch(
                    "replicasets",
                    rs["metadata"]["name"],
                    release_patch(rs, d["metadata"]["uid"]),
                    ns,
                    patch_type="strategic",
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        return owned

    def _new_and_old(self, d: Obj, rss: list[Obj], create: bool, now: float) -> tuple[Obj | None, list[Obj]]:
        """upstream's getAllReplicaSetsAndSyncRevision (writes the deployment's revision too)."""
        existing = find_new(d, rss)
        olds = [rs for rs in rss if existing is None or rs["metadata"]["uid"] != existing["metadata"]["uid"]]
        new_revision = max((revision(rs) for rs in olds), default=0) + 1
        status_dirty = False
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = int((d.get("spec") or {}).get("minReadySeconds") or 0)
            if changed or int((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                return self.client.update("replicasets", rs), olds
            status_dirty = self._set_revision(
                d, ((rs["metadata"].get("annotations") or {}).get(REVISION)) or ""
            )
            if has_progress_deadline(d) and condition(d.get("status") or {}, "Progressing") is None:
                set_condition(
                    d.setdefault("status", {}),
                    new_condition(
                        "Progressing",
                        "True",
                        FOUND_NEW_RS,
                        f'Found new replica set "{rs["metadata"]["name"]}"',
                        now,
                    ),
                )
                status_dirty = True
            if status_dirty:
                self._put_status(d)
            return rs, olds
        if not create:
            return None, olds
        collision = (d.get("status") or {}).get("collisionCount")
        hash_ = template_hash((d.get("spec") or {}).get("template") or {}, collision)
        rs = render_new_rs(d, hash_, 0, new_revision)
        rs["spec"]["replicas"] = new_rs_replicas(d, [*olds, rs], rs)
        ns = d["metadata"]["namespace"]
        already = False
        try:
            created = self.client.create("replicasets", rs, ns)
        except ApiError as e:
            if e.code != 409 or e.reason != "AlreadyExists":
                msg = f'Failed to create new replica set "{rs["metadata"]["name"]}": {e.message}'
                if has_progress_deadline(d):
                    set_condition(
                        d.setdefault("status", {}),
                        new_condition("Progressing", "False", FAILED_RS_CREATE, msg, now),
                    )
                    self._put_status(d)
                self.recorder.warning(d, FAILED_RS_CREATE, msg)
                raise
            found = self.client.get("replicasets", rs["metadata"]["name"], ns)
            ref = controller_ref(found)
            if (
                ref is not None
                and ref.get("uid") == d["metadata"]["uid"]
                and templates_equal(found["spec"]["template"], d["spec"]["template"])
            ):
                created, already = found, True
            else:
                d.setdefault("status", {})["collisionCount"] = int(collision or 0) + 1
                self._put_status(d)
                raise
        if not already and replicas_of(created) > 0:
            self.recorder.normal(
                d,
                "ScalingReplicaSet",
                f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas_of(created)}",
            )
        self._set_revision(d, str(new_revision))
        if not already and has_progress_deadline(d):
            set_condition(
                d.setdefault("status", {}),
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_CREATED,
                    f'Created new replica set "{created["metadata"]["name"]}"',
                    now,
                ),
            )
        self._put_status(d)
        return created, olds

    def _set_revision(self, d: Obj, rev: str) -> bool:
        ann = d["metadata"].setdefault("annotations", {})
        if ann.get(REVISION) == rev:
            return False
        ann[REVISION] = rev
        return True

    def _put_status(self, d: Obj) -> None:
        """Write the deployment's status and annotations (the status endpoint takes both)."""
        written = self.client.update("deployments", d, subresource="status")
        d["metadata"]["resourceVersion"] = written["metadata"]["resourceVersion"]

    def _scale(self, d: Obj, rs: Obj, size: int, annotate_only: bool = False) -> tuple[bool, Obj]:
        """upstream's scaleReplicaSet: size and replica annotations; an event when the size changed.

        Rollout steps leave a set already at `size` alone (scaleReplicaSetAndRecordEvent);
        proportional scaling (`annotate_only`) also refreshes the replica annotations."""
        desired, most = replicas_of(d), replicas_of(d) + max_surge(d)
        resize = replicas_of(rs) != size
        if not resize and not (annotate_only and replicas_annotations_differ(rs, desired, most)):
            return False, rs
        old_size = replicas_of(rs)
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = size
        set_replicas_annotations(updated, desired, most)
        written = self.client.update("replicasets", updated)
        if resize:
            op = "up" if size > old_size else "down"
            self.recorder.normal(
                d,
                "ScalingReplicaSet",
                f"Scaled {op} replica set {rs['metadata']['name']} from {old_size} to {size}",
            )
        return resize, written

    def _sync_scale(self, d: Obj, rss: list[Obj], now: float) -> None:
        new_rs, olds = self._new_and_old(d, rss, False, now)
        for rs, size in plan_scale(d, new_rs, olds):
            _, written = self._scale(d, rs, size, annotate_only=True)
            if new_rs is not None and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                new_rs = written
            else:
                olds = [written if o["metadata"]["uid"] == rs["metadata"]["uid"] else o for o in olds]
        if (d.get("spec") or {}).get("paused"):
            self._cleanup(d, olds)
        self._write_status(d, calculate_status([*olds, new_rs], new_rs, d, now))

    def _rollout_rolling(self, d: Obj, rss: list[Obj], now: float) -> None:
        new_rs, olds = self._new_and_old(d, rss, True, now)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*olds, new_rs]
        # scale up, if we can
        if replicas_of(new_rs) != replicas_of(d):
            size = (
                replicas_of(d)
                if replicas_of(new_rs) > replicas_of(d)
                else new_rs_replicas(d, all_rss, new_rs)
            )
            scaled, new_rs = self._scale(d, new_rs, size)
            all_rss = [*olds, new_rs]
            if scaled:
                self._sync_rollout_status(d, all_rss, new_rs, now)
                return
        # scale down, if we can
        scaled_down = False
        for rs, size in plan_old_scale_down(d, [*olds, new_rs], active(olds), new_rs):
            done, written = self._scale(d, rs, size)
            scaled_down = scaled_down or done
            olds = [written if o["metadata"]["uid"] == rs["metadata"]["uid"] else o for o in olds]
        all_rss = [*olds, new_rs]
        if not scaled_down and complete(d, d.get("status") or {}):
            self._cleanup(d, olds)
        self._sync_rollout_status(d, all_rss, new_rs, now)

    def _old_pods_running(self, new_rs: Obj | None, olds: Sequence[Obj]) -> bool:
        if total_status(olds, "replicas") > 0:
            return True
        for rs in olds:
            for pod in self.pods.by_index("controller", rs["metadata"]["uid"]):
                if not podutil.is_terminal(pod):
                    return True
        return False

    def _rollout_recreate(self, d: Obj, rss: list[Obj], now: float) -> None:
        new_rs, olds = self._new_and_old(d, rss, False, now)
        all_rss: list[Obj | None] = [*olds, new_rs]
        scaled = False
        for rs in active(olds):
            done, written = self._scale(d, rs, 0)
            scaled = scaled or done
            olds = [written if o["metadata"]["uid"] == rs["metadata"]["uid"] else o for o in olds]
        if scaled or self._old_pods_running(new_rs, olds):
            self._sync_rollout_status(d, [*olds, new_rs], new_rs, now)
            return
        if new_rs is None:
            new_rs, olds = self._new_and_old(d, rss, True, now)
        assert new_rs is not None
        if replicas_of(new_rs) != replicas_of(d):
            _, new_rs = self._scale(d, new_rs, replicas_of(d))
        all_rss = [*olds, new_rs]
        if complete(d, d.get("status") or {}):
            self._cleanup(d, olds)
        self._sync_rollout_status(d, all_rss, new_rs, now)

    def _cleanup(self, d: Obj, olds: Sequence[Obj]) -> None:
        for rs in cleanup_plan(d, olds):
            meta = rs["metadata"]
            try:
                self.client.delete(
                    "replicasets", meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]}
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise

    def _sync_rollout_status(
        self, d: Obj, all_rss: Sequence[Obj | None], new_rs: Obj | None, now: float
    ) -> None:
        status = rollout_status(all_rss, new_rs, d, now)
        self._write_status(d, status)
        cond = condition(status, "Progressing")
        if (
            has_progress_deadline(d)
            and cond is not None
            and cond.get("reason") not in (NEW_RS_AVAILABLE, TIMED_OUT)
        ):
            since = podutil.parse_time(cond.get("lastUpdateTime")) or now
            left = since + int(d["spec"].get("progressDeadlineSeconds") or 600) - now
            self.queue.add_after(key_of(d), max(left, 0) + 1)

    def _write_status(self, d: Obj, status: Obj) -> None:
        if status_equal(d.get("status") or {}, status):
            return
        d["status"] = status
        try:
            self._put_status(d)
        except ApiError as e:
            if e.code != 404:
                raise
