"""The lab's Kubernetes: apiserver, control loops and one kubelet per node, started by `up`.

`netlab up` calls `start_control_plane` once etcd serves (the apiserver on the lab's etcd,
writing the lab's kubeconfig; then the scheduler and, where the verb exists, the
controller-manager), and `start_kubelets` last (one `netlab kubelet --node N --port 0` per
node, each a supervised component `kubelet-<node>`), then waits until every node is Ready as
`kubectl get nodes` shows it. Each component is added to the lab's record as soon as it runs,
so `netlab down` (which `up` runs on failure) stops whatever was started; `down` stops the
kubelets before it removes the pods' sandboxes.

In the single-host lab every kubelet is a host process listening on the host's loopback on a
port of its own, since the apiserver (also on the loopback) cannot reach into a node's
namespace; each node advertises its kubelet's URL in the `netlab.io/kubelet-url` annotation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from netlab.errors import ConfigError, NetlabError
from netlab.lab import apiserver, processes, state
from netlab.layout import Layout

Progress = Callable[[int, int, str], None]
READY_TIMEOUT = 90.0
CONTROL_LOOPS = ("scheduler", "controller-manager")


def kubelet_component(node: str) -> str:
    return f"kubelet-{node}"


def kubelet_argv(node: str) -> list[str]:
    """A lab node's kubelet command line (`up` and `netlab agent` run the same one)."""
    return _cli("kubelet", "--node", node, "--port", "0")


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


def start_kubelets(layout: Layout, progress: Progress, timeout: float = READY_TIMEOUT) -> None:
    """A kubelet per node; returns once every node is Ready."""
    nodes = state.load(layout).topology.node_names
    total = len(nodes) + 1
    for i, node in enumerate(nodes):
        progress(i, total, f"kubelet on {node}")
        name = kubelet_component(node)
        processes.start(layout, name, kubelet_argv(node))
        _record(layout, name)
    progress(len(nodes), total, "waiting for every node to be Ready")
    wait_nodes_ready(layout, nodes, timeout)


def wait_nodes_ready(layout: Layout, nodes: list[str], timeout: float) -> None:
    """Until each node's Ready condition is True; a kubelet that exits is an error with its log."""
    from netlab.cluster.client import ApiClient
    from netlab.cluster.status import ApiError

    deadline = time.monotonic() + timeout
    with ApiClient.from_kubeconfig(layout.kubeconfig) as client:
        while True:
            try:
                ready = ready_nodes(client.list("nodes").get("items") or [])
            except (ApiError, NetlabError):
                ready = set()
            waiting = [n for n in nodes if n not in ready]
            if not waiting:
                return
            for node in waiting:
                if processes.running(layout, kubelet_component(node)) is None:
                    raise NetlabError(
                        f"kubelet on {node} exited: {_last_line(layout, kubelet_component(node))}"
                    )
            if time.monotonic() > deadline:
                raise NetlabError(f"node(s) {', '.join(waiting)} not Ready within {timeout:g} s")
            time.sleep(0.1)


def ready_nodes(items: list[dict]) -> set[str]:  # type: ignore[type-arg]
    out = set()
    for node in items:
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                out.add(str((node.get("metadata") or {}).get("name")))
    return out


def _last_line(layout: Layout, name: str) -> str:
    log = processes.log_path(layout, name)
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"
