"""The kernel layer against the real kernel, in private namespaces."""

from __future__ import annotations

import errno
import socket
import time

import pytest

from netlab import kernel
from netlab.errors import AlreadyExists, KernelError, NotFound
from netlab.kernel import Link, Rtnl

pytestmark = pytest.mark.root


@pytest.fixture
def two_ns(layout):
    a, b = layout.node_netns("a"), layout.node_netns("b")
    assert kernel.ensure_netns(a) is True
    assert kernel.ensure_netns(a) is False
    kernel.ensure_netns(b)
    return a, b


def test_netns_lifecycle(layout):
    name = layout.node_netns("x")
    assert not kernel.netns_exists(name)
    assert kernel.ensure_netns(name)
    assert name in kernel.list_netns()
    assert kernel.delete_netns(name) is True
    assert kernel.delete_netns(name) is False
    assert name not in kernel.list_netns()


def test_bridge_veth_address_route_are_idempotent(two_ns):
    a, b = two_ns
    with Rtnl(a) as ra:
        br = ra.ensure_bridge("cni0", mtu=1400)
        assert ra.ensure_bridge("cni0", mtu=1400) == br
        ra.add_veth("veth0", "eth0", peer_netns=b, mtu=1400)
        with pytest.raises(AlreadyExists):
            ra.add_veth("veth0", "eth0", peer_netns=b)
        ra.set_link("veth0", master="cni0", up=True)
        ra.set_bridge_port("veth0", hairpin=True)
        assert ra.ensure_address("cni0", "10.9.0.1/24") is True
        assert ra.ensure_address("cni0", "10.9.0.1/24") is False
        link = ra.get_link("veth0")
        assert link.kind == "veth" and link.master == br and link.mtu == 1400
    with Rtnl(b) as rb:
        rb.set_link("lo", up=True)
        rb.set_link("eth0", up=True)
        rb.ensure_address("eth0", "10.9.0.2/24")
        rb.ensure_route("default", gateway="10.9.0.1")
        rb.ensure_route("default", gateway="10.9.0.1")
        defaults = [r for r in rb.routes() if r.dst == "0.0.0.0/0"]
        assert len(defaults) == 1 and defaults[0].gateway == "10.9.0.1"
    assert kernel.run(b, ["ping", "-c", "1", "-W", "2", "10.9.0.1"]).returncode == 0


def test_vxlan_neigh_fdb_route(two_ns):
    a, _ = two_ns
    with Rtnl(a) as ra:
        ra.add_veth("under0", "under1")
        ra.set_link("under0", up=True)
        ra.ensure_address("under0", "192.168.77.1/24")
        vx = ra.ensure_vxlan("flannel.1", vni=1, local="192.168.77.1", dev="under0", mtu=1450)
        assert ra.ensure_vxlan("flannel.1", vni=1, local="192.168.77.1", dev="under0", mtu=1450) == vx
        ra.ensure_neigh("flannel.1", "10.244.2.0", "aa:bb:cc:dd:ee:01")
        ra.ensure_fdb("flannel.1", "aa:bb:cc:dd:ee:01", "192.168.77.2")
        ra.ensure_route("10.244.2.0/24", gateway="10.244.2.0", dev="flannel.1", onlink=True)
        route = next(r for r in ra.routes() if r.dst == "10.244.2.0/24")
        assert route.onlink and route.gateway == "10.244.2.0" and route.oif == vx
        assert ("10.244.2.0", "aa:bb:cc:dd:ee:01") in [(n.ip, n.mac) for n in ra.neighbours(vx)]
        assert ("aa:bb:cc:dd:ee:01", "192.168.77.2") in [(f.mac, f.dst) for f in ra.fdb_entries(vx)]
        assert ra.delete_route("10.244.2.0/24") is True
        assert ra.delete_route("10.244.2.0/24") is False
        assert ra.delete_fdb(vx, "aa:bb:cc:dd:ee:01", "192.168.77.2") is True
        assert ra.delete_fdb(vx, "aa:bb:cc:dd:ee:01", "192.168.77.2") is False
        assert ra.delete_neigh(vx, "10.244.2.0") is True
        assert ra.delete_neigh(vx, "10.244.2.0") is False
        # a device with different attributes is replaced, not reused
        vx2 = ra.ensure_vxlan("flannel.1", vni=2, local="192.168.77.1", dev="under0")
        assert vx2 != vx
        assert ra.delete_link("flannel.1") is True
        assert ra.delete_link("flannel.1") is False


