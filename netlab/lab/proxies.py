"""The lab's kube-proxies: one supervised `netlab kube-proxy` per node, started by `netlab up`.

Each proxy is a lab component (`kube-proxy-<node>`), so `netlab down` stops it like any other.
Where a proxy learns about services depends on what the lab runs: with a control plane (a
kubeconfig in the lab's state directory) it watches the apiserver; without one it follows the
lab's services file (`<state>/services.yaml`, Service and EndpointSlice manifests, created
empty), so services can be tried before any control plane exists. `netlab proxy mode`
switches the running proxies; the mode is not part of the lab's record because the proxies
report it themselves.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from netlab.errors import NetlabError
from netlab.lab import processes, state
from netlab.layout import Layout
from proxy.modes import check_available


def component(node: str) -> str:
    return f"kube-proxy-{node}"


def services_file(layout: Layout) -> Path:
    return layout.state_dir / "services.yaml"


def start_proxies(layout: Layout, mode: str, timeout: float = 30.0) -> list[str]:
    """Start a kube-proxy for every node of the running lab; returns the component names."""
    check_available(mode)
    lab = state.load(layout)
    source: list[str] = []
    if not layout.kubeconfig.exists():
        path = services_file(layout)
        if not path.exists():
            path.write_text("# Service and EndpointSlice manifests for the lab's kube-proxies\n")
        source = ["--services-file", str(path)]
    started = []
    try:
        for node in lab.topology.node_names:
            name = component(node)
            argv = [sys.executable, "-m", "netlab.cli", "kube-proxy", "--node", node, "--mode", mode, *source]
            processes.start(layout, name, argv)
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
