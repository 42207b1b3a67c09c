"""One worker per pod: make what runs on the node match the pod, and report its status.

Like the kubelet's pod workers, each pod gets a thread that syncs it whenever something
changes (the pod object, a container exit, a probe result, a back-off running out) and at
least every few seconds. A sync is idempotent and starts from what the runtime reports, so a
restarted kubelet picks its pods up where they are (adoption):

1. a pod that is being deleted (or gone from the API) is terminated: probes stop, containers
   get SIGTERM and their grace period (in parallel), then SIGKILL; CNI DEL and the sandbox
   removal follow; the kubelet then confirms the deletion (`DELETE` with grace 0 and the pod's
   uid as precondition). A pod that reached Succeeded or Failed has its sandbox removed;
2. the sandbox is made if there is none, and re-made if its pause process died (every
   container restarts then). A failing CNI ADD is reported (`FailedCreatePodSandBox`) and
   retried with back-off;
3. init containers run one at a time, each to exit 0; then every app container is started,
   restarted by `restartPolicy` with the crash back-off (`CrashLoopBackOff`), or killed and
   restarted when its liveness or startup probe fails;
4. the status (see `podstatus`) is written when it changed, with the pod's uid as a test so a
   worker never writes over a newer pod of the same name.

Only the two latest runs of a container are kept (the current one and the one `kubectl logs
--previous` shows); older records and logs are removed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from netlab.cluster.kubelet import envvars, images, podstatus, probes
from netlab.cluster.kubelet.podstatus import ContainerView, PodView
from netlab.cluster.kubelet.probes import LIVENESS, READINESS, STARTUP, ProbeWorker
from netlab.cluster.kubelet.runtime import pod_key
from netlab.cluster.status import ApiError
from netlab.errors import AlreadyExists, NetlabError
from netlab.runtime.cgroups import Limits
from netlab.runtime.containers import EXITED, RUNNING, Container, ContainerConfig
from netlab.runtime.sandbox import Sandbox

if TYPE_CHECKING:
    from netlab.cluster.kubelet.kubelet import Kubelet

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NORMAL = "Normal"
WARNING = "Warning"
RESYNC = 10.0
DEFAULT_GRACE = 30
REMOVED_POD_GRACE = 2  # a pod removed without waiting for us (force delete)
SANDBOX_RETRY = (1.0, 30.0)
READINESS_RECHECK = 1.0  # upstream's PLEG relist period


def _cpu_millis(value: Any) -> int | None:
    from netlab.cluster import quantity

    try:
        return quantity.milli(value) if value is not None else None
    except ValueError:
        return None


def _bytes(value: Any) -> int | None:
    from netlab.cluster import quantity

    try:
        return quantity.whole(value) if value is not None else None
    except ValueError:
        return None


def container_limits(container: Obj) -> Limits:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    cpu_request = requests.get("cpu", limits.get("cpu"))
    return Limits(
        memory_bytes=_bytes(limits.get("memory")),
        cpu_limit_millis=_cpu_millis(limits.get("cpu")),
        cpu_request_millis=_cpu_millis(cpu_request),
    )


class PodWorker:
    def __init__(self, kubelet: Kubelet, uid: str, pod: Obj) -> None:
        self.kubelet = kubelet
        self.runtime = kubelet.runtime
        self.uid = uid
        self.pod = pod
        self.gone = False
        self.finished = False  # the pod reached a terminal phase and was torn down
        self._cond = threading.Condition()
        self._dirty = True
        self._stopping = False
        self._wake_at: float | None = None
        self._sandbox_failures = 0
        self._start_time: float | None = None
        self._seen_at = time.monotonic()
        self._start_reported = False
        self._last_status: Obj | None = None
        self._probes: dict[tuple[str, str], ProbeWorker] = {}
        self._targets: dict[str, probes.Target | None] = {}
        self._watched: set[str] = set()  # container ids whose exit is being watched
        self._pulled: set[str] = set()
        self._warned: set[tuple[str, str]] = set()
        self.thread = threading.Thread(target=self._loop, name=f"pod-{pod_key(pod)[1]}", daemon=True)

    # driving ----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: Obj | None) -> None:
        with self._cond:
            if pod is None:
                self.gone = True
            else:
                self.pod = pod
            self._dirty = True
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def stop(self) -> None:
        """Stop working on the pod and leave its containers running (a kubelet shutdown)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        for w in self._probes.values():
            w.stop()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stopping:
                    timeout = RESYNC if self._wake_at is None else max(0.0, self._wake_at - time.time())
                    if not self._cond.wait(min(timeout, RESYNC)):
                        break
                if self._stopping:
                    return
                self._dirty = False
                self._wake_at = None
                pod, gone = self.pod, self.gone
            try:
                if self.sync(pod, gone):
                    self.kubelet.worker_done(self.uid)
                    return
            except Exception:
                log.exception("sync of pod %s/%s failed", *pod_key(pod)[:2])
                self._retry_in(1.0)

    def _retry_in(self, seconds: float) -> None:
        at = time.time() + seconds
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at

    # events -----------------------------------------------------------------------------

    def event(self, type_: str, reason: str, message: str) -> None:
        ref = {"kind": "Pod", "apiVersion": "v1", "metadata": self.pod.get("metadata") or {}}
        self.kubelet.events.event(ref, type_, reason, message)

    # sync -------------------------------------------------------------------------------

    def sync(self, pod: Obj, gone: bool) -> bool:
        """One sync; True when the pod is finished with (deleted) and the worker can end."""
        meta = pod.get("metadata") or {}
        if gone or meta.get("deletionTimestamp"):
            return self._terminate(pod, gone)
        if self.finished:
            return False
        phase = (pod.get("status") or {}).get("phase")
        if phase in podstatus.TERMINAL:
            self._teardown(pod, grace=0)
            self.finished = True
            return False
        self._run(pod)
        return False

    def _grace(self, pod: Obj, gone: bool) -> float:
        if gone:
            return REMOVED_POD_GRACE
        meta = pod.get("metadata") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        return float(grace)

    def _terminate(self, pod: Obj, gone: bool) -> bool:
        self._teardown(pod, self._grace(pod, gone))
        if not gone:
            ns, name, uid = pod_key(pod)
            try:
                self.kubelet.client.delete("pods", name, ns, grace_period=0, preconditions={"uid": uid})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        self.runtime.remove_pod_logs(pod)
        self.kubelet.backoff.forget(f"{self.uid}/")
        return True

    def _teardown(self, pod: Obj, grace: float) -> None:
        """Stop probes and containers (with grace), then remove the sandbox (CNI DEL)."""
        for w in self._probes.values():
            w.stop()
        self._probes.clear()
        sb = self.runtime.sandbox_for(pod)
        if sb is None:
            return
        running = [c for c in self.runtime.containers(sb) if c.alive()]
        for c in running:
            self.event(NORMAL, "Killing", f"Stopping container {c.name}")
        threads = [threading.Thread(target=self.runtime.stop, args=(c, grace), daemon=True) for c in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.runtime.remove_sandbox(sb)

    # running ----------------------------------------------------------------------------

    def _sandbox(self, pod: Obj) -> Sandbox | None:
        sb = self.runtime.sandbox_for(pod)
        if sb is not None and sb.status == "ready" and sb.pause_alive():
            return sb
        if sb is not None:
            if sb.status == "ready":
                self.event(NORMAL, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
            for c in self.runtime.containers(sb):
                if c.alive():
                    self.runtime.kill(c)
            self.runtime.remove_sandbox(sb)
        try:
            sb = self.runtime.create_sandbox(pod)
        except AlreadyExists as e:
            self._retry_in(1.0)
            if ("sandbox", str(e)) not in self._warned:
                self._warned.add(("sandbox", str(e)))
                self.event(NORMAL, "SandboxPending", str(e))
            return None
        except NetlabError as e:
            self._sandbox_failures += 1
            delay = min(SANDBOX_RETRY[0] * 2 ** (self._sandbox_failures - 1), SANDBOX_RETRY[1])
            self._retry_in(delay)
            self.event(WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            return None
        self._sandbox_failures = 0
        self._watch_pause(sb)
        return sb

    def _watch_pause(self, sb: Sandbox) -> None:
        key = f"pause:{sb.container_id}"
        if key in self._watched or sb.pause_pid is None:
            return
        self._watched.add(key)
        self.kubelet.watch_process(sb.pause_pid, sb.pause_start, self.wake)

    def _watch(self, c: Container) -> None:
        if c.id in self._watched:
            return
        fd = self.runtime.pidfd(c)
        self._watched.add(c.id)
        if fd is None:
            self.wake()
        else:
            self.kubelet.watch_fd(fd, self.wake)

    def _run(self, pod: Obj) -> None:
        if self._start_time is None:
            started = (pod.get("status") or {}).get("startTime")
            self._start_time = time.time() if not started else None
        spec = pod.get("spec") or {}
        shared = [f for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
        if shared and ("pod", "host") not in self._warned:
            self._warned.add(("pod", "host"))
            self.event(
                WARNING,
                "HostNamespacesIgnored",
                f"{', '.join(shared)} not supported in this lab: the pod gets namespaces of its own",
            )
        sb = self._sandbox(pod)
        view = PodView(
            pod=pod,
            sandbox_ready=sb is not None,
            pod_ip=(sb.ip or "").split("/")[0] if sb else None,
            host_ip=self.kubelet.node.internal_ip,
            start_time=self._start_time,
        )
        runs: dict[str, list[Container]] = {}
        if sb is not None:
            self._watch_pause(sb)
            for c in self.runtime.containers(sb):
                runs.setdefault(c.name, []).append(c)
        now = time.time()
        init_specs = spec.get("initContainers") or []
        app_specs = spec.get("containers") or []
        init_ok = True
        for cs in init_specs:
            v = self._sync_container(pod, sb, cs, runs.get(cs["name"], []), now, init=init_ok, is_init=True)
            view.init.append(v)
            if not (v.state is not None and v.state.status == EXITED and v.state.exit_code == 0):
                init_ok = False
        for cs in app_specs:
            view.containers.append(
                self._sync_container(pod, sb, cs, runs.get(cs["name"], []), now, init=init_ok, is_init=False)
            )
        self._gc_runs(runs)
        self._write_status(pod, view)

    def _sync_container(
        self,
        pod: Obj,
        sb: Sandbox | None,
        cs: Obj,
        runs: list[Container],
        now: float,
        init: bool,
        is_init: bool,
    ) -> ContainerView:
        """Start, restart or kill one container as needed; returns its view for the status."""
        name = cs["name"]
        runs = sorted(runs, key=lambda c: c.attempt)
        latest = runs[-1] if runs else None
        previous = runs[-2] if len(runs) > 1 else None
        view = ContainerView(name=name, image=str(cs.get("image") or ""))
        if previous is not None:
            view.last = self.runtime.state(previous)
            view.last_id = previous.id
        state = self.runtime.state(latest) if latest else None
        if latest is not None:
            view.container_id = latest.id
            view.restart_count = latest.attempt
            view.state = state
            self._watch(latest)
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        if is_init and policy == "Always":
            policy = "OnFailure"  # init containers are retried until they succeed, never rerun after
        if sb is None or not init:
            self._set_target(name, None)
            if latest is None:
                view.waiting_reason = (
                    "PodInitializing" if (sb is not None and not is_init) else "ContainerCreating"
                )
            return view
        if not is_init:
            self._ensure_probes(pod, cs)
        if latest is not None and state is not None and state.status == RUNNING:
            reason = self._probe_kill_reason(name)
            if reason:
                self.event(NORMAL, "Killing", f"Container {name} {reason}, will be restarted")
                self.runtime.stop(latest, self._kill_grace(pod, name))
                state = self.runtime.state(latest)
                view.state = state
        if latest is not None and state is not None and state.status == RUNNING:
            pod_ip = (sb.ip or "").split("/")[0]
            target = probes.Target(latest.id, pod_ip, latest.started_at or latest.created_at)
            self._set_target(name, target)
            view.started = self._started(name)
            view.ready = bool(view.started) and self._ready(name)
            self._recheck_readiness(name, view, target, now)
            return view
        self._set_target(name, None)
        if latest is not None and state is not None:
            # exited: restart?
            failed = state.exit_code != 0
            if policy == "Never" or (policy == "OnFailure" and not failed):
                return view
            key = f"{self.uid}/{name}"
            finished = state.finished_at or now
            wait = self.kubelet.backoff.remaining(key, finished, now)
            if wait > 0:
                delay = self.kubelet.backoff.delay(key)
                ns, pname, _ = pod_key(pod)
                view.waiting_reason = "CrashLoopBackOff"
                view.waiting_message = (
                    f"back-off {int(delay)}s restarting failed container={name} pod={pname}_{ns}({self.uid})"
                )
                self.event(
                    WARNING,
                    "BackOff",
                    "Back-off restarting failed container " + f"{name} in pod {pname}_{ns}({self.uid})",
                )
                self._retry_in(wait)
                return view
            self.kubelet.backoff.next(key, finished)
        attempt = latest.attempt + 1 if latest is not None else 0
        started = self._start(pod, sb, cs, attempt)
        if isinstance(started, str):
            view.waiting_reason = "CreateContainerConfigError"
            view.waiting_message = started
            self._retry_in(2.0)
            return view
        if latest is not None:
            view.last, view.last_id = state, latest.id
        view.container_id = started.id
        view.restart_count = attempt
        view.state = self.runtime.state(started)
        self._watch(started)
        if view.state.status == RUNNING:
            pod_ip = (sb.ip or "").split("/")[0]
            target = probes.Target(started.id, pod_ip, started.started_at or started.created_at)
            self._set_target(name, target)
            view.started = self._started(name)
            view.ready = bool(view.started) and self._ready(name)
            self._recheck_readiness(name, view, target, now)
        return view

    def _recheck_readiness(self, name: str, view: ContainerView, target: probes.Target, now: float) -> None:
        """Sync again in a second while a new container's readiness probe has not passed.

        Every sync triggers the readiness probe of a running container that is not ready
        (`_set_target`), as upstream's prober manager does on every status update; upstream
        also syncs a pod when its relist, once a second, notices the container start. Here
        the start is known at once, so the first probe comes before the program listens;
        without another sync the container would stay unready for a whole probe period.
        Only during the container's first period: after that the probe's own schedule rules.
        """
        readiness = self._probes.get((name, READINESS))
        if readiness is None or view.ready:
            return
        if now - target.started_at < readiness.spec.period:
            self._retry_in(READINESS_RECHECK)

    def _start(self, pod: Obj, sb: Sandbox, cs: Obj, attempt: int) -> Container | str:
        """Start a run; returns the container, or why it cannot be configured."""
        name = cs["name"]
        program = images.resolve(cs)
        if name not in self._pulled:
            self._pulled.add(name)
            image = cs.get("image") or ""
            self.event(
                NORMAL,
                "Pulled",
                f'Container image "{image}" is not pulled in a lab: running {program.note}',
            )
        spec = pod.get("spec") or {}
        ns, pname, _ = pod_key(pod)
        hostname = spec.get("hostname") or pname
        defaults = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": hostname,
        }
        ctx = envvars.PodContext(
            pod,
            pod_ip=(sb.ip or "").split("/")[0],
            host_ip=self.kubelet.node.internal_ip,
            node_allocatable=self.kubelet.allocatable,
        )
        try:
            env = envvars.container_env(
                ctx,
                cs,
                self.kubelet.getter("configmaps", ns),
                self.kubelet.getter("secrets", ns),
                self.kubelet.services(),
                defaults,
            )
        except envvars.ConfigError as e:
            self.event(WARNING, "Failed", f"Error: {e}")
            return str(e)
        argv = envvars.command_line(program.argv, env) if not program.stand_in else program.argv
        config = ContainerConfig(
            name=name,
            argv=argv,
            env=env,
            cwd=str(cs.get("workingDir") or "/"),
            limits=container_limits(cs),
        )
        c = self.runtime.start(sb, pod, config, attempt)
        st = self.runtime.state(c)
        if st.status == EXITED and st.reason == "StartError":
            self.event(WARNING, "Failed", f'Error: failed to start container "{name}": {st.message}')
        else:
            self.event(NORMAL, "Created", f"Created container {name}")
            self.event(NORMAL, "Started", f"Started container {name}")
        if c.unsupported_limits and (name, "limits") not in self._warned:
            self._warned.add((name, "limits"))
            self.event(
                WARNING,
                "LimitsNotEnforced",
                f"this kernel offers no cgroup controller for: {', '.join(c.unsupported_limits)}",
            )
        return c

    def _gc_runs(self, runs: dict[str, list[Container]]) -> None:
        """Keep the two latest runs of each container; forget older, finished ones."""
        for items in runs.values():
            for c in sorted(items, key=lambda c: c.attempt)[:-2]:
                if not c.alive():
                    try:
                        self.runtime.forget(c)
                    except NetlabError as e:
                        log.info("cannot forget run %s of %s: %s", c.attempt, c.name, e)

    # probes -----------------------------------------------------------------------------

    def _set_target(self, name: str, target: probes.Target | None) -> None:
        self._targets[name] = target
        readiness = self._probes.get((name, READINESS))
        if target is not None and readiness is not None and not readiness.success:
            # as upstream's prober manager on every status update: a running container whose
            # readiness is not known (or not true) yet is probed now, not a period later
            readiness.trigger()

    def _ensure_probes(self, pod: Obj, cs: Obj) -> None:
        name = cs["name"]
        try:
            specs = probes.container_probes(cs)
        except probes.ProbeError as e:
            if (name, "probe") not in self._warned:
                self._warned.add((name, "probe"))
                self.event(WARNING, "Unhealthy", str(e))
            return
        for spec in specs:
            key = (name, spec.kind)
            if key in self._probes:
                continue
            worker = ProbeWorker(
                spec,
                target=lambda n=name: self._targets.get(n),  # type: ignore[misc]
                run=self.kubelet.run_probe,
                startup_done=lambda n=name: self._startup_passed(n),  # type: ignore[misc]
                on_change=lambda w: self.wake(),
                on_failure=lambda w, msg, n=name: self._probe_failed(n, w, msg),  # type: ignore[misc]
                # as upstream's prober: only a kubelet younger than one probe period (one that
                # restarted among running pods) spreads its first probes over that period; a new
                # pod's first probe runs at once, so its readiness is known without waiting
                jitter=self.kubelet.uptime() < spec.period,
            )
            self._probes[key] = worker
            worker.start()

    def _probe_failed(self, name: str, worker: ProbeWorker, message: str) -> None:
        self.event(
            WARNING,
            "Unhealthy",
            f"{worker.spec.title} probe failed: {message}",
        )

    def _startup_passed(self, name: str) -> bool:
        w = self._probes.get((name, STARTUP))
        return w is None or w.success

    def _started(self, name: str) -> bool:
        return self._startup_passed(name)

    def _ready(self, name: str) -> bool:
        w = self._probes.get((name, READINESS))
        return w is None or w.success

    def _probe_kill_reason(self, name: str) -> str | None:
        live = self._probes.get((name, LIVENESS))
        if live is not None and not live.success:
            return "failed liveness probe"
        start = self._probes.get((name, STARTUP))
        if start is not None and not start.success and start.result.failures >= start.spec.failure_threshold:
            return "failed startup probe"
        return None

    def _kill_grace(self, pod: Obj, name: str) -> float:
        for kind in (LIVENESS, STARTUP):
            w = self._probes.get((name, kind))
            if w is not None and w.spec.termination_grace is not None:
                return float(w.spec.termination_grace)
        return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE))

    # status -----------------------------------------------------------------------------

    def _write_status(self, pod: Obj, view: PodView) -> None:
        status = podstatus.pod_status(view, time.time())
        same = podstatus.comparable(status)
        if same == self._last_status or same == podstatus.comparable(pod.get("status") or {}):
            self._last_status = same
            return
        ns, name, uid = pod_key(pod)
        patch = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "add", "path": "/status", "value": status},
        ]
        try:
            self.kubelet.client.patch("pods", name, patch, ns, patch_type="json", subresource="status")
        except ApiError as e:
            if e.code in (404, 409, 422):
                return  # gone or replaced; the watch will tell
            raise
        self._last_status = same
        if (
            not self._start_reported
            and view.containers
            and all(v.state is not None and v.state.status == RUNNING for v in view.containers)
        ):
            self._start_reported = True
            self.runtime.metrics.observe(
                "kubelet_pod_start_duration_seconds", time.monotonic() - self._seen_at
            )
