"""The scheduler's decisions as pure functions: which nodes a pod fits, how each scores, which wins.

This mirrors kube-scheduler's default profile for what a lab needs (see the control-loop
reference, section 1):

- Filters, run in upstream's order, the first failing one giving the node's reason:
  NodeUnschedulable, TaintToleration (a node whose Ready condition is not True counts as
  carrying the `not-ready` / `unreachable` NoSchedule taint the node-lifecycle controller
  would add, so a pod never lands on a dead node in the seconds before that controller acts),
  NodeAffinity (nodeSelector and required node affinity), NodePorts, NodeResourcesFit.
- Scores, each 0-100 with upstream's integer truncation, weighted and summed:
  TaintToleration x3 (PreferNoSchedule), NodeAffinity x2 (preferred terms),
  PodTopologySpread x2 (the system default constraint on `kubernetes.io/hostname`, maxSkew 3,
  ScheduleAnyway: fewer sibling pods on a node score higher), NodeResourcesFit x1
  (LeastAllocated over cpu and memory with the 100m / 200Mi defaults for containers without
  requests), NodeResourcesBalancedAllocation x1 (real requests; skipped for BestEffort pods as
  in current releases). Without the spread score, replicas on large nodes would land at random:
  a 10m request moves LeastAllocated by less than one point.
- Siblings for the spread score are the pods with the same controller (ownerReference) in the
  same namespace, not being deleted. Upstream derives the selector from the Services and
  ReplicaSets that select the pod; for a Deployment's pods both pick the same set, except that
  during a rollout upstream also counts the other revision's pods.
- The failure message is upstream's `FitError`: "0/3 nodes are available: 1 Insufficient cpu,
  2 node(s) had untolerated taint {k: v}." (reason counts sorted as strings).

Everything the filters need is computed once per pod (`PodInfo`) and kept per node
(`NodeInfo`, updated incrementally as pods are added and removed), so scheduling a pod costs
one pass over the nodes and never re-reads the pods on them. Not modelled: preemption, pod
(anti-)affinity, explicit topologySpreadConstraints and zones, volumes, image locality.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.cluster import quantity

Obj = dict[str, Any]

MAX_NODE_SCORE = 100
DEFAULT_MILLI_CPU_REQUEST = 100  # schedutil.DefaultMilliCPURequest
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024  # schedutil.DefaultMemoryRequest
DEFAULT_ALLOWED_PODS = 110

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
NO_NODES = "no nodes available to schedule pods"

WEIGHTS = {
    "TaintToleration": 3,
    "NodeAffinity": 2,
    "PodTopologySpread": 2,
    "NodeResourcesFit": 1,
    "NodeResourcesBalancedAllocation": 1,
}
DEFAULT_HOSTNAME_MAX_SKEW = 3


# Resources ---------------------------------------------------------------------------------


def _amount(name: str, value: Any) -> int:
    """cpu in millicores, everything else in whole units (bytes, counts)."""
    return quantity.milli(value) if name == "cpu" else quantity.whole(value)


def _container_requests(c: Obj) -> dict[str, int]:
    reqs = ((c.get("resources") or {}).get("requests")) or {}
    return {str(k): _amount(str(k), v) for k, v in reqs.items()}


def _with_defaults(reqs: dict[str, int]) -> dict[str, int]:
    out = dict(reqs)
    out.setdefault("cpu", DEFAULT_MILLI_CPU_REQUEST)
    out.setdefault("memory", DEFAULT_MEMORY_REQUEST)
    return out


def _pod_total(spec: Obj, per_container: Callable[[dict[str, int]], dict[str, int]]) -> dict[str, int]:
    """max(sum of app containers, each init container) + overhead, per resource."""
    total: Counter[str] = Counter()
    for c in spec.get("containers") or []:
        total.update(per_container(_container_requests(c)))
    for c in spec.get("initContainers") or []:
        for k, v in per_container(_container_requests(c)).items():
            total[k] = max(total[k], v)
    for k, v in (spec.get("overhead") or {}).items():
        total[str(k)] += _amount(str(k), v)
    return dict(total)


def pod_requests(pod: Obj) -> dict[str, int]:
    """What NodeResourcesFit and BalancedAllocation count: the real requests."""
    return _pod_total(pod.get("spec") or {}, lambda r: r)


def pod_nonzero_requests(pod: Obj) -> dict[str, int]:
    """What LeastAllocated counts: containers missing a cpu or memory request get 100m / 200Mi."""
    return _pod_total(pod.get("spec") or {}, _with_defaults)


def node_allocatable(node: Obj) -> dict[str, int]:
    st = node.get("status") or {}
    alloc = st.get("allocatable") or st.get("capacity") or {}
    out = {}
    for k, v in alloc.items():
        try:
            out[str(k)] = _amount(str(k), v)
        except ValueError:
            continue  # a malformed quantity counts as none of that resource
    out.setdefault("pods", DEFAULT_ALLOWED_PODS)
    return out


# Host ports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPort:
    ip: str
    protocol: str
    port: int

    def clashes(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        return self.ip == other.ip or "0.0.0.0" in (self.ip, other.ip)


def pod_host_ports(pod: Obj) -> tuple[HostPort, ...]:
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            hp = p.get("hostPort")
            if isinstance(hp, int) and hp > 0:
                out.append(HostPort(p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
    return tuple(out)


# Taints and tolerations --------------------------------------------------------------------


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def node_ready_status(node: Obj) -> str:
    """`True`, `False` or `Unknown` (also when the kubelet has not reported a Ready condition)."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status") or "Unknown")
    return "Unknown"


