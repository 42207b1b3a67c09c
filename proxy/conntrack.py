"""Which conntrack entries a sync must clear (UDP only), as a pure plan.

NAT decisions live in conntrack entries. For TCP a connection to a vanished backend breaks and
the client reconnects; a UDP client that keeps its socket keeps matching the old entry and
sends into the void. So after a sync, for UDP service ports (kube-proxy's rules,
`pkg/proxy/conntrack/cleanup.go`):
- a service port that went away, or went from no usable endpoints to some: clear entries to
  its cluster IP and node port (entries from the REJECT era would otherwise stick);
- an endpoint that went away: clear entries to the cluster IP or node port that were NATed to
  it.
Modes that NAT in the kernel (iptables, IPVS) run the plan through `netlab.kernel`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proxy.model import ServicePortName, Snapshot, usable_endpoints


@dataclass(frozen=True, order=True)
class ConntrackDelete:
    protocol: str
    orig_dst: str | None = None
    orig_port_dst: int | None = None
    dst_nat: str | None = None


def plan_conntrack_cleanup(
    old: Snapshot | None, new: Snapshot, ports: Iterable[ServicePortName], node: str
) -> list[ConntrackDelete]:
    if old is None:
        return []
    out: set[ConntrackDelete] = set()
    for spn in ports:
        if spn.protocol != "UDP":
            continue
        before = old.services.get(spn)
        after = new.services.get(spn)
        if before is None:
            continue
        was = usable_endpoints(before, old.endpoints_of(spn), node).reachable
        if after is None or (after.cluster_ip, after.node_port) != (before.cluster_ip, before.node_port):
            out.add(ConntrackDelete("udp", orig_dst=before.cluster_ip))
            if before.node_port:
                out.add(ConntrackDelete("udp", orig_port_dst=before.node_port))
            continue
        now = usable_endpoints(after, new.endpoints_of(spn), node).reachable
        if not was and now:
            out.add(ConntrackDelete("udp", orig_dst=after.cluster_ip))
            if after.node_port:
                out.add(ConntrackDelete("udp", orig_port_dst=after.node_port))
        for ip in {e.ip for e in was} - {e.ip for e in now}:
            out.add(ConntrackDelete("udp", orig_dst=after.cluster_ip, dst_nat=ip))
            if after.node_port:
                out.add(ConntrackDelete("udp", orig_port_dst=after.node_port, dst_nat=ip))
    return sorted(out, key=lambda d: (d.protocol, d.orig_dst or "", d.orig_port_dst or 0, d.dst_nat or ""))
