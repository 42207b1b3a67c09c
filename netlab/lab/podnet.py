"""The lab's multi-node pod network: etcd and flannel's network config, for the nodes' flanneld.

`netlab up` calls these in order: `plan` (pure validation: the pod network, its subnet length and
the backend, before anything exists), `check_etcd` for a user's `--etcd URL` (unreachable is a
one-line error naming the URL, before anything is built), then `start`: `start_etcd` when the
lab runs its own, and `write_network_config` (flannel's config at `/coreos.com/network/config`,
written once; an existing different one is an error, never overwritten). Each node's flanneld
is a child of the node's agent (`netlab.lab.agent`), which `netlab up` starts once the control
plane runs: it programs its node's namespace through a netns handle and writes the node's
`subnet.env` (`subnet_file`), and `netlab up` hints each node's planned pod subnet so the lab's
addresses match its topology whenever the subnet is free. `leases` reads the leases back for
`netlab status`; `record`/`load` keep which etcd the lab uses, for the agents, `status` and
`down`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path

from netlab.errors import ConfigError
from netlab.etcd import EtcdClient, server
from netlab.lab import state
from netlab.lab.topology import Topology
from netlab.layout import Layout
from netlab.overlay.config import BACKENDS, DEFAULT_PREFIX, NetworkConfig, check_no_overlap, make_config
from netlab.overlay.leases import LeaseManager
from netlab.overlay.subnets import Lease, config_key


def plan(topology: Topology, backend: str) -> NetworkConfig:
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    try:
        config = make_config(topology.pod_cidr, subnet_len=topology.node_pod_prefix, backend=backend)
    except ConfigError as e:
        raise ConfigError(
            f"pod network (pod_cidr {topology.pod_cidr}, node_pod_prefix {topology.node_pod_prefix}): {e}"
        ) from None
    check_no_overlap(
        config, {"underlay network": topology.underlay_cidr, "service network": topology.service_cidr}
    )
    return config


def check_etcd(url: str, config: NetworkConfig, prefix: str = DEFAULT_PREFIX) -> None:
    """A user's etcd must answer and hold no network config that contradicts this lab's.

    Unavailable names the URL; a contradicting config is a ConfigError naming the key.
    """
    with EtcdClient(url, timeout=5) as c:
        c.check()
        if c.get(config_key(prefix)) is not None:
            _check_compatible(url, LeaseManager(c, prefix).get_config(), config, prefix)


def _check_compatible(url: str, current: NetworkConfig, config: NetworkConfig, prefix: str) -> None:
    if current.network != config.network or current.backend.type != config.backend.type:
        raise ConfigError(
            f"etcd at {url} already holds a network config for {current.network} "
            f"({current.backend.type}) at {config_key(prefix)}; this lab wants {config.network} "
            f"({config.backend.type}): use another etcd or remove that key"
        )


def start_etcd(layout: Layout, port: int | None) -> str:
    """The lab's own etcd; `port` 0 picks a free one, None means 2379."""
    return server.start(layout, port=port or None, any_port=port == 0)


def write_network_config(url: str, config: NetworkConfig, prefix: str = DEFAULT_PREFIX) -> bool:
    """Write flannel's network config unless etcd has it already; True when this wrote it."""
    with EtcdClient(url) as c:
        manager = LeaseManager(c, prefix)
        existing = c.get(config_key(prefix))
        if existing is None:
            manager.put_config(config)
            return True
        _check_compatible(url, manager.get_config(), config, prefix)
    return False


def subnet_file(layout: Layout, node: str) -> Path:
    return layout.node_run_dir(node) / "subnet.env"


@dataclass(frozen=True)
class NodeLease:
    node: str | None  # None: a lease whose PublicIP is no lab node's
    lease: Lease


def leases(url: str, topology: Topology, prefix: str = DEFAULT_PREFIX) -> list[NodeLease]:
    """Every lease in etcd with its expiry, matched to the lab's nodes by PublicIP."""
    by_ip: dict[IPv4Address, str] = {n.underlay_ip.ip: n.name for n in topology.nodes}
    with EtcdClient(url, timeout=5) as c:
        manager = LeaseManager(c, prefix)
        found, _ = manager.list_leases()
        return [NodeLease(by_ip.get(x.attrs.public_ip), manager.with_expiry(x)) for x in found]


# The lab's record of its pod network ---------------------------------------------------------


@dataclass(frozen=True)
class PodNetwork:
    """What `up` set up, for `status` and `down` (kept beside lab.json in the run directory)."""

    backend: str
    etcd_url: str
    etcd_managed: bool  # the lab started this etcd (its data goes with the lab)
    wrote_config: bool  # the lab wrote the network config into a user's etcd


def _record_file(layout: Layout) -> Path:
    return layout.run_dir / "podnet.json"


def record(layout: Layout, net: PodNetwork) -> None:
    path = _record_file(layout)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(net), indent=2) + "\n")
    tmp.replace(path)


def load(layout: Layout) -> PodNetwork | None:
    try:
        return PodNetwork(**json.loads(_record_file(layout).read_text()))
    except (OSError, ValueError, TypeError):
        return None


Progress = Callable[[int, int, str], None]


def start(
    layout: Layout,
    config: NetworkConfig,
    etcd_url: str | None,
    etcd_port: int | None,
    progress: Progress,
) -> PodNetwork:
    """etcd (unless given) and the network config; the nodes' flanneld come with their agents.

    etcd is added to the lab's record as soon as it runs, so `netlab down` (which the CLI runs
    when `up` fails) stops it.
    """
    lab = state.load(layout)
    if etcd_url is None:
        progress(0, 2, "etcd")
        url = start_etcd(layout, etcd_port)
        lab.components.append(server.COMPONENT)
        state.save(layout, lab)
    else:
        url = etcd_url
    net = PodNetwork(config.backend.type, url, etcd_url is None, False)
    record(layout, net)
    progress(1, 2, f"network config ({config.network}, {config.backend.type})")
    if write_network_config(url, config):
        net = PodNetwork(net.backend, url, net.etcd_managed, wrote_config=not net.etcd_managed)
        record(layout, net)
    return net


def release(net: PodNetwork | None, prefix: str = DEFAULT_PREFIX) -> None:
    """After `down`: remove the network config this lab wrote into a user's etcd."""
    if net is None or not net.wrote_config:
        return
    with EtcdClient(net.etcd_url, timeout=5) as c:
        c.delete(config_key(prefix))
