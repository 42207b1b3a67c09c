"""userspace mode, the applying half: relays in the node's namespace plus portal rules.

Each service port gets a relay port for as long as the service port exists. While it has
usable endpoints a relay listens there; without endpoints the relay is stopped and the portal
still points at the port, so the kernel refuses connections at once (TCP RST, ICMP port
unreachable for UDP) instead of letting clients time out.

One relay serves a service port's cluster IP and node port alike; it tells them apart by the
connection's original destination. For `externalTrafficPolicy: Local` over TCP, external
clients go to a local endpoint, dialled from the client's own address (see `relay`), which
needs the portal chain `KUBE-RELAY-REPLIES` and a policy-routing rule in the node (`RELAY_MARK`
-> table `RELAY_TABLE`, a local route for everything). kube-proxy's userspace proxier always
dialled from the node, so the backend never saw the client. UDP relays still dial from the
node: their sessions serve Local like Cluster. `internalTrafficPolicy: Local` (all of a port's
traffic is node-local) restricts the relay to local endpoints.
"""

from __future__ import annotations

import ipaddress
import logging

from netlab.kernel import Rtnl
from netlab.kernel.iptables import (
    DEFAULT_BACKEND,
    iptables_restore,
)
from proxy.iptables.mode import read_kernel_state, remove_rules
from proxy.iptables.render import Chain, insert_jumps, restore_text
from proxy.mode import NodeInfo
from proxy.model import ServicePort, ServicePortName, Snapshot, usable_endpoints
from proxy.userspace.balancer import RoundRobin
from proxy.userspace.portals import (
    CHAINS,
    JUMP_RULES,
    RELAY_MARK,
    RELAY_RULE_PRIORITY,
    RELAY_TABLE,
    render_portals,
)
from proxy.userspace.relay import UDP_IDLE_TIMEOUT, LocalExternal, Relay, TcpRelay, UdpRelay

log = logging.getLogger(__name__)


class UserspaceMode:
    name = "userspace"

    def __init__(
        self,
        netns: str,
        node: NodeInfo,
        iptables_backend: str | None = None,
        udp_idle_timeout: float = UDP_IDLE_TIMEOUT,
    ) -> None:
        self.netns = netns
        self.node = node
        self.backend = iptables_backend or DEFAULT_BACKEND
        self.udp_idle_timeout = udp_idle_timeout
        self.balancer = RoundRobin()
        self.local_balancer = RoundRobin()  # local endpoints, for Local external traffic
        self.relays: dict[ServicePortName, Relay] = {}
        self.ports: dict[ServicePortName, int] = {}
        self._snapshot = Snapshot()
        self._applied: dict[Chain, tuple[str, ...]] | None = None

    def _start(self, spn: ServicePortName, protocol: str) -> Relay:
        port = self.ports.get(spn, 0)
        if protocol == "UDP":
            return UdpRelay(self.netns, spn, self.balancer, port, self.udp_idle_timeout)
        if protocol == "TCP":
            return TcpRelay(self.netns, spn, self.balancer, port, self.local_balancer)
        raise ValueError(protocol)

    def _stop(self, spn: ServicePortName, close_connections: bool = False) -> None:
        relay = self.relays.pop(spn, None)
        if relay is not None:
            relay.stop(close_connections)

    def sync(self, snapshot: Snapshot, changed: frozenset[ServicePortName] | None) -> None:
        full = changed is None or self._applied is None
        todo = set(snapshot.services) | set(self.relays) | set(self.ports) if full else set(changed or ())
        for spn in sorted(todo):
            svc = snapshot.services.get(spn)
            if svc is None or svc.protocol not in ("TCP", "UDP"):
                self._stop(spn)
                self.ports.pop(spn, None)
                self.balancer.remove(spn)
                self.local_balancer.remove(spn)
                continue
            choice = usable_endpoints(svc, snapshot.endpoints_of(spn), self.node.name)
            eps = choice.cluster or choice.local
            self.balancer.update(spn, eps, svc.affinity_timeout)
            self.local_balancer.update(spn, choice.local, svc.affinity_timeout)
            relay = self.relays.get(spn)
            if relay is not None and relay.protocol != svc.protocol:
                self._stop(spn)
                relay = None
            if eps:
                if relay is None:
                    relay = self.relays[spn] = self._start(spn, svc.protocol)
                    self.ports[spn] = relay.port
                relay.drop_endpoints_except(set(eps))
                if isinstance(relay, TcpRelay):
                    relay.local_external = self._local_external(svc)
            else:
                self._stop(spn)
                if spn not in self.ports:
                    # reserve a port number for the portal; nothing listens, so it refuses
                    probe = self._start(spn, svc.protocol)
                    self.ports[spn] = probe.port
                    probe.stop()
        self.balancer.reap()
        desired = render_portals(snapshot, self.ports, self.node)
        try:
            if full:
                with Rtnl(self.netns) as r:  # replies to transparent connections come home
                    r.ensure_fwmark_rule(RELAY_MARK, RELAY_TABLE, RELAY_RULE_PRIORITY)
                    r.ensure_route("0.0.0.0/0", dev="lo", table=RELAY_TABLE, local=True)
                _, jumps = read_kernel_state(self.netns, self.backend, JUMP_RULES)
                text = insert_jumps(restore_text(desired, None), jumps)
            else:
                text = restore_text(desired, self._applied)
            iptables_restore(self.netns, text, self.backend)
        except Exception:
            self._applied = None
            raise
        self._applied = desired
        self._snapshot = snapshot

    def _local_external(self, svc: ServicePort) -> LocalExternal | None:
        if not (svc.external_local and svc.has_external):
            return None
        node_ips = frozenset(self.node.node_ips)
        dsts = node_ips if svc.node_port else frozenset()
        return LocalExternal(
            dsts | frozenset(svc.external_ips) | frozenset(svc.load_balancer_ips),
            ipaddress.ip_network(self.node.cluster_cidr),
            node_ips,
        )

    def close(self) -> None:
        for spn in list(self.relays):
            self._stop(spn, close_connections=True)

    def cleanup(self) -> None:
        """Close every relay and connection, remove the portal chains and their jumps."""
        self.close()
        self.ports.clear()
        remove_rules(self.netns, JUMP_RULES, lambda c: c in CHAINS)
        with Rtnl(self.netns) as r:
            r.delete_fwmark_rule(RELAY_MARK, RELAY_TABLE, RELAY_RULE_PRIORITY)
            r.delete_route("0.0.0.0/0", table=RELAY_TABLE)
        self._applied = None

    def show(self) -> str:
        lines = []
        for spn in sorted(self.ports):
            svc = self._snapshot.services.get(spn)
            relay = self.relays.get(spn)
            where = f"{svc.cluster_ip}:{svc.port}" if svc else "?"
            if svc and svc.node_port:
                where += f" nodePort {svc.node_port}"
            state = f"{relay.active()} active" if relay else "not listening (no endpoints)"
            eps = ", ".join(str(e) for e in self.balancer.endpoints(spn)) or "-"
            lines.append(f"{spn} {spn.protocol} {where} -> relay :{self.ports[spn]} ({state}) -> {eps}")
        return "\n".join(lines)
