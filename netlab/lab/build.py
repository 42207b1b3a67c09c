"""Building the single-host lab (`up`) and taking it down again (`down`).

The lab is a set of namespaces this module creates and nothing else: the underlay namespace
holding a Linux bridge (the lab's "switch"), one namespace per node joined to that bridge by a
veth pair (the node end is `eth0`, as on a VM), and the external client namespace on the same
switch. Nothing is placed in the host's own namespace, so the host's bridge netfilter, FORWARD
policy and routes are never in the path and never changed.

The switch also carries the underlay's gateway address (the topology's `gateway`, .1 by
default), and every node and the client have their default route through it, as machines on a
real network do. The gateway leads nowhere (the underlay namespace does not forward), but its
route is what makes a node's kernel treat traffic to unknown destinations as forwarded rather
than unroutable: traffic to a Service without endpoints reaches kube-proxy's REJECT in the
filter table instead of failing with "network unreachable" before any rule sees it.

Each node also gets what its container runtime needs: a CNI config directory (see `cniconf`),
netlab's plugin launchers in the lab's CNI bin dir, and a supervised `netlab cni-server`
serving the node's namespace, so plugin calls run warm instead of paying a cold Python start.

`up` records the lab in `lab.json` before it creates anything and keeps an undo stack while it
builds; a failure (or Ctrl-C) half-way unwinds the stack, so a failed `up` leaves nothing.
`down` reads `lab.json` and removes everything it names: sandboxes, supervised components,
processes left in the lab's namespaces, the namespaces, and the lab's state and run
directories. It is idempotent.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cni.install import install_plugins
from netlab import kernel, names
from netlab.errors import AlreadyExists, ConfigError, NetlabError
from netlab.kernel import Rtnl
from netlab.lab import agent, cniconf, pods, processes, state
from netlab.lab.state import CLIENT_UPLINK, NODE_UPLINK, UNDERLAY_BRIDGE, LabState
from netlab.lab.topology import Topology
from netlab.layout import DEFAULT_RUN_DIR, DEFAULT_STATE_DIR, Layout
from netlab.runtime.cgroups import CgroupTree

# done, total, what is being done now
Progress = Callable[[int, int, str], None]

UNDERLAY_PORT_PREFIX = "u-"
DEFAULT_DIRS = (DEFAULT_RUN_DIR, DEFAULT_STATE_DIR)


def underlay_port(node: str) -> str:
    """The underlay end of a node's (or the client's) veth: `u-<name>`, hashed when too long."""
    return names.fit_ifname(f"{UNDERLAY_PORT_PREFIX}{node}", node, prefix=UNDERLAY_PORT_PREFIX)


def lab_netns(layout: Layout, topology: Topology) -> list[str]:
    """Every namespace `up` creates (pods are the sandbox runtime's)."""
    return [
        layout.underlay_netns,
        *(layout.node_netns(n) for n in topology.node_names),
        layout.client_netns,
    ]


def _no_progress(done: int, total: int, what: str) -> None:
    pass


def up(layout: Layout, topology: Topology, progress: Progress = _no_progress) -> LabState:
    if state.exists(layout):
        raise AlreadyExists(
            f"a lab is already running with prefix {layout.prefix} ({layout.lab_file}); "
            "run `netlab down` first"
        )
    for ns in lab_netns(layout, topology):
        if kernel.netns_exists(ns):
            raise AlreadyExists(
                f"network namespace {ns} already exists (left from a crashed run?); `netlab clean` removes it"
            )
    for d in (layout.run_dir, layout.state_dir):
        # the default directories are netlab's by definition (`netlab etcd` may have made them)
        if d.exists() and not state.is_owned(d) and any(d.iterdir()) and d not in DEFAULT_DIRS:
            raise ConfigError(f"{d} exists and is not netlab's (no {state.MARKER}); choose another directory")

    lab = LabState(prefix=layout.prefix, topology=topology)
    steps: list[tuple[str, Callable[[], object]]] = []
    with contextlib.ExitStack() as undo:

        def prepare() -> None:
            for d in (layout.run_dir, layout.state_dir):
                undo.callback(_remove_owned_tree, d)
                state.mark_owned(d)
            state.save(layout, lab)

        steps.append(("preparing state directories", prepare))
        steps.append(("underlay switch", lambda: _build_underlay(layout, topology, undo)))
        for node in topology.nodes:
            steps.append(
                (
                    f"node {node.name} ({node.underlay_ip.ip})",
                    partial(_build_node, layout, topology, node.name, undo),
                )
            )
        steps.append((f"client ({topology.client_ip.ip})", lambda: _build_client(layout, topology, undo)))

        def write_cni_configs() -> None:
            install_plugins(layout.cni_bin_dir)
            for node in topology.nodes:
                cniconf.write_node_conflist(layout, topology, node)

        steps.append(("CNI plugins and configuration", write_cni_configs))
        for node in topology.nodes:
            start = partial(_start_cni_server, layout, lab, node.name, undo)
            steps.append((f"CNI server of {node.name}", start))

        for i, (what, fn) in enumerate(steps):
            progress(i, len(steps), what)
            fn()
        lab.status = "running"
        state.save(layout, lab)
        progress(len(steps), len(steps), "lab is up")
        undo.pop_all()
    return lab


def cni_server(node: str) -> str:
    """The component name of a node's CNI server."""
    return f"cni-server-{node}"


def _start_cni_server(layout: Layout, lab: LabState, node: str, undo: contextlib.ExitStack) -> None:
    """Start the node's CNI server (warm plugins for its namespace) and wait until it answers."""
    from cni.server import wait_serving

    name = cni_server(node)
    argv = [sys.executable, "-m", "netlab.cli", "cni-server", "--netns", layout.node_netns(node)]
    processes.start(layout, name, argv)
    undo.callback(processes.stop, layout, name)
    lab.components.append(name)
    state.save(layout, lab)
    try:
        wait_serving(
            layout.node_netns(node), timeout=30.0, alive=lambda: processes.running(layout, name) is not None
        )
    except (TimeoutError, RuntimeError) as e:
        raise NetlabError(f"CNI server of {node}: {e}: {processes.last_log_line(layout, name)}") from None


def _build_underlay(layout: Layout, topology: Topology, undo: contextlib.ExitStack) -> None:
    ns = layout.underlay_netns
    kernel.ensure_netns(ns)
    undo.callback(_delete_netns, ns)
    with Rtnl(ns) as r:
        r.set_link("lo", up=True)
        r.ensure_bridge(UNDERLAY_BRIDGE, mtu=topology.mtu)
        r.ensure_address(UNDERLAY_BRIDGE, str(topology.gateway))
    # a switch forwards frames; the gateway answers for its address but routes nothing
    kernel.set_sysctl(ns, "net.ipv4.ip_forward", 0)


def _attach(layout: Layout, topology: Topology, name: str, ns: str, ifname: str, cidr: str) -> None:
    """Join namespace `ns` to the underlay switch through a veth named `ifname` on its side."""
    port = underlay_port(name)
    with Rtnl(layout.underlay_netns) as u:
        u.add_veth(port, ifname, peer_netns=ns, mtu=topology.mtu)
        u.set_link(port, master=UNDERLAY_BRIDGE, up=True)
    with Rtnl(ns) as r:
        r.set_link("lo", up=True)
        r.set_link(ifname, up=True)
        r.ensure_address(ifname, cidr)
        r.ensure_route("default", gateway=str(topology.gateway.ip))


def _build_node(layout: Layout, topology: Topology, name: str, undo: contextlib.ExitStack) -> None:
    ns = layout.node_netns(name)
    kernel.ensure_netns(ns)
    # the veth dies with the namespace, so deleting the namespace undoes both
    undo.callback(_delete_netns, ns)
    _attach(layout, topology, name, ns, NODE_UPLINK, str(topology.node(name).underlay_ip))
    # a node routes between its pods and the underlay
    kernel.set_sysctl(ns, "net.ipv4.ip_forward", 1)


def _build_client(layout: Layout, topology: Topology, undo: contextlib.ExitStack) -> None:
    ns = layout.client_netns
    kernel.ensure_netns(ns)
    undo.callback(_delete_netns, ns)
    _attach(layout, topology, "client", ns, CLIENT_UPLINK, str(topology.client_ip))


def _delete_netns(ns: str) -> None:
    processes.kill_netns_processes(ns)
    kernel.delete_netns(ns)


def _remove_owned_tree(path: Path) -> None:
    if state.is_owned(path):
        shutil.rmtree(path, ignore_errors=True)


def down(layout: Layout, progress: Progress = _no_progress) -> bool:
    """Remove the lab. Returns False when there was no lab (nothing to do)."""
    if not state.exists(layout):
        return False
    lab = state.load(layout)
    steps: list[tuple[str, Callable[[], object]]] = []
    # node agents go first: a running kubelet would recreate the sandboxes being removed
    # (kubelets leave their pods running when they stop, so that a restart adopts them)
    agents = [c for c in reversed(lab.components) if c.startswith(agent.COMPONENT_PREFIX)]
    for comp in agents:
        steps.append((f"stopping {comp}", partial(processes.stop, layout, comp, agent.STOP_WAIT)))
    steps.append(("removing sandboxes", partial(_remove_sandboxes, layout)))
    steps.append(("removing cgroups", partial(_remove_cgroups, layout)))
    for comp in reversed(lab.components):
        if comp not in agents:
            steps.append((f"stopping {comp}", partial(processes.stop, layout, comp)))
    for ns in reversed(lab_netns(layout, lab.topology)):
        steps.append((f"removing {ns}", partial(_delete_netns, ns)))
    steps.append(("removing state", lambda: _remove_state(layout)))
    errors: list[str] = []
    for i, (what, fn) in enumerate(steps):
        progress(i, len(steps), what)
        try:
            fn()
        except NetlabError as e:  # keep going: down must remove as much as it can
            errors.append(f"{what}: {e}")
    progress(len(steps), len(steps), "lab is down")
    if errors:
        raise NetlabError("; ".join(errors))
    return True


def _remove_sandboxes(layout: Layout) -> None:
    errors = pods.remove_all(layout)
    # a sandbox that could not be removed cleanly must still not outlive the lab
    for ns in kernel.list_netns():
        if ns.startswith(layout.pod_netns("")):
            _delete_netns(ns)
    if errors:
        raise NetlabError("; ".join(errors))


def _remove_cgroups(layout: Layout) -> None:
    problems = CgroupTree(layout.prefix).remove_all()
    if problems:
        raise NetlabError("; ".join(problems))


def _remove_state(layout: Layout) -> None:
    for d in (layout.run_dir, layout.state_dir):
        _remove_owned_tree(d)
    layout.lab_file.unlink(missing_ok=True)
