from __future__ import annotations

from proxy.conntrack import ConntrackDelete, plan_conntrack_cleanup
from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot

DNS = ServicePortName("kube-system", "dns", "", "UDP")
WEB = ServicePortName("default", "web", "", "TCP")
SVC = ServicePort(DNS, "10.96.0.53", 53, node_port=30053)
A, B = Endpoint("10.244.1.5", 53, "node1"), Endpoint("10.244.2.5", 53, "node2")


def plan(old, new, ports=(DNS,)):
    return plan_conntrack_cleanup(old, new, ports, "node1")


def test_removed_endpoint_clears_entries_nated_to_it():
    old = Snapshot({DNS: SVC}, {DNS: (A, B)})
    new = Snapshot({DNS: SVC}, {DNS: (A,)})
    assert set(plan(old, new)) == {
        ConntrackDelete("udp", orig_dst="10.96.0.53", dst_nat="10.244.2.5"),
        ConntrackDelete("udp", orig_port_dst=30053, dst_nat="10.244.2.5"),
    }


def test_first_endpoint_and_deleted_service_clear_the_vip():
    empty = Snapshot({DNS: SVC}, {})
    full = Snapshot({DNS: SVC}, {DNS: (A,)})
    expect = {ConntrackDelete("udp", orig_dst="10.96.0.53"), ConntrackDelete("udp", orig_port_dst=30053)}
    assert set(plan(empty, full)) == expect
    assert set(plan(full, Snapshot())) == expect


def test_tcp_and_first_sync_need_nothing():
    tcp = ServicePort(WEB, "10.96.0.10", 80)
    old = Snapshot({WEB: tcp}, {WEB: (A,)})
    assert plan(old, Snapshot({WEB: tcp}, {}), (WEB,)) == []
    assert plan(None, Snapshot({DNS: SVC}, {DNS: (A,)})) == []
