"""The Deployment controller's arithmetic: hashes, fenceposts, rollout steps, scaling, status."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from netlab.cluster.controllers import deployment as dep

Obj = dict[str, Any]
_clock = itertools.count(1)


def d(replicas: int = 4, surge: Any = "25%", unavailable: Any = "25%", **spec: Any) -> Obj:
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "d-uid",
            "generation": 1,
            "annotations": {},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "a"}]},
            },
            "progressDeadlineSeconds": 600,
            **spec,
        },
        "status": {},
    }


def rs(name: str, replicas: int, available: int | None = None, rev: int = 1, **ann: str) -> Obj:
    n = next(_clock)
    avail = replicas if available is None else available
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": f"2024-01-01T00:{n // 60:02d}:{n % 60:02d}Z",
            "annotations": {dep.REVISION: str(rev), **ann},
        },
        "spec": {"replicas": replicas, "template": {}},
        "status": {"replicas": replicas, "readyReplicas": avail, "availableReplicas": avail},
    }


# hashes and templates ----------------------------------------------------------------------


def test_fnv32a_known_vectors() -> None:
    assert dep.fnv32a(b"") == 0x811C9DC5
    assert dep.fnv32a(b"a") == 0xE40C292C
    assert dep.fnv32a(b"foobar") == 0xBF9CF968


def test_hash_is_a_safe_encoding_of_the_decimal_fnv() -> None:
    h = dep.template_hash({"spec": {"containers": [{"name": "c"}]}})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert dep.safe_encode("0123456789") == "".join(
        "bcdfghjklmnpqrstvwxz2456789"[ord(c) % 27] for c in "0123456789"
    )
    # stable, sensitive to the template and to the collision count
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}
    assert dep.template_hash(t) == dep.template_hash(dict(reversed(list(t.items()))))
    assert dep.template_hash(t) != dep.template_hash(
        {**t, "spec": {"containers": [{"name": "c", "image": "b"}]}}
    )
    assert dep.template_hash(t) != dep.template_hash(t, 1)


def test_templates_compare_equal_ignoring_the_hash_label_and_empty_fields() -> None:
    a = {
        "metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
        "spec": {"containers": [{"name": "c"}]},
    }
    b = {
        "metadata": {"labels": {"app": "web", dep.HASH_LABEL: "abc"}},
        "spec": {"containers": [{"name": "c"}], "volumes": []},
    }
    assert dep.templates_equal(a, b)
    assert not dep.templates_equal(a, {**b, "spec": {"containers": [{"name": "other"}]}})


# fenceposts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "want"),
    [
        (4, "25%", "25%", (1, 1)),
        (1, "25%", "25%", (1, 0)),
        (10, "25%", "25%", (3, 2)),
        (10, 0, 0, (0, 1)),  # both zero: maxUnavailable becomes 1
        (10, "0%", "5%", (0, 1)),  # 5% of 10 rounds down to 0 -> 1
        (3, 2, "50%", (2, 1)),
    ],
)
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, want: tuple[int, int]) -> None:
    assert dep.fenceposts(d(replicas, surge, unavailable)) == want


def test_max_unavailable_is_capped_by_replicas_and_zero_for_recreate() -> None:
    assert dep.max_unavailable(d(2, 0, 5)) == 2
    recreate = d(4)
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert dep.max_unavailable(recreate) == 0 and dep.max_surge(recreate) == 0


# the rollout step by step ------------------------------------------------------------------


def test_new_replicaset_scales_up_within_the_surge() -> None:
    dd = d(4, 1, 1)
    old, new = rs("old", 4), rs("new", 0, rev=2)
    assert dep.new_rs_replicas(dd, [old, new], new) == 1  # 4 + 1 surge - 4
    old["spec"]["replicas"] = 3
    assert dep.new_rs_replicas(dd, [old, new], new) == 2
    new["spec"]["replicas"] = 4
    old["spec"]["replicas"] = 0
    assert dep.new_rs_replicas(dd, [old, new], new) == 4  # never beyond replicas


def test_old_replicasets_scale_down_within_the_availability_bound() -> None:
    dd = d(4, 1, 1)
    old = rs("old", 4)
    new = rs("new", 1, available=0, rev=2)
    # 5 pods asked for, min available 3, new has 1 unavailable: 5 - 3 - 1 = 1 may go
    assert [(r["metadata"]["name"], n) for r, n in dep.plan_old_scale_down(dd, [old, new], [old], new)] == [
        ("old", 3)
    ]
    # nothing available to spare: nothing goes
    old2 = rs("old", 3, available=3)
    new2 = rs("new", 2, available=0, rev=2)
    assert dep.plan_old_scale_down(dd, [old2, new2], [old2], new2) == []


def test_unhealthy_old_replicas_go_first() -> None:
    dd = d(4, 1, 1)
    older = rs("older", 2, available=0)
    old = rs("old", 2, available=2)
    new = rs("new", 1, available=1, rev=3)
    plan = {
        r["metadata"]["name"]: n for r, n in dep.plan_old_scale_down(dd, [older, old, new], [older, old], new)
    }
    # max scaled down = 5 - 3 - 0 = 2: the two unavailable replicas of "older"
    assert plan == {"older": 0}
    # while the new set has unavailable pods, they count against the budget: nothing goes
    sick = rs("sick", 3, available=1)
    young = rs("young", 2, available=0, rev=2)
    assert dep.plan_old_scale_down(dd, [sick, young], [sick], young) == []


def simulate(deploy: Obj, old_replicas: int, ready_lag: int = 1) -> list[tuple[int, int]]:
    """Run the rolling-update arithmetic against an idealised ReplicaSet controller and kubelet.

    Pods appear at once when a set scales up and become available `ready_lag` steps later;
    scaling down removes available pods last. Returns (available, total spec) per step."""
    old = rs("old", old_replicas)
    new = rs("new", 0, rev=2)
    pods = {"old": [0] * old_replicas, "new": []}  # per set: age of each pod in steps
    history = []
    for _ in range(200):
        sets = {"old": old, "new": new}
        for name, r in sets.items():
            want = r["spec"]["replicas"]
            pods[name].sort()  # youngest (least available) first, like the deletion order
            while len(pods[name]) > want:
                pods[name].pop(0)
            pods[name] += [ready_lag] * (want - len(pods[name]))
            avail = sum(1 for age in pods[name] if age <= 0)
            r["status"] = {"replicas": len(pods[name]), "availableReplicas": avail, "readyReplicas": avail}
        history.append(
            (
                sum(r["status"]["availableReplicas"] for r in sets.values()),
                sum(r["spec"]["replicas"] for r in sets.values()),
            )
        )
        if (
            new["spec"]["replicas"] == deploy["spec"]["replicas"]
            and old["spec"]["replicas"] == 0
            and (new["status"]["availableReplicas"] == new["spec"]["replicas"])
        ):
            return history
        if new["spec"]["replicas"] != deploy["spec"]["replicas"]:
            new["spec"]["replicas"] = dep.new_rs_replicas(deploy, [old, new], new)
        for r, n in dep.plan_old_scale_down(deploy, [old, new], dep.active([old]), new):
            r["spec"]["replicas"] = n
        for name in pods:
            pods[name] = [age - 1 for age in pods[name]]
    raise AssertionError("the rollout did not finish")


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [(4, 1, 1), (3, 1, 0), (10, "25%", "25%"), (5, 0, 2), (1, "25%", "25%"), (6, 3, 0)],
)
def test_a_whole_rollout_respects_both_bounds(replicas: int, surge: Any, unavailable: Any) -> None:
    deploy = d(replicas, surge, unavailable)
    max_surge, max_unavailable = dep.max_surge(deploy), dep.max_unavailable(deploy)
    history = simulate(deploy, replicas, ready_lag=2)
    assert all(avail >= replicas - max_unavailable for avail, _ in history), history
    assert all(total <= replicas + max_surge for _, total in history), history
    assert history[-1] == (replicas, replicas)


# kubectl scale during a rollout ------------------------------------------------------------


def test_scaling_event_is_recognised_from_the_desired_replicas_annotation() -> None:
    dd = d(6)
    assert dep.is_scaling_event(dd, [rs("a", 3, **{dep.DESIRED_REPLICAS: "3"})])
    assert not dep.is_scaling_event(dd, [rs("a", 6, **{dep.DESIRED_REPLICAS: "6"})])
    assert not dep.is_scaling_event(
        dd, [rs("a", 0, **{dep.DESIRED_REPLICAS: "3"})]
    )  # inactive sets do not count


def test_a_single_active_set_takes_the_whole_new_size() -> None:
    dd = d(6)
    only = rs("a", 3, **{dep.DESIRED_REPLICAS: "3", dep.MAX_REPLICAS: "4"})
    assert [(r["metadata"]["name"], n) for r, n in dep.plan_scale(dd, only, [])] == [("a", 6)]


def test_proportional_scaling_mid_rollout() -> None:
    """upstream's example: 10 replicas mid-rollout (new 5, old 8 of max 13) scaled to 15."""
    dd = d(15, 3, 2)  # maxSurge 3 of 10 was 3; for 15 it is 3 as given
    ann = {dep.DESIRED_REPLICAS: "10", dep.MAX_REPLICAS: "13"}
    new = rs("new", 5, rev=2, **ann)
    old = rs("old", 8, **ann)
    plan = {r["metadata"]["name"]: n for r, n in dep.plan_scale(dd, new, [old])}
    # allowed 15 + 3 = 18, 5 more to add: old 8 * 18 / 13 = 11.08 -> +3, new 5 * 18 / 13 = 6.9 -> +2
    assert plan == {"old": 11, "new": 7}
    assert sum(plan.values()) == 18


