"""userspace mode, the pure half: portal rules that steer service traffic to the relays.

kube-proxy's userspace layout (nat table):
- `KUBE-PORTALS-CONTAINER` (from PREROUTING): traffic from pods and other hosts to a cluster
  IP or external IP is REDIRECTed to the relay's port on this node;
- `KUBE-PORTALS-HOST` (from OUTPUT): the node's own traffic is DNATed to the node's address
  and the relay's port (a REDIRECT would pick 127.0.0.1 and break the replies);
- `KUBE-NODEPORT-CONTAINER` / `KUBE-NODEPORT-HOST`: the same for node ports, for packets
  addressed to one of the node's own addresses;
- `KUBE-RELAY-REPLIES` (mangle, from PREROUTING): packets that belong to a relay's
  transparent connection (one dialled from an external client's own address, for
  `externalTrafficPolicy: Local`) get `RELAY_MARK`, which a policy-routing rule delivers to
  the relay instead of forwarding them to the client. kube-proxy's userspace proxier had no
  such chain: it could not keep the client's address at all.
Rendering returns chains with their rules; `restore_text` from the iptables mode turns them
into restore input, so both modes apply their rules the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.iptables.render import MANGLE, NAT, Chain
from proxy.mode import NodeInfo
from proxy.model import ServicePortName, Snapshot

PORTALS_CONTAINER = "KUBE-PORTALS-CONTAINER"
PORTALS_HOST = "KUBE-PORTALS-HOST"
NODEPORT_CONTAINER = "KUBE-NODEPORT-CONTAINER"
NODEPORT_HOST = "KUBE-NODEPORT-HOST"
RELAY_REPLIES = "KUBE-RELAY-REPLIES"
NAT_CHAINS = (PORTALS_CONTAINER, PORTALS_HOST, NODEPORT_CONTAINER, NODEPORT_HOST)
CHAINS = (*NAT_CHAINS, RELAY_REPLIES)
RELAY_MARK = 0x20000  # clear of kube-proxy's 0x4000 (masquerade) and 0x8000 (drop)
RELAY_TABLE = 4100  # the routing table that delivers marked packets locally
RELAY_RULE_PRIORITY = 32000  # before the main table's rule (32766)

_CLUSTER = "handle ClusterIPs; NOTE: this must be before the NodePort rules"
_NODEPORTS = "handle service NodePorts; NOTE: this must be the last rule in the chain"
# Inserted at the top in this order, so the portal jumps end up before the node-port jumps.
JUMP_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (NAT, "PREROUTING", ("-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment", _NODEPORTS,
                         "-j", NODEPORT_CONTAINER)),
    (NAT, "OUTPUT", ("-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment", _NODEPORTS,
                     "-j", NODEPORT_HOST)),
    (NAT, "PREROUTING", ("-m", "comment", "--comment", _CLUSTER, "-j", PORTALS_CONTAINER)),
    (NAT, "OUTPUT", ("-m", "comment", "--comment", _CLUSTER, "-j", PORTALS_HOST)),
    (MANGLE, "PREROUTING", ("-m", "comment", "--comment", "replies to transparent relay connections",
                            "-j", RELAY_REPLIES)),
)  # fmt: skip


def _add(chains: dict[str, list[str]], chain: str, match: str, port: int, host_ip: str | None) -> None:
    if chain in (PORTALS_CONTAINER, NODEPORT_CONTAINER):
        chains[chain].append(f"-A {chain} {match} -j REDIRECT --to-ports {port}")
    elif host_ip:  # the node's own traffic needs an address to DNAT to
        chains[chain].append(f"-A {chain} {match} -j DNAT --to-destination {host_ip}:{port}")


def render_portals(
    snapshot: Snapshot, ports: Mapping[ServicePortName, int], node: NodeInfo
) -> dict[Chain, tuple[str, ...]]:
    """Portal chains for every service port that has a relay port."""
    host_ip = node.node_ips[0] if node.node_ips else None
    chains: dict[str, list[str]] = {c: [] for c in NAT_CHAINS}
    for spn in sorted(snapshot.services):
        port = ports.get(spn)
        if port is None:
            continue
        svc = snapshot.services[spn]
        proto = svc.protocol.lower()
        comment = f'-m comment --comment "{spn}"'
        for ip in (svc.cluster_ip, *svc.external_ips, *svc.load_balancer_ips):
            match = f"{comment} -p {proto} -m {proto} --dport {svc.port} -d {ip}/32"
            _add(chains, PORTALS_CONTAINER, match, port, None)
            _add(chains, PORTALS_HOST, match, port, host_ip)
        if svc.node_port:
            match = f"{comment} -p {proto} -m {proto} --dport {svc.node_port}"
            _add(chains, NODEPORT_CONTAINER, match, port, None)
            _add(chains, NODEPORT_HOST, match, port, host_ip)
    out: dict[Chain, tuple[str, ...]] = {(NAT, c): tuple(lines) for c, lines in chains.items()}
    out[(MANGLE, RELAY_REPLIES)] = (
        f"-A {RELAY_REPLIES} -m socket --transparent -j MARK --set-xmark {RELAY_MARK:#x}/{RELAY_MARK:#x}",
    )
    return out
