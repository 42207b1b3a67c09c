"""Golden files for the iptables renderer: one per feature of kube-proxy's layout."""

from __future__ import annotations

import pytest

from proxy.iptables import render as r
from proxy.mode import NodeInfo
from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot
from tests.unit.proxy.golden import check_golden

NODE = NodeInfo("node1", cluster_cidr="10.244.0.0/16")
WEB = ServicePortName("default", "web", "http", "TCP")
DNS = ServicePortName("kube-system", "dns", "dns", "UDP")


def ep(ip: str, node: str = "node1", port: int = 8080, **kw) -> Endpoint:
    return Endpoint(ip, port, node, **kw)


def snap(svc: ServicePort, *eps: Endpoint) -> Snapshot:
    return Snapshot({svc.name: svc}, {svc.name: eps})


def web(**kw) -> ServicePort:
    return ServicePort(name=WEB, cluster_ip="10.96.0.10", port=80, **kw)


CASES = {
    "clusterip": snap(web(), ep("10.244.1.5"), ep("10.244.2.7", "node2")),
    # a pod reaching itself through its Service: the SEP chain marks traffic from the endpoint
    # itself for masquerade, so the reply comes back through the node and is un-NATed
    "hairpin": snap(web(), ep("10.244.1.5")),
    "three_endpoints": snap(web(), ep("10.244.1.5"), ep("10.244.2.7", "node2"), ep("10.244.3.9", "node3")),
    "affinity": snap(web(affinity_timeout=10800), ep("10.244.1.5"), ep("10.244.2.7", "node2")),
    "nodeport": snap(web(node_port=30080), ep("10.244.1.5"), ep("10.244.2.7", "node2")),
    "nodeport_local": snap(
        web(node_port=30080, external_local=True), ep("10.244.1.5"), ep("10.244.2.7", "node2")
    ),
    "nodeport_local_remote_only": snap(web(node_port=30080, external_local=True), ep("10.244.2.7", "node2")),
    "no_endpoints": snap(web(node_port=30080)),
    "udp": snap(
        ServicePort(name=DNS, cluster_ip="10.96.0.53", port=53, node_port=30053),
        ep("10.244.1.5", port=5353),
        ep("10.244.2.7", "node2", port=5353),
    ),
    "external_ips": snap(
        web(external_ips=("192.168.56.200",), load_balancer_ips=("192.168.56.201",)), ep("10.244.1.5")
    ),
    "terminating_fallback": snap(
        web(),
        ep("10.244.1.5", ready=False, serving=True, terminating=True),
        ep("10.244.2.7", "node2", ready=False, serving=False, terminating=True),
    ),
    "internal_local": snap(web(internal_local=True), ep("10.244.1.5"), ep("10.244.2.7", "node2")),
    "internal_local_remote_only": snap(web(internal_local=True), ep("10.244.2.7", "node2")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_sync_golden(case):
    check_golden(f"iptables/{case}.txt", r.restore_text(r.render(CASES[case], NODE), None))


def test_empty_snapshot_writes_only_fixed_chains():
    check_golden("iptables/empty.txt", r.restore_text(r.render(Snapshot(), NODE), None))


def test_partial_sync_writes_changed_chains_and_deletes_stale():
    db = ServicePort(ServicePortName("default", "db", "", "TCP"), "10.96.0.20", 5432)
    before = Snapshot(
        {WEB: web(), db.name: db},
        {
            WEB: (ep("10.244.1.5"), ep("10.244.2.7", "node2"), ep("10.244.3.9")),
            db.name: (ep("10.244.1.8", port=5432),),
        },
    )
    after = Snapshot(
        {WEB: web(), db.name: db}, {WEB: (ep("10.244.1.5"),), db.name: before.endpoints[db.name]}
    )
    applied = r.render(before, NODE)
    text = r.restore_text(r.render(after, NODE), applied)
    check_golden("iptables/partial_scale_down.txt", text)
    # the unchanged service and the unchanged dispatch chain are not touched
    assert "KUBE-SERVICES" not in text and r.service_chain("KUBE-SVC-", db.name) not in text
    # nothing changed: nothing to write
    assert r.restore_text(applied, applied) == ""


def test_partial_sync_deleting_a_service():
    before = CASES["nodeport"]
    text = r.restore_text(r.render(Snapshot(), NODE), r.render(before, NODE))
    check_golden("iptables/partial_service_deleted.txt", text)


def test_full_sync_deletes_leftover_chains_found_in_the_kernel():
    leftovers = [
        ("nat", "KUBE-SVC-LEFTOVERLEFTOVER"),
        ("nat", "KUBE-SEP-LEFTOVERLEFTOVER"),
        ("nat", "CNI-abc"),
    ]
    text = r.restore_text(r.render(Snapshot(), NODE), None, leftovers)
    assert "-X KUBE-SVC-LEFTOVERLEFTOVER" in text and "-X KUBE-SEP-LEFTOVERLEFTOVER" in text
    assert "CNI-abc" not in text


def _restore_effect(text: str) -> dict[str, dict[str, object]]:
    """What restore input does, per table: chains declared, rules per chain, deletions, inserts."""
    out: dict[str, dict[str, object]] = {}
    table: dict[str, object] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            empty = {"declared": set(), "rules": {}, "deleted": set(), "inserts": []}
            table = out.setdefault(line[1:], empty)
        elif line.startswith(":"):
            table["declared"].add(line[1:].split()[0])  # type: ignore[attr-defined]
        elif line.startswith("-A "):
            table["rules"].setdefault(line.split()[1], []).append(line)  # type: ignore[attr-defined]
        elif line.startswith("-X "):
            table["deleted"].add(line.split()[1])  # type: ignore[attr-defined]
        elif line.startswith("-I "):
            table["inserts"].append(line)  # type: ignore[attr-defined]
    return out


def _declared_before_use(text: str) -> None:
    declared: set[tuple[str, str]] = set()
    table = ""
    for line in text.splitlines():
        words = line.split()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            declared.add((table, words[0][1:]))
        elif line.startswith(("-A ", "-I ")):
            if line.startswith("-A "):
                assert (table, words[1]) in declared, line
            target = words[words.index("-j") + 1]
            assert not target.startswith("KUBE-") or (table, target) in declared, line


LEFTOVERS = [
    ("nat", "KUBE-SVC-LEFTOVERLEFTOVER"),
    ("nat", "KUBE-SEP-LEFTOVERLEFTOVER"),
    ("filter", "KUBE-FW-LEFTOVERLEFTOVER"),
    ("nat", "CNI-abc"),
    ("nat", "KUBE-SERVICES"),
]


@pytest.mark.parametrize("case", ["empty", *CASES])
@pytest.mark.parametrize("jumps", [(), r.JUMP_RULES])
def test_streamed_full_sync_does_what_restore_text_does(case, jumps):
    snapshot = Snapshot() if case == "empty" else CASES[case]
    ports = [
        r.render_service_port(snapshot.services[spn], snapshot.endpoints_of(spn), NODE)
        for spn in sorted(snapshot.services)
    ]
    asked = []

    def kernel_state():
        asked.append(True)
        return LEFTOVERS, jumps

    streamed = "".join(r.full_restore_chunks(iter(ports), kernel_state))
    expected = r.insert_jumps(r.restore_text(r.assemble(ports), None, LEFTOVERS), jumps)
    assert asked == [True]
    assert _restore_effect(streamed) == _restore_effect(expected)
    _declared_before_use(streamed)
    assert "-X KUBE-SVC-LEFTOVERLEFTOVER" in streamed and "CNI-abc" not in streamed


def test_streamed_full_sync_asks_for_the_kernel_state_after_the_last_port():
    ports = [r.render_service_port(svc, CASES["nodeport"].endpoints_of(spn), NODE)
             for spn, svc in CASES["nodeport"].services.items()]  # fmt: skip
    pieces = []

    def kernel_state():
        pieces.append("kernel state")
        return (), ()

    def rendered():
        for pr in ports:
            pieces.append("port")
            yield pr

    for _ in r.full_restore_chunks(rendered(), kernel_state):
        pieces.append("chunk")
    # each port's chains go out before the next port renders; the state comes last
    assert pieces[:4] == ["chunk", "port", "chunk", "kernel state"]


def test_chain_names_follow_kube_proxy():
    # KUBE-SVC-/SEP- + 16 characters of base32(sha256(...)): 25 characters, within 28
    svc = r.service_chain("KUBE-SVC-", WEB)
    sep = r.endpoint_chain(WEB, ep("10.244.1.5"))
    assert len(svc) == len(sep) == 25 and svc.isupper() and sep.startswith("KUBE-SEP-")
    assert r.service_chain("KUBE-EXT-", WEB)[9:] == svc[9:]


def test_probabilities_have_ten_decimals():
    eps = tuple(ep(f"10.244.1.{i}") for i in range(1, 5))
    rules = r.render_service_port(web(), eps, NODE).chains[("nat", r.service_chain("KUBE-SVC-", WEB))]
    probs = [line.split("--probability ")[1].split()[0] for line in rules if "--probability" in line]
    assert probs == ["0.2500000000", "0.3333333333", "0.5000000000"]
    assert "statistic" not in rules[-1]


def test_large_clusters_drop_endpoint_comments():
    eps = tuple(ep(f"10.244.{i // 250}.{i % 250 + 1}") for i in range(r.LARGE_CLUSTER_ENDPOINTS + 1))
    s = snap(web(), *eps)
    assert r.is_large(s)
    chains = r.render(s, NODE)
    sep = chains[("nat", r.endpoint_chain(WEB, eps[0]))]
    assert all("comment" not in line for line in sep)
    assert not any("->" in line for line in chains[("nat", r.service_chain("KUBE-SVC-", WEB))])


def test_jump_rules_are_checked_in_save_format_and_inserted_in_the_restore():
    present = r.rule_text("PREROUTING", r.JUMP_RULES[0][2])
    assert present == '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    missing = r.missing_jumps(r.JUMP_RULES, {"nat": f"*nat\n{present}\nCOMMIT\n"})
    assert r.JUMP_RULES[0] not in missing and len(missing) == len(r.JUMP_RULES) - 1
    text = r.insert_jumps(r.restore_text(r.render(Snapshot(), NODE), None), missing)
    check_golden("iptables/full_with_jumps.txt", text)


@pytest.mark.parametrize("case", ["scale_down", "service_deleted", "service_added"])
def test_reassemble_gives_the_same_partial_restore_as_a_full_assemble(case):
    db = ServicePort(ServicePortName("default", "db", "", "TCP"), "10.96.0.20", 5432, node_port=30432)
    web_eps = (ep("10.244.1.5"), ep("10.244.2.7", "node2"))
    before = Snapshot({WEB: web(), db.name: db}, {WEB: web_eps, db.name: (ep("10.244.1.8", port=5432),)})
    if case == "scale_down":
        after = Snapshot(before.services, {**before.endpoints, WEB: web_eps[:1]})
    elif case == "service_deleted":
        after = Snapshot({WEB: web()}, {WEB: web_eps})
    else:
        after = Snapshot({**before.services, DNS: ServicePort(DNS, "10.96.0.53", 53)}, before.endpoints)
    changed = {
        k for k in set(before.services) | set(after.services) if k not in (WEB,) or case == "scale_down"
    }
    old_ports = {
        k: r.render_service_port(v, before.endpoints_of(k), NODE) for k, v in before.services.items()
    }
    new_ports = {k: r.render_service_port(v, after.endpoints_of(k), NODE) for k, v in after.services.items()}
    applied = r.assemble(old_ports[k] for k in sorted(old_ports))
    expect = r.restore_text(r.assemble(new_ports[k] for k in sorted(new_ports)), applied)
    desired, only = r.reassemble(
        applied,
        (new_ports[k] for k in sorted(new_ports)),
        [old_ports[k] for k in changed if k in old_ports],
        [new_ports[k] for k in changed if k in new_ports],
    )
    assert r.restore_text(desired, applied, only=only) == expect != ""
