"""`netlab sandbox run|ls|rm` and `netlab exec`: pods without a control plane, as crictl sees them."""

from __future__ import annotations

import os
import sys

import click

from netlab.cli.output import out
from netlab.layout import Layout


@click.group()
def sandbox() -> None:
    """Pod sandboxes: a network namespace held by a pause process, wired by the node's CNI."""


@sandbox.command("run")
@click.argument("name")
@click.option("--node", required=True, help="The lab node the sandbox runs on.")
def run_cmd(name: str, node: str) -> None:
    """Create sandbox NAME on NODE and print its IP."""
    from netlab.lab import pods

    sb = pods.run_pod(Layout.from_env(), name, node)
    click.echo((sb.ip or "").split("/")[0])


@sandbox.command("ls")
def ls_cmd() -> None:
    """List the sandboxes: node, IP, namespace, pause process."""
    from rich.table import Table

    from netlab.runtime import sandbox as runtime

    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "NODE", "IP", "NETNS", "PAUSE", "STATE"):
        table.add_column(col)
    for sb in runtime.list_sandboxes(Layout.from_env()):
        alive = sb.pause_alive()
        state = sb.status if alive else f"{sb.status}, pause gone"
        table.add_row(sb.name, sb.node, sb.ip or "-", sb.netns, str(sb.pause_pid or "-"), state)
    out.print(table)


@sandbox.command("rm")
@click.argument("names", nargs=-1, required=True)
def rm_cmd(names: tuple[str, ...]) -> None:
    """Remove sandboxes: kill their processes, run CNI DEL, delete their namespaces."""
    from netlab.lab import pods

    layout = Layout.from_env()
    for name in names:
        pods.remove_pod(layout, name)


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("target")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(target: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in sandbox TARGET (its network, IPC and UTS namespaces) or in node TARGET.

    The exit status is COMMAND's.
    """
    from netlab.lab import pods

    cmd = list(command)
    if cmd[:1] == ["--"]:  # click passes the separator through once it stops parsing options
        cmd = cmd[1:]
    if not cmd:
        raise click.UsageError("missing COMMAND after --")
    argv = pods.exec_argv(Layout.from_env(), target, cmd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


COMMANDS = [sandbox, exec_cmd]
