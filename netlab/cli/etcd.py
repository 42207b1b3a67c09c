"""`netlab etcd`: the lab's etcd in the foreground (for a terminal, a systemd unit, a VM).

`netlab up` starts the same etcd in the background through `netlab.etcd.server`; this verb
is for running it by hand and watching its log.
"""

from __future__ import annotations

import sys

import click

from netlab.layout import Layout


@click.command("etcd")
@click.option("--port", type=int, default=None, help="Client port on 127.0.0.1 (default 2379).")
@click.option("--any-port", is_flag=True, help="Use a free port instead of failing when it is busy.")
def etcd_cmd(port: int | None, any_port: bool) -> None:
    """Run etcd for this lab in the foreground (data under the lab's state dir)."""
    from netlab.etcd import server

    layout = Layout.from_env()
    config = server.plan(layout, port, any_port)
    click.echo(f"etcd: client URL {config.client_url}, data in {config.data_dir}", err=True)
    sys.exit(server.run_foreground(layout, config))


COMMANDS = [etcd_cmd]