def test_proportional_scale_down_takes_from_the_bigger_older_first() -> None:
    dd = d(5, 1, 1)
    ann = {dep.DESIRED_REPLICAS: "10", dep.MAX_REPLICAS: "13"}
    new = rs("new", 6, rev=2, **ann)
    old = rs("old", 7, **ann)
    plan = {r["metadata"]["name"]: n for r, n in dep.plan_scale(dd, new, [old])}
    assert sum(plan.values()) == 6  # 5 + surge 1
    assert plan["old"] + plan["new"] == 6 and plan["old"] >= 0 and plan["new"] >= 0


def test_a_saturated_new_set_scales_old_ones_to_zero() -> None:
    dd = d(4)
    new = rs("new", 4, rev=2, **{dep.DESIRED_REPLICAS: "4"})
    old = rs("old", 1, **{dep.DESIRED_REPLICAS: "3"})
    assert [(r["metadata"]["name"], n) for r, n in dep.plan_scale(dd, new, [old])] == [("old", 0)]


# status ------------------------------------------------------------------------------------


def test_status_counts_and_availability_condition() -> None:
    dd = d(4, 1, 1)
    old = rs("old", 2, available=2)
    new = rs("new", 3, available=1, rev=2)
    st = dep.calculate_status([old, new], new, dd, 1000.0)
    assert {
        k: st[k]
        for k in (
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "observedGeneration",
        )
    } == {
        "replicas": 5,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "unavailableReplicas": 2,
        "observedGeneration": 1,
    }
    avail = dep.condition(st, "Available")
    assert avail is not None and (avail["status"], avail["reason"]) == ("True", dep.MIN_AVAILABLE)
    st2 = dep.calculate_status([rs("new", 4, available=2)], None, dd, 1000.0)
    assert dep.condition(st2, "Available")["reason"] == dep.MIN_UNAVAILABLE  # type: ignore[index]


