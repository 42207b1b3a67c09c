"""The kubelet's view of its node's container runtime: pods onto sandboxes and containers.

The kubelet talks to `netlab.runtime` (sandboxes, containers, cgroups) the way it talks to
containerd through CRI, and this module is that interface for one node. It knows how a pod is
named on the node and where its files live:

- a pod's sandbox is named after the pod (`web-7d9c-abcde` in namespace `default`,
  `<namespace>-<name>` elsewhere), so `ip netns` shows `<prefix>pod-<name>` and `netlab exec
  POD` works; a name that is too long, not a DNS label, or a lab node's name is shortened
  with a hash. The sandbox carries the pod's namespace, name and uid as labels, which is how a
  restarted kubelet finds the sandboxes of its pods again;
- container logs are `<node state dir>/pods/<namespace>_<name>_<uid>/<container>/<n>.log`,
  the kubelet's `/var/log/pods` layout kept under the lab's state directory;
- containers get cgroups `netlab/<lab>/pod<uid>/<id>` (see `netlab.runtime.cgroups`).

It also hands out sockets in the node's network namespace, for probes that must originate on
the node as the kubelet's do. The node's namespace is reached through the runtime layer only.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from netlab.cluster.kubelet.metrics import Metrics
from netlab.errors import AlreadyExists, NetlabError
from netlab.layout import Layout
from netlab.runtime import containers as ctr
from netlab.runtime import sandbox as sbx
from netlab.runtime.cgroups import CgroupTree
from netlab.runtime.containers import Container, ContainerConfig, ContainerState
from netlab.runtime.network import (
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    POD_UID_LABEL,
    node_socket,
)
from netlab.runtime.sandbox import PodNetwork, Sandbox

Obj = dict
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAME_MAX = 63


@dataclass(frozen=True)
class NodeConfig:
    """What the kubelet knows about its node (built by `netlab kubelet` from the lab)."""

    name: str
    internal_ip: str
    netns: str | None  # the node's network namespace; None: this host's own
    pod_cidr: str | None = None
    taken: frozenset[str] = frozenset()  # names a sandbox may not take


def sandbox_name(namespace: str, name: str, taken: frozenset[str] = frozenset()) -> str:
    """The sandbox (and netns) name for a pod: readable when possible, else hashed."""
    base = name if namespace == "default" else f"{namespace}-{name}"
    if _LABEL.match(base) and base not in taken:
        return base
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^a-z0-9-]", "-", base.lower()).strip("-")[: NAME_MAX - 9].strip("-") or "pod"
    return f"{cleaned}-{digest}"


def pod_key(pod: Obj) -> tuple[str, str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name")), str(meta.get("uid"))


NETWORK_OPS = "kubelet_network_plugin_operations_duration_seconds"
RUNTIME_OPS = "kubelet_runtime_operations_duration_seconds"


class TimedNetwork:
    """The node's pod network, with CNI ADD and DEL timed."""

    def __init__(self, network: PodNetwork, metrics: Metrics) -> None:
        self.network = network
        self.metrics = metrics

    def add(self, sandbox: Sandbox) -> str:
        with self.metrics.timed(NETWORK_OPS, "set_up_pod"):
            return self.network.add(sandbox)

    def delete(self, sandbox: Sandbox) -> None:
        with self.metrics.timed(NETWORK_OPS, "tear_down_pod"):
            self.network.delete(sandbox)


