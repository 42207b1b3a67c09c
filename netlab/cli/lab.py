"""`netlab up`, `down`, `status` and `clean`: the single-host lab's life cycle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from netlab.cli.output import err, out, steps_display
from netlab.layout import Layout
from proxy.mode import MODES

if TYPE_CHECKING:
    from netlab.lab.state import LabState


@click.command()
@click.option("--nodes", type=int, default=None, help="Number of nodes (default 2), named node1..nodeN.")
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML file naming the nodes and the address plan.",
)
@click.option(
    "--proxy-mode",
    type=click.Choice(MODES),
    default="iptables",
    show_default=True,
    help="The kube-proxy mode of every node (switch later with `netlab proxy mode`).",
)
@click.option(
    "--backend",
    type=click.Choice(["vxlan", "host-gw"]),
    default="vxlan",
    show_default=True,
    help="How pods on different nodes reach each other (flannel's backends).",
)
@click.option(
    "--etcd", "etcd_url", default=None, help="Use this etcd (http://HOST:PORT) instead of starting one."
)
@click.option(
    "--etcd-port",
    type=click.IntRange(0, 65535),
    default=2379,
    envvar="NETLAB_ETCD_PORT",
    show_default=True,
    help="Client port of the lab's own etcd on 127.0.0.1; 0 picks a free port.",
)
@click.option(
    "--apiserver-port",
    type=click.IntRange(0, 65535),
    default=6443,
    envvar="NETLAB_APISERVER_PORT",
    show_default=True,
    help="HTTPS port of the apiserver on 127.0.0.1; 0 picks a free port.",
)
def up(
    nodes: int | None,
    topology_file: Path | None,
    proxy_mode: str,
    backend: str,
    etcd_url: str | None,
    etcd_port: int,
    apiserver_port: int,
) -> None:
    """Build the lab: underlay, nodes, client, CNI, etcd, the control plane and an agent per node
    (flanneld, kubelet, kube-proxy); returns once every node is Ready."""
    from netlab.etcd import server as etcd_server
    from netlab.lab import build, kube, podnet, state
    from netlab.lab.topology import DEFAULT_NODES, default_topology, load_topology
    from proxy.modes import check_available

    layout = Layout.from_env()
    if topology_file is not None:
        topology = load_topology(topology_file, nodes)
    else:
        topology = default_topology(nodes if nodes is not None else DEFAULT_NODES)
    # everything that can be checked is checked before anything is built
    check_available(proxy_mode)
    config = podnet.plan(topology, backend)
    if etcd_url is not None:
        podnet.check_etcd(etcd_url, config)
    elif etcd_port:
        etcd_server.plan(layout, etcd_port)
    apiserver_port = kube.plan_apiserver_port(apiserver_port)
    with steps_display("netlab up") as report:
        build.up(layout, topology, report)
        try:
            started = podnet.start(layout, config, etcd_url, etcd_port, report)
            kube.start_control_plane(layout, started.etcd_url, apiserver_port, report)
            kube.start_agents(layout, proxy_mode, report)
        except BaseException:
            net = podnet.load(layout)
            build.down(layout)
            podnet.release(net)
            raise
        report(1, 1, "lab is up")
    print_status(layout, state.load(layout))
    out.print(f"kubeconfig: {layout.kubeconfig}  (export KUBECONFIG={layout.kubeconfig}; kubectl get nodes)")


@click.command()
def down() -> None:
    """Remove the lab and everything it started; does nothing when no lab is running."""
    from netlab.lab import build, podnet, state

    layout = Layout.from_env()
    if not state.exists(layout):
        err.print("no lab is running")
        return
    net = podnet.load(layout)
    with steps_display("netlab down") as report:
        build.down(layout, report)
    podnet.release(net)


@click.command()
def status() -> None:
    """Show the running lab: nodes, addresses, subnet leases, node agents, sandboxes."""
    from netlab.lab import state

    layout = Layout.from_env()
    print_status(layout, state.load(layout))


def print_status(layout: Layout, lab: LabState) -> None:
    from rich.table import Table

    from netlab.runtime import sandbox

    topo = lab.topology
    table = Table(title=f"lab {layout.prefix} ({lab.status})", title_justify="left")
    for col in ("node", "namespace", "underlay", "pod network"):
        table.add_column(col)
    for n in topo.nodes:
        table.add_row(n.name, layout.node_netns(n.name), str(n.underlay_ip), str(n.pod_cidr))
    table.add_row("client", layout.client_netns, str(topo.client_ip), "")
    out.print(table)
    out.print(f"underlay {topo.underlay_cidr} in {layout.underlay_netns}, services {topo.service_cidr}")
    print_leases(layout, lab)
    print_agents(layout, lab)
    pods = sandbox.list_sandboxes(layout)
    if pods:
        table = Table(title="sandboxes", title_justify="left")
        for col in ("sandbox", "node", "IP", "namespace"):
            table.add_column(col)
        for sb in pods:
            table.add_row(sb.name, sb.node, sb.ip or "-", sb.netns)
        out.print(table)


def print_leases(layout: Layout, lab: LabState) -> None:
    """The pod network: backend, etcd, and every node's subnet lease as etcd has it."""
    from rich.table import Table

    from netlab.errors import NetlabError
    from netlab.lab import podnet

    net = podnet.load(layout)
    if net is None:
        return
    try:
        leases = podnet.leases(net.etcd_url, lab.topology)
    except NetlabError as e:
        out.print(f"pod network ({net.backend}): {e}")
        return
    table = Table(title=f"subnet leases ({net.backend}, etcd {net.etcd_url})", title_justify="left")
    for col in ("node", "subnet", "public IP", "VTEP MAC", "expires in"):
        table.add_column(col)
    for nl in sorted(leases, key=lambda x: x.lease.subnet):
        lease = nl.lease
        table.add_row(
            nl.node or "-",
            str(lease.subnet),
            str(lease.attrs.public_ip),
            lease.attrs.vtep_mac or "-",
            _duration(lease.expires_in) if not lease.reserved else "reserved",
        )
    out.print(table)


def print_agents(layout: Layout, lab: LabState) -> None:
    """Each node's agent and its children: pids, and how often each has exited."""
    from rich.table import Table

    from netlab.lab import agent

    if not any(c.startswith(agent.COMPONENT_PREFIX) for c in lab.components):
        return
    table = Table(title="node agents", title_justify="left")
    for col in ("node", "agent", *agent.CHILDREN):
        table.add_column(col)
    for node in lab.topology.node_names:
        seen = agent.describe(layout, node)
        table.add_row(node, *(seen.get(col, "-") for col in ("agent", *agent.CHILDREN)))
    out.print(table)


def _duration(seconds: int | None) -> str:
    if seconds is None or seconds < 0:
        return "expired"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def clean(dry_run: bool) -> None:
    """Remove leftovers of crashed runs: every namespace with the lab prefix, its processes, state."""
    from netlab.lab import clean as cleaning

    layout = Layout.from_env()
    plan = cleaning.plan_clean(layout)
    if not plan.actions:
        err.print(f"nothing to clean for prefix {layout.prefix}")
        return
    if dry_run:
        for action in plan.actions:
            out.print(f"would remove {action.description}")
        return
    cleaning.apply_clean(layout, plan, lambda action: out.print(f"removed {action.description}"))


COMMANDS = [up, down, status, clean]