def effective_taints(node: Obj) -> tuple[Obj, ...]:
    """The node's taints, plus the NoSchedule taint its Ready condition implies if missing."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    ready = node_ready_status(node)
    if ready != "True":
        key = TAINT_NOT_READY if ready == "False" else TAINT_UNREACHABLE
        if not any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return tuple(taints)


# Node affinity -----------------------------------------------------------------------------


def _expression_matches(expr: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key = expr.get("key", "")
    op = expr.get("operator", "")
    want = [str(v) for v in expr.get("values") or []]
    has = key in values
    if op == "In":
        return has and values[key] in want
    if op == "NotIn":
        return not has or values[key] not in want
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and len(want) == 1:
        try:
            actual, bound = int(values[key]), int(want[0])
        except ValueError:
            return False
        return actual > bound if op == "Gt" else actual < bound
    return False


def term_matches(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """A nodeSelectorTerm: its expressions ANDed; an empty term matches nothing (as upstream)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    return all(_expression_matches(e, labels) for e in exprs) and all(
        e.get("key") == "metadata.name" and _expression_matches(e, {"metadata.name": name}) for e in fields
    )


# Per-pod and per-node state ----------------------------------------------------------------


@dataclass(frozen=True)
class PodInfo:
    """What scheduling needs from a pod, computed once."""

    uid: str
    namespace: str
    name: str
    requests: Mapping[str, int]
    nonzero: Mapping[str, int]
    host_ports: tuple[HostPort, ...]
    node_selector: Mapping[str, str]
    required_terms: tuple[Obj, ...] | None  # None: no required node affinity
    preferred_terms: tuple[tuple[int, Obj], ...]
    tolerations: tuple[Obj, ...]
    best_effort: bool
    owner: str = ""  # the controller's uid: pods with the same one are spread apart
    terminating: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_info(pod: Obj) -> PodInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity")) or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    preferred = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    requests = pod_requests(pod)
    limits_set = any(
        ((c.get("resources") or {}).get("limits"))
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
    )
    return PodInfo(
        uid=str(meta.get("uid", "")),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        requests=requests,
        nonzero=pod_nonzero_requests(pod),
        host_ports=pod_host_ports(pod),
        node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
        required_terms=tuple(required.get("nodeSelectorTerms") or []) if required is not None else None,
        preferred_terms=tuple(
            (int(p.get("weight") or 0), p.get("preference") or {}) for p in preferred if isinstance(p, dict)
        ),
        tolerations=tuple(t for t in spec.get("tolerations") or [] if isinstance(t, dict)),
        best_effort=not any(requests.values()) and not limits_set,
        owner=next((str(r.get("uid")) for r in meta.get("ownerReferences") or [] if r.get("controller")), ""),
        terminating=bool(meta.get("deletionTimestamp")),
    )


