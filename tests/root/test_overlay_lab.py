"""`netlab up` with the overlay: etcd, each node agent's flanneld, leases in status, bad input, down."""

from __future__ import annotations

import json
import socket

import pytest

from netlab import kernel
from netlab.etcd import EtcdClient
from netlab.etcd.server import free_port, port_free
from netlab.kernel import Rtnl
from netlab.lab import agent, processes
from netlab.layout import Layout
from tests.root.conftest import Cli, one_line_error

pytestmark = [pytest.mark.root, pytest.mark.etcd]


def lab_netns(layout: Layout) -> list[str]:
    return [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)]


def assert_nothing_left(layout: Layout) -> None:
    assert lab_netns(layout) == []
    assert processes.list_running(layout) == []
    assert not layout.run_dir.exists() and not layout.state_dir.exists()


def test_up_host_gw_with_users_etcd(cli: Cli, layout: Layout, etcd_server) -> None:  # type: ignore[no-untyped-def]
    cli("up", "--nodes", "3", "--backend", "host-gw", "--etcd", etcd_server.url)
    running = {r.name for r in processes.list_running(layout)}
    assert {"agent-node1", "agent-node2", "agent-node3"} <= running and "etcd" not in running
    for i in (1, 2, 3):  # each node's flanneld is its agent's
        status = agent.read_status(layout, f"node{i}")
        assert status is not None and status.child("flanneld").pid is not None
    with EtcdClient(etcd_server.url) as c:
        config = json.loads(c.get("/coreos.com/network/config").value)  # type: ignore[union-attr]
        assert config == {
            "Network": "10.244.0.0/16",
            "SubnetLen": 24,
            "SubnetMin": "10.244.1.0",
            "SubnetMax": "10.244.255.0",
            "Backend": {"Type": "host-gw"},
        }
        keys = sorted(kv.key for kv in c.range("/coreos.com/network/subnets/", prefix=True).kvs)
    # each node got the subnet the topology planned for it
    assert keys == [f"/coreos.com/network/subnets/10.244.{i}.0-24" for i in (1, 2, 3)]
    with Rtnl(layout.node_netns("node2")) as r:
        routes = {x.dst: x.gateway for x in r.routes()}
    assert routes["10.244.1.0/24"] == "192.168.56.11" and routes["10.244.3.0/24"] == "192.168.56.13"
    status = cli("status").stdout
    assert f"subnet leases (host-gw, etcd {etcd_server.url})" in status
    for i in (1, 2, 3):
        assert f"10.244.{i}.0/24" in status and f"192.168.56.1{i}" in status
    assert "23h59m" in status or "24h00m" in status

    cli("down")
    assert_nothing_left(layout)
    # the user's etcd is as it was: leases revoked, config removed
    with EtcdClient(etcd_server.url) as c:
        assert c.range("/coreos.com/", prefix=True).count == 0


def test_up_runs_its_own_etcd_and_down_stops_it(cli: Cli, layout: Layout) -> None:
    port = free_port()
    cli("up", "--nodes", "2", env=cli.env(NETLAB_ETCD_PORT=str(port)))
    etcd = processes.running(layout, "etcd")
    assert etcd is not None
    assert (layout.state_dir / "etcd" / "member").is_dir()
    with EtcdClient(f"http://127.0.0.1:{port}") as c:
        value = json.loads(c.get("/coreos.com/network/subnets/10.244.2.0-24").value)  # type: ignore[union-attr]
    with Rtnl(layout.node_netns("node2")) as r:
        mac = r.get_link("flannel.1").mac
    assert value == {
        "PublicIP": "192.168.56.12",
        "PublicIPv6": None,
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": mac},
    }
    env = (layout.node_run_dir("node1") / "subnet.env").read_text()
    assert "FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n" in env
    assert "VTEP MAC" in cli("status").stdout
    cli("down")
    assert_nothing_left(layout)
    assert port_free(port)  # etcd is gone


