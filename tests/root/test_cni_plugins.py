"""netlab-bridge, netlab-host-local and netlab-loopback against the real kernel.

Every test runs twice: with the node's CNI server running (`netlab cni-server --netns`) and
without it (each plugin process does the work itself). The plugins always run in a test
namespace that plays the node, through our runtime or executed directly with env and stdin.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cni.install import install_plugins
from cni.server import wait_serving
from netlab import kernel
from netlab.cni.runtime import CniRuntime
from netlab.kernel import Rtnl
from netlab.kernel.ipmasq import ipmasq_chain
from netlab.layout import Layout
from tests.root import cnilab

pytestmark = pytest.mark.root

NETLAB = Path(sys.executable).parent / "netlab"
SUBNET = "10.77.0.0/24"


@dataclass
class Node:
    layout: Layout
    netns: str
    bin_dir: Path
    ipam_dir: Path
    server: bool

    @property
    def plugin_dirs(self) -> list[str]:
        return [str(self.bin_dir), cnilab.REFERENCE_DIR]

    def runtime(self, *plugins: dict[str, Any], name: str = "podnet", version: str = "1.0.0") -> CniRuntime:
        conf = cnilab.conflist(name, *plugins, version=version)
        return CniRuntime(conf, self.plugin_dirs, self.layout.cni_cache_dir, plugin_netns=self.netns)

    def bridge(self, subnet: str = SUBNET, ipam: str = "netlab-host-local", **extra: Any) -> dict[str, Any]:
        plugin = cnilab.bridge_plugin("netlab-bridge", ipam, self.ipam_dir, subnet=subnet, **extra)
        plugin["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}]
        return plugin

    def exec(
        self, plugin: str, command: str, request: dict[str, Any] | bytes | None, **env: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Execute a plugin directly in the node, as a runtime would."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        full.update({"CNI_COMMAND": command, "CNI_PATH": ":".join(self.plugin_dirs)} if command else {})
        full.update(env)
        data = request if isinstance(request, bytes) else json.dumps(request or {}).encode()
        argv = kernel.in_netns(self.netns, [str(self.bin_dir / plugin)])
        return subprocess.run(argv, input=data, env=full, capture_output=True, timeout=60)

    def ip_files(self, network: str = "podnet") -> list[str]:
        d = self.ipam_dir / network
        return sorted(f for f in os.listdir(d) if f[0].isdigit()) if d.exists() else []

    def veths(self) -> list[str]:
        return [n for n in cnilab.links(self.netns) if n.startswith("veth")]

    def masq_chains(self) -> list[str]:
        return [line for line in cnilab.nat_rules(self.netns).splitlines() if line.startswith(":CNI-")]


@pytest.fixture(params=["server", "no-server"])
def node(request: pytest.FixtureRequest, layout: Layout, tmp_path: Path) -> Iterator[Node]:
    ns = cnilab.make_node(layout)
    bin_dir = layout.cni_bin_dir
    install_plugins(bin_dir)
    n = Node(layout, ns, bin_dir, tmp_path / "ipam", request.param == "server")
    with cnilab.cni_server(ns) if n.server else contextlib.nullcontext():
        yield n


def error_of(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    err = json.loads(proc.stdout)
    assert set(err) <= {"cniVersion", "code", "msg", "details"} and err["msg"]
    return err


# ADD, CHECK, DEL ------------------------------------------------------------------------------


def test_add_check_del(node: Node) -> None:
    rt = node.runtime(node.bridge(ipMasq=True, hairpinMode=True, mtu=1400))
    a, b = cnilab.make_pod(node.layout, "a"), cnilab.make_pod(node.layout, "b")
    res = rt.add("pod-a", a, "eth0", args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "a")])
    rt.add("pod-b", b, "eth0")

    # the result, exactly as the spec shapes a 1.0.0 bridge result
    doc = res.to_dict("1.0.0")
    assert set(doc) == {"cniVersion", "interfaces", "ips", "routes", "dns"}
    br, host, pod = doc["interfaces"]
    assert set(br) == {"name", "mac"} and br["name"] == "cni0"
    assert set(host) == {"name", "mac"} and host["name"].startswith("veth") and len(host["name"]) == 12
    assert pod == {"name": "eth0", "mac": pod["mac"], "sandbox": kernel.netns_path(a)}
    assert doc["ips"] == [{"interface": 2, "address": "10.77.0.2/24", "gateway": "10.77.0.1"}]
    assert doc["routes"] == [{"dst": "0.0.0.0/0"}] and doc["dns"] == {}
    cached = rt.cached("pod-a")
    assert cached is not None and cached.result == json.loads(json.dumps(cached.result))
    assert cached.result["interfaces"][2]["mac"] == pod["mac"]

    # the kernel agrees with the result
    node_links = cnilab.links(node.netns)
    assert node_links[host["name"]].master == node_links["cni0"].index
    assert node_links[host["name"]].mtu == 1400 and node_links[host["name"]].mac == host["mac"]
    assert "10.77.0.1/24" in cnilab.addresses(node.netns, "cni0")
    assert kernel.get_sysctl(node.netns, "net.ipv4.ip_forward") == "1"
    detail = json.loads(kernel.run(node.netns, ["ip", "-d", "-j", "link", "show", host["name"]]).stdout)
    assert detail[0]["linkinfo"]["info_slave_data"]["hairpin"] is True
    pod_links = cnilab.links(a)
    assert pod_links["eth0"].mac == pod["mac"] and pod_links["eth0"].mtu == 1400
    assert cnilab.addresses(a, "eth0") == ["10.77.0.2/24"]
    with Rtnl(a) as r:
        assert [(x.dst, x.gateway) for x in r.routes() if x.dst == "0.0.0.0/0"] == [
            ("0.0.0.0/0", "10.77.0.1")
        ]
    assert kernel.get_sysctl(a, "net/ipv4/conf/eth0/arp_notify") == "1"
    assert f":{ipmasq_chain('podnet', 'pod-a')}" in "\n".join(node.masq_chains())

    # packets: pod to pod and pod to gateway
    assert cnilab.ping(a, "10.77.0.3") and cnilab.ping(b, "10.77.0.2") and cnilab.ping(a, "10.77.0.1")

    rt.check("pod-a", a, "eth0")
    with Rtnl(a) as r:
        r.delete_address("eth0", "10.77.0.2/24")
    with pytest.raises(Exception, match="lacks its address 10.77.0.2/24"):
        rt.check("pod-a", a, "eth0")

    # DEL twice, then DEL after the namespace is gone
    assert rt.delete("pod-a", a, "eth0") == []
    assert rt.delete("pod-a", a, "eth0") == []
    assert "eth0" not in cnilab.links(a)
    kernel.delete_netns(b)
    assert rt.delete("pod-b", b, "eth0") == []
    assert rt.delete("pod-b", None, "eth0") == []
    assert node.ip_files() == [] and node.veths() == [] and node.masq_chains() == []
    assert os.listdir(node.layout.cni_cache_dir) == []


def test_del_when_the_netns_path_is_gone_but_the_namespace_lives(node: Node) -> None:
    rt = node.runtime(node.bridge(ipMasq=True))
    pod = cnilab.make_pod(node.layout, "held")
    holder = subprocess.Popen(kernel.in_netns(pod, ["sleep", "120"]))
    try:
        rt.add("held", pod, "eth0")
        kernel.delete_netns(pod)  # unmounted, but the sleeping process keeps it (and its veth) alive
        assert len(node.veths()) == 1
        assert rt.delete("held", pod, "eth0") == []
        assert node.veths() == [] and node.ip_files() == [] and node.masq_chains() == []
    finally:
        holder.kill()
        holder.wait()


def test_direct_exec_with_env_and_stdin(node: Node) -> None:
    pod = cnilab.make_pod(node.layout, "p")
    netns = kernel.netns_path(pod)
    conf = {"cniVersion": "1.1.0", "name": "podnet", **node.bridge()}
    version = node.exec("netlab-bridge", "VERSION", None)
    assert version.returncode == 0
    assert json.loads(version.stdout) == {
        "cniVersion": "1.1.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": netns, "CNI_IFNAME": "eth0"}
    add = node.exec("netlab-bridge", "ADD", conf, **env)
    assert add.returncode == 0, add.stdout
    res = json.loads(add.stdout)
    assert res["cniVersion"] == "1.1.0" and res["interfaces"][2]["mtu"] == 1500
    assert res["ips"] == [{"interface": 2, "address": "10.77.0.2/24", "gateway": "10.77.0.1"}]
    assert node.exec("netlab-bridge", "CHECK", {**conf, "prevResult": res}, **env).returncode == 0
    assert node.exec("netlab-bridge", "STATUS", conf).returncode == 0
    lo = node.exec("netlab-loopback", "ADD", {"cniVersion": "1.0.0", "name": "lo", "type": "x"}, **env)
    assert json.loads(lo.stdout)["ips"][0] == {"interface": 0, "address": "127.0.0.1/8"}
    assert cnilab.links(pod)["lo"].up
    for _ in range(2):
        assert node.exec("netlab-bridge", "DEL", conf, **env).returncode == 0
        assert (
            node.exec("netlab-loopback", "DEL", {"cniVersion": "1.0.0", "name": "lo"}, **env).returncode == 0
        )
    assert node.ip_files() == [] and node.veths() == []
    assert not cnilab.links(pod)["lo"].up


def test_loopback_and_bridge_chain_through_runtime(node: Node) -> None:
    lo = node.runtime({"type": "netlab-loopback"}, name="cni-loopback")
    rt = node.runtime(node.bridge(isDefaultGateway=True))
    pod = cnilab.make_pod(node.layout, "p")
    res = lo.add("c1", pod, "lo")
    assert [ip.address for ip in res.ips][:1] == ["127.0.0.1/8"] and res.interfaces[0].name == "lo"
    res = rt.add("c1", pod, "eth0")
    assert [(r.dst, r.gw) for r in res.routes] == [("0.0.0.0/0", None)]
    assert cnilab.ping(pod, "127.0.0.1") and cnilab.ping(pod, "10.77.0.1")
    assert rt.delete("c1", pod, "eth0") == [] and lo.delete("c1", pod, "lo") == []


# Concurrency ---------------------------------------------------------------------------------


def test_30_concurrent_adds_get_distinct_addresses(node: Node) -> None:
    rt = node.runtime(node.bridge(ipMasq=True))
    pods = [cnilab.make_pod(node.layout, f"c{i}") for i in range(30)]
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        results = list(pool.map(lambda ip: rt.add(f"c{ip[0]}", ip[1], "eth0"), enumerate(pods)))
    addresses = [r.ips[0].address for r in results]
    assert len(set(addresses)) == 30
    assert all(ipaddress.ip_interface(a) in ipaddress.ip_network(SUBNET) for a in addresses)
    assert node.ip_files() == sorted(a.split("/")[0] for a in addresses)
    assert len(node.veths()) == 30 and len(node.masq_chains()) == 30
    assert cnilab.ping(pods[0], addresses[29].split("/")[0])
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        errors = list(pool.map(lambda ip: rt.delete(f"c{ip[0]}", ip[1], "eth0"), enumerate(pods)))
    assert errors == [[]] * 30
    assert node.ip_files() == [] and node.veths() == [] and node.masq_chains() == []


# Failures half-way through ADD ----------------------------------------------------------------


def _nothing_left(node: Node, pod: str) -> None:
    assert node.veths() == [], "a veth was left behind"
    assert node.ip_files() == [], "an address stayed reserved"
    assert node.masq_chains() == [], "a SNAT chain was left behind"
    assert set(cnilab.links(pod)) == {"lo"}, "the pod interface was left behind"


def test_exhausted_range_after_the_veth_exists(node: Node) -> None:
    """IPAM runs after the veth pair exists: its failure must take the pair away again."""
    conf = {"cniVersion": "1.0.0", "name": "podnet", **node.bridge(subnet="10.78.0.0/30", ipMasq=True)}
    first, second = cnilab.make_pod(node.layout, "first"), cnilab.make_pod(node.layout, "second")
    env = {"CNI_IFNAME": "eth0"}
    ok = node.exec(
        "netlab-bridge", "ADD", conf, CNI_CONTAINERID="first", CNI_NETNS=kernel.netns_path(first), **env
    )
    assert ok.returncode == 0
    bad = node.exec(
        "netlab-bridge", "ADD", conf, CNI_CONTAINERID="second", CNI_NETNS=kernel.netns_path(second), **env
    )
    err = error_of(bad)
    assert err["code"] == 999 and "no IP addresses available in range set: 10.78.0.1-10.78.0.2" in err["msg"]
    assert set(cnilab.links(second)) == {"lo"} and len(node.veths()) == 1 and node.ip_files() == ["10.78.0.2"]
    first_env = {"CNI_CONTAINERID": "first", "CNI_NETNS": kernel.netns_path(first), **env}
    assert node.exec("netlab-bridge", "DEL", conf, **first_env).returncode == 0
    _nothing_left(node, second)


def test_bridge_address_conflict_after_ipam_and_masq_setup(node: Node) -> None:
    """A gateway conflict is found after IPAM and the pod's addresses: all of it is undone."""
    with Rtnl(node.netns) as r:
        r.ensure_bridge("cni0")
        r.ensure_address("cni0", "10.99.0.1/24")
    conf = {"cniVersion": "1.0.0", "name": "podnet", **node.bridge(ipMasq=True)}
    pod = cnilab.make_pod(node.layout, "p")
    bad = node.exec(
        "netlab-bridge",
        "ADD",
        conf,
        CNI_CONTAINERID="c1",
        CNI_NETNS=kernel.netns_path(pod),
        CNI_IFNAME="eth0",
    )
    err = error_of(bad)
    assert err["code"] == 999 and '"cni0" already has an IP address different from 10.77.0.1/24' in err["msg"]
    _nothing_left(node, pod)
    # with forceAddress the same ADD goes through and replaces the address
    conf["forceAddress"] = True
    rt = node.runtime({k: v for k, v in conf.items() if k not in ("cniVersion", "name")})
    rt.add("c1", pod, "eth0")
    assert cnilab.addresses(node.netns, "cni0") == ["10.77.0.1/24"]
    assert rt.delete("c1", pod, "eth0") == []
    _nothing_left(node, pod)


