"""A pod's status from what runs on the node: phase, conditions, container statuses, QoS.

Pure: the pod worker hands in a `ContainerView` per container (what the runtime reports for
its latest run and the run before, plus what the kubelet decided: waiting reasons, readiness
from probes) and gets back the `status` to write. The rules are the kubelet's
(`pkg/kubelet/kubelet_pods.go` getPhase and generateAPIPodStatus, `pkg/kubelet/status`):

- phase: Pending until the init containers are done and every app container has run; Running
  while one runs (or all are between restarts under `restartPolicy: Always`); Succeeded when all
  exited 0 and none will restart; Failed when all have exited, one non-zero, and none will
  restart. A terminal phase never changes again;
- conditions `PodReadyToStartContainers` (sandbox with network), `Initialized`,
  `ContainersReady`, `Ready` (ContainersReady and every readiness gate True), with
  `lastTransitionTime` kept while a condition's status stays the same; conditions others own
  (`PodScheduled`, readiness gates) are kept as they are;
- container states `waiting{reason}`, `running{startedAt}`, `terminated{exitCode, reason,...}`
  and `lastState` from the previous run; `image`/`imageID` strings are never null (the Python
  client rejects null).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from netlab.cluster import quantity
from netlab.runtime.containers import EXITED, RUNNING, ContainerState

Obj = dict[str, Any]

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL = ("Succeeded", "Failed")


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class ContainerView:
    """One container as the pod worker sees it."""

    name: str
    image: str
    container_id: str | None = None  # the latest run's id
    state: ContainerState | None = None  # the latest run; None: never started
    last: ContainerState | None = None  # the run before, if any
    last_id: str | None = None
    restart_count: int = 0
    waiting_reason: str | None = None  # overrides the state: ContainerCreating, CrashLoopBackOff...
    waiting_message: str | None = None
    ready: bool = False
    started: bool | None = None


@dataclass
class PodView:
    pod: Obj
    sandbox_ready: bool = False
    pod_ip: str | None = None
    host_ip: str | None = None
    start_time: float | None = None
    init: list[ContainerView] = field(default_factory=list)
    containers: list[ContainerView] = field(default_factory=list)


def _terminated(state: ContainerState, cid: str | None) -> Obj:
    out: Obj = {
        "exitCode": state.exit_code if state.exit_code is not None else 0,
        "reason": state.reason or ("Completed" if state.exit_code == 0 else "Error"),
        "startedAt": rfc3339(state.started_at),
        "finishedAt": rfc3339(state.finished_at),
    }
    if state.message:
        out["message"] = state.message
    if state.signal:
        sig = _signal_number(state.signal)
        if sig:
            out["signal"] = sig
    if cid:
        out["containerID"] = cid
    return {k: v for k, v in out.items() if v is not None}


def _signal_number(name: str) -> int | None:
    import signal

    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


def container_status(v: ContainerView) -> Obj:
    if v.waiting_reason:
        waiting: Obj = {"reason": v.waiting_reason}
        if v.waiting_message:
            waiting["message"] = v.waiting_message
        state: Obj = {"waiting": waiting}
    elif v.state is None:
        state = {"waiting": {"reason": "ContainerCreating"}}
    elif v.state.status == RUNNING:
        state = {"running": {"startedAt": rfc3339(v.state.started_at)}}
    else:
        state = {"terminated": _terminated(v.state, v.container_id and f"netlab://{v.container_id}")}
    # the previous run, or the latest one when it is shown as waiting to restart
    last: Obj = {}
    if v.waiting_reason and v.state is not None and v.state.status == EXITED:
        last = {"terminated": _terminated(v.state, v.container_id and f"netlab://{v.container_id}")}
    elif v.last is not None and v.last.status == EXITED:
        last = {"terminated": _terminated(v.last, v.last_id and f"netlab://{v.last_id}")}
    out: Obj = {
        "name": v.name,
        "image": v.image or "",
        "imageID": f"netlab://{v.image}" if v.image else "",
        "ready": v.ready,
        "restartCount": v.restart_count,
        "started": bool(v.started),
        "state": state,
        "lastState": last,
    }
    if v.container_id and v.state is not None:
        out["containerID"] = f"netlab://{v.container_id}"
    return out


def _ran(v: ContainerView) -> bool:
    """Exited, or waiting to restart after exiting: counts as stopped for the phase."""
    if v.state is not None and v.state.status == EXITED:
        return True
    return v.waiting_reason is not None and v.last is not None


def _exit_code(v: ContainerView) -> int | None:
    if v.state is not None and v.state.status == EXITED:
        return v.state.exit_code
    if v.last is not None:
        return v.last.exit_code
    return None


def init_done(view: PodView) -> bool:
    return all(v.state is not None and v.state.status == EXITED and v.state.exit_code == 0 for v in view.init)


def init_failed(view: PodView) -> bool:
    """An init container failed and will not be retried (restartPolicy Never)."""
    policy = (view.pod.get("spec") or {}).get("restartPolicy") or "Always"
    return policy == "Never" and any(
        v.state is not None and v.state.status == EXITED and v.state.exit_code != 0 for v in view.init
    )


def phase(view: PodView) -> str:
    spec = view.pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    if init_failed(view):
        return "Failed"
    if not init_done(view):
        return "Pending"
    running = waiting = stopped = succeeded = failed = 0
    for v in view.containers:
        if v.state is not None and v.state.status == RUNNING and not v.waiting_reason:
            running += 1
        elif _ran(v):
            stopped += 1
            if _exit_code(v) == 0:
                succeeded += 1
            else:
                failed += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def qos_class(pod: Obj) -> str:
    """Guaranteed, Burstable or BestEffort (`pkg/apis/core/v1/helper/qos`)."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits:
                guaranteed = False
                continue
            req = requests.get(r, limits[r])
            try:
                if quantity.parse(req) != quantity.parse(limits[r]):
                    guaranteed = False
            except ValueError:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(
    old: dict[str, Obj], ctype: str, ok: bool, now: str, reason: str = "", message: str = ""
) -> Obj:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
    cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok and reason:
        cond["reason"] = reason
    if not ok and message:
        cond["message"] = message
    return cond


