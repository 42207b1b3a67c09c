"""`netlab agent`: a lab node's whole agent (flanneld, kubelet, kube-proxy) in the foreground.

What `netlab up` starts per node and what a systemd unit or the Vagrantfile runs; the
supervision itself (order, restarts with back-off, stopping in order) is
`netlab.lab.agent`'s. SIGTERM or SIGINT stop the children in order and return; the pods stay
for the next kubelet, as they do when a kubelet alone stops.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from netlab.layout import Layout
from proxy.mode import MODES


@click.command("agent")
@click.option("--node", required=True, help="The lab node this agent runs.")
@click.option(
    "--proxy-mode",
    type=click.Choice(MODES),
    default="iptables",
    show_default=True,
    help="kube-proxy mode (switch later with `netlab proxy mode`).",
)
@click.option(
    "--no-flanneld", is_flag=True, help="Do not run flanneld (the node's subnet comes from the lab)."
)
def agent_cmd(node: str, proxy_mode: str, no_flanneld: bool) -> None:
    """Run NODE's agent: flanneld, the kubelet and kube-proxy, restarted when they exit."""
    from netlab.lab import agent
    from proxy.modes import check_available

    check_available(proxy_mode)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s agent {node} %(levelname)s %(message)s", stream=sys.stderr
    )
    supervisor = agent.make_supervisor(Layout.from_env(), node, proxy_mode, flanneld=not no_flanneld)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor.run()


COMMANDS = [agent_cmd]
