"""Switching proxy modes on a running lab, and cleaning up after each mode."""

from __future__ import annotations

import pytest

from netlab import kernel
from netlab.kernel.iptables import iptables_save
from proxy.mode import NodeInfo
from proxy.modes import make_mode
from proxy.proxier import Proxier
from tests.root.svclab import service_lab, spread, tcp_ask

pytestmark = pytest.mark.root


def kube_rules(netns: str) -> str:
    return "\n".join(
        line
        for backend in ("legacy", "nft")
        for table in ("nat", "filter")
        for line in iptables_save(netns, table, backend).splitlines()
        if "KUBE-" in line
    )


def test_switching_modes_keeps_services_and_leaves_nothing_of_the_old_mode(layout):
    with service_lab(layout, nodes=2) as lab:
        lab.add_pod("web-1", "node1")
        lab.add_pod("web-2", "node2")
        lab.wait_ready()
        objs = (
            [lab.service("web", "10.96.0.10", node_port=30080)],
            [lab.endpoint_slice("web", ["web-1", "web-2"])],
        )
        proxiers = {}
        for n in ("node1", "node2"):
            info = NodeInfo(n, node_ips=(lab.node_ip(n),))
            proxiers[n] = p = Proxier(make_mode("iptables", lab.node_netns(n), info))
            p.replace_all(*objs)
            p.sync(True)

        def reachable() -> None:
            assert set(spread(lab.pods["web-1"].netns, "10.96.0.10", 80, n=16)) == {"web-1", "web-2"}
            for n in proxiers:
                assert tcp_ask(lab.client_netns, lab.node_ip(n), 30080)["pod"] in ("web-1", "web-2")

        reachable()
        for target in ("userspace", "iptables", "userspace"):
            for n, p in proxiers.items():
                p.switch_mode(make_mode(target, lab.node_netns(n), NodeInfo(n, node_ips=(lab.node_ip(n),))))
            reachable()
            for n in proxiers:
                rules = kube_rules(lab.node_netns(n))
                if target == "userspace":
                    assert "KUBE-SVC-" not in rules and "KUBE-SERVICES" not in rules
                    assert "KUBE-PORTALS-CONTAINER" in rules
                else:
                    assert "KUBE-PORTALS" not in rules and "KUBE-NODEPORT-" not in rules
                    assert "KUBE-SVC-" in rules
                    assert kernel.run(lab.node_netns(n), ["ss", "-Htln"]).stdout.strip() == ""

        for n, p in proxiers.items():
            p.mode.cleanup()
            assert kube_rules(lab.node_netns(n)) == ""
            assert kernel.run(lab.node_netns(n), ["ss", "-Htlnu"]).stdout.strip() == ""
