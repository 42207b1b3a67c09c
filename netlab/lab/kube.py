"""The lab's Kubernetes: apiserver, control loops and one node agent per node, started by `up`.

`netlab up` calls `start_control_plane` once etcd serves (the apiserver on the lab's etcd,
writing the lab's kubeconfig; then the scheduler and, where the verb exists, the
controller-manager), and `start_agents` last: one `netlab agent --node N` per node, each a
supervised component `agent-<node>` running the node's flanneld, kubelet and kube-proxy (see
`netlab.lab.agent`). It returns once every node's flanneld has leased its subnet, every
kube-proxy has synced and every node is Ready as `kubectl get nodes` shows it; an agent, or a
child of one, that exits meanwhile fails `up` with its last log line. Each component is added
to the lab's record as soon as it runs, so `netlab down` (which `up` runs on failure) stops
whatever was started; `down` stops the agents before it removes the pods' sandboxes.

In the single-host lab every kubelet is a host process listening on the host's loopback on a
port of its own, since the apiserver (also on the loopback) cannot reach into a node's
namespace; each node advertises its kubelet's URL in the `netlab.io/kubelet-url` annotation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from netlab.errors import ConfigError, NetlabError
from netlab.lab import agent, apiserver, processes, state
from netlab.layout import Layout

Progress = Callable[[int, int, str], None]
READY_TIMEOUT = 120.0  # from the agents' start until every node is Ready
CONTROL_LOOPS = ("scheduler", "controller-manager")


def _record(layout: Layout, name: str) -> None:
    lab = state.load(layout)
    if name not in lab.components:
        lab.components.append(name)
        state.save(layout, lab)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "netlab.cli", *args]


def _verbs() -> set[str]:
    from netlab.cli.main import VERB_MODULES

    return set(VERB_MODULES)


def plan_apiserver_port(port: int) -> int:
    """The apiserver's port (0: a free one); a busy port is a ConfigError naming it."""
    from netlab.etcd.server import free_port, port_free

    if port == 0:
        return free_port()
    if not port_free(port):
        raise ConfigError(
            f"port {port} on 127.0.0.1 is already in use (another lab's apiserver?): "
            "stop it or choose another with --apiserver-port"
        )
    return port


def start_control_plane(layout: Layout, etcd_url: str, port: int, progress: Progress) -> str:
    """The apiserver, then the control loops; returns the apiserver's URL."""
    loops = [v for v in CONTROL_LOOPS if v in _verbs()]
    total = 1 + len(loops)
    progress(0, total, f"apiserver on port {port}")
    url = apiserver.start(layout, etcd_url, port)
    _record(layout, apiserver.COMPONENT)
    for i, verb in enumerate(loops, 1):
        progress(i, total, verb)
        processes.start(layout, verb, _cli(verb, "--kubeconfig", str(layout.kubeconfig)))
        _record(layout, verb)
    return url


def start_agents(layout: Layout, proxy_mode: str, progress: Progress, timeout: float = READY_TIMEOUT) -> None:
    """An agent per node; returns once every node has its subnet lease, a synced kube-proxy
    and is Ready. An agent or agent's child that exits meanwhile is an error with its last
    log line (the agent would start the child again, but a lab coming up must not crash)."""
    from proxy.daemon import read_status as proxy_status

    nodes = state.load(layout).topology.node_names
    total = len(nodes) + 3
    for i, node in enumerate(nodes):
        progress(i, total, f"agent on {node} (flanneld, kubelet, kube-proxy in {proxy_mode} mode)")
        processes.start(layout, agent.component(node), agent.agent_argv(node, proxy_mode))
        _record(layout, agent.component(node))
    wait = _Waiter(layout, nodes, timeout)
    progress(len(nodes), total, "waiting for every node's subnet lease")
    wait("flanneld on {} leased no subnet", lambda nodes: [n for n in nodes if not _leased(layout, n)])
    progress(len(nodes) + 1, total, "waiting for every kube-proxy's first sync")
    wait("kube-proxy on {} did not sync", lambda nodes: [n for n in nodes if proxy_status(layout, n) is None])
    progress(len(nodes) + 2, total, "waiting for every node to be Ready")
    wait_nodes_ready(layout, wait)


def _leased(layout: Layout, node: str) -> bool:
    st = agent.read_status(layout, node)
    return st is not None and st.child("flanneld").ready


def check_agents(layout: Layout, nodes: list[str]) -> None:
    """A NetlabError naming the first agent, or child of an agent, that has exited."""
    for node in nodes:
        name = agent.component(node)
        if processes.running(layout, name) is None:
            raise NetlabError(f"agent on {node} exited: {processes.last_log_line(layout, name)}")
        st = agent.read_status(layout, node)
        for child in st.children if st else []:
            if child.exits:
                raise NetlabError(f"{child.name} on {node} {child.describe_exit()}")


class _Waiter:
    """Waits for one thing on every node after another, all within one deadline, and fails at
    once when an agent or one of its children exits."""

    def __init__(self, layout: Layout, nodes: list[str], timeout: float) -> None:
        self.layout = layout
        self.nodes = nodes
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def __call__(self, problem: str, pending: Callable[[list[str]], list[str]]) -> None:
        """Until `pending(nodes)` is empty; `problem` (with {} for the nodes left) when time is up."""
        waiting = list(self.nodes)
        while True:
            waiting = pending(waiting)
            if not waiting:
                return
            check_agents(self.layout, self.nodes)
            if time.monotonic() > self.deadline:
                raise NetlabError(
                    f"{problem.format(', '.join(waiting))} within {self.timeout:g} s of the agents' start"
                )
            time.sleep(0.05)


def wait_nodes_ready(layout: Layout, wait: _Waiter) -> None:
    """Until each node's Ready condition is True, as `kubectl get nodes` shows it."""
    from netlab.cluster.client import ApiClient
    from netlab.cluster.status import ApiError

    with ApiClient.from_kubeconfig(layout.kubeconfig) as client:

        def not_ready(pending: list[str]) -> list[str]:
            try:
                ready = ready_nodes(client.list("nodes").get("items") or [])
            except (ApiError, NetlabError):
                ready = set()
            return [n for n in pending if n not in ready]

        wait("node(s) {} not Ready", not_ready)


def ready_nodes(items: list[dict]) -> set[str]:  # type: ignore[type-arg]
    out = set()
    for node in items:
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                out.add(str((node.get("metadata") or {}).get("name")))
    return out