class PodRuntime:
    def __init__(
        self,
        layout: Layout,
        node: NodeConfig,
        network: PodNetwork,
        cgroups: CgroupTree,
        metrics: Metrics | None = None,
    ) -> None:
        self.layout = layout
        self.node = node
        self.metrics = metrics or Metrics()
        self.network = TimedNetwork(network, self.metrics)
        self.cgroups = cgroups

    # sandboxes -------------------------------------------------------------------------------

    def sandboxes(self) -> list[Sandbox]:
        """This node's pod sandboxes (those made for a pod: they carry its uid)."""
        return [
            sb
            for sb in sbx.list_sandboxes(self.layout)
            if sb.node == self.node.name and POD_UID_LABEL in sb.labels
        ]

    def sandbox_for(self, pod: Obj) -> Sandbox | None:
        """The pod's sandbox on this node, if there is one.

        Read by name (the name follows from the pod), not by listing every sandbox of the lab:
        a pod worker asks on every sync, and a listing reads one record per pod."""
        ns, name, uid = pod_key(pod)
        try:
            sb = sbx.get(self.layout, sandbox_name(ns, name, self.node.taken))
        except NetlabError:
            return None
        if sb.node != self.node.name or sb.labels.get(POD_UID_LABEL) != uid:
            return None
        return sb

    def create_sandbox(self, pod: Obj) -> Sandbox:
        ns, name, uid = pod_key(pod)
        sb_name = sandbox_name(ns, name, self.node.taken)
        try:
            existing = sbx.get(self.layout, sb_name)
        except NetlabError:
            existing = None
        if existing is not None and existing.labels.get(POD_UID_LABEL) != uid:
            raise AlreadyExists(
                f"sandbox {sb_name} still belongs to an earlier pod of the same name; waiting for its removal"
            )
        spec = pod.get("spec") or {}
        hostname = spec.get("hostname") or name
        if not _LABEL.match(hostname):
            hostname = sb_name
        labels = {POD_NAMESPACE_LABEL: ns, POD_NAME_LABEL: name, POD_UID_LABEL: uid}
        with self.metrics.timed(RUNTIME_OPS, "run_podsandbox"):
            return sbx.run(
                self.layout, sb_name, self.node.name, self.network, set(self.node.taken),
                hostname=hostname, labels=labels,
            )  # fmt: skip

    def remove_sandbox(self, sb: Sandbox) -> None:
        with self.metrics.timed(RUNTIME_OPS, "stop_podsandbox"):
            sbx.remove(self.layout, sb.name, self.network)
        uid = sb.labels.get(POD_UID_LABEL)
        if uid:
            self.cgroups.remove(pod_cgroup(uid))

    # containers ------------------------------------------------------------------------------

    def containers(self, sb: Sandbox) -> list[Container]:
        return ctr.list_containers(self.layout, sb.name)

    def start(self, sb: Sandbox, pod: Obj, config: ContainerConfig, attempt: int) -> Container:
        _, _, uid = pod_key(pod)
        log = self.log_path(pod, config.name, attempt)
        log.unlink(missing_ok=True)
        with self.metrics.timed(RUNTIME_OPS, "start_container"):
            return ctr.start(self.layout, sb, config, attempt, log, self.cgroups, pod_cgroup(uid))

    def state(self, c: Container) -> ContainerState:
        return ctr.state(self.layout, c)

    def stop(self, c: Container, grace: float) -> None:
        ctr.stop(self.layout, c, grace)

    def kill(self, c: Container) -> None:
        ctr.stop(self.layout, c, 0)

    def forget(self, c: Container) -> None:
        """Remove a finished run's record, cgroup and log (older runs are not kept)."""
        ctr.remove(self.layout, c, self.cgroups)
        Path(c.log_path).unlink(missing_ok=True)

    def exec_argv(self, c: Container, command: list[str]) -> list[str]:
        return ctr.exec_argv(c, command)

    def exec_env(self, c: Container) -> dict[str, str]:
        return ctr.exec_env(c)

    def pidfd(self, c: Container) -> int | None:
        return ctr.pidfd(c)

    # files -----------------------------------------------------------------------------------

    def pod_log_dir(self, pod: Obj) -> Path:
        ns, name, uid = pod_key(pod)
        return self.layout.node_state_dir(self.node.name) / "pods" / f"{ns}_{name}_{uid}"

    def log_path(self, pod: Obj, container: str, attempt: int) -> Path:
        return self.pod_log_dir(pod) / container / f"{attempt}.log"

    def remove_pod_logs(self, pod: Obj) -> None:
        shutil.rmtree(self.pod_log_dir(pod), ignore_errors=True)

    def pod_log_dirs(self) -> list[Path]:
        root = self.layout.node_state_dir(self.node.name) / "pods"
        return sorted(root.iterdir()) if root.is_dir() else []

    # the node's network ----------------------------------------------------------------------

    def node_socket(self) -> socket.socket:
        return node_socket(self.node.netns)


def pod_cgroup(uid: str) -> str:
    return f"pod{uid}"
