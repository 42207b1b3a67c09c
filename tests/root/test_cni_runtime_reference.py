"""Our runtime driving the reference plugins from /usr/lib/cni (Debian's, spec 1.0.0)."""

from __future__ import annotations

import json
import os

import pytest

from netlab import kernel
from netlab.cni.runtime import CniRuntime
from netlab.cni.types import CniError
from tests.root import cnilab

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not os.path.exists("/usr/lib/cni/bridge"), reason="containernetworking-plugins missing"
    ),
]


def test_reference_bridge_portmap_chain(layout, tmp_path):
    node = cnilab.make_node(layout)
    conf = cnilab.conflist(
        "refnet",
        cnilab.bridge_plugin("bridge", "host-local", tmp_path / "ipam", isDefaultGateway=True, ipMasq=True),
        {"type": "portmap", "capabilities": {"portMappings": True}},
    )
    rt = CniRuntime(conf, [cnilab.REFERENCE_DIR], layout.cni_cache_dir, plugin_netns=node)
    web, other = cnilab.make_pod(layout, "web"), cnilab.make_pod(layout, "other")
    ports = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}

    res = rt.add(
        "web1", web, "eth0", args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")], capability_args=ports
    )
    assert [i.name for i in res.interfaces][::2] == ["cni0", "eth0"]
    assert res.interfaces[2].sandbox == kernel.netns_path(web)
    assert res.ips[0].address == "10.77.0.2/24" and res.ips[0].gateway == "10.77.0.1"
    rt.add("other1", other, "eth0")

    cached = rt.cached("web1")
    assert (
        cached is not None
        and cached.result is not None
        and cached.result["ips"][0]["address"] == "10.77.0.2/24"
    )
    assert json.loads(cached.config)["name"] == "refnet" and cached.capability_args == ports
    # no CHECK here: portmap v1.1.1 looks for its chain under an empty container id on CHECK

    assert cnilab.ping(other, "10.77.0.2") and cnilab.ping(web, "10.77.0.1")
    assert "CNI-HOSTPORT-DNAT" in cnilab.nat_rules(node)
    client = cnilab.link_client(layout, node)
    with cnilab.TcpServer(web, 80, "hello from web"):
        assert cnilab.tcp_fetch(client, "192.168.99.1", 8080) == "hello from web"

    assert rt.delete("web1", web, "eth0") == []
    assert rt.delete("web1", web, "eth0") == []  # twice
    assert rt.cached("web1") is None
    assert "10.77.0.2" not in os.listdir(tmp_path / "ipam" / "refnet")
    assert "dport 8080" not in cnilab.nat_rules(node)
    kernel.delete_netns(other)
    assert rt.delete("other1", other, "eth0") == []  # netns already gone
    assert sorted(os.listdir(tmp_path / "ipam" / "refnet")) == ["last_reserved_ip.0", "lock"]


def test_failed_add_is_rolled_back(layout, tmp_path):
    node = cnilab.make_node(layout)
    conf = cnilab.conflist(
        "tiny", cnilab.bridge_plugin("bridge", "host-local", tmp_path / "ipam", subnet="10.78.0.0/30")
    )
    rt = CniRuntime(conf, [cnilab.REFERENCE_DIR], layout.cni_cache_dir, plugin_netns=node)
    a, b = cnilab.make_pod(layout, "a"), cnilab.make_pod(layout, "b")
    rt.add("a", a)
    with pytest.raises(CniError) as e:
        rt.add("b", b)  # the /30 has one address; the reference bridge leaves its veth behind
    assert e.value.plugin == "bridge" and "no IP addresses available" in e.value.msg
    assert "eth0" not in cnilab.links(b)  # the runtime's DEL removed it
    assert rt.cached("b") is None
    assert len([n for n in cnilab.links(node) if n.startswith("veth")]) == 1


def test_unknown_plugin_type(layout, tmp_path):
    node = cnilab.make_node(layout)
    conf = cnilab.conflist("x", {"type": "no-such-plugin"})
    rt = CniRuntime(conf, [cnilab.REFERENCE_DIR], layout.cni_cache_dir, plugin_netns=node)
    with pytest.raises(CniError) as e:
        rt.add("c1", cnilab.make_pod(layout, "p"))
    assert e.value.code == 7 and 'failed to find plugin "no-such-plugin"' in e.value.msg


def test_version_and_gc_status_on_1_0_plugins(layout, tmp_path):
    node = cnilab.make_node(layout)
    conf = cnilab.conflist("v", cnilab.bridge_plugin("bridge", "host-local", tmp_path / "ipam"))
    rt = CniRuntime(conf, [cnilab.REFERENCE_DIR], layout.cni_cache_dir, plugin_netns=node)
    assert "1.0.0" in rt.version("bridge")["supportedVersions"]
    rt.status()  # a 1.0.0 list has no STATUS: nothing to ask
    pod = cnilab.make_pod(layout, "p")
    rt.add("keep", pod, "eth0")
    rt.check("keep", pod, "eth0")
    rt.add("stale", pod, "eth1")
    assert rt.gc([("keep", "eth0")]) == []  # the stale attachment gets a full DEL
    assert rt.cached("stale", "eth1") is None and rt.cached("keep", "eth0") is not None
    assert set(cnilab.links(pod)) == {"lo", "eth0"}
