"""Golden files for the userspace mode's portal rules: what steers service traffic to relays.

The cases mirror the features the end-to-end suite checks in userspace mode: ClusterIP and
NodePort (one relay port serves both, which is why `externalTrafficPolicy: Local` cannot be
told apart), UDP, external IPs, and a service without endpoints, whose portal still points
at its reserved port so that the kernel refuses the connection at once.
"""

from __future__ import annotations

import pytest

from proxy.iptables import render as r
from proxy.mode import NodeInfo
from proxy.model import ServicePort, ServicePortName, Snapshot
from proxy.userspace.portals import JUMP_RULES, render_portals
from tests.unit.proxy.golden import check_golden

NODE = NodeInfo("node1", cluster_cidr="10.244.0.0/16", node_ips=("192.168.56.11",))
WEB = ServicePortName("default", "web", "http", "TCP")
DNS = ServicePortName("kube-system", "dns", "dns", "UDP")
EMPTY = ServicePortName("default", "empty", "", "TCP")

SERVICES = {
    WEB: ServicePort(WEB, "10.96.0.10", 80, node_port=30080, external_local=True),
    DNS: ServicePort(DNS, "10.96.0.53", 53, node_port=30053),
    EMPTY: ServicePort(EMPTY, "10.96.0.99", 80, external_ips=("192.168.56.200",)),
}
# relay ports as the mode reserved them; a service without endpoints keeps one too
PORTS = {WEB: 41001, DNS: 41002, EMPTY: 41003}


@pytest.mark.parametrize("name", ["all", "no_node_ip"])
def test_portals_golden(name):
    node = NODE if name == "all" else NodeInfo("node1")
    text = r.restore_text(render_portals(Snapshot(SERVICES), PORTS, node), None)
    check_golden(f"userspace/portals_{name}.txt", text)


def test_portals_with_jumps_golden():
    text = r.insert_jumps(r.restore_text(render_portals(Snapshot(), {}, NODE), None), JUMP_RULES)
    check_golden("userspace/portals_with_jumps.txt", text)


def test_a_port_without_a_relay_port_gets_no_portal():
    chains = render_portals(Snapshot(SERVICES), {WEB: 41001}, NODE)
    lines = [line for rules in chains.values() for line in rules]
    assert lines and not any("10.96.0.53" in line or "10.96.0.99" in line for line in lines)
