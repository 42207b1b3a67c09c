"""Sandboxes in the single-host lab: the runtime bound to the lab's nodes.

`netlab.runtime` knows sandboxes and CNI but not the lab; this module supplies what the lab
knows: which nodes exist, each node's namespace and CNI configuration directory, and the
names a sandbox may not take (a node's, so that `netlab exec NAME` is never ambiguous).
It also resolves `exec` targets: a sandbox, a node, or the external client.
"""

from __future__ import annotations

from netlab import kernel
from netlab.errors import NetlabError, NotFound
from netlab.lab import state
from netlab.layout import Layout
from netlab.runtime import sandbox
from netlab.runtime.network import CniPodNetwork
from netlab.runtime.sandbox import Sandbox


def node_network(layout: Layout, node: str) -> CniPodNetwork:
    return CniPodNetwork(layout, layout.cni_conf_dir(node), layout.node_netns(node))


def _nodes(layout: Layout) -> list[str]:
    return state.load(layout).topology.node_names


def run_pod(layout: Layout, name: str, node: str) -> Sandbox:
    nodes = _nodes(layout)
    if node not in nodes:
        raise NotFound(f"node {node} does not exist in the lab (nodes: {', '.join(nodes)})")
    return sandbox.run(layout, name, node, node_network(layout, node), taken=set(nodes))


def remove_pod(layout: Layout, name: str) -> None:
    sb = sandbox.get(layout, name)
    # a pod whose node is gone has nothing left to detach from (its veth died with the node)
    network = node_network(layout, sb.node) if kernel.netns_exists(layout.node_netns(sb.node)) else None
    sandbox.remove(layout, name, network)


def remove_all(layout: Layout) -> list[str]:
    """Remove every sandbox of the lab; returns the errors and keeps going past them."""
    errors = []
    for sb in sandbox.list_sandboxes(layout):
        try:
            remove_pod(layout, sb.name)
        except NetlabError as e:
            errors.append(str(e))
    return errors


def exec_argv(layout: Layout, target: str, command: list[str]) -> list[str]:
    """nsenter arguments running `command` in sandbox `target`, node `target`, or the client."""
    try:
        return sandbox.exec_argv(sandbox.get(layout, target), command)
    except NotFound:
        pass
    nodes = _nodes(layout)
    if target in nodes:
        return kernel.in_netns(layout.node_netns(target), command)
    if target == "client":
        return kernel.in_netns(layout.client_netns, command)
    raise NotFound(f"no sandbox or node named {target} (nodes: {', '.join(nodes)}, and client)")
