"""`lab.json`: the description of the running lab that every verb after `up` reads.

`up` writes it before it creates anything (status `starting`) and again when the lab is
complete (status `running`), so even a lab whose `up` was killed half-way can be found and
taken down. It records the topology and the names `up` derived from the layout (namespaces,
interfaces, CNI config directories), so other tools can read the lab's shape without
recomputing it, and the names of the supervised components `up` started.

The state and run directories get a marker file when `up` creates them; `down` and `clean`
remove a directory tree only when it carries that marker, so a misconfigured
`NETLAB_STATE_DIR` never makes netlab delete someone else's files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab.errors import ConfigError, NotFound
from netlab.lab.topology import Node, Topology, topology_from_dict
from netlab.layout import Layout

FORMAT_VERSION = 1
MARKER = ".netlab-owned"

UNDERLAY_BRIDGE = "br0"
NODE_UPLINK = "eth0"  # the node's underlay NIC, as a VM would show it
CLIENT_UPLINK = "eth0"


@dataclass
class LabState:
    prefix: str
    topology: Topology
    status: str = "starting"  # starting | running
    components: list[str] = field(default_factory=list)

    def node(self, name: str) -> Node:
        """The lab's node `name`; NotFound, naming the lab's nodes, when there is none."""
        try:
            return self.topology.node(name)
        except KeyError:
            raise NotFound(
                f"node {name} is not part of the lab (nodes: {', '.join(self.topology.node_names)})"
            ) from None

    def to_json(self, layout: Layout) -> dict[str, Any]:
        topo = self.topology
        return {
            "version": FORMAT_VERSION,
            "prefix": self.prefix,
            "status": self.status,
            "topology": topo.to_dict(),
            "underlay": {"netns": layout.underlay_netns, "bridge": UNDERLAY_BRIDGE},
            "client": {
                "netns": layout.client_netns,
                "ifname": CLIENT_UPLINK,
                "ip": str(topo.client_ip),
            },
            "nodes": [
                {
                    "name": n.name,
                    "netns": layout.node_netns(n.name),
                    "ifname": NODE_UPLINK,
                    "underlay_ip": str(n.underlay_ip),
                    "pod_cidr": str(n.pod_cidr),
                    "cni_conf_dir": str(layout.cni_conf_dir(n.name)),
                }
                for n in topo.nodes
            ],
            "components": self.components,
        }


def mark_owned(path: Path) -> None:
    """Create `path` (if needed) and mark it as netlab's."""
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()


def is_owned(path: Path) -> bool:
    return (path / MARKER).is_file()


def save(layout: Layout, state: LabState) -> None:
    path = layout.lab_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(layout), indent=2) + "\n")
    os.replace(tmp, path)


def exists(layout: Layout) -> bool:
    return layout.lab_file.exists()


def load(layout: Layout) -> LabState:
    """The running lab, or NotFound when there is none."""
    try:
        data = json.loads(layout.lab_file.read_text())
    except FileNotFoundError:
        raise NotFound("no lab is running (start one with `netlab up`)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read {layout.lab_file}: {e}; `netlab clean` removes a broken lab"
        ) from None
    if data.get("version") != FORMAT_VERSION or data.get("prefix") != layout.prefix:
        raise ConfigError(
            f"{layout.lab_file} belongs to another netlab version or prefix; `netlab clean` removes it"
        )
    return LabState(
        prefix=data["prefix"],
        topology=topology_from_dict(data["topology"]),
        status=data.get("status", "starting"),
        components=list(data.get("components", [])),
    )
