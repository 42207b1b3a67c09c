"""Pure logic of the ReplicaSet, EndpointSlice and node-lifecycle controllers, and pod facts."""

from __future__ import annotations

import itertools
from typing import Any

from netlab.cluster.controllers import endpointslice as es
from netlab.cluster.controllers import nodelifecycle as nl
from netlab.cluster.controllers import podutil
from netlab.cluster.controllers import replicaset as rsc
from netlab.cluster.events import rfc3339

Obj = dict[str, Any]
_n = itertools.count(1)
NOW = 1_700_000_000.0


def pod(
    name: str | None = None,
    *,
    labels: dict[str, str] | None = None,
    node: str = "",
    phase: str = "Running",
    ready: bool | None = True,
    ready_since: float = NOW - 100,
    created: float = NOW - 1000,
    restarts: int = 0,
    ip: str | None = "10.244.0.9",
    deleting: bool = False,
    owner: str | None = None,
    ports: list[Obj] | None = None,
    **meta: Any,
) -> Obj:
    n = next(_n)
    m: Obj = {
        "name": name or f"p{n}",
        "namespace": "default",
        "uid": f"uid-{name or n}",
        "labels": labels if labels is not None else {"app": "web"},
        "creationTimestamp": rfc3339(created),
        **meta,
    }
    if deleting:
        m["deletionTimestamp"] = rfc3339(NOW)
    if owner:
        m["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}]
    status: Obj = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": rfc3339(ready_since),
            }
        ]
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    spec: Obj = {"containers": [{"name": "c", "ports": ports or []}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": m, "spec": spec, "status": status}


# pod facts ---------------------------------------------------------------------------------


def test_available_needs_min_ready_seconds_of_readiness() -> None:
    p = pod(ready_since=NOW - 5)
    assert podutil.is_available(p, 0, NOW)
    assert podutil.is_available(p, 5, NOW)
    assert not podutil.is_available(p, 10, NOW)
    assert podutil.available_in(p, 10, NOW) == 5
    assert not podutil.is_available(pod(ready=False), 0, NOW)


def test_deletion_order_follows_upstream_ranking() -> None:
    pods = {
        "ready-old": pod("ready-old", node="n1"),
        "unassigned": pod("unassigned", phase="Pending", ready=None),
        "pending": pod("pending", node="n1", phase="Pending", ready=None),
        "unready": pod("unready", node="n2", ready=False),
        "costly": pod("costly", node="n3", annotations={podutil.DELETION_COST: "100"}),
        "doubled": pod("doubled", node="n1"),
        "lonely": pod("lonely", node="n4"),
        "restarty": pod("restarty", node="n5", restarts=3),
        "newer": pod("newer", node="n6", created=NOW - 10),
        "just-ready": pod("just-ready", node="n7", ready_since=NOW - 1),
    }
    order = [p["metadata"]["name"] for p in podutil.deletion_order(list(pods.values()), NOW)]
    assert order[:3] == ["unassigned", "pending", "unready"]
    assert order[-1] == "costly"  # higher deletion cost goes last
    assert order.index("doubled") < order.index("lonely")  # n1 holds three of these pods
    assert order.index("ready-old") < order.index("lonely")
    assert order.index("just-ready") < order.index("lonely")
    assert order.index("restarty") < order.index("lonely")
    assert order.index("newer") < order.index("lonely")


# ReplicaSet --------------------------------------------------------------------------------


def rs_obj(replicas: int = 3, **spec: Any) -> Obj:
    return {
        "metadata": {"name": "rs", "namespace": "default", "uid": "rs-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}},
            **spec,
        },
    }


def test_claim_owns_adopts_and_releases() -> None:
    mine = pod("mine", owner="rs-uid")
    theirs = pod("theirs", owner="other")
    orphan = pod("orphan")
    stray = pod("stray", owner="rs-uid", labels={"app": "other"})
    dying_orphan = pod("dying", deleting=True)
    unrelated = pod("unrelated", labels={"app": "db"})
    c = rsc.claim(rs_obj(), [mine, theirs, orphan, stray, dying_orphan, unrelated])
    assert [p["metadata"]["name"] for p in c.owned] == ["mine"]
    assert [p["metadata"]["name"] for p in c.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in c.release] == ["stray"]


def test_plan_creates_the_missing_and_deletes_the_best_victims() -> None:
    active = [pod(node="n1"), pod(node="n2")]
    assert rsc.plan_replicas(active, 5, NOW) == rsc.ReplicaPlan(create=3)
    assert rsc.plan_replicas(active, 2, NOW) == rsc.ReplicaPlan()
    unready = pod("unready", node="n3", ready=False)
    plan = rsc.plan_replicas([*active, unready], 2, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["unready"]
    assert rsc.plan_replicas([], 2000, NOW).create == 500  # burst


def test_slow_start_batches() -> None:
    assert rsc.slow_start(10) == [1, 2, 4, 3]
    assert rsc.slow_start(1) == [1]
    assert rsc.slow_start(0) == []


def test_replicaset_status() -> None:
    owned = [
        pod(ready_since=NOW - 100),
        pod(ready_since=NOW - 1, labels={"app": "web", "tier": "front"}),
        pod(ready=False),
        pod(deleting=True),
        pod(phase="Succeeded"),
    ]
    st = rsc.replicaset_status(rs_obj(minReadySeconds=10), owned, NOW)
    assert st == {
        "replicas": 3,
        "fullyLabeledReplicas": 1,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "observedGeneration": 2,
    }
    failed = rsc.replicaset_status(rs_obj(), [], NOW, rsc.Failure("FailedCreate", "Error creating: quota"))
    (cond,) = failed["conditions"]
    assert (cond["type"], cond["reason"], cond["message"]) == (
        "ReplicaFailure",
        "FailedCreate",
        "Error creating: quota",
    )
    assert not rsc.status_differs({"replicas": 0}, {"replicas": 0, "readyReplicas": 0})
    assert rsc.status_differs({"replicas": 1}, {"replicas": 2})


def test_pods_from_a_template_carry_labels_and_the_controller_reference() -> None:
    tmpl = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
        "spec": {"containers": [{"name": "c"}]},
    }
    ref = {"kind": "ReplicaSet", "uid": "u", "controller": True}
    p = podutil.pod_from_template(tmpl, "ns", "rs-", ref)
    assert p["metadata"] == {
        "generateName": "rs-",
        "namespace": "ns",
        "ownerReferences": [ref],
        "labels": {"app": "web"},
        "annotations": {"a": "b"},
    }
    assert p["spec"] == {"containers": [{"name": "c"}]}


# EndpointSlice -----------------------------------------------------------------------------


def svc(ports: list[Obj] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "x"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "web"}],
            **spec,
        },
    }