def test_bad_input_builds_nothing(cli: Cli, layout: Layout, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    line = one_line_error(cli("up", "--etcd", f"http://127.0.0.1:{port}", ok=False))
    assert line == f"error: etcd at http://127.0.0.1:{port} is unreachable: connection refused"
    assert "invalid etcd URL 'localhost:2379'" in one_line_error(
        cli("up", "--etcd", "localhost:2379", ok=False)
    )
    assert "'udp' is not one of" in one_line_error(cli("up", "--backend", "udp", ok=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        line = one_line_error(cli("up", env=cli.env(NETLAB_ETCD_PORT=str(busy)), ok=False))
        assert f"port {busy} on 127.0.0.1 is already in use" in line
    topo = tmp_path / "topo.yaml"
    topo.write_text("nodes: 2\npod_cidr: 10.96.0.0/16\n")
    line = one_line_error(cli("up", "--topology", str(topo), ok=False))
    assert "service_cidr: 10.96.0.0/12 overlaps pod_cidr 10.96.0.0/16" in line
    topo.write_text("nodes: 1\npod_cidr: 10.244.0.0/24\nnode_pod_prefix: 25\n")
    line = one_line_error(cli("up", "--topology", str(topo), ok=False))
    assert "SubnetLen: /25 does not fit 10.244.0.0/24 at least four times" in line
    assert lab_netns(layout) == [] and processes.list_running(layout) == []
    assert not layout.lab_file.exists()


def test_flanneld_failure_unwinds_up(cli: Cli, layout: Layout, etcd_server) -> None:  # type: ignore[no-untyped-def]
    # a config for another network already sits in the user's etcd: up refuses, leaves nothing
    with EtcdClient(etcd_server.url) as c:
        c.put("/coreos.com/network/config", b'{"Network":"10.50.0.0/16","Backend":{"Type":"vxlan"}}')
    line = one_line_error(cli("up", "--etcd", etcd_server.url, ok=False))
    assert "already holds a network config for 10.50.0.0/16 (vxlan)" in line
    assert_nothing_left(layout)
    with EtcdClient(etcd_server.url) as c:
        assert c.get("/coreos.com/network/config") is not None  # not ours to remove


@pytest.mark.parametrize("backend", ["vxlan", "host-gw"])
def test_sandboxes_on_three_nodes(cli: Cli, layout: Layout, backend: str) -> None:
    import subprocess

    from tests.root.overlaylab import Pod, tcp_transfer

    cli("up", "--nodes", "3", "--backend", backend)
    pods = []
    for i in (1, 2, 3):
        ip = cli("sandbox", "run", f"s{i}", "--node", f"node{i}").stdout.strip()
        assert ip == f"10.244.{i}.2"
        pods.append(Pod(f"s{i}", f"node{i}", layout.pod_netns(f"s{i}"), ip))
    for a in pods:
        for b in pods:
            if a is not b:
                assert (
                    cli("exec", a.name, "--", "ping", "-c", "1", "-W", "2", b.ip, ok=False).returncode == 0
                ), f"{a.name} -> {b.name}"
    for a, b in ((pods[0], pods[1]), (pods[1], pods[2]), (pods[2], pods[0])):
        assert tcp_transfer(a, b) == 2_000_000
    # leaving the pod network, pods are masqueraded by flanneld's rules (the client has no
    # route to the pods); inside it they keep their addresses (the capture below shows it)
    assert cli("exec", "s2", "--", "ping", "-c", "1", "-W", "2", "192.168.56.2", ok=False).returncode == 0
    assert "FLANNEL_IPMASQ=true" in (layout.node_run_dir("node2") / "subnet.env").read_text()
    assert (
        "FLANNEL-POSTRTG"
        in kernel.run(layout.node_netns("node2"), ["iptables-legacy-save", "-t", "nat"]).stdout
    )
    mtu = 1450 if backend == "vxlan" else 1500
    with Rtnl(pods[0].netns) as r:
        assert r.get_link("eth0").mtu == mtu

    if backend == "vxlan":
        # on the underlay: VXLAN (VNI 1, UDP 8472) between the nodes, carrying the pods' addresses
        pcap = layout.run_dir / "underlay.pcap"
        cap = subprocess.Popen(
            kernel.in_netns(
                layout.underlay_netns,
                ["tcpdump", "-i", "br0", "-U", "-c", "4", "-w", str(pcap), "udp port 8472"],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert cap.stderr is not None and "listening" in cap.stderr.readline()
        cli("exec", "s1", "--", "ping", "-c", "2", "-W", "2", pods[2].ip)
        cap.wait(timeout=30)
        out = kernel.run(
            None,
            ["tshark", "-r", str(pcap), "-d", "udp.port==8472,vxlan", "-T", "fields",
             "-e", "ip.src", "-e", "ip.dst", "-e", "vxlan.vni"],
        ).stdout  # fmt: skip
        rows = [line.split("\t") for line in out.splitlines() if line]
        assert len(rows) == 4
        for src, dst, vni in rows:
            assert vni == "1"
            assert {src, dst} == {f"192.168.56.11,{pods[0].ip}", f"192.168.56.13,{pods[2].ip}"}

    cli("down")
    assert_nothing_left(layout)
