"""Both iptables backends end up with the rendered chains after full, repeated and partial syncs.

The legacy backend gets a full sync's input streamed in dependency order, nft the classic
layout in one piece; either way the kernel must hold exactly the chains `render` describes,
each with its rules, the jumps once, and no leftover of an earlier run.
"""

from __future__ import annotations

import pytest

from netlab import kernel
from netlab.kernel.iptables import iptables_restore, iptables_save
from proxy.iptables import render as r
from proxy.iptables.mode import IptablesMode
from proxy.mode import NodeInfo
from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot

pytestmark = pytest.mark.root

NODE = NodeInfo("node1")
LEFTOVER = "KUBE-SVC-LEFTOVERLEFTOVER"


def snapshot(names: list[int], moved: int | None = None) -> Snapshot:
    services, endpoints = {}, {}
    for i in names:
        spn = ServicePortName("default", f"svc{i}", "http", "TCP")
        affinity = 10800 if i % 4 == 0 else None
        services[spn] = ServicePort(
            spn, f"10.96.0.{i}", 80, node_port=30000 + i if i % 3 == 0 else None, affinity_timeout=affinity
        )
        first = "10.244.9.9" if i == moved else f"10.244.1.{i}"
        endpoints[spn] = (Endpoint(first, 8080, "node1"), Endpoint(f"10.244.2.{i}", 8080, "node2"))
    return Snapshot(services, endpoints)


def kernel_view(netns: str, backend: str) -> tuple[dict[tuple[str, str], int], list[str], list[str]]:
    """KUBE chains with their rule counts, the DNAT destinations, and the jump rules."""
    chains: dict[tuple[str, str], int] = {}
    dnat, jumps = [], []
    for table in ("filter", "nat"):
        for line in iptables_save(netns, table, backend).splitlines():
            words = line.split()
            if line.startswith(":KUBE-"):
                chains.setdefault((table, words[0][1:]), 0)
            elif line.startswith("-A KUBE-"):
                chains[(table, words[1])] = chains.get((table, words[1]), 0) + 1
                if "DNAT" in words:
                    dnat.append(words[-1])
            elif line.startswith("-A ") and "-j KUBE-" in line:
                jumps.append(f"{table} {words[1]} {words[-1]}")
    return chains, sorted(dnat), sorted(jumps)


def expected(snap: Snapshot) -> tuple[dict[tuple[str, str], int], list[str], list[str]]:
    desired = r.render(snap, NODE)
    chains = {key: len(rules) for key, rules in desired.items()}
    dnat = sorted(line.split()[-1] for rules in desired.values() for line in rules if "-j DNAT" in line)
    jumps = sorted(f"{table} {chain} {spec[-1]}" for table, chain, spec in r.JUMP_RULES)
    return chains, dnat, jumps


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_full_resync_and_partial_syncs_leave_exactly_the_rendered_chains(layout, backend):
    netns = f"{layout.prefix}ipt-{backend}"
    kernel.ensure_netns(netns)
    iptables_restore(netns, f"*nat\n:{LEFTOVER} - [0:0]\n-A {LEFTOVER} -j RETURN\nCOMMIT\n", backend)
    mode = IptablesMode(netns, NODE, backend)
    try:
        first = snapshot(list(range(1, 41)))
        mode.sync(first, None)
        assert kernel_view(netns, backend) == expected(first)
        mode.sync(first, None)  # a periodic resync over loaded rules: jumps stay single
        assert kernel_view(netns, backend) == expected(first)
        # one endpoint moves, one service goes, one comes
        second = snapshot([*range(2, 41), 50], moved=7)
        changed = frozenset(set(first.services) ^ set(second.services)) | {
            spn for spn in second.services if spn.name == "svc7"
        }
        mode.sync(second, changed)
        assert kernel_view(netns, backend) == expected(second)
    finally:
        mode.close()
        kernel.delete_netns(netns)
