"""`netlab up`, `down`, `status` and `clean`: the single-host lab's life cycle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from netlab.cli.output import err, out, steps_display
from netlab.layout import Layout

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
    type=click.Choice(["userspace", "iptables", "ipvs", "ebpf"]),
    default="iptables",
    show_default=True,
    help="The kube-proxy mode of every node (switch later with `netlab proxy mode`).",
)
def up(nodes: int | None, topology_file: Path | None, proxy_mode: str) -> None:
    """Build the lab: underlay switch, node namespaces, client, CNI configuration, kube-proxies."""
    from netlab.lab import build, proxies, state
    from netlab.lab.topology import DEFAULT_NODES, default_topology, load_topology
    from proxy.modes import check_available

    layout = Layout.from_env()
    if topology_file is not None:
        topology = load_topology(topology_file, nodes)
    else:
        topology = default_topology(nodes if nodes is not None else DEFAULT_NODES)
    check_available(proxy_mode)  # before anything is built
    with steps_display("netlab up") as report:
        build.up(layout, topology, report)
        try:
            report(1, 2, f"kube-proxy ({proxy_mode} mode) on every node")
            proxies.start_proxies(layout, proxy_mode)
        except BaseException:
            build.down(layout)
            raise
        report(2, 2, "lab is up")
    print_status(layout, state.load(layout))


@click.command()
def down() -> None:
    """Remove the lab and everything it started; does nothing when no lab is running."""
    from netlab.lab import build, state

    layout = Layout.from_env()
    if not state.exists(layout):
        err.print("no lab is running")
        return
    with steps_display("netlab down") as report:
        build.down(layout, report)


@click.command()
def status() -> None:
    """Show the running lab: nodes, addresses, sandboxes."""
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
    pods = sandbox.list_sandboxes(layout)
    if pods:
        table = Table(title="sandboxes", title_justify="left")
        for col in ("sandbox", "node", "IP", "namespace"):
            table.add_column(col)
        for sb in pods:
            table.add_row(sb.name, sb.node, sb.ip or "-", sb.netns)
        out.print(table)


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
