"""Pod status computation and restart back-off (pure)."""

from __future__ import annotations

from netlab.cluster.kubelet import podstatus
from netlab.cluster.kubelet.backoff import BackOff
from netlab.cluster.kubelet.podstatus import ContainerView, PodView
from netlab.runtime.containers import EXITED, RUNNING, ContainerState

T0 = 1_800_000_000.0


def running(at=T0):
    return ContainerState(RUNNING, started_at=at)


def exited(code, at=T0, reason=None, signal=None):
    return ContainerState(
        EXITED, started_at=at - 5, finished_at=at, exit_code=code, reason=reason, signal=signal
    )


def pod(policy="Always", **spec):
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u"},
        "spec": {"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}], **spec},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "x"}],
        },
    }


def view(p, *containers, init=()):
    return PodView(pod=p, sandbox_ready=True, pod_ip="10.244.1.2", host_ip="192.168.56.11",
                   start_time=T0, containers=list(containers), init=list(init))  # fmt: skip


def cv(name, state=None, ready=False, **kw):
    return ContainerView(name=name, image="img", container_id="c" + name, state=state, ready=ready,
                         started=state is not None and state.status == RUNNING, **kw)  # fmt: skip


def test_phases():
    p = pod()
    assert podstatus.phase(view(p, cv("a"), cv("b"))) == "Pending"
    assert podstatus.phase(view(p, cv("a", running()), cv("b"))) == "Pending"
    assert podstatus.phase(view(p, cv("a", running()), cv("b", running()))) == "Running"
    # all exited: Always restarts them, so the pod keeps running
    done = (cv("a", exited(0)), cv("b", exited(1)))
    assert podstatus.phase(view(p, *done)) == "Running"
    assert podstatus.phase(view(pod("Never"), *done)) == "Failed"
    assert podstatus.phase(view(pod("OnFailure"), *done)) == "Running"
    assert podstatus.phase(view(pod("OnFailure"), cv("a", exited(0)), cv("b", exited(0)))) == "Succeeded"
    # waiting to restart after an exit counts as stopped, not as not-yet-started
    backing_off = cv("a", exited(1), waiting_reason="CrashLoopBackOff")
    assert podstatus.phase(view(p, backing_off, cv("b", running()))) == "Running"
    # init containers first; a failed one under Never fails the pod
    init_running = cv("i", running())
    assert podstatus.phase(view(p, cv("a"), cv("b"), init=[init_running])) == "Pending"
    assert podstatus.phase(view(pod("Never"), cv("a"), cv("b"), init=[cv("i", exited(2))])) == "Failed"


def test_status_conditions_and_container_states():
    p = pod()
    v = view(p, cv("a", running(), ready=True), cv("b", running(), ready=False))
    st = podstatus.pod_status(v, T0 + 1)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["PodScheduled"]["lastTransitionTime"] == "x"  # others' conditions are kept
    assert conds["PodReadyToStartContainers"]["status"] == "True"
    assert conds["Initialized"]["status"] == "True"
    assert conds["ContainersReady"] == {
        "type": "ContainersReady", "status": "False", "lastProbeTime": None,
        "lastTransitionTime": "2027-01-15T08:00:01Z", "reason": "ContainersNotReady",
        "message": "containers with unready status: [b]",
    }  # fmt: skip
    assert conds["Ready"]["status"] == "False"
    assert st["phase"] == "Running" and st["podIP"] == "10.244.1.2" and st["hostIP"] == "192.168.56.11"
    assert st["podIPs"] == [{"ip": "10.244.1.2"}] and st["startTime"] == "2027-01-15T08:00:00Z"
    assert st["qosClass"] == "BestEffort"
    a = st["containerStatuses"][0]
    assert a["state"] == {"running": {"startedAt": "2027-01-15T08:00:00Z"}}
    assert (a["ready"], a["started"], a["restartCount"], a["containerID"]) == (True, True, 0, "netlab://ca")
    # a transition time stays while the status stays
    p2 = {**p, "status": st}
    st2 = podstatus.pod_status(view(p2, cv("a", running(), ready=True), cv("b", running())), T0 + 50)
    assert st2["conditions"] == st["conditions"]
    assert podstatus.comparable(st2) == podstatus.comparable(st)


def test_crash_loop_and_oom_kill_are_shown_as_kubectl_expects():
    crash = cv(
        "a",
        exited(137, reason="OOMKilled", signal="SIGKILL"),
        restart_count=3,
        waiting_reason="CrashLoopBackOff",
        waiting_message="back-off 40s restarting failed container=a",
    )
    st = podstatus.container_status(crash)
    assert st["state"] == {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=a"}
    }
    term = st["lastState"]["terminated"]
    assert (term["exitCode"], term["reason"], term["signal"]) == (137, "OOMKilled", 9)
    assert st["restartCount"] == 3
    never = podstatus.container_status(cv("b"))
    assert never["state"] == {"waiting": {"reason": "ContainerCreating"}} and "containerID" not in never
    done = podstatus.container_status(cv("c", exited(0)))
    assert done["state"]["terminated"]["reason"] == "Completed"
    assert done["image"] == "img" and done["imageID"] == "netlab://img"


def test_terminal_pods_are_not_ready_with_reason_pod_completed():
    st = podstatus.pod_status(view(pod("Never"), cv("a", exited(0)), cv("b", exited(0))), T0)
    assert st["phase"] == "Succeeded"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")


def test_readiness_gates_hold_ready_back():
    p = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    st = podstatus.pod_status(view(p, cv("a", running(), ready=True), cv("b", running(), ready=True)), T0)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    p["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    st = podstatus.pod_status(view(p, cv("a", running(), ready=True), cv("b", running(), ready=True)), T0)
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_qos_classes():
    def with_res(*res):
        return {"spec": {"containers": [{"name": str(i), "resources": r} for i, r in enumerate(res)]}}

    full = {"limits": {"cpu": "500m", "memory": "64Mi"}}
    assert podstatus.qos_class(with_res(full, full)) == "Guaranteed"
    assert (
        podstatus.qos_class(with_res({**full, "requests": {"cpu": "0.5", "memory": "64Mi"}})) == "Guaranteed"
    )
    assert podstatus.qos_class(with_res(full, {})) == "Burstable"
    assert podstatus.qos_class(with_res({"requests": {"cpu": "100m"}})) == "Burstable"
    assert podstatus.qos_class(with_res({}, {})) == "BestEffort"


def test_back_off_doubles_from_ten_seconds_up_to_five_minutes_and_resets():
    b = BackOff()
    key = "uid/c"
    assert b.remaining(key, T0, T0) == 0  # the first exit restarts at once
    assert b.next(key, T0) == 10
    assert b.remaining(key, T0 + 1, T0 + 3) == 8
    assert b.remaining(key, T0 + 1, T0 + 11) == 0
    delays = [b.next(key, T0 + 20 * i) for i in range(1, 8)]
    assert delays == [20, 40, 80, 160, 300, 300, 300]
    # a container that ran for more than twice the cap starts over
    assert b.remaining(key, T0 + 2000, T0 + 2000) == 0
    assert b.next(key, T0 + 2000) == 10
    b.forget("uid/")
    assert b.delay(key) == 0
