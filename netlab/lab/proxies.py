"""The lab's kube-proxies: one supervised `netlab kube-proxy` per node, started by `netlab up`.

Each proxy is a lab component (`kube-proxy-<node>`), so `netlab down` stops it like any other;
it watches Services and EndpointSlices on the lab's apiserver, which `up` starts first.
`kube_proxy_argv` is the one command line of a node's proxy, shared with `netlab agent`
(which runs the same proxy as its child on a node it manages). `netlab proxy mode` switches
the running proxies, whoever started them; the mode is not part of the lab's record because
the proxies report it themselves.
"""

from __future__ import annotations

import sys
import time

from netlab.errors import NetlabError
from netlab.lab import processes, state
from netlab.layout import Layout
from proxy.modes import check_available


def component(node: str) -> str:
    return f"kube-proxy-{node}"


def kube_proxy_argv(node: str, mode: str) -> list[str]:
    return [sys.executable, "-m", "netlab.cli", "kube-proxy", "--node", node, "--mode", mode]


def start_proxies(layout: Layout, mode: str, timeout: float = 30.0) -> list[str]:
    """Start a kube-proxy for every node of the running lab; returns the component names."""
    check_available(mode)
    lab = state.load(layout)
    if not layout.kubeconfig.exists():
        raise NetlabError(f"no kubeconfig at {layout.kubeconfig}: the apiserver must run before kube-proxy")
    started = []
    try:
        for node in lab.topology.node_names:
            name = component(node)
            processes.start(layout, name, kube_proxy_argv(node, mode))
            started.append(name)
            lab.components.append(name)
            state.save(layout, lab)
        _wait_ready(layout, lab.topology.node_names, timeout)
    except BaseException:
        for name in started:
            processes.stop(layout, name)
        raise
    return started


def _wait_ready(layout: Layout, nodes: list[str], timeout: float) -> None:
    """Until every proxy reports its first sync; a proxy that exits is an error with its log."""
    from proxy.daemon import read_status

    deadline = time.monotonic() + timeout
    waiting = set(nodes)
    while waiting:
        for node in sorted(waiting):
            if read_status(layout, node) is not None:
                waiting.discard(node)
            elif processes.running(layout, component(node)) is None:
                log = processes.log_path(layout, component(node))
                lines = log.read_text().strip().splitlines() if log.exists() else []
                raise NetlabError(f"kube-proxy on {node} exited: {lines[-1] if lines else 'no output'}")
        if waiting and time.monotonic() > deadline:
            raise NetlabError(f"kube-proxy on {', '.join(sorted(waiting))} did not sync within {timeout:g} s")
        time.sleep(0.05)