def pod_status(view: PodView, now: float) -> Obj:
    """The full `status` to write for the pod."""
    pod = view.pod
    spec = pod.get("spec") or {}
    current = pod.get("status") or {}
    stamp = rfc3339(now) or ""
    old_conditions = {c.get("type"): c for c in current.get("conditions") or [] if c.get("type")}

    ph = current.get("phase") if current.get("phase") in TERMINAL else phase(view)
    terminal = ph in TERMINAL

    unready = [v.name for v in view.containers if not v.ready]
    incomplete = [
        v.name for v in view.init if not (v.state and v.state.status == EXITED and v.state.exit_code == 0)
    ]
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or [] if g.get("conditionType")]
    gates_open = [g for g in gates if (old_conditions.get(g) or {}).get("status") != "True"]

    conditions: list[Obj] = []
    for ctype, cond in old_conditions.items():
        if ctype not in KUBELET_CONDITIONS:
            conditions.append(cond)
    conditions.append(_condition(old_conditions, "PodReadyToStartContainers", view.sandbox_ready, stamp))
    if terminal and ph == "Succeeded":
        init_ok, init_reason = True, ""
    else:
        init_ok = not incomplete
        init_reason = "ContainersNotInitialized"
    conditions.append(
        _condition(
            old_conditions,
            "Initialized",
            init_ok,
            stamp,
            init_reason,
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
    )
    if terminal:
        containers_ready, reason, message = False, "PodCompleted", ""
    else:
        containers_ready = not unready and bool(view.containers)
        reason, message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    conditions.append(_condition(old_conditions, "ContainersReady", containers_ready, stamp, reason, message))
    if containers_ready and gates_open:
        conditions.append(
            _condition(
                old_conditions,
                "Ready",
                False,
                stamp,
                "ReadinessGatesNotReady",
                f'corresponding condition of pod readiness gate "{gates_open[0]}" does not exist.',
            )
        )
    else:
        conditions.append(_condition(old_conditions, "Ready", containers_ready, stamp, reason, message))

    status: Obj = dict(current)
    status["phase"] = ph
    status["conditions"] = conditions
    if view.host_ip:
        status["hostIP"] = view.host_ip
        status["hostIPs"] = [{"ip": view.host_ip}]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.start_time is not None and "startTime" not in status:
        status["startTime"] = rfc3339(view.start_time)
    status["qosClass"] = qos_class(pod)
    if view.init:
        status["initContainerStatuses"] = [container_status(v) for v in view.init]
    status["containerStatuses"] = [container_status(v) for v in view.containers]
    return status


def comparable(status: Obj) -> Obj:
    """The status without times that change on every write, to decide whether to write."""
    out = dict(status)
    out["conditions"] = sorted(
        ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []),
        key=lambda c: str(c.get("type")),
    )
    return out
