"""Each node's default CNI network configuration, rendered as data.

Like a Kubernetes node, every lab node has a CNI config directory (`layout.cni_conf_dir`)
holding one conflist; the node's runtime reads it for every pod. The default network is a
plain bridge: `netlab-bridge` puts pods on the node's `cni0`, which carries the node's pod
gateway (`isGateway`), masquerades traffic leaving the pod network (`ipMasq`) and lets a pod
reach itself through a Service (`hairpinMode`); `netlab-host-local` hands out addresses from
the node's own pod subnet and keeps its allocations under the lab's state directory, not in
the host's `/var/lib/cni`. Pods get a default route through the gateway, as in Kubernetes, so
Services and other nodes' pods are reached through the node.

That network stands alone (it needs no daemon), so `netlab.lab.build` alone gives nodes whose
pods work; `netlab up` then starts the multi-node pod network (`netlab.lab.podnet`) and each
node's agent (`netlab.lab.agent`), which, once the node's flanneld has leased its subnet,
replaces the conflist with flannel's, as kube-flannel.yml installs it: `netlab-flannel` reads
the node's `subnet.env` and delegates to `netlab-bridge` + `netlab-host-local` with the leased
subnet and the overlay's MTU, filling in `isGateway` and `ipMasq` itself; pods also get
`isDefaultGateway` and a route to the whole pod network, and flannel keeps each pod's delegate
configuration under the node's state directory for DEL.

A second file holds the loopback network (`netlab-loopback`) that the sandbox runtime attaches
to every pod before the default network, as containerd does; its name sorts last, so a
runtime that takes the first file of the directory gets the pod network.

`render_node_conflist` is pure (golden-tested); `write_node_conflist` puts it in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from netlab.lab.topology import Node, Topology
from netlab.layout import Layout

CNI_VERSION = "1.0.0"
NETWORK_NAME = "netlab"
CONFLIST_FILE = "10-netlab.conflist"
LOOPBACK_NETWORK = "cni-loopback"
LOOPBACK_FILE = "99-loopback.conflist"
BRIDGE = "cni0"


def render_node_conflist(topology: Topology, node: Node, ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "netlab-bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "mtu": topology.mtu,
                "ipam": {
                    "type": "netlab-host-local",
                    "ranges": [[{"subnet": str(node.pod_cidr), "gateway": str(node.pod_gateway)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            }
        ],
    }


def render_flannel_conflist(subnet_file: Path, flannel_dir: Path, ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "netlab-flannel",
                "subnetFile": str(subnet_file),
                "dataDir": str(flannel_dir),
                "delegate": {"bridge": BRIDGE, "hairpinMode": True, "isDefaultGateway": True},
                "ipam": {"type": "netlab-host-local", "dataDir": str(ipam_dir)},
            }
        ],
    }


def write_flannel_conflist(layout: Layout, node: str, subnet_file: Path) -> Path:
    path = conflist_path(layout, node)
    conf = render_flannel_conflist(
        subnet_file, layout.node_state_dir(node) / "flannel", layout.ipam_dir(node)
    )
    _write(path, conf)
    return path


def render_loopback_conflist() -> dict[str, Any]:
    """The loopback network every sandbox also gets (`lo` up), as containerd attaches one."""
    return {"cniVersion": CNI_VERSION, "name": LOOPBACK_NETWORK, "plugins": [{"type": "netlab-loopback"}]}


def conflist_path(layout: Layout, node: str) -> Path:
    return layout.cni_conf_dir(node) / CONFLIST_FILE


def write_node_conflist(layout: Layout, topology: Topology, node: Node) -> Path:
    path = conflist_path(layout, node.name)
    _write(path, render_node_conflist(topology, node, layout.ipam_dir(node.name)))
    _write(layout.cni_conf_dir(node.name) / LOOPBACK_FILE, render_loopback_conflist())
    return path


def _write(path: Path, conf: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conf, indent=2) + "\n")
    os.replace(tmp, path)
