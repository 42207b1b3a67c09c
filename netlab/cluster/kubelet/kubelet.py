"""The kubelet: one node's agent between the apiserver and the container runtime.

`Kubelet.run` registers the node (see `node`), starts the Lease heartbeat, and follows the pods
bound to this node (`fieldSelector=spec.nodeName=<node>`) with an informer
(`netlab.cluster.informer`), handing each pod to its pod worker (see `podworker`). Sandboxes
on the node that belong to no pod of the first list (deleted while the kubelet was down) are
torn down once that list is in: a restarted kubelet adopts its running pods and leaks
nothing. Services come from a second informer (for the containers' service variables).

Container exits are noticed the moment they happen: a pidfd per shim (and per pause process)
is watched by one thread, which wakes the pod's worker (upstream's PLEG relists every second;
pidfds make that unnecessary). Stopping the kubelet stops its threads and leaves every pod
running, as upstream does, so that the next kubelet adopts them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from netlab.cluster.events import EventRecorder
from netlab.cluster.informer import Informer
from netlab.cluster.kubelet import probes
from netlab.cluster.kubelet.backoff import BackOff
from netlab.cluster.kubelet.node import HEARTBEAT, NodeAgent, NodeFacts
from netlab.cluster.kubelet.podworker import PodWorker
from netlab.cluster.kubelet.runtime import NodeConfig, PodRuntime
from netlab.cluster.status import ApiError
from netlab.errors import NetlabError
from netlab.lab import processes
from netlab.runtime.network import POD_UID_LABEL

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ExitWatcher:
    """Calls a callback when a watched pidfd becomes readable (its process exited)."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="exits", daemon=True)
        self._thread.start()

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        with self._lock:
            self._sel.register(fd, selectors.EVENT_READ, callback)
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join(2)

    def _loop(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    self._sel.unregister(key.fd)
                # collect the exit status when the process was our child (a shim this kubelet
                # started), so no zombie is left; for anyone else's child this is ECHILD
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitid(os.P_PIDFD, key.fd, os.WEXITED | os.WNOHANG)
                os.close(key.fd)
                try:
                    key.data()
                except Exception:
                    log.exception("exit callback failed")


class Kubelet:
    def __init__(
        self,
        client: Any,
        runtime: PodRuntime,
        node: NodeConfig,
        facts: NodeFacts,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.node = node
        self.facts = facts
        self.allocatable = {"cpu": facts.cpu, "memory": facts.memory}
        self.backoff = BackOff()
        self.events = EventRecorder(client, "kubelet", host=node.name)
        self.agent = NodeAgent(client, facts)
        self.exits = ExitWatcher()
        self.workers: dict[str, PodWorker] = {}
        self.pods: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.pod_informer = Informer(client, "pods", field_selector=f"spec.nodeName={node.name}")
        self.service_informer = Informer(client, "services")
        self.ready = threading.Event()  # set once the first list has been handed to workers

    # life cycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Register the node, then sync pods until `stop()`. Raises when registration fails."""
        self.agent.register()
        self.events.start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        self.service_informer.start()
        self.pod_informer.add_handler(
            on_add=self._dispatch,
            on_update=lambda old, new: self._dispatch(new),
            on_delete=self._dispatch_deleted_pod,
        )
        self.pod_informer.start()
        while not self.pod_informer.wait_synced(1.0):
            if self._stop.is_set():
                return
        known = {(p.get("metadata") or {}).get("uid", "") for p in self.pod_informer.list()}
        self._cleanup_orphans(known)
        self.ready.set()
        self._stop.wait()

    def stop(self) -> None:
        """Stop syncing; pods keep running (the next kubelet adopts them)."""
        self._stop.set()
        self.pod_informer.stop()
        self.service_informer.stop()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop()
        self.exits.close()
        self.events.stop()

    def uptime(self) -> float:
        """Seconds since this kubelet started."""
        return time.monotonic() - self._started

    # pods ------------------------------------------------------------------------------------

    def _dispatch(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if self._stop.is_set():
                return
            self.pods[uid] = pod
            worker = self.workers.get(uid)
            if worker is None:
                worker = PodWorker(self, uid, pod)
                self.workers[uid] = worker
                worker.start()
                return
        worker.update(pod)

    def _dispatch_deleted_pod(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            self._dispatch_deleted(uid)

    def _dispatch_deleted(self, uid: str) -> None:
        with self._lock:
            self.pods.pop(uid, None)
            worker = self.workers.get(uid)
        if worker is not None:
            worker.update(None)

    def worker_done(self, uid: str) -> None:
        with self._lock:
            self.workers.pop(uid, None)
            self.pods.pop(uid, None)

    def _cleanup_orphans(self, known: set[str]) -> None:
        """Tear down sandboxes (and logs) of pods the apiserver no longer has."""
        for sb in self.runtime.sandboxes():
            uid = sb.labels.get(POD_UID_LABEL, "")
            with self._lock:
                current = uid in self.pods  # a pod added since the list
            if uid in known or current:
                continue
            log.info("removing sandbox %s of a pod that no longer exists", sb.name)
            try:
                for c in self.runtime.containers(sb):
                    if c.alive():
                        self.runtime.stop(c, 2)
                self.runtime.remove_sandbox(sb)
            except NetlabError as e:
                log.warning("cannot remove orphaned sandbox %s: %s", sb.name, e)
        for d in self.runtime.pod_log_dirs():
            uid = d.name.rsplit("_", 1)[-1]
            if uid not in known:
                shutil.rmtree(d, ignore_errors=True)

    def find_pod(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            for pod in self.pods.values():
                meta = pod.get("metadata") or {}
                if meta.get("namespace") == namespace and meta.get("name") == name:
                    return pod
        return None

    # helpers for pod workers -----------------------------------------------------------------

    def watch_fd(self, fd: int, callback: Callable[[], None]) -> None:
        self.exits.watch(fd, callback)

    def watch_process(self, pid: int, start: str | None, callback: Callable[[], None]) -> None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            callback()
            return
        if start is None or not processes.is_alive(pid, start):
            os.close(fd)
            callback()
            return
        self.exits.watch(fd, callback)

    def services(self) -> list[Obj]:
        return self.service_informer.list()

    def getter(self, resource: str, namespace: str) -> Callable[[str], Obj | None]:
        """Read one object of `resource` in `namespace` by name at container start (as the
        kubelet's config map and secret managers do in their Get mode); None when absent."""

        def get(name: str) -> Obj | None:
            try:
                return dict(self.client.get(resource, name, namespace))
            except ApiError as e:
                if e.code == 404:
                    return None
                raise

        return get

    def run_probe(self, spec: probes.ProbeSpec, target: probes.Target) -> tuple[bool, str]:
        host = spec.host or target.pod_ip
        if spec.handler == "tcpSocket":
            return probes.tcp_probe(self.runtime.node_socket, host, spec.port, spec.timeout)
        if spec.handler == "httpGet":
            return probes.http_probe(self.runtime.node_socket, spec, host, spec.timeout)
        if spec.handler == "exec":
            return self._exec_probe(spec, target)
        return False, f"{spec.handler} probes are not supported in this lab"

    def _exec_probe(self, spec: probes.ProbeSpec, target: probes.Target) -> tuple[bool, str]:
        container = self._container_by_id(target.container_id)
        if container is None:
            return False, "container is not running"
        argv = self.runtime.exec_argv(container, list(spec.command))
        try:
            proc = subprocess.Popen(
                argv,
                env=self.runtime.exec_env(container),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return False, str(e)
        try:
            out, _ = proc.communicate(timeout=spec.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.communicate()
            return False, f"command timed out: {' '.join(spec.command)} timed out after {spec.timeout:g}s"
        if proc.returncode == 0:
            return True, ""
        text = out.decode(errors="replace").strip()
        return False, text or f"command {list(spec.command)} exited with {proc.returncode}"

    def _container_by_id(self, cid: str) -> Any:
        for sb in self.runtime.sandboxes():
            for c in self.runtime.containers(sb):
                if c.id == cid:
                    return c
        return None

    # heartbeat -------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self.agent.heartbeat()
            except (ApiError, NetlabError) as e:
                log.warning("node heartbeat: %s", e)
            except Exception:
                log.exception("node heartbeat failed")