@dataclass
class NodeInfo:
    """A node and the running totals of the pods assigned to it."""

    name: str
    labels: Mapping[str, str]
    unschedulable: bool
    taints: tuple[Obj, ...]
    allocatable: Mapping[str, int]
    requested: Counter[str] = field(default_factory=Counter)
    nonzero: Counter[str] = field(default_factory=Counter)
    host_ports: Counter[HostPort] = field(default_factory=Counter)
    owners: Counter[tuple[str, str]] = field(default_factory=Counter)  # (namespace, owner uid)
    pods: dict[str, PodInfo] = field(default_factory=dict)

    @classmethod
    def from_node(cls, node: Obj, pods: Iterable[PodInfo] = ()) -> NodeInfo:
        meta = node.get("metadata") or {}
        info = cls(
            name=str(meta.get("name", "")),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
            taints=effective_taints(node),
            allocatable=node_allocatable(node),
        )
        for p in pods:
            info.add_pod(p)
        return info

    def with_node(self, node: Obj) -> NodeInfo:
        """The same pods on an updated node object."""
        return NodeInfo.from_node(node, self.pods.values())

    def add_pod(self, pod: PodInfo) -> None:
        if pod.uid in self.pods:
            return
        self.pods[pod.uid] = pod
        self.requested.update(pod.requests)
        self.nonzero.update({k: pod.nonzero[k] for k in ("cpu", "memory")})
        self.host_ports.update(pod.host_ports)
        if pod.owner and not pod.terminating:
            self.owners[(pod.namespace, pod.owner)] += 1

    def remove_pod(self, uid: str) -> None:
        pod = self.pods.pop(uid, None)
        if pod is None:
            return
        self.requested.subtract(pod.requests)
        self.nonzero.subtract({k: pod.nonzero[k] for k in ("cpu", "memory")})
        self.host_ports.subtract(pod.host_ports)
        self.host_ports = +self.host_ports  # drop zero counts
        if pod.owner and not pod.terminating:
            self.owners[(pod.namespace, pod.owner)] -= 1
            self.owners = +self.owners


# Filters -----------------------------------------------------------------------------------


def filter_unschedulable(pod: PodInfo, node: NodeInfo) -> list[str]:
    if not node.unschedulable:
        return []
    taint = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
    return [] if tolerated(pod.tolerations, taint) else [REASON_UNSCHEDULABLE]


def filter_taints(pod: PodInfo, node: NodeInfo) -> list[str]:
    for t in node.taints:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(pod.tolerations, t):
            return [f"node(s) had untolerated taint {{{t.get('key', '')}: {t.get('value') or ''}}}"]
    return []


def filter_affinity(pod: PodInfo, node: NodeInfo) -> list[str]:
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return [REASON_AFFINITY]
    if pod.required_terms is not None and not any(
        term_matches(t, node.labels, node.name) for t in pod.required_terms
    ):
        return [REASON_AFFINITY]
    return []


def filter_ports(pod: PodInfo, node: NodeInfo) -> list[str]:
    for want in pod.host_ports:
        if any(want.clashes(used) for used in node.host_ports):
            return [REASON_PORTS]
    return []


def filter_fit(pod: PodInfo, node: NodeInfo) -> list[str]:
    reasons = []
    if len(node.pods) + 1 > node.allocatable.get("pods", DEFAULT_ALLOWED_PODS):
        reasons.append(REASON_TOO_MANY_PODS)
    for name, amount in pod.requests.items():
        if name == "pods" or amount <= 0:
            continue
        if amount > node.allocatable.get(name, 0) - node.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


FILTERS: tuple[Callable[[PodInfo, NodeInfo], list[str]], ...] = (
    filter_unschedulable,
    filter_taints,
    filter_affinity,
    filter_ports,
    filter_fit,
)


