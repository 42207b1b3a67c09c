"""`netlab flanneld`: one node's overlay agent (subnet lease + VXLAN or host-gw data plane).

Runs as a host process; with `--node` it programs that lab node's namespace through a netns
handle and writes the node's `subnet.env` in the lab's run directory; with `--netns` any
namespace; with neither, the namespace it runs in (a Vagrant VM). The backend is whatever the
network config in etcd says. Start-up problems (bad config, unreachable etcd, no free subnet)
are one line and exit 1 before anything is left behind; SIGTERM releases the lease and exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from ipaddress import IPv4Network
from pathlib import Path
from types import FrameType

import click

from netlab.layout import Layout

SUBNET_FILE_DEFAULT = "/run/netlab/subnet.env"


@click.command("flanneld")
@click.option("--node", help="Lab node whose namespace to program (nl-<node>).")
@click.option("--netns", help="Program this network namespace instead (name or path).")
@click.option("--etcd", "etcd_url", help="etcd client URL (default: the lab's etcd, else 127.0.0.1:2379).")
@click.option("--etcd-prefix", default="/coreos.com/network", show_default=True, help="Key prefix in etcd.")
@click.option("--iface", help="Underlay interface (default: the one with the default route).")
@click.option("--public-ip", help="Address to publish (default: the interface's first IPv4 address).")
@click.option(
    "--subnet-file", type=click.Path(dir_okay=False, path_type=Path), help="Where to write subnet.env."
)
@click.option(
    "--lease-ttl", type=click.IntRange(min=2), default=86400, show_default=True, help="Lease TTL, seconds."
)
@click.option(
    "--renew-margin",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Renew this many seconds before the lease expires (at most a third of the TTL).",
)
@click.option("--subnet-hint", help="Subnet to prefer when this node has none yet (e.g. 10.244.1.0/24).")
@click.option(
    "--ip-masq",
    is_flag=True,
    help="Masquerade traffic leaving the pod network (as kube-flannel.yml sets it).",
)
@click.option("--keep-lease-on-exit", is_flag=True, help="Do not revoke the lease on SIGTERM.")
@click.option(
    "--tx-checksum-offload/--no-tx-checksum-offload",
    default=False,
    show_default=True,
    help="Leave transmit checksum offload on for the VXLAN device (off avoids bad-checksum drops).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def flanneld_cmd(
    node: str | None,
    netns: str | None,
    etcd_url: str | None,
    etcd_prefix: str,
    iface: str | None,
    public_ip: str | None,
    subnet_file: Path | None,
    lease_ttl: int,
    renew_margin: int,
    subnet_hint: str | None,
    ip_masq: bool,
    keep_lease_on_exit: bool,
    tx_checksum_offload: bool,
    verbose: bool,
) -> None:
    """Lease this node's pod subnet in etcd and route to every other node's."""
    from netlab import names
    from netlab.errors import ConfigError
    from netlab.etcd import EtcdClient
    from netlab.etcd.server import resolve_url
    from netlab.kernel import Rtnl
    from netlab.overlay.config import Backend
    from netlab.overlay.daemon import Flanneld
    from netlab.overlay.dataplane import Dataplane, find_uplink, make_dataplane
    from netlab.overlay.leases import LeaseManager

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s flanneld %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    layout = Layout.from_env()
    hint = None
    if subnet_hint:
        try:
            hint = IPv4Network(subnet_hint)
        except ValueError as e:
            raise ConfigError(f"--subnet-hint: {e}") from None
    if node and netns:
        raise ConfigError("give --node or --netns, not both")
    if node:
        names.check_simple_name("node", node)
        netns = layout.node_netns(node)
    if subnet_file is None:
        subnet_file = layout.node_run_dir(node) / "subnet.env" if node else Path(SUBNET_FILE_DEFAULT)

    with Rtnl(netns) as r:
        uplink = find_uplink(r, iface, public_ip)

    def build(backend: Backend) -> Dataplane:
        return make_dataplane(backend, netns, uplink, disable_tx_checksum=not tx_checksum_offload)

    client = EtcdClient(resolve_url(layout, etcd_url))
    client.check()
    daemon = Flanneld(
        LeaseManager(client, etcd_prefix, ttl=lease_ttl),
        build,
        subnet_file,
        renew_margin=renew_margin,
        release_on_exit=not keep_lease_on_exit,
        subnet_hint=hint,
        ip_masq=ip_masq,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    daemon.run()


COMMANDS = [flanneld_cmd]