def test_existing_pod_interface_is_refused_and_left_alone(node: Node) -> None:
    pod = cnilab.make_pod(node.layout, "p")
    with Rtnl(pod) as r:
        r.add_veth("eth0", "other")
    conf = {"cniVersion": "1.0.0", "name": "podnet", **node.bridge()}
    bad = node.exec(
        "netlab-bridge",
        "ADD",
        conf,
        CNI_CONTAINERID="c1",
        CNI_NETNS=kernel.netns_path(pod),
        CNI_IFNAME="eth0",
    )
    err = error_of(bad)
    assert err["code"] == 999 and err["msg"] == "container veth name provided (eth0) already exists"
    assert set(cnilab.links(pod)) == {"lo", "eth0", "other"}
    assert node.veths() == [] and node.ip_files() == []


# Bad input ------------------------------------------------------------------------------------


def test_bad_input_gets_the_spec_error_codes(node: Node) -> None:
    pod = kernel.netns_path(cnilab.make_pod(node.layout, "p"))
    good = {"cniVersion": "1.0.0", "name": "podnet", **node.bridge()}
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": pod, "CNI_IFNAME": "eth0"}
    cases: list[tuple[int, str, dict[str, Any] | bytes, dict[str, str], str]] = [
        (
            4,
            "ADD",
            good,
            {"CNI_IFNAME": "eth0"},
            "required env variables [CNI_CONTAINERID,CNI_NETNS] missing",
        ),
        (4, "", good, env, "required env variables [CNI_COMMAND] missing"),
        (4, "FROB", good, env, "unknown CNI_COMMAND: FROB"),
        (4, "ADD", good, {**env, "CNI_IFNAME": "eth0/x"}, "interface name contains"),
        (6, "ADD", b'{"cniVersion": "1.0.0", "name": ', env, "error unmarshall network config"),
        (7, "ADD", {k: v for k, v in good.items() if k != "name"}, env, "missing network name"),
        (1, "ADD", {**good, "cniVersion": "0.2.0"}, env, "incompatible CNI versions"),
        (6, "ADD", {**good, "cniVersion": "one"}, env, "invalid version"),
        (1, "GC", good, env, "config version does not allow GC"),
        (7, "ADD", {**good, "ipam": {"type": "no-such-ipam"}}, env, 'failed to find plugin "no-such-ipam"'),
        (7, "ADD", {**good, "ipam": {"type": "netlab-host-local"}}, env, "no IP ranges specified"),
        (7, "ADD", {**good, "mtu": "big"}, env, "invalid mtu"),
        (
            7,
            "ADD",
            {**good, "ipam": {"type": "netlab-host-local", "subnet": "10.1.2.3/24"}},
            env,
            "host bits set",
        ),
        (2, "ADD", {**good, "vlan": 5}, env, "does not support vlan=5"),
        (
            8,
            "ADD",
            good,
            {**env, "CNI_NETNS": "/run/netns/nl-no-such-ns"},
            'failed to open netns "/run/netns/nl-no',
        ),
        (8, "ADD", good, {**env, "CNI_NETNS": kernel.netns_path(node.netns)}, "should not be the same"),
    ]
    for code, command, request, extra, text in cases:
        full = {k: "" for k in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")} | extra
        err = error_of(node.exec("netlab-bridge", command, request, **full))
        assert (err["code"], text) == (code, text) and text in err["msg"] + err.get("details", ""), err
        _nothing_left(node, cnilab.make_pod(node.layout, "p"))
    # host-local alone: a static request outside every range, and exhaustion
    hl = {"cniVersion": "1.0.0", "name": "podnet", "ipam": node.bridge(subnet="10.79.0.0/30")["ipam"]}
    err = error_of(node.exec("netlab-host-local", "ADD", hl, **env, CNI_ARGS="IP=10.1.1.1"))
    assert err["code"] == 999 and "failed to allocate all requested IPs: 10.1.1.1" in err["msg"]
    assert node.exec("netlab-host-local", "ADD", hl, **env).returncode == 0
    err = error_of(node.exec("netlab-host-local", "ADD", hl, **{**env, "CNI_CONTAINERID": "c2"}))
    assert err["code"] == 999 and "no IP addresses available" in err["msg"]
    status = error_of(node.exec("netlab-host-local", "STATUS", {**hl, "cniVersion": "1.1.0"}))
    assert status["code"] == 50
    assert node.exec("netlab-host-local", "DEL", hl, **env).returncode == 0
    assert node.ip_files() == []


# GC (1.1.0) ------------------------------------------------------------------------------------


def test_gc_removes_what_is_not_valid(node: Node) -> None:
    rt = node.runtime(node.bridge(ipMasq=True), version="1.1.0")
    keep, leak = cnilab.make_pod(node.layout, "keep"), cnilab.make_pod(node.layout, "leak")
    rt.add("keep", keep, "eth0")
    rt.add("leak", leak, "eth0")
    rt.cache.delete("podnet", "leak", "eth0")  # a runtime that lost track of an attachment
    kernel.delete_netns(leak)
    assert len(node.ip_files()) == 2 and len(node.masq_chains()) == 2
    rt.status()
    assert rt.gc([("keep", "eth0")]) == []
    assert node.ip_files() == ["10.77.0.2"]
    assert node.masq_chains() == [f":{ipmasq_chain('podnet', 'keep')} - [0:0]"]
    assert rt.delete("keep", keep, "eth0") == []


# Interop with the reference plugins ------------------------------------------------------------


def test_portmap_chained_after_netlab_bridge(node: Node) -> None:
    rt = node.runtime(
        node.bridge(isDefaultGateway=True, ipMasq=True),
        {"type": "portmap", "capabilities": {"portMappings": True}},
    )
    web = cnilab.make_pod(node.layout, "web")
    client = cnilab.link_client(node.layout, node.netns)
    ports = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    res = rt.add("web", web, "eth0", capability_args=ports)
    assert res.ips[0].address == "10.77.0.2/24"  # portmap passed netlab-bridge's result through
    with cnilab.TcpServer(web, 80, "hello through portmap"):
        assert cnilab.tcp_fetch(client, "192.168.99.1", 8080) == "hello through portmap"
    assert rt.delete("web", web, "eth0") == []
    assert "8080" not in cnilab.nat_rules(node.netns)
    assert [c for c in node.masq_chains() if "HOSTPORT" not in c] == []  # portmap keeps its top chains


def test_netlab_bridge_with_reference_host_local(node: Node) -> None:
    rt = node.runtime(node.bridge(ipam="host-local"))
    pod = cnilab.make_pod(node.layout, "p")
    assert rt.add("c1", pod, "eth0").ips[0].address == "10.77.0.2/24"
    assert node.ip_files() == ["10.77.0.2"] and cnilab.ping(pod, "10.77.0.1")
    assert rt.delete("c1", pod, "eth0") == []
    assert node.ip_files() == []


def test_reference_bridge_with_netlab_host_local(node: Node) -> None:
    plugin = cnilab.bridge_plugin("bridge", "netlab-host-local", node.ipam_dir, ipMasq=True)
    rt = node.runtime(plugin)
    pod = cnilab.make_pod(node.layout, "p")
    assert rt.add("c1", pod, "eth0").ips[0].address == "10.77.0.2/24"
    owner = (node.ipam_dir / "podnet" / "10.77.0.2").read_bytes()
    assert owner == b"c1\r\neth0"
    # the reference plugin names its SNAT chain exactly as netlab.kernel.ipmasq does
    assert node.masq_chains() == [f":{ipmasq_chain('podnet', 'c1')} - [0:0]"]
    assert rt.delete("c1", pod, "eth0") == []
    assert node.ip_files() == []


# The CNI server itself ------------------------------------------------------------------------


def _call_server(netns: str, request: bytes) -> bytes:
    def call() -> bytes:
        import socket

        from cni import launch

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(launch.SOCKET_ADDRESS)
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        return data

    return kernel.run_in_netns(netns, call)


def test_cni_server_declines_other_source_trees_and_bad_requests(layout: Layout) -> None:
    from cni import launch

    ns = cnilab.make_node(layout)
    proc = subprocess.Popen([str(NETLAB), "cni-server", "--netns", ns], stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(ns, alive=lambda: proc.poll() is None)
        env = b"CNI_COMMAND=VERSION"
        ok = launch.decode(
            _call_server(ns, launch.encode(launch.MAGIC, launch.SOURCE_ROOT.encode(), b"bridge", env, b""))
        )
        assert ok[0] == b"0" and json.loads(ok[1])["cniVersion"] == "1.1.0"
        other = launch.encode(launch.MAGIC, b"/elsewhere", b"bridge", env, b"")
        assert launch.decode(_call_server(ns, other)) == [launch.DECLINE]
        assert launch.decode(_call_server(ns, b"garbage")) == [launch.DECLINE]
        unknown = launch.encode(launch.MAGIC, launch.SOURCE_ROOT.encode(), b"no-such-plugin", env, b"")
        assert launch.decode(_call_server(ns, unknown)) == [launch.DECLINE]
        # a second server for the same namespace is refused with one line
        second = subprocess.run(
            [str(NETLAB), "cni-server", "--netns", ns], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1 and second.stderr.strip().splitlines() == [
            f"error: a netlab CNI server already serves /run/netns/{ns}"
        ]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    missing = subprocess.run(
        [str(NETLAB), "cni-server", "--netns", layout.node_netns("nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "does not exist" in missing.stderr