def unfit_reasons(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Why `pod` cannot go to `node` (empty: it fits); the first failing filter decides."""
    for f in FILTERS:
        reasons = f(pod, node)
        if reasons:
            return reasons
    return []


# Scores ------------------------------------------------------------------------------------


def least_allocated(pod: PodInfo, node: NodeInfo) -> int:
    """Σ w_r × (alloc_r − req_r) × 100 / alloc_r / Σ w_r over cpu and memory (weights 1)."""
    total = 0
    for r in ("cpu", "memory"):
        alloc = node.allocatable.get(r, 0)
        req = node.nonzero.get(r, 0) + pod.nonzero.get(r, 0)
        if alloc == 0 or req > alloc:
            continue  # scores 0
        total += (alloc - req) * MAX_NODE_SCORE // alloc
    return total // 2


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> int:
    """(1 − |f_cpu − f_mem| / 2) × 100, with f_r = min(requested_r / allocatable_r, 1)."""
    fractions = []
    for r in ("cpu", "memory"):
        alloc = node.allocatable.get(r, 0)
        req = node.requested.get(r, 0) + pod.requests.get(r, 0)
        if alloc:  # a resource the node lacks is left out, as upstream
            fractions.append(min(req / alloc, 1.0))
    std = abs(fractions[0] - fractions[1]) / 2 if len(fractions) == 2 else 0.0
    return int((1 - std) * MAX_NODE_SCORE)


def prefer_no_schedule_count(pod: PodInfo, node: NodeInfo) -> int:
    return sum(
        1 for t in node.taints if t.get("effect") == "PreferNoSchedule" and not tolerated(pod.tolerations, t)
    )


def preferred_affinity(pod: PodInfo, node: NodeInfo) -> int:
    return sum(w for w, term in pod.preferred_terms if term_matches(term, node.labels, node.name))


def topology_spread(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    """The default hostname constraint, scored and normalised as upstream's PodTopologySpread.

    raw = round(siblings x log(nodes + 2) + maxSkew - 1); normalised
    100 x (max + min - raw) / max, so the node with the fewest siblings scores 100."""
    if not pod.owner:
        return [0] * len(nodes)  # no selector to spread by: the plugin is skipped
    weight = math.log(len(nodes) + 2)
    raw = [
        round(n.owners.get((pod.namespace, pod.owner), 0) * weight + DEFAULT_HOSTNAME_MAX_SKEW - 1)
        for n in nodes
    ]
    top, bottom = max(raw, default=0), min(raw, default=0)
    if top == 0:
        return [MAX_NODE_SCORE] * len(nodes)
    return [MAX_NODE_SCORE * (top + bottom - r) // top for r in raw]


def normalize(scores: list[int], reverse: bool) -> list[int]:
    """upstream's DefaultNormalizeScore: scale to 0-100 by the maximum, optionally reversed."""
    top = max(scores, default=0)
    if top == 0:
        return [MAX_NODE_SCORE if reverse else 0 for _ in scores]
    out = [MAX_NODE_SCORE * s // top for s in scores]
    return [MAX_NODE_SCORE - s for s in out] if reverse else out


@dataclass(frozen=True)
class NodeScore:
    node: str
    total: int
    parts: Mapping[str, int]


def score_nodes(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[NodeScore]:
    taints = normalize([prefer_no_schedule_count(pod, n) for n in nodes], reverse=True)
    affinity = normalize([preferred_affinity(pod, n) for n in nodes], reverse=False)
    spread = topology_spread(pod, nodes)
    out = []
    for i, n in enumerate(nodes):
        parts = {
            "TaintToleration": taints[i],
            "NodeAffinity": affinity[i],
            "PodTopologySpread": spread[i],
            "NodeResourcesFit": least_allocated(pod, n),
            "NodeResourcesBalancedAllocation": 0 if pod.best_effort else balanced_allocation(pod, n),
        }
        out.append(NodeScore(n.name, sum(WEIGHTS[k] * v for k, v in parts.items()), parts))
    return out


# The decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    node: str | None  # None: nothing fits
    message: str = ""  # the FitError text when nothing fits
    feasible: int = 0


def fit_error(total: int, reasons: Counter[str]) -> str:
    if total == 0:
        return f"0/0 nodes are available: {NO_NODES}."
    tally = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(tally)}."


def schedule(pod: PodInfo, nodes: Sequence[NodeInfo], rng: random.Random | None = None) -> Decision:
    """Filter, score, pick the best (ties at random, as upstream)."""
    feasible = []
    reasons: Counter[str] = Counter()
    for n in nodes:
        why = unfit_reasons(pod, n)
        if why:
            reasons.update(why)
        else:
            feasible.append(n)
    if not feasible:
        return Decision(None, fit_error(len(nodes), reasons))
    if len(feasible) == 1:
        return Decision(feasible[0].name, feasible=1)
    scores = score_nodes(pod, feasible)
    best = max(s.total for s in scores)
    winners = [s.node for s in scores if s.total == best]
    return Decision((rng or random).choice(winners), feasible=len(feasible))