NAMED = [{"name": "web", "containerPort": 8080}]


def test_endpoint_conditions_follow_readiness_and_termination() -> None:
    pods = [
        pod("a", ip="10.244.1.2", node="n1", ports=NAMED),
        pod("b", ip="10.244.1.3", ready=False, ports=NAMED),
        pod("c", ip="10.244.1.4", deleting=True, ports=NAMED),
        pod("d", ip=None, ports=NAMED),  # no IP yet
        pod("e", ip="10.244.1.5", phase="Failed", ports=NAMED),
        pod("f", ip="10.244.1.6", labels={"app": "db"}, ports=NAMED),
    ]
    (eps,) = es.desired_endpoints(svc(), pods).groups.values()
    conds = {e["targetRef"]["name"]: e["conditions"] for e in eps}
    assert conds == {
        "a": {"ready": True, "serving": True, "terminating": False},
        "b": {"ready": False, "serving": False, "terminating": False},
        "c": {"ready": False, "serving": True, "terminating": True},
    }
    a = next(e for e in eps if e["targetRef"]["name"] == "a")
    assert a == {
        "addresses": ["10.244.1.2"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
        "nodeName": "n1",
    }
    (published,) = es.desired_endpoints(svc(publishNotReadyAddresses=True), pods).groups.values()
    assert all(e["conditions"]["ready"] for e in published)


def test_named_target_ports_resolve_per_pod_and_split_slices() -> None:
    pods = [
        pod("a", ports=NAMED),
        pod("b", ports=[{"name": "web", "containerPort": 9090}]),
        pod("c", ports=[]),
    ]
    groups = es.desired_endpoints(svc(), pods).groups
    assert {ports: [e["targetRef"]["name"] for e in eps] for ports, eps in groups.items()} == {
        (("http", 8080, "TCP"),): ["a"],
        (("http", 9090, "TCP"),): ["b"],
        (): ["c"],  # the named port is missing: the endpoint has no ports
    }
    plan = es.plan_slices(svc(), es.desired_endpoints(svc(), pods), [])
    assert sorted(tuple(p["port"] for p in s["ports"]) for s in plan.create) == [(), (8080,), (9090,)]
    s = plan.create[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {
        "team": "x",
        es.SERVICE_NAME: "web",
        es.MANAGED_BY: es.CONTROLLER_NAME,
    }
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert s["addressType"] == "IPv4"
    numeric = svc([{"name": "", "port": 80, "targetPort": 8000, "protocol": "UDP"}])
    (only,) = es.desired_endpoints(numeric, pods).groups
    assert only == (("", 8000, "UDP"),)


def existing(name: str, endpoints: list[Obj], ports: tuple[tuple[str, int, str], ...]) -> Obj:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": es.slice_labels(svc())},
        "endpoints": endpoints,
        "ports": es.render_ports(ports),
    }


def test_reconcile_keeps_endpoints_in_place_and_writes_only_changes() -> None:
    ports = (("http", 8080, "TCP"),)
    pods = [pod(f"p{i}", ip=f"10.244.0.{i + 2}", ports=NAMED) for i in range(5)]
    desired = es.desired_endpoints(svc(), pods)
    (eps,) = desired.groups.values()
    current = [existing("web-a", eps[:3], ports), existing("web-b", eps[3:], ports)]
    assert es.plan_slices(svc(), desired, current) == es.SlicePlan()
    # one pod goes unready: only its slice is rewritten
    pods[4] = pod("p4", ip="10.244.0.6", ready=False, ports=NAMED)
    plan = es.plan_slices(svc(), es.desired_endpoints(svc(), pods), current)
    assert [s["metadata"]["name"] for s in plan.update] == ["web-b"] and not plan.create and not plan.delete
    # a new pod fills room in an existing slice before a new slice is made
    more = [*pods, pod("p9", ip="10.244.0.20", ports=NAMED)]
    plan = es.plan_slices(svc(), es.desired_endpoints(svc(), more), current, max_endpoints=3)
    assert [s["metadata"]["name"] for s in plan.update] == ["web-b"] and not plan.create
    # pods gone: the emptied slice is deleted
    plan = es.plan_slices(svc(), es.desired_endpoints(svc(), pods[:3]), current)
    assert [s["metadata"]["name"] for s in plan.delete] == ["web-b"]


def test_slices_hold_at_most_max_endpoints() -> None:
    pods = [pod(f"p{i}", ip=f"10.244.{i // 200}.{i % 200 + 2}", ports=NAMED) for i in range(250)]
    plan = es.plan_slices(svc(), es.desired_endpoints(svc(), pods), [])
    assert [len(s["endpoints"]) for s in plan.create] == [100, 100, 50]


def test_a_service_without_endpoints_keeps_one_empty_placeholder() -> None:
    plan = es.plan_slices(svc(), es.Desired({}), [])
    (s,) = plan.create
    assert s["endpoints"] == [] and s["ports"] == []
    old = existing("web-a", [], (("http", 8080, "TCP"),))
    plan = es.plan_slices(svc(), es.Desired({}), [old, existing("web-b", [], (("x", 1, "TCP"),))])
    assert [s["metadata"]["name"] for s in plan.update] == ["web-a"] and plan.update[0]["ports"] == []
    assert [s["metadata"]["name"] for s in plan.delete] == ["web-b"]
    placeholder = existing("web-p", [], ())
    assert es.plan_slices(svc(), es.Desired({}), [placeholder]) == es.SlicePlan()


def test_endpoints_object_separates_ready_addresses() -> None:
    pods = [
        pod("b", ip="10.244.0.10", node="n1", ports=NAMED),
        pod("a", ip="10.244.0.9", node="n2", ports=NAMED),
        pod("u", ip="10.244.0.3", ready=False, ports=NAMED),
        pod("t", ip="10.244.0.4", deleting=True, ports=NAMED),
    ]
    ep = es.render_endpoints(svc(), pods)
    assert ep["metadata"] == {
        "name": "web",
        "namespace": "default",
        "labels": {"team": "x", es.SKIP_MIRROR: "true"},
    }
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.9", "10.244.0.10"]  # sorted as addresses
    assert subset["addresses"][0]["nodeName"] == "n2"
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert not es.endpoints_differ(ep, es.render_endpoints(svc(), list(reversed(pods))))


# node lifecycle ----------------------------------------------------------------------------


def node(ready: str = "True", taints: list[Obj] | None = None, unschedulable: bool = False) -> Obj:
    return {
        "metadata": {"name": "n1"},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": "t0"}]},
    }


def test_taints_follow_the_ready_condition() -> None:
    assert nl.reconcile_taints(node("True"), NOW) is None
    taints = nl.reconcile_taints(node("Unknown"), NOW)
    assert taints == [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": rfc3339(NOW)},
    ]
    # Unknown -> False swaps unreachable for not-ready; user taints stay
    user = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    swapped = nl.reconcile_taints(node("False", taints=[user, *taints]), NOW)
    assert swapped is not None
    assert [(t["key"], t["effect"]) for t in swapped] == [
        ("dedicated", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
    ]
    assert nl.reconcile_taints(node("True", taints=[user, *taints]), NOW) == [user]
    assert nl.reconcile_taints(node("True", unschedulable=True), NOW) == [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ]


def test_a_silent_node_has_every_condition_unknown() -> None:
    conds = {c["type"]: c for c in nl.unknown_conditions(node("True"), NOW)}
    assert set(conds) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    ready = conds["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert ready["lastTransitionTime"] == rfc3339(NOW)
    assert ready["lastHeartbeatTime"] == "t0"  # the last heartbeat seen is kept


def test_evictions_honour_toleration_seconds() -> None:
    added = NOW - 30
    tainted = node(
        "Unknown",
        taints=[
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": rfc3339(added)},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        ],
    )
    plain = pod("plain")
    brief = pod("brief")
    brief["spec"]["tolerations"] = [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
    ]
    forever = pod("forever")
    forever["spec"]["tolerations"] = [{"operator": "Exists"}]
    gone = pod("gone", deleting=True)
    ev = {e.pod["metadata"]["name"]: e.at for e in nl.evictions(tainted, [plain, brief, forever, gone])}
    assert ev == {"plain": 0.0, "brief": added + 300}
    assert nl.evictions(node("True"), [plain]) == []
