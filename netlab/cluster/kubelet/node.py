"""The node's registration, its status, and the Lease heartbeat.

At start the kubelet registers its Node (`POST /api/v1/nodes`; when it exists already, a
restarted kubelet patches it): labels `kubernetes.io/hostname`, `kubernetes.io/os`,
`kubernetes.io/arch`; `spec.podCIDR(s)` from the node's flannel lease (or the lab's plan);
status with capacity and allocatable (cpu, memory, pods 110, ephemeral-storage), the
addresses `InternalIP` (the node's underlay address) and `Hostname`, `nodeInfo`, the
conditions `Ready` (`KubeletReady`) and the three pressures (False), and
`daemonEndpoints.kubeletEndpoint.Port`. Where the kubelet's HTTPS endpoint is not at the
InternalIP (in the single-host lab the kubelet is a host process on the host's loopback) the
annotation `netlab.io/kubelet-url` says where it is, and the apiserver proxies `pods/log` and
`pods/exec` there.

Then, every 10 s, it renews the Lease `kube-node-lease/<node>` (`leaseDurationSeconds: 40`,
`holderIdentity: <node>`, `renewTime` in microseconds) and refreshes the conditions'
heartbeat times, which is what the node-lifecycle controller watches.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab.cluster.status import ApiError

Obj = dict[str, Any]

KUBELET_VERSION = "v1.32.0-netlab"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
HEARTBEAT = 10.0
MAX_PODS = 110
KUBELET_URL_ANNOTATION = "netlab.io/kubelet-url"


@dataclass(frozen=True)
class NodeFacts:
    name: str
    internal_ip: str
    pod_cidr: str | None
    port: int
    url: str | None  # the kubelet's base URL when it is not https://<InternalIP>:<port>
    cpu: str
    memory: str  # e.g. "24523436Ki"
    storage: str
    pods: int = MAX_PODS


def host_capacity(state_dir: Path) -> tuple[str, str, str]:
    """cpu count, memory (Ki) and the size of the filesystem holding the state dir."""
    cpu = str(os.cpu_count() or 1)
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    except (OSError, ValueError, IndexError):
        pass
    target = state_dir
    while not target.exists() and target != target.parent:
        target = target.parent
    st = os.statvfs(target)
    storage_kib = st.f_blocks * st.f_frsize // 1024
    return cpu, f"{mem_kib}Ki", f"{storage_kib}Ki"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def conditions(ready: bool, now: str, previous: list[Obj] | None = None) -> list[Obj]:
    """The kubelet's node conditions, keeping transition times of unchanged ones."""
    before = {c.get("type"): c for c in previous or []}
    wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        (
            "Ready",
            "True" if ready else "False",
            "KubeletReady" if ready else "KubeletNotReady",
            "kubelet is posting ready status" if ready else "kubelet is not ready",
        ),
    ]
    out = []
    for ctype, status, reason, message in wanted:
        prev = before.get(ctype) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else now
        out.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": since or now,
            }
        )
    return out


def node_object(facts: NodeFacts, now: str) -> Obj:
    resources = {
        "cpu": facts.cpu,
        "memory": facts.memory,
        "pods": str(facts.pods),
        "ephemeral-storage": facts.storage,
    }
    annotations = {"node.alpha.kubernetes.io/ttl": "0"}
    if facts.url:
        annotations[KUBELET_URL_ANNOTATION] = facts.url
    spec: Obj = {}
    if facts.pod_cidr:
        spec = {"podCIDR": facts.pod_cidr, "podCIDRs": [facts.pod_cidr]}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": facts.name,
            "labels": {
                "kubernetes.io/hostname": facts.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": _arch(),
            },
            "annotations": annotations,
        },
        "spec": spec,
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": conditions(True, now),
            "addresses": [
                {"type": "InternalIP", "address": facts.internal_ip},
                {"type": "Hostname", "address": facts.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "netlab://0.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        },
    }


class NodeAgent:
    """Registers the node and keeps its Lease and conditions fresh."""

    def __init__(self, client: Any, facts: NodeFacts) -> None:
        self.client = client
        self.facts = facts
        self.uid: str | None = None

    def register(self) -> Obj:
        now = now_rfc3339()
        body = node_object(self.facts, now)
        try:
            node = self.client.create("nodes", body)
        except ApiError as e:
            if e.code != 409:
                raise
            current = self.client.get("nodes", self.facts.name)
            meta = body["metadata"]
            patch: Obj = {
                "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
            }
            # a node's pod CIDR is set once; keep the one it has
            if body["spec"] and not (current.get("spec") or {}).get("podCIDR"):
                patch["spec"] = body["spec"]
            self.client.patch("nodes", self.facts.name, patch)
            status = dict(body["status"])
            status["conditions"] = conditions(True, now, (current.get("status") or {}).get("conditions"))
            node = self.client.patch("nodes", self.facts.name, {"status": status}, subresource="status")
        self.uid = (node.get("metadata") or {}).get("uid")
        self.renew_lease()
        return dict(node)

    def heartbeat(self) -> None:
        """Renew the Lease and refresh the conditions' heartbeat times."""
        self.renew_lease()
        current = self.client.get("nodes", self.facts.name)
        status = {
            "conditions": conditions(True, now_rfc3339(), (current.get("status") or {}).get("conditions"))
        }
        self.client.patch("nodes", self.facts.name, {"status": status}, subresource="status")

    def renew_lease(self) -> None:
        name = self.facts.name
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": micro_now(),
        }
        try:
            self.client.patch("leases.coordination.k8s.io", name, {"spec": spec}, LEASE_NAMESPACE)
            return
        except ApiError as e:
            if e.code != 404:
                raise
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": spec,
        }
        if self.uid:
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": self.uid}
            ]
        try:
            self.client.create("leases.coordination.k8s.io", body, LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 409:
                raise