def test_progressing_condition_through_a_rollout() -> None:
    dd = d(2, 1, 0)
    dd["status"] = {"conditions": [dep.new_condition("Progressing", "True", dep.NEW_RS_CREATED, "x", 0.0)]}
    new = rs("new", 2, available=1, rev=2)
    new["status"]["replicas"] = 1
    st = dep.rollout_status([rs("old", 2), new], new, dd, 10.0)
    cond = dep.condition(st, "Progressing")
    assert (
        cond is not None
        and cond["reason"] == dep.RS_UPDATED
        and cond["message"] == 'ReplicaSet "new" is progressing.'
    )
    assert cond["lastTransitionTime"] == dep.rfc3339(0.0)  # same status: transition time kept
    dd["status"] = st
    done = rs("new", 2, rev=2)
    st2 = dep.rollout_status([rs("old", 0, available=0), done], done, dd, 20.0)
    assert dep.condition(st2, "Progressing")["reason"] == dep.NEW_RS_AVAILABLE  # type: ignore[index]
    assert dep.complete(dd, st2)


def test_no_progress_past_the_deadline_times_out() -> None:
    dd = d(2, 1, 0, progressDeadlineSeconds=5)
    dd["status"] = {"conditions": [dep.new_condition("Progressing", "True", dep.RS_UPDATED, "x", 100.0)]}
    stuck = rs("new", 1, available=0, rev=2)
    dd["status"].update(dep.calculate_status([rs("old", 2), stuck], stuck, dd, 100.0))
    assert (
        dep.condition(dep.rollout_status([rs("old", 2), stuck], stuck, dd, 104.0), "Progressing")["reason"]
        == dep.RS_UPDATED
    )  # type: ignore[index]
    timed = dep.condition(dep.rollout_status([rs("old", 2), stuck], stuck, dd, 106.0), "Progressing")
    assert timed is not None and (timed["status"], timed["reason"]) == ("False", dep.TIMED_OUT)


