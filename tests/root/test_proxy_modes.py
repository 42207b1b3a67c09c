"""Every proxy mode against real packets: one suite, parametrized over the modes.

A three-node lab with an echo pod on each node; each node runs its own proxy of the mode
under test, fed the same Services and EndpointSlices, and synced directly (the runner and the
file frontend are covered by the command-line tests).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netlab.layout import Layout
from proxy.mode import NodeInfo
from proxy.modes import make_mode
from proxy.proxier import Proxier
from tests.root.svclab import ServiceLab, spread, tcp_ask, tcp_open, udp_ask, udp_socket

pytestmark = pytest.mark.root

NODES = ("node1", "node2", "node3")
PODS = {"web-1": "node1", "web-2": "node2", "web-3": "node3"}


@pytest.fixture(scope="module")
def lab(module_layout: Layout) -> Iterator[ServiceLab]:
    lab = ServiceLab(module_layout, nodes=len(NODES))
    try:
        for pod, node in PODS.items():
            lab.add_pod(pod, node)
        lab.wait_ready()
        yield lab
    finally:
        lab.close()


def objects(lab: ServiceLab, web: list[str] | None = None, dns: list[str] | None = None):
    web = list(PODS) if web is None else web
    services = [
        lab.service("web", "10.96.0.10", node_port=30080),
        lab.service("sticky", "10.96.0.11", sessionAffinity="ClientIP"),
        lab.service("local", "10.96.0.12", node_port=30081, externalTrafficPolicy="Local"),
        lab.service("self", "10.96.0.13"),
        lab.service("dns", "10.96.0.53", port=53, protocol="UDP"),
        lab.service("empty", "10.96.0.99"),
    ]
    slices = [
        lab.endpoint_slice("web", web),
        lab.endpoint_slice("sticky", list(PODS)),
        lab.endpoint_slice("local", ["web-2"]),
        lab.endpoint_slice("self", ["web-1"]),
        lab.endpoint_slice("dns", dns or ["web-2", "web-3"], protocol="UDP"),
    ]
    return services, slices


class Proxies:
    """One proxier per node, all fed the same objects."""

    def __init__(self, lab: ServiceLab, mode: str) -> None:
        self.lab = lab
        self.mode = mode
        self.proxiers = {
            n: Proxier(make_mode(mode, lab.node_netns(n), NodeInfo(n, node_ips=(lab.node_ip(n),))))
            for n in NODES
        }

    def apply(self, services, slices, full: bool = False) -> None:
        for p in self.proxiers.values():
            p.replace_all(services, slices)
            p.sync(full)

    def cleanup(self) -> None:
        for p in self.proxiers.values():
            p.mode.cleanup()


@pytest.fixture(scope="module", params=["iptables", "userspace"])
def proxies(request: pytest.FixtureRequest, lab: ServiceLab) -> Iterator[Proxies]:
    px = Proxies(lab, request.param)
    px.apply(*objects(lab), full=True)
    try:
        yield px
    finally:
        px.cleanup()


@pytest.fixture
def fresh(proxies: Proxies, lab: ServiceLab) -> Iterator[Proxies]:
    """The standard objects, restored after a test that changed them."""
    yield proxies
    proxies.apply(*objects(lab))


def test_cluster_ip_spreads_over_all_backends_from_every_node(proxies, lab):
    for pod in PODS:
        seen = spread(lab.pods[pod].netns, "10.96.0.10", 80, n=24)
        assert set(seen) == set(PODS), f"from {pod}: {seen}"


def test_node_port_from_the_client_on_every_node(proxies, lab):
    for node in NODES:
        answers = {tcp_ask(lab.client_netns, lab.node_ip(node), 30080)["pod"] for _ in range(6)}
        assert answers <= set(PODS) and answers


def test_client_ip_affinity_keeps_one_backend(proxies, lab):
    for pod in PODS:
        seen = spread(lab.pods[pod].netns, "10.96.0.11", 80, n=10)
        assert len(seen) == 1, f"from {pod}: {seen}"


def test_pod_reaches_itself_through_its_service(proxies, lab):
    assert tcp_ask(lab.pods["web-1"].netns, "10.96.0.13", 80)["pod"] == "web-1"


def test_service_without_endpoints_refuses_at_once(proxies, lab):
    with pytest.raises(ConnectionRefusedError):
        tcp_ask(lab.pods["web-1"].netns, "10.96.0.99", 80, timeout=3)


def test_external_local_policy_and_client_address(proxies, lab):
    reply = tcp_ask(lab.client_netns, lab.node_ip("node2"), 30081)
    assert reply["pod"] == "web-2"
    # Local policy: the backend sees the client (iptables: no SNAT; userspace: a transparent dial)
    assert reply["client"].split(":")[0] == lab.client_ip


def test_scale_down_stops_removed_backends_and_keeps_survivors(fresh, lab):
    netns = lab.pods["web-2"].netns
    conns = []
    while not any(reply["pod"] == "web-1" for _, reply in conns):
        conns.append(tcp_open(netns, "10.96.0.10", 80))
        assert len(conns) < 40
    survivor = next(s for s, reply in conns if reply["pod"] == "web-1")
    fresh.apply(*objects(lab, web=["web-1"]))
    assert set(spread(netns, "10.96.0.10", 80, n=12)) == {"web-1"}
    survivor.sendall(b"still there\n")
    assert survivor.recv(100) == b"still there\n"
    for s, _ in conns:
        s.close()


def test_udp_follows_endpoint_removal(fresh, lab):
    sock = udp_socket(lab.pods["web-1"].netns)
    try:
        first = udp_ask(sock, "10.96.0.53", 53)["pod"]
        assert first in ("web-2", "web-3")
        other = "web-3" if first == "web-2" else "web-2"
        fresh.apply(*objects(lab, dns=[other]))
        # the same socket (same conntrack tuple or relay session) must move to the survivor
        assert udp_ask(sock, "10.96.0.53", 53)["pod"] == other
    finally:
        sock.close()


def test_full_resyncs_keep_one_copy_of_each_jump(proxies, lab):
    from netlab.kernel.iptables import iptables_save
    from proxy.iptables.render import JUMP_RULES, rule_text
    from proxy.userspace.portals import JUMP_RULES as PORTAL_JUMPS

    p = proxies.proxiers["node1"]
    p.sync(True)
    p.sync(True)
    jumps = JUMP_RULES if proxies.mode == "iptables" else PORTAL_JUMPS
    for table, chain, spec in jumps:
        lines = iptables_save(lab.node_netns("node1"), table).splitlines()
        assert lines.count(rule_text(chain, spec)) == 1, (table, chain, spec)
