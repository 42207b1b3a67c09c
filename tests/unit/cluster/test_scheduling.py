"""The scheduler's filters and scores against the formulas and examples of the control-loop reference."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from netlab.cluster import scheduling as s

Obj = dict[str, Any]
GI = 2**30
MI = 2**20


def node(
    name: str,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    *,
    ready: str = "True",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
) -> Obj:
    return {
        "metadata": {"name": name, "labels": labels or {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


_uid = 0


def pod(cpu: str | None = None, memory: str | None = None, **spec: Any) -> Obj:
    global _uid
    _uid += 1
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: Obj = {"name": "c", "resources": {"requests": requests} if requests else {}}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return {
        "metadata": {"name": f"p{_uid}", "namespace": "default", "uid": f"uid-{_uid}"},
        "spec": {"containers": [container], **spec},
    }


def info(n: Obj, *pods: Obj) -> s.NodeInfo:
    return s.NodeInfo.from_node(n, [s.pod_info(p) for p in pods])


# requests ----------------------------------------------------------------------------------


def test_pod_request_is_max_of_sum_and_init_containers_plus_overhead() -> None:
    p = {
        "spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "500m", "memory": "16Mi"}}}],
            "overhead": {"cpu": "10m"},
        }
    }
    assert s.pod_requests(p) == {"cpu": 510, "memory": 64 * MI}
    # the container without a memory request counts 200Mi for LeastAllocated
    assert s.pod_nonzero_requests(p) == {"cpu": 510, "memory": 64 * MI + 200 * MI}


def test_containers_without_requests_count_100m_and_200Mi_only_for_scoring() -> None:
    p = s.pod_info(pod())
    assert p.requests == {}
    assert p.nonzero == {"cpu": 100, "memory": 200 * MI}
    assert p.best_effort


# scores: the reference's worked example ----------------------------------------------------


def test_worked_example_least_allocated_and_balanced() -> None:
    incoming = s.pod_info(pod("500m", "512Mi"))
    a = info(node("a"), pod("1000m", "1Gi"))
    b = info(node("b"))
    assert s.least_allocated(incoming, a) == 43  # (25 + 62.5) / 2, truncated per step
    assert s.balanced_allocation(incoming, a) == 81  # 1 - |0.75 - 0.375| / 2
    assert s.least_allocated(incoming, b) == 81  # (75 + 87.5) / 2
    assert s.balanced_allocation(incoming, b) == 93  # 1 - |0.25 - 0.125| / 2
    scores = {x.node: x for x in s.score_nodes(incoming, [a, b])}
    # taint and affinity scores are equal on both nodes; B wins on the resource scores
    assert scores["b"].total - scores["a"].total == (81 + 93) - (43 + 81)
    assert s.schedule(incoming, [a, b]).node == "b"


def test_least_allocated_is_zero_when_overcommitted_and_balanced_caps_fractions_at_one() -> None:
    incoming = s.pod_info(pod("3", "1Gi"))
    n = info(node("a"))
    # cpu (2000 - 3000) < 0 -> 0; memory (4096 - 1024) / 4096 -> 75; mean 37
    assert s.least_allocated(incoming, n) == 37
    # f_cpu = min(1.5, 1) = 1, f_mem = 0.25 -> std 0.375
    assert s.balanced_allocation(incoming, n) == 62


def test_balanced_allocation_is_skipped_for_best_effort_pods() -> None:
    incoming = s.pod_info(pod())
    (score,) = s.score_nodes(incoming, [info(node("a"), pod("1", "100Mi"))])
    assert score.parts["NodeResourcesBalancedAllocation"] == 0


def test_taint_score_prefers_fewest_untolerated_prefer_no_schedule_taints() -> None:
    soft = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    nodes = [
        info(node("a", taints=[soft, {**soft, "key": "k2"}])),
        info(node("b", taints=[soft])),
        info(node("c")),
    ]
    scores = {x.node: x.parts["TaintToleration"] for x in s.score_nodes(s.pod_info(pod()), nodes)}
    assert scores == {"a": 0, "b": 50, "c": 100}
    tolerant = s.pod_info(pod(tolerations=[{"operator": "Exists"}]))
    assert {x.parts["TaintToleration"] for x in s.score_nodes(tolerant, nodes)} == {100}


def test_preferred_node_affinity_is_normalised_to_100() -> None:
    pref = [
        {
            "weight": 80,
            "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
        },
        {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}},
    ]
    p = s.pod_info(pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": pref}}))
    nodes = [
        info(node("a", labels={"disk": "ssd", "zone": "z"})),
        info(node("b", labels={"disk": "ssd"})),
        info(node("c", labels={})),
    ]
    assert {x.node: x.parts["NodeAffinity"] for x in s.score_nodes(p, nodes)} == {"a": 100, "b": 80, "c": 0}
    assert s.schedule(p, nodes).node == "a"


def test_weights_follow_the_default_profile() -> None:
    assert s.WEIGHTS == {
        "TaintToleration": 3,
        "NodeAffinity": 2,
        "PodTopologySpread": 2,
        "NodeResourcesFit": 1,
        "NodeResourcesBalancedAllocation": 1,
    }


def test_equal_pods_spread_over_equal_nodes() -> None:
    nodes = [info(node(f"n{i}")) for i in range(3)]
    placed: Counter[str] = Counter()
    rng = random.Random(1)
    for _ in range(30):
        p = s.pod_info(pod())
        d = s.schedule(p, nodes, rng)
        assert d.node is not None
        placed[d.node] += 1
        next(n for n in nodes if n.name == d.node).add_pod(p)
    assert placed == {"n0": 10, "n1": 10, "n2": 10}


def test_ties_are_broken_at_random_among_the_best() -> None:
    nodes = [info(node("a")), info(node("b")), info(node("c"), pod("1"))]
    picks = {s.schedule(s.pod_info(pod()), nodes, random.Random(seed)).node for seed in range(40)}
    assert picks == {"a", "b"}


# filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "taint", "match"),
    [
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
        (
            {"key": "k", "operator": "Equal", "value": "w"},
            {"key": "k", "value": "v", "effect": "NoSchedule"},
            False,
        ),
        ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
        ({"key": "j", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, {"key": "anything", "value": "x", "effect": "NoSchedule"}, True),
        (
            {"key": "k", "value": "v", "effect": "NoSchedule"},
            {"key": "k", "value": "v", "effect": "NoExecute"},
            False,
        ),
        ({"key": "k", "value": "v", "effect": ""}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
        ({"key": "k"}, {"key": "k", "effect": "NoSchedule"}, True),  # Equal with empty values
    ],
)
def test_toleration_matching_table(toleration: Obj, taint: Obj, match: bool) -> None:
    assert s.tolerates(toleration, taint) is match


def test_untolerated_taints_filter_with_upstream_reason() -> None:
    n = info(node("a", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]))
    assert s.unfit_reasons(s.pod_info(pod()), n) == ["node(s) had untolerated taint {dedicated: gpu}"]
    ok = s.pod_info(
        pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    )
    assert s.unfit_reasons(ok, n) == []
    # PreferNoSchedule never filters
    soft = info(node("b", taints=[{"key": "x", "effect": "PreferNoSchedule"}]))
    assert s.unfit_reasons(s.pod_info(pod()), soft) == []


def test_nodes_that_are_not_ready_count_as_tainted() -> None:
    p = s.pod_info(pod())
    assert s.unfit_reasons(p, info(node("a", ready="False"))) == [
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    ]
    assert s.unfit_reasons(p, info(node("a", ready="Unknown"))) == [
        "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
    ]
    no_conditions = node("a")
    no_conditions["status"]["conditions"] = []
    assert s.unfit_reasons(p, info(no_conditions)) != []
    tolerant = s.pod_info(pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]))
    assert s.unfit_reasons(tolerant, info(node("a", ready="False"))) == []


def test_unschedulable_nodes() -> None:
    n = info(node("a", unschedulable=True))
    assert s.unfit_reasons(s.pod_info(pod()), n) == ["node(s) were unschedulable"]
    tol = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
    assert s.unfit_reasons(s.pod_info(pod(tolerations=[tol])), n) == []


def test_node_selector_and_required_affinity() -> None:
    n = info(node("a", labels={"disktype": "ssd", "gen": "5"}))
    assert s.unfit_reasons(s.pod_info(pod(nodeSelector={"disktype": "ssd"})), n) == []
    assert s.unfit_reasons(s.pod_info(pod(nodeSelector={"disktype": "hdd"})), n) == [s.REASON_AFFINITY]

    def required(*terms: Obj) -> s.PodInfo:
        aff = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
        return s.pod_info(pod(affinity=aff))

    def expr(key: str, op: str, *values: str) -> Obj:
        return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}

    assert s.unfit_reasons(required(expr("gen", "Gt", "4")), n) == []
    assert s.unfit_reasons(required(expr("gen", "Lt", "4")), n) == [s.REASON_AFFINITY]
    assert s.unfit_reasons(required(expr("disktype", "NotIn", "hdd")), n) == []
    assert s.unfit_reasons(required(expr("zone", "DoesNotExist")), n) == []
    assert s.unfit_reasons(required(expr("zone", "Exists")), n) == [s.REASON_AFFINITY]
    # terms are ORed, expressions inside one term ANDed
    assert s.unfit_reasons(required(expr("zone", "Exists"), expr("gen", "In", "5")), n) == []
    both = {
        "matchExpressions": [
            {"key": "gen", "operator": "In", "values": ["5"]},
            {"key": "zone", "operator": "Exists"},
        ]
    }
    assert s.unfit_reasons(required(both), n) == [s.REASON_AFFINITY]
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}
    assert s.unfit_reasons(required(by_name), n) == []
    assert s.unfit_reasons(required(by_name), info(node("b"))) == [s.REASON_AFFINITY]
    assert s.unfit_reasons(required({}), n) == [s.REASON_AFFINITY]  # an empty term matches nothing


def test_host_ports() -> None:
    used = pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}])
    n = info(node("a"), used)
    clash = s.pod_info(pod(ports=[{"containerPort": 80, "hostPort": 8080}]))
    assert s.unfit_reasons(clash, n) == [s.REASON_PORTS]
    udp = s.pod_info(pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]))
    assert s.unfit_reasons(udp, n) == []
    other_ip = s.pod_info(pod(ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]))
    assert s.unfit_reasons(other_ip, n) == [s.REASON_PORTS]  # 0.0.0.0 clashes with every address
    n2 = info(node("b"), pod(ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]))
    assert s.unfit_reasons(other_ip, n2) == []
    no_host_port = s.pod_info(pod(ports=[{"containerPort": 8080}]))
    assert s.unfit_reasons(no_host_port, n) == []
    n.remove_pod(used["metadata"]["uid"])
    assert s.unfit_reasons(clash, n) == []


def test_resource_fit_counts_pods_and_every_requested_resource() -> None:
    n = info(node("a", cpu="1", memory="1Gi", pods="2"), pod("600m", "512Mi"))
    assert s.unfit_reasons(s.pod_info(pod("400m", "512Mi")), n) == []
    assert s.unfit_reasons(s.pod_info(pod("500m", "600Mi")), n) == ["Insufficient cpu", "Insufficient memory"]
    n.add_pod(s.pod_info(pod()))
    assert s.unfit_reasons(s.pod_info(pod()), n) == ["Too many pods"]
    gpu = pod()
    gpu["spec"]["containers"][0]["resources"] = {"requests": {"example.com/gpu": "1"}}
    assert "Insufficient example.com/gpu" in s.unfit_reasons(s.pod_info(gpu), info(node("b")))


def test_removing_a_pod_frees_its_resources() -> None:
    big = pod("1500m")
    n = info(node("a"), big)
    want = s.pod_info(pod("1"))
    assert s.unfit_reasons(want, n) == ["Insufficient cpu"]
    n.remove_pod(big["metadata"]["uid"])
    assert s.unfit_reasons(want, n) == []
    assert n.requested["cpu"] == 0 and n.nonzero["cpu"] == 0


def test_fit_error_message_tallies_reasons_like_upstream() -> None:
    nodes = [
        info(node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])),
        info(node("b", cpu="1")),
        info(node("c", cpu="1")),
    ]
    d = s.schedule(s.pod_info(pod("1500m")), nodes)
    assert d.node is None
    assert d.message == "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu."
    assert (
        s.schedule(s.pod_info(pod()), []).message
        == "0/0 nodes are available: no nodes available to schedule pods."
    )


def test_a_pod_too_large_for_every_node() -> None:
    nodes = [info(node(f"n{i}")) for i in range(3)]
    d = s.schedule(s.pod_info(pod("64", "1Ti")), nodes)
    assert d.message == "0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient memory."


def owned(uid: str, **kw: Any) -> Obj:
    p = pod(**kw)
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": uid, "controller": True}]
    return p


def test_topology_spread_scores_nodes_with_fewer_siblings_higher() -> None:
    nodes = [info(node("a"), owned("rs1")), info(node("b")), info(node("c"), owned("rs2"))]
    sibling = s.pod_info(owned("rs1"))
    # raw = round(count x ln(5) + 2): a -> 4, b and c -> 2; normalised 100 x (4 + 2 - raw) / 4
    assert s.topology_spread(sibling, nodes) == [50, 100, 100]
    # a pod without a controller is not spread
    assert s.topology_spread(s.pod_info(pod()), nodes) == [0, 0, 0]
    # terminating siblings do not count
    gone = owned("rs1")
    gone["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert s.topology_spread(sibling, [info(node("a"), gone), info(node("b"))]) == [100, 100]


def test_replicas_spread_evenly_over_large_nodes() -> None:
    """On big nodes a 10m request does not move LeastAllocated; the spread score does the work."""
    nodes = [info(node(f"n{i}", cpu="64", memory="256Gi")) for i in range(10)]
    rng = random.Random(7)
    placed: Counter[str] = Counter()
    for _ in range(100):
        p = s.pod_info(owned("rs", cpu="10m", memory="16Mi"))
        d = s.schedule(p, nodes, rng)
        assert d.node is not None
        placed[d.node] += 1
        next(n for n in nodes if n.name == d.node).add_pod(p)
    assert set(placed.values()) == {10}