# revisions and history ---------------------------------------------------------------------


def test_new_replicaset_carries_hash_revision_and_replica_annotations() -> None:
    dd = d(4, 1, 1)
    dd["metadata"]["annotations"] = {
        "kubernetes.io/change-cause": "v2",
        dep.REVISION: "1",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    new = dep.render_new_rs(dd, "abc", 1, 2)
    assert new["metadata"]["name"] == "web-abc"
    assert new["spec"]["selector"]["matchLabels"] == {"app": "web", dep.HASH_LABEL: "abc"}
    assert new["spec"]["template"]["metadata"]["labels"] == {"app": "web", dep.HASH_LABEL: "abc"}
    assert new["metadata"]["ownerReferences"][0] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": "d-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert new["metadata"]["annotations"] == {
        "kubernetes.io/change-cause": "v2",
        dep.REVISION: "2",
        dep.DESIRED_REPLICAS: "4",
        dep.MAX_REPLICAS: "5",
    }
    assert dd["spec"]["template"]["metadata"]["labels"] == {"app": "web"}  # the deployment is untouched


def test_reusing_an_old_replicaset_moves_its_revision_to_the_history() -> None:
    dd = d()
    back = rs("first", 0, rev=1)
    assert dep.set_new_rs_annotations(dd, back, 3, exists=True)
    assert back["metadata"]["annotations"][dep.REVISION] == "3"
    assert back["metadata"]["annotations"][dep.REVISION_HISTORY] == "1"
    assert dep.set_new_rs_annotations(dd, back, 5, exists=True)
    assert back["metadata"]["annotations"][dep.REVISION_HISTORY] == "1,3"
    assert not dep.set_new_rs_annotations(dd, back, 5, exists=True)  # nothing to change


def test_cleanup_deletes_the_oldest_empty_sets_beyond_the_limit() -> None:
    dd = d(revisionHistoryLimit=1)
    sets = [rs("r1", 0, rev=1), rs("r2", 0, rev=2), rs("r3", 1, rev=3), rs("r4", 0, rev=4)]
    for r in sets:
        r["status"]["observedGeneration"] = 1
    # 4 old sets, limit 1: the three lowest revisions may go, but r3 still has a replica
    assert [r["metadata"]["name"] for r in dep.cleanup_plan(dd, sets)] == ["r1", "r2"]
