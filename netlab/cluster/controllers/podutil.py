"""Facts about pods the controllers agree on: active, ready, available, and who goes first.

Mirrors `k8s.io/kubernetes/pkg/api/v1/pod` and `pkg/controller/controller_utils.go`:
- active: not Succeeded or Failed, and not being deleted;
- ready: the `Ready` condition is True;
- available: ready for at least `minReadySeconds` (measured from the Ready condition's
  lastTransitionTime);
- deletion order when scaling down (`deletion_order`): unassigned before assigned; Pending
  before Unknown before Running; not ready before ready; lower
  `controller.kubernetes.io/pod-deletion-cost` first; pods doubled up on a node with others of
  the same set before lonely ones; ready for less time before ready for longer; more restarts
  before fewer; newer before older.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: Obj) -> bool:
    return not is_terminal(pod) and not is_deleting(pod)


def condition(pod: Obj, type_: str) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def ready_since(pod: Obj) -> float | None:
    c = condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def available_in(pod: Obj, min_ready_seconds: int, now: float) -> float | None:
    """Seconds until a ready pod becomes available (None: not ready, or already available)."""
    since = ready_since(pod)
    if since is None or min_ready_seconds <= 0:
        return None
    left = since + min_ready_seconds - now
    return left if left > 0 else None


def restarts(pod: Obj) -> int:
    return sum(
        int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def deletion_cost(pod: Obj) -> int:
    try:
        return int(((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST, 0))
    except ValueError:
        return 0


def deletion_order(pods: Sequence[Obj], now: float) -> list[Obj]:
    """`pods` sorted so that the first ones are the best to delete (upstream's ActivePodsWithRanks)."""
    on_node = Counter((p.get("spec") or {}).get("nodeName") for p in pods)

    def rank(p: Obj) -> tuple[Any, ...]:
        node = (p.get("spec") or {}).get("nodeName")
        phase = (p.get("status") or {}).get("phase") or "Pending"
        since = ready_since(p)
        created = parse_time((p.get("metadata") or {}).get("creationTimestamp"))
        return (
            1 if node else 0,
            _PHASE_RANK.get(phase, 0),
            1 if is_ready(p) else 0,
            deletion_cost(p),
            -(on_node[node] if node else 0),
            # ready for less time first: a later ready-since sorts first
            -(since if since is not None else now),
            -restarts(p),
            -(created if created is not None else float("inf")),
        )

    return sorted(pods, key=rank)


def pod_from_template(template: Obj, namespace: str, generate_name: str, owner: Obj) -> Obj:
    """A pod for a controller to create (upstream's GetPodFromTemplate)."""
    meta = template.get("metadata") or {}
    pod_meta: Obj = {
        "generateName": generate_name,
        "namespace": namespace,
        "ownerReferences": [owner],
    }
    for k in ("labels", "annotations", "finalizers"):
        if meta.get(k):
            pod_meta[k] = dict(meta[k]) if isinstance(meta[k], dict) else list(meta[k])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": dict(template.get("spec") or {})}
