"""Playing the kubelets in control-plane tests: nodes, their heartbeats and pod status.

The scheduler and the controllers only ever see the API, so a test registers nodes, renews
their Leases and marks pods Running and Ready through the same calls a kubelet makes, with
no namespaces or processes behind them.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from netlab.cluster.client import ApiClient
from netlab.cluster.informer import Informer
from netlab.cluster.status import ApiError

Obj = dict[str, Any]
T = TypeVar("T")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_until(what: str, fn: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def node_object(
    name: str,
    *,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    ready: str = "True",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
        },
        "spec": {"taints": taints or []},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
                    "lastHeartbeatTime": now(),
                    "lastTransitionTime": now(),
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": "192.168.56.10"},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def register_node(client: ApiClient, name: str, **kw: Any) -> Obj:
    return client.create("nodes", node_object(name, **kw))


def renew_lease(client: ApiClient, node: str) -> None:
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }
    try:
        client.patch("leases", node, {"spec": body["spec"]}, "kube-node-lease")
    except ApiError as e:
        if e.code != 404:
            raise
        client.create("leases", body, "kube-node-lease")


def set_node_ready(client: ApiClient, node: str, status: str) -> None:
    cond = {
        "type": "Ready",
        "status": status,
        "reason": "KubeletReady" if status == "True" else "KubeletNotReady",
        "lastHeartbeatTime": now(),
        "lastTransitionTime": now(),
    }
    client.patch(
        "nodes", node, {"status": {"conditions": [cond]}}, patch_type="strategic", subresource="status"
    )


def pod_ip(n: int) -> str:
    return f"10.244.{n // 250}.{n % 250 + 2}"


_ips = iter(range(1, 1_000_000))


def mark_running(client: ApiClient, pod: Obj, *, ready: bool = True, ip: str | None = None) -> Obj:
    """What a kubelet reports once a pod's containers run (and pass readiness, if `ready`)."""
    meta = pod["metadata"]
    flag = "True" if ready else "False"
    conds = [
        {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": now()}
        for t, s in (
            ("PodScheduled", "True"),
            ("Initialized", "True"),
            ("ContainersReady", flag),
            ("Ready", flag),
        )
    ]
    address = ip or pod_ip(next(_ips))
    status = {
        "phase": "Running",
        "podIP": address,
        "podIPs": [{"ip": address}],
        "hostIP": "192.168.56.10",
        "startTime": now(),
        "conditions": conds,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", "pause"),
                "imageID": "",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now()}},
            }
            for c in pod["spec"]["containers"]
        ],
    }
    return client.patch("pods", meta["name"], {"status": status}, meta["namespace"], subresource="status")


def set_pod_ready(client: ApiClient, pod: Obj, ready: bool) -> Obj:
    meta = pod["metadata"]
    flag = "True" if ready else "False"
    conds = [{"type": t, "status": flag, "lastTransitionTime": now()} for t in ("ContainersReady", "Ready")]
    return client.patch(
        "pods",
        meta["name"],
        {"status": {"conditions": conds}},
        meta["namespace"],
        patch_type="strategic",
        subresource="status",
    )


def finish_deletion(client: ApiClient, pod: Obj) -> None:
    """A kubelet's last word on a pod being deleted: remove the object (grace 0)."""
    meta = pod["metadata"]
    try:
        client.delete(
            "pods", meta["name"], meta["namespace"], grace_period=0, preconditions={"uid": meta["uid"]}
        )
    except ApiError as e:
        if e.code not in (404, 409):
            raise


def pod_template(labels: dict[str, str], image: str = "nginx:1.14", **spec: Any) -> Obj:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [{"name": "web", "image": image, "ports": [{"name": "http", "containerPort": 80}]}],
            **spec,
        },
    }


NEVER_READY = ":never-ready"  # an image tag whose pods run but never pass readiness


class FakeKubelets:
    """The kubelets of fake nodes: run pods bound to them, confirm deletions, renew Leases.

    A pod bound to one of `nodes` is reported Running `ready_delay` seconds after the kubelet
    sees it, and Ready unless its name is in `unready` or its image tag is `never-ready`; a
    pod being deleted is removed at once. `kill(node)` stops that node's kubelet (no more
    leases, pods, or deletions) and `revive(node)` starts it again."""

    def __init__(
        self, client: ApiClient, nodes: list[str], ready_delay: float = 0.0, lease_interval: float = 0.3
    ) -> None:
        self.client = client
        self.nodes = set(nodes)
        self.ready_delay = ready_delay
        self.lease_interval = lease_interval
        self.dead: set[str] = set()
        self.unready: set[str] = set()
        self.informer = Informer(client, "pods")
        self._due: list[tuple[float, int, str]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.informer.add_handler(self._seen, lambda old, p: self._seen(p))

    def _key(self, pod: Obj) -> str:
        return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"

    def _mine(self, pod: Obj) -> bool:
        node = (pod.get("spec") or {}).get("nodeName")
        return node in self.nodes and node not in self.dead

    def _seen(self, pod: Obj) -> None:
        if not self._mine(pod):
            return
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if deleting or (pod.get("status") or {}).get("phase") != "Running":
            with self._lock:
                self._seq += 1
                delay = 0.0 if deleting else self.ready_delay
                heapq.heappush(self._due, (time.monotonic() + delay, self._seq, self._key(pod)))

    def start(self) -> FakeKubelets:
        for n in self.nodes:
            renew_lease(self.client, n)
        self.informer.start()
        self.informer.wait_synced(10)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.informer.stop()

    def kill(self, node: str) -> None:
        self.dead.add(node)

    def revive(self, node: str) -> None:
        self.dead.discard(node)
        renew_lease(self.client, node)
        set_node_ready(self.client, node, "True")
        for pod in self.informer.list():
            self._seen(pod)

    def _readies(self, pod: Obj) -> bool:
        image = pod["spec"]["containers"][0].get("image", "")
        return pod["metadata"]["name"] not in self.unready and not image.endswith(NEVER_READY)

    def _loop(self) -> None:
        next_lease = 0.0
        while not self._stop.wait(0.02):
            now = time.monotonic()
            if now >= next_lease:
                next_lease = now + self.lease_interval
                for n in sorted(self.nodes - self.dead):
                    with contextlib.suppress(ApiError):
                        renew_lease(self.client, n)
            while True:
                with self._lock:
                    if not self._due or self._due[0][0] > now:
                        break
                    _, _, key = heapq.heappop(self._due)
                pod = self.informer.get(key)
                if pod is None or not self._mine(pod):
                    continue
                try:
                    if pod["metadata"].get("deletionTimestamp"):
                        finish_deletion(self.client, pod)
                    elif (pod.get("status") or {}).get("phase") != "Running":
                        mark_running(self.client, pod, ready=self._readies(pod))
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
