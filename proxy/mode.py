"""What a proxy mode is, and the node facts every mode renders against.

Each mode (userspace, iptables, IPVS, eBPF) is split in two:
- a pure step (`render`/`plan`) from a `Snapshot`, the set of changed service ports and the
  `NodeInfo` to a description of the kernel state it wants (restore text, IPVS plan, map
  contents, relay table), tested with golden files;
- a thin `Mode` object that applies that description to one node's namespace, remembers what
  it applied (for partial syncs and `show`), and can remove everything it could ever have
  created (`cleanup`), which is what makes switching modes safe.

Modes share no state; the only thing they have in common is the snapshot they sync from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.model import ServicePortName, Snapshot

MODES = ("userspace", "iptables", "ipvs", "ebpf")


@dataclass(frozen=True)
class NodeInfo:
    """The facts about this node that rendering depends on."""

    name: str
    cluster_cidr: str = "10.244.0.0/16"  # pod network: sources inside it are not masqueraded
    node_ips: tuple[str, ...] = ()  # the node's own addresses (userspace host portals, show)


class Mode(Protocol):
    name: str

    def sync(self, snapshot: Snapshot, changed: frozenset[ServicePortName] | None) -> None:
        """Make the node match `snapshot`; `changed` None means a full sync."""

    def cleanup(self) -> None:
        """Remove every kernel object and socket this mode could have created on the node."""

    def close(self) -> None:
        """Stop background work (relay threads); kernel state stays until `cleanup`."""

    def show(self) -> str:
        """The mode's view of the services: its rules, relays or maps, as text."""
