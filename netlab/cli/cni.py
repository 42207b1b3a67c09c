"""`netlab cni-server` and `netlab cni install-plugins`: the CNI side of a node.

`cni-server` is a component command: the lab starts one per node, serving that node's
namespace, so that netlab's plugin executables answer in milliseconds (see `cni/server.py`).
`cni install-plugins DIR` writes the plugin launchers a runtime finds on its CNI path.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import click


@click.command("cni-server")
@click.option(
    "--netns",
    metavar="NAME|PATH",
    help="Network namespace to serve (a node's). Default: this process's own.",
)
def cni_server_cmd(netns: str | None) -> None:
    """Serve netlab's CNI plugins for one network namespace until stopped."""
    from cni.server import CniServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = CniServer(netns)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


@click.group("cni")
def cni_group() -> None:
    """netlab's CNI plugins."""


@cni_group.command("install-plugins")
@click.argument("directory", type=click.Path(file_okay=False))
def install_plugins_cmd(directory: str) -> None:
    """Write the netlab-* plugin launchers into DIRECTORY (a CNI bin dir)."""
    from cni.install import install_plugins

    for path in install_plugins(directory):
        click.echo(str(path))


COMMANDS = [cni_server_cmd, cni_group]
