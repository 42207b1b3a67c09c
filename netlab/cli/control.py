"""`netlab scheduler` and `netlab controller-manager`: the control loops, in the foreground.

`netlab up` runs both in the background once the apiserver serves; these verbs are also what
a systemd unit or a test runs. Each talks to the apiserver only, through a kubeconfig (the
lab's by default), and stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from netlab.layout import Layout

_kubeconfig = click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Kubeconfig for the apiserver (default: the lab's, under the state dir).",
)
_verbose = click.option("-v", "--verbose", is_flag=True, help="Log each decision and retry.")


def _setup(verbose: bool) -> threading.Event:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait(stop: threading.Event) -> None:
    while not stop.wait(1.0):
        pass


@click.command("scheduler")
@_kubeconfig
@click.option(
    "--parallelism",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Bindings sent to the apiserver at once.",
)
@_verbose
def scheduler_cmd(kubeconfig: Path | None, parallelism: int, verbose: bool) -> None:
    """Assign pending pods to nodes (kube-scheduler's default filters and scores)."""
    from netlab.cluster.client import ApiClient
    from netlab.cluster.scheduler import Scheduler

    stop = _setup(verbose)
    path = kubeconfig or Layout.from_env().kubeconfig
    with ApiClient.from_kubeconfig(path, pool_size=parallelism + 4) as client:
        scheduler = Scheduler(client, parallelism=parallelism)
        scheduler.start()
        click.echo(f"scheduler: scheduling pods through {client.server}", err=True)
        try:
            _wait(stop)
        finally:
            scheduler.stop()


@click.command("controller-manager")
@_kubeconfig
@click.option(
    "--controllers",
    default="replicaset,deployment,endpointslice,nodelifecycle",
    show_default=True,
    help="Comma-separated controllers to run.",
)
@click.option(
    "--node-monitor-period",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between checks of node heartbeats.",
)
@click.option(
    "--node-monitor-grace-period",
    type=click.FloatRange(min=0.1),
    default=50.0,
    show_default=True,
    help="Seconds without a heartbeat before a node is marked Unknown.",
)
@click.option(
    "--concurrent-syncs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Worker threads per controller.",
)
@_verbose
def controller_manager_cmd(
    kubeconfig: Path | None,
    controllers: str,
    node_monitor_period: float,
    node_monitor_grace_period: float,
    concurrent_syncs: int,
    verbose: bool,
) -> None:
    """Run the ReplicaSet, Deployment, EndpointSlice and node-lifecycle controllers."""
    from netlab.cluster.client import ApiClient
    from netlab.cluster.controllers.manager import ControllerManager

    names = [c.strip() for c in controllers.split(",") if c.strip()]
    stop = _setup(verbose)
    path = kubeconfig or Layout.from_env().kubeconfig
    with ApiClient.from_kubeconfig(path, pool_size=4 * concurrent_syncs + 16) as client:
        manager = ControllerManager(
            client,
            controllers=names,
            workers=concurrent_syncs,
            node_monitor_period=node_monitor_period,
            node_monitor_grace_period=node_monitor_grace_period,
        )
        manager.start()
        click.echo(f"controller-manager: {', '.join(names)} against {client.server}", err=True)
        try:
            _wait(stop)
        finally:
            manager.stop()


COMMANDS = [scheduler_cmd, controller_manager_cmd]
