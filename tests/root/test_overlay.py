"""flanneld for real: three node namespaces, a real etcd, VXLAN and host-gw, failures."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from netlab import kernel
from netlab.kernel import Rtnl
from netlab.lab import processes
from netlab.layout import Layout
from netlab.overlay.config import make_config
from tests.root.conftest import one_line_error
from tests.root.overlaylab import Iperf, OverlayLab, ping, tcp_transfer, wait_for

pytestmark = [pytest.mark.root, pytest.mark.etcd]


@pytest.fixture
def lab(layout: Layout, etcd_server) -> Iterator[OverlayLab]:  # type: ignore[no-untyped-def]
    lab = OverlayLab(layout, etcd_server.url)
    try:
        yield lab
    finally:
        lab.close()
        assert [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)] == []
        assert processes.list_running(layout) == []


def test_vxlan_three_nodes(lab: OverlayLab) -> None:
    lab.up()
    for node in lab.nodes:
        lab.start_flanneld(node)
    subnets = {node: lab.subnet(node) for node in lab.nodes}
    assert len(set(subnets.values())) == 3

    # etcd holds flannel's layout
    kvs = lab.client.range("/coreos.com/network/", prefix=True).kvs
    keys = {kv.key: kv for kv in kvs}
    assert json.loads(keys["/coreos.com/network/config"].value)["Backend"]["Type"] == "vxlan"
    macs = {}
    for i, node in enumerate(lab.nodes, start=1):
        sn = subnets[node]
        kv = keys[f"/coreos.com/network/subnets/{sn.network_address}-24"]
        value = json.loads(kv.value)
        assert set(value) == {"PublicIP", "PublicIPv6", "BackendType", "BackendData"}
        assert value["PublicIP"] == f"192.168.56.1{i}" and value["PublicIPv6"] is None
        assert value["BackendType"] == "vxlan" and value["BackendData"]["VNI"] == 1
        assert kv.lease != 0 and lab.client.lease_time_to_live(kv.lease).granted_ttl == 86400
        with Rtnl(lab.netns(node)) as r:
            dev = r.get_link("flannel.1")
            assert dev.mtu == 1450 and dev.up
            assert r.addresses("flannel.1") == [f"{sn.network_address}/32"]
        macs[node] = dev.mac
        assert value["BackendData"]["VtepMAC"] == dev.mac
        details = kernel.run(lab.netns(node), ["ip", "-d", "link", "show", "flannel.1"]).stdout
        assert f"vxlan id 1 local 192.168.56.1{i} dev eth0" in details and "dstport 8472" in details
        assert "nolearning" in details
        assert kernel.get_offloads(lab.netns(node), "flannel.1")["tx-checksum-ip-generic"] is False
        env = lab.subnet_file(node).read_text()
        assert env == (
            f"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={sn.network_address + 1}/24\n"
            "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        )

    # each node has exactly one route, neighbour and FDB entry per peer
    for node in lab.nodes:
        state = lab.peer_state(node)
        peers = [(j, n) for j, n in enumerate(lab.nodes, start=1) if n != node]
        assert state["routes"] == {str(subnets[n]): str(subnets[n].network_address) for _, n in peers}
        assert state["neigh"] == {str(subnets[n].network_address): macs[n] for _, n in peers}
        assert state["fdb"] == {macs[n]: f"192.168.56.1{j}" for j, n in peers}

    pods = [lab.pod(node, f"p{i}") for i, node in enumerate(lab.nodes, start=1)]
    for a in pods:
        for b in pods:
            if a is not b:
                assert ping(a.netns, b.ip), f"{a.name} ({a.node}) -> {b.name} ({b.node})"
    # full-size packets fit the overlay MTU, one byte more does not (DF set)
    assert (
        kernel.run(
            pods[0].netns, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", pods[1].ip], check=False
        ).returncode
        == 0
    )
    assert (
        kernel.run(
            pods[0].netns, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1423", pods[1].ip], check=False
        ).returncode
        != 0
    )
    for a, b in ((pods[0], pods[1]), (pods[1], pods[2]), (pods[2], pods[0])):
        assert tcp_transfer(a, b) == 2_000_000

    # on the underlay the packets are VXLAN carrying the pods' own addresses
    pcap = lab.layout.run_dir / "underlay.pcap"
    cap = subprocess.Popen(
        kernel.in_netns(
            lab.layout.underlay_netns,
            ["tcpdump", "-i", "br0", "-U", "-c", "4", "-w", str(pcap), "udp port 8472"],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cap.stderr is not None
    assert "listening" in cap.stderr.readline()
    assert ping(pods[0].netns, pods[2].ip, count=2)
    cap.wait(timeout=30)
    fields = kernel.run(
        None,
        [
            "tshark",
            "-r",
            str(pcap),
            "-d",
            "udp.port==8472,vxlan",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "vxlan.vni",
            "-e",
            "icmp.type",
        ],
    ).stdout.split("\n")
    rows = [line.split("\t") for line in fields if line]
    assert rows, "nothing captured"
    for src, dst, vni, _icmp in rows:
        assert vni == "1"
        outer_src, inner_src = src.split(",")
        outer_dst, inner_dst = dst.split(",")
        assert {outer_src, outer_dst} == {"192.168.56.11", "192.168.56.13"}
        assert {inner_src, inner_dst} == {pods[0].ip, pods[2].ip}


def test_host_gw(lab: OverlayLab) -> None:
    lab.up(make_config("10.244.0.0/16", backend="host-gw"))
    for node in lab.nodes:
        lab.start_flanneld(node)
    subnets = {node: lab.subnet(node) for node in lab.nodes}
    for i, node in enumerate(lab.nodes, start=1):
        state = lab.peer_state(node)
        assert state["routes"] == {
            str(subnets[n]): f"192.168.56.1{j}" for j, n in enumerate(lab.nodes, start=1) if n != node
        }
        with Rtnl(lab.netns(node)) as r:
            assert r.link_index("flannel.1") is None
        value = json.loads(
            lab.client.get(f"/coreos.com/network/subnets/{subnets[node].network_address}-24").value
        )  # type: ignore[union-attr]
        assert value == {"PublicIP": f"192.168.56.1{i}", "PublicIPv6": None, "BackendType": "host-gw"}
        assert "FLANNEL_MTU=1500" in lab.subnet_file(node).read_text()
    pods = [lab.pod(node, f"h{i}") for i, node in enumerate(lab.nodes, start=1)]
    for a in pods:
        for b in pods:
            if a is not b:
                assert ping(a.netns, b.ip)
    assert tcp_transfer(pods[0], pods[2]) == 2_000_000
    # a node that leaves takes its route with it everywhere
    lab.stop_flanneld(lab.nodes[2])
    for node in lab.nodes[:2]:
        wait_for(lambda node=node: str(subnets[lab.nodes[2]]) not in lab.peer_state(node)["routes"])


def test_restart_keeps_subnet_and_others_keep_talking(lab: OverlayLab) -> None:
    lab.up()
    for node in lab.nodes:
        lab.start_flanneld(node)
    n1, n2, n3 = lab.nodes
    before = lab.subnet(n1)
    p2, p3 = lab.pod(n2, "r2"), lab.pod(n3, "r3")
    transfer = Iperf(p3, p2, seconds=4)
    try:
        lab.stop_flanneld(n1)
        lab.start_flanneld(n1)
        result = transfer.result()
    finally:
        transfer.close()
    assert lab.subnet(n1) == before
    end = result["end"]
    assert isinstance(end, dict) and end["sum_received"]["bytes"] > 0
    # the restarted node is programmed again everywhere, and reachable
    p1 = lab.pod(n1, "r1")
    for node in (n2, n3):
        wait_for(lambda node=node: str(before) in lab.peer_state(node)["routes"])
    assert ping(p2.netns, p1.ip) and ping(p1.netns, p3.ip)
    # killed without a clean shutdown, it takes back its subnet by PublicIP
    lab.kill_flanneld(n1)
    lab.start_flanneld(n1)
    assert lab.subnet(n1) == before
    assert ping(p3.netns, p1.ip)


def test_expired_lease_is_removed_on_every_peer(lab: OverlayLab) -> None:
    lab.up()
    n1, n2, n3 = lab.nodes
    lab.start_flanneld(n1)
    lab.start_flanneld(n2)
    lab.start_flanneld(n3, "--lease-ttl", "3")
    gone = lab.subnet(n3)
    for node in (n1, n2):
        state = lab.peer_state(node)
        assert str(gone) in state["routes"] and str(gone.network_address) in state["neigh"]
    # while flanneld runs, the short lease is renewed: its remaining TTL goes back up
    kv = lab.client.get(f"/coreos.com/network/subnets/{gone.network_address}-24")
    assert kv is not None
    seen: list[int] = []

    def renewed() -> bool:
        seen.append(lab.client.lease_time_to_live(kv.lease).ttl)
        return len(seen) > 1 and seen[-1] > min(seen)

    wait_for(renewed, timeout=15, what="a renewal")
    lab.kill_flanneld(n3)  # no clean shutdown: only expiry removes the lease

    def no_trace(node: str) -> bool:
        s = lab.peer_state(node)
        return (
            str(gone) not in s["routes"]  # type: ignore[operator]
            and str(gone.network_address) not in s["neigh"]  # type: ignore[operator]
            and "192.168.56.13" not in s["fdb"].values()  # type: ignore[attr-defined]
        )

    for node in (n1, n2):
        wait_for(lambda node=node: no_trace(node), timeout=30, what=f"{n3} removed on {node}")
        state = lab.peer_state(node)
        assert len(state["routes"]) == len(state["neigh"]) == len(state["fdb"]) == 1  # type: ignore[arg-type]
    assert lab.client.get(f"/coreos.com/network/subnets/{gone.network_address}-24") is None
    p1, p2 = lab.pod(n1, "e1"), lab.pod(n2, "e2")
    assert ping(p1.netns, p2.ip)


def test_racing_flanneld_on_a_nearly_full_range(lab: OverlayLab) -> None:
    # four subnets; two are reserved for other nodes: the two racers must share the rest
    lab.up(make_config("10.244.0.0/16", subnet_len=24, subnet_min="10.244.1.0", subnet_max="10.244.4.0"))
    for sn, ip in (("10.244.2.0", "192.168.56.200"), ("10.244.3.0", "192.168.56.201")):
        lab.client.put(f"/coreos.com/network/subnets/{sn}-24", json.dumps({"PublicIP": ip}))
    n1, n2, n3 = lab.nodes
    lab.start_flanneld(n1, wait=False)
    lab.start_flanneld(n2, wait=False)
    lab.wait_ready(n1)
    lab.wait_ready(n2)
    got = {lab.subnet(n1), lab.subnet(n2)}
    assert got == {IPv4Network("10.244.1.0/24"), IPv4Network("10.244.4.0/24")}
    # the range is now exhausted: a clear error, and the node is left as it was
    line = one_line_error(lab.run_flanneld(n3))
    assert "out of subnets: all 4 /24 subnets in 10.244.1.0-10.244.4.0 of 10.244.0.0/16" in line
    assert not lab.subnet_file(n3).exists()
    with Rtnl(lab.netns(n3)) as r:
        assert r.link_index("flannel.1") is None


def test_etcd_outage(lab: OverlayLab, etcd_server) -> None:  # type: ignore[no-untyped-def]
    lab.up()
    n1, n2, n3 = lab.nodes
    lab.start_flanneld(n1)
    lab.start_flanneld(n2)
    p1, p2 = lab.pod(n1, "o1"), lab.pod(n2, "o2")
    transfer = Iperf(p2, p1, seconds=4)
    try:
        etcd_server.stop()
        assert ping(p1.netns, p2.ip) and ping(p2.netns, p1.ip)
        result = transfer.result()
    finally:
        transfer.close()
    assert result["end"]["sum_received"]["bytes"] > 0  # type: ignore[index]
    for node in (n1, n2):
        assert processes.running(lab.layout, f"flanneld-{node}")
    wait_for(lambda: "lease watch" in lab.log(n1), what="the outage noticed")
    etcd_server.start()
    # a node that joins after the outage is picked up by the others
    lab.start_flanneld(n3)
    s3 = lab.subnet(n3)
    for node in (n1, n2):
        wait_for(lambda node=node: str(s3) in lab.peer_state(node)["routes"], what=f"{node} sees {n3}")
    p3 = lab.pod(n3, "o3")
    assert ping(p1.netns, p3.ip) and ping(p3.netns, p2.ip)


def test_bad_input(lab: OverlayLab, etcd_server) -> None:  # type: ignore[no-untyped-def]
    lab.up()
    n1 = lab.nodes[0]

    def run(*argv: str) -> str:
        return one_line_error(lab.run_flanneld(n1, *argv))

    lab.client.put("/coreos.com/network/config", b'{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}')
    assert "Backend.Type: unknown backend 'udp'" in run()
    lab.client.put(
        "/coreos.com/network/config", b'{"Network":"10.244.0.0/16","SubnetLen":15,"Backend":{"Type":"vxlan"}}'
    )
    assert "SubnetLen: /15 does not fit 10.244.0.0/16" in run()
    lab.client.delete("/coreos.com/network/config")
    assert "no network config at /coreos.com/network/config" in run()
    assert run("--iface", "nope0") == f"error: --iface: no interface nope0 in {lab.netns(n1)}"
    etcd_server.stop()
    assert run() == f"error: etcd at {etcd_server.url} is unreachable: connection refused"
    with Rtnl(lab.netns(n1)) as r:
        assert r.link_index("flannel.1") is None
    assert not lab.subnet_file(n1).exists()


def test_vxlan_direct_routing(lab: OverlayLab) -> None:
    # flannel's DirectRouting: peers on the same underlay network get plain routes, no tunnel
    config = make_config("10.244.0.0/16")
    raw = json.loads(config.render())
    raw["Backend"]["DirectRouting"] = True
    lab.up()
    lab.client.put("/coreos.com/network/config", json.dumps(raw))
    n1, n2 = lab.nodes[:2]
    lab.start_flanneld(n1)
    lab.start_flanneld(n2)
    s2 = lab.subnet(n2)
    state = lab.peer_state(n1)
    assert state["routes"] == {str(s2): "192.168.56.12"} and state["neigh"] == {} and state["fdb"] == {}
    with Rtnl(lab.netns(n1)) as r:
        assert r.link_index("flannel.1") is not None  # still there for peers elsewhere
    p1, p2 = lab.pod(n1, "d1"), lab.pod(n2, "d2")
    assert ping(p1.netns, p2.ip) and tcp_transfer(p1, p2) == 2_000_000


def test_deleted_device_is_recreated_and_peers_follow(lab: OverlayLab) -> None:
    lab.up()
    n1, n2 = lab.nodes[:2]
    lab.start_flanneld(n1)
    lab.start_flanneld(n2)
    s1 = lab.subnet(n1)
    p1, p2 = lab.pod(n1, "v1"), lab.pod(n2, "v2")
    with Rtnl(lab.netns(n1)) as r:
        old_mac = r.get_link("flannel.1").mac
        r.delete_link("flannel.1")
    assert not ping(p2.netns, p1.ip)

    def recreated() -> bool:
        with Rtnl(lab.netns(n1)) as r:
            index = r.link_index("flannel.1")
            return index is not None and r.get_link(index).mac != old_mac

    wait_for(recreated, what="flannel.1 recreated")
    with Rtnl(lab.netns(n1)) as r:
        new_mac = r.get_link("flannel.1").mac

    # the lease carries the new MAC, the peer replaced its neighbour and FDB entries in place
    def published() -> bool:
        kv = lab.client.get(f"/coreos.com/network/subnets/{s1.network_address}-24")
        return kv is not None and json.loads(kv.value)["BackendData"]["VtepMAC"] == new_mac

    wait_for(published, what="the new MAC in the lease")
    wait_for(lambda: lab.peer_state(n2)["neigh"] == {str(s1.network_address): new_mac}, what="peer updated")
    assert lab.peer_state(n2)["fdb"] == {new_mac: "192.168.56.11"}
    assert lab.subnet(n1) == s1
    wait_for(lambda: ping(p2.netns, p1.ip) and ping(p1.netns, p2.ip), what="pods reach each other again")
