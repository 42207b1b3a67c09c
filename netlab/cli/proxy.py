"""`netlab kube-proxy` (one node's proxy) and `netlab proxy show|mode` (look at and steer them)."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType

import click
from rich.table import Table

from netlab.cli.output import err, out
from netlab.errors import ConfigError, NetlabError
from netlab.kernel.iptables import BACKENDS
from netlab.lab import state
from netlab.layout import Layout
from proxy.daemon import KubeProxy, ProxyConfig, control_dir, read_status, request_mode
from proxy.mode import MODES


def _lab_nodes(layout: Layout) -> list[str]:
    if not state.exists(layout):
        raise NetlabError("no lab is running (netlab up)")
    return state.load(layout).topology.node_names


@click.command("kube-proxy")
@click.option("--node", required=True, help="The node this proxy serves (endpoints there are local).")
@click.option("--mode", type=click.Choice(MODES), default="iptables", show_default=True)
@click.option(
    "--services-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read Services and EndpointSlices from this YAML file (reloaded on change), not the apiserver.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the apiserver is (default: the lab's kubeconfig).",
)
@click.option("--netns", default=None, help="Namespace to program (default: the lab's namespace of --node).")
@click.option("--node-ip", multiple=True, help="The node's address (default: from the lab).")
@click.option("--cluster-cidr", default=None, help="Pod network; sources outside it are masqueraded.")
@click.option("--min-sync-period", type=float, default=1.0, show_default=True)
@click.option("--sync-period", type=float, default=30.0, show_default=True, help="Full resync interval.")
@click.option("--iptables-backend", type=click.Choice(BACKENDS), default=None, help="Default: legacy.")
@click.option(
    "--cleanup", is_flag=True, help="Remove every mode's rules and sockets from the node, then exit."
)
def kube_proxy(
    node: str,
    mode: str,
    services_file: Path | None,
    kubeconfig: Path | None,
    netns: str | None,
    node_ip: tuple[str, ...],
    cluster_cidr: str | None,
    min_sync_period: float,
    sync_period: float,
    iptables_backend: str | None,
    cleanup: bool,
) -> None:
    """Run one node's kube-proxy in the given mode until stopped."""
    layout = Layout.from_env()
    node_ips = tuple(node_ip)
    if state.exists(layout):
        topo = state.load(layout).topology
        if node in topo.node_names:
            node_ips = node_ips or (str(topo.node(node).underlay_ip.ip),)
            cluster_cidr = cluster_cidr or str(topo.pod_cidr)
            netns = netns or layout.node_netns(node)
    if netns is None:
        raise ConfigError(f"node {node} is not in a running lab; give --netns")
    if min_sync_period < 0 or sync_period <= 0:
        raise ConfigError("--min-sync-period must be >= 0 and --sync-period > 0")
    cfg = ProxyConfig(
        node=node,
        netns=netns,
        mode=mode,
        services_file=services_file,
        node_ips=node_ips,
        cluster_cidr=cluster_cidr or "10.244.0.0/16",
        min_sync_period=min_sync_period,
        sync_period=sync_period,
        iptables_backend=iptables_backend,
        control_dir=control_dir(layout, node),
        kubeconfig=kubeconfig or layout.kubeconfig,
    )
    if cleanup:
        from proxy.modes import make_mode

        for name in ("userspace", "iptables"):
            make_mode(name, netns, cfg.node_info).cleanup()
        err.print(f"removed kube-proxy rules and sockets from {netns}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s kube-proxy[%(threadName)s] %(message)s")
    proxy = KubeProxy(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        proxy.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proxy.run()


@click.group("proxy")
def proxy_group() -> None:
    """Look at and steer the lab's kube-proxies."""


def _condition(ep: dict[str, object]) -> str:
    if ep["ready"]:
        return ""
    return " (terminating)" if ep["terminating"] else " (not ready)"


@proxy_group.command("show")
@click.option("--node", "nodes", multiple=True, help="Only this node (repeatable).")
def show(nodes: tuple[str, ...]) -> None:
    """Services, endpoints and each node's view of them (rules or relays)."""
    layout = Layout.from_env()
    names = list(nodes) or _lab_nodes(layout)
    for node in names:
        st = read_status(layout, node)
        if st is None:
            out.print(f"[bold]{node}[/bold]: no kube-proxy status (is it running?)")
            continue
        last = st.get("last_sync") or {}
        kind = "full" if last.get("full") else "partial"
        sync = f"last sync {kind} {last.get('seconds', 0):.3f} s" if last else "not synced yet"
        out.print(f"[bold]{node}[/bold]: {st['mode']} mode, pid {st['pid']}, {sync}")
        table = Table(show_edge=False)
        for col in ("service port", "proto", "cluster IP", "node port", "endpoints"):
            table.add_column(col)
        for svc in st["services"]:
            eps = ", ".join(e["address"] + _condition(e) for e in svc["endpoints"])
            table.add_row(
                svc["name"],
                svc["protocol"],
                f"{svc['clusterIP']}:{svc['port']}",
                str(svc["nodePort"] or ""),
                eps or "-",
            )
        out.print(table)
        out.print(st.get("view") or "", markup=False)
        out.print()


@proxy_group.command("mode")
@click.argument("mode", type=click.Choice(MODES))
@click.option("--node", "nodes", multiple=True, help="Only this node (repeatable).")
@click.option("--timeout", type=float, default=15.0, show_default=True)
def mode_cmd(mode: str, nodes: tuple[str, ...], timeout: float) -> None:
    """Switch running proxies to MODE: the old mode's rules and sockets go first."""
    layout = Layout.from_env()
    names = list(nodes) or _lab_nodes(layout)
    for node in names:
        if read_status(layout, node) is None:
            raise NetlabError(f"no kube-proxy is running for {node}")
    for node in names:
        request_mode(layout, node, mode)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for node in list(pending):
            st = read_status(layout, node)
            if st and st["mode"] == mode:
                pending.discard(node)
                err.print(f"{node}: {mode} mode")
        time.sleep(0.1)
    if pending:
        raise NetlabError(f"{', '.join(sorted(pending))} did not switch to {mode} within {timeout:g} s")


COMMANDS = [kube_proxy, proxy_group]