def test_sysctl_is_per_namespace(two_ns):
    a, _ = two_ns
    host = kernel.get_sysctl(None, "net.ipv4.ip_forward")
    assert kernel.set_sysctl(a, "net.ipv4.ip_forward", 1) in (True, False)
    assert kernel.get_sysctl(a, "net.ipv4.ip_forward") == "1"
    assert kernel.set_sysctl(a, "net.ipv4.ip_forward", 1) is False
    assert kernel.get_sysctl(None, "net.ipv4.ip_forward") == host


def test_missing_objects_are_named(layout):
    with pytest.raises(NotFound, match="does not exist"):
        Rtnl(layout.node_netns("nowhere"))
    name = layout.node_netns("c")
    kernel.ensure_netns(name)
    with Rtnl(name) as r, pytest.raises(NotFound, match="link nosuch"):
        r.get_link("nosuch")


def test_rtnl_reads_as_pyroute2_does(two_ns):
    """Rtnl's own netlink requests see and change what pyroute2's IPRoute sees."""
    a, b = two_ns
    with Rtnl(a) as ra:
        br = ra.ensure_bridge("br0", mtu=1400)
        host = ra.add_veth("veth1", "eth1", peer_netns=b, mtu=1400, master=br, up=True)
        ra.set_link(br, promisc=True)
        ra.ensure_address(br, "10.9.1.1/24")
        ra.ensure_address(br, "fd09::1/64")
        ipr = ra.ipr  # pyroute2's API on its own socket
        ra.add_veth("under0", "under1")
        ra.ensure_vxlan("vx0", vni=7, local="192.168.77.1", dev="under0")

        def pyroute2_link(index: int) -> Link:
            theirs = ipr.link("get", index=index)[0]
            info = theirs.get("IFLA_LINKINFO")
            kind = info.get("IFLA_INFO_KIND") if info else None
            return Link(
                index=theirs["index"],
                name=theirs.get("IFLA_IFNAME"),
                kind=kind,
                mac=theirs.get("IFLA_ADDRESS"),
                mtu=theirs.get("IFLA_MTU"),
                up=bool(theirs["flags"] & 1),
                promisc=bool(theirs["flags"] & 0x100),
                oper_state=theirs.get("IFLA_OPERSTATE"),
                master=theirs.get("IFLA_MASTER"),
                peer_index=theirs.get("IFLA_LINK") if kind == "veth" else None,
            )

        def agree() -> bool:
            listed = ra.links()
            assert len(listed) == 6
            return all(pyroute2_link(mine.index) == mine == ra.get_link(mine.name) for mine in listed)

        deadline = time.monotonic() + 5
        while not agree():  # an operational state may change between two reads (linkwatch)
            assert time.monotonic() < deadline, [(x, pyroute2_link(x.index)) for x in ra.links()]
            time.sleep(0.1)
        veth = ra.get_link(host)
        assert veth.master == br and veth.up and veth.kind == "veth" and veth.peer_index is not None
        assert ra.get_link(br).promisc
        theirs_names = sorted(m.get("IFLA_IFNAME") for m in ipr.get_links())
        assert sorted(link.name for link in ra.links()) == theirs_names
        assert ra.addresses(br) == ["10.9.1.1/24"]
        assert ra.addresses(br, socket.AF_INET6)[:1] == ["fd09::1/64"]
        assert ra.delete_address(br, "10.9.1.1/24") is True
        assert ra.delete_address(br, "10.9.1.1/24") is False
        assert ra.addresses(br) == []
    with Rtnl(b) as rb:
        eth = rb.get_link("eth1")
        assert eth.peer_index == host and not eth.up and eth.mtu == 1400
        rb.set_link("eth1", up=True, mac="0a:58:0a:09:01:05")
        rb.ensure_address("eth1", "10.9.1.5/24")
        rb.ensure_route("10.77.0.0/16", gateway="10.9.1.1", dev="eth1")
        rb.ensure_route("10.78.0.0/16", gateway="10.9.1.1", table=1000)
        assert ("10.77.0.0/16", "10.9.1.1") in [(r.dst, r.gateway) for r in rb.routes()]
        assert ("10.78.0.0/16", "10.9.1.1") in [(r.dst, r.gateway) for r in rb.routes(table=1000)]
        assert rb.get_link("eth1").mac == "0a:58:0a:09:01:05"
        assert rb.delete_route("10.77.0.0/16") is True and rb.delete_route("10.77.0.0/16") is False
        assert rb.delete_link("eth1") is True and rb.delete_link("eth1") is False
    with Rtnl(a) as ra, pytest.raises(KernelError) as e:
        ra.set_link("br0", mtu=10)  # below the minimum: the kernel's errno comes through
    assert e.value.errno == errno.EINVAL
