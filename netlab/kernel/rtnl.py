"""Links, addresses, routes, neighbours and FDB entries in one network namespace.

`Rtnl` is a netlink route socket bound to one namespace for its whole life; every method acts
on that namespace. Methods named `ensure_*` make the kernel match the request and are safe to
repeat; `delete_*` return False when there was nothing to delete. Kernel errors are decided on
errno (EEXIST, ENODEV, ESRCH, ENOENT), never on message text, and surface as
`netlab.errors.KernelError` carrying the errno.

The socket is opened on a throwaway thread joined to the namespace (see `netns`); the netlink
socket stays bound to the namespace it was created in, so the rest of the work needs no setns.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netlab.errors import AlreadyExists, KernelError, NotFound
from netlab.kernel.netns import netns_path, run_in_netns

NETLINK_ROUTE = 0
RTNH_F_ONLINK = 4
NTF_SELF = 0x02
NUD_PERMANENT = 0x80
IFF_UP = 0x1
IFF_PROMISC = 0x100

# errnos that mean "the object to remove is already gone"
_GONE = {errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None
    mac: str | None
    mtu: int
    up: bool
    promisc: bool
    oper_state: str
    master: int | None
    peer_index: int | None  # veth: the peer's index (in whatever namespace it lives)


@dataclass(frozen=True)
class Route:
    dst: str  # CIDR, "0.0.0.0/0" for the default route
    gateway: str | None
    oif: int | None
    table: int
    onlink: bool


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str | None
    ifindex: int
    state: int


@dataclass(frozen=True)
class FdbEntry:
    mac: str
    ifindex: int
    dst: str | None


def _kernel_error(what: str, e: NetlinkError) -> KernelError:
    return KernelError(f"{what}: {os.strerror(e.code)}", e.code)


class Rtnl:
    """A netlink route socket in one namespace. Use as a context manager."""

    def __init__(self, netns: str | None = None) -> None:
        """`netns` is a netns name or path; None means this process's own namespace."""
        self.netns = netns

        def open_socket() -> socket.socket:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)

        sock = run_in_netns(netns_path(netns) if netns else None, open_socket)
        self.ipr = IPRoute(use_socket=sock, groups=0)

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _where(self) -> str:
        return f" in {self.netns}" if self.netns else ""

    # Links ------------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        # a targeted RTM_GETLINK: pyroute2's link_lookup dumps every link, which grows with
        # the number of pods on a node
        try:
            msg = self.ipr.link("get", ifname=name)[0]
        except NetlinkError as e:
            if e.code in _GONE:
                return None
            raise _kernel_error(f"cannot look up link {name}", e) from e
        return int(msg["index"])

    def _index(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, int):
            return name_or_index
        index = self.link_index(name_or_index)
        if index is None:
            raise NotFound(f"link {name_or_index} does not exist{self._where()}")
        return index

    def get_link(self, name_or_index: str | int) -> Link:
        key = {"ifname": name_or_index} if isinstance(name_or_index, str) else {"index": name_or_index}
        try:
            msg = self.ipr.link("get", **key)[0]
        except NetlinkError as e:
            if e.code in _GONE:
                raise NotFound(f"link {name_or_index} does not exist{self._where()}") from None
            raise _kernel_error(f"cannot read link {name_or_index}", e) from e
        return self._to_link(msg)

    def links(self) -> list[Link]:
        return [self._to_link(m) for m in self.ipr.get_links()]

    @staticmethod
    def _to_link(msg: Any) -> Link:
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info else None
        peer = msg.get("IFLA_LINK")
        return Link(
            index=msg["index"],
            name=msg.get("IFLA_IFNAME"),
            kind=kind,
            mac=msg.get("IFLA_ADDRESS"),
            mtu=msg.get("IFLA_MTU"),
            up=bool(msg["flags"] & IFF_UP),
            promisc=bool(msg["flags"] & IFF_PROMISC),
            oper_state=msg.get("IFLA_OPERSTATE") or "UNKNOWN",
            master=msg.get("IFLA_MASTER"),
            peer_index=peer if kind == "veth" else None,
        )

    def _add_link(self, name: str, **spec: Any) -> int:
        try:
            self.ipr.link("add", ifname=name, **spec)
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                raise AlreadyExists(f"link {name} already exists{self._where()}") from None
            raise _kernel_error(f"cannot create link {name}{self._where()}", e) from e
        return self._index(name)

    def ensure_bridge(self, name: str, mtu: int | None = None, up: bool = True) -> int:
        """A Linux bridge named `name`, up, with `mtu` when given. Returns its index."""
        index = self.link_index(name)
        if index is None:
            try:
                index = self._add_link(name, kind="bridge")
            except AlreadyExists:
                index = self._index(name)
        else:
            link = self.get_link(index)
            if link.kind != "bridge":
                raise KernelError(f"{name} exists{self._where()} and is a {link.kind}, not a bridge")
        self.set_link(index, mtu=mtu, up=up)
        return index

    def add_veth(
        self,
        name: str,
        peer: str,
        peer_netns: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        peer_mac: str | None = None,
    ) -> int:
        """Create a veth pair; the peer is created directly in `peer_netns` when given.

        Not an `ensure_`: a veth pair that already exists is an error (AlreadyExists), since
        its peer may be anywhere. Returns the index of the local end.
        """
        peer_spec: dict[str, Any] = {"ifname": peer}
        fd = None
        if peer_netns:
            try:
                fd = os.open(netns_path(peer_netns), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFound(f"network namespace {peer_netns} does not exist") from None
            peer_spec["net_ns_fd"] = fd
        if mtu:
            peer_spec["mtu"] = mtu
        if peer_mac:
            peer_spec["address"] = peer_mac
        spec: dict[str, Any] = {"kind": "veth", "peer": peer_spec}
        if mtu:
            spec["mtu"] = mtu
        if mac:
            spec["address"] = mac
        try:
            return self._add_link(name, **spec)
        finally:
            if fd is not None:
                os.close(fd)

    def ensure_vxlan(
        self,
        name: str,
        vni: int,
        local: str,
        dev: str | int,
        port: int = 8472,
        learning: bool = False,
        mtu: int | None = None,
    ) -> int:
        """A VXLAN device with these attributes; an existing one that differs is recreated."""
        dev_index = self._index(dev)
        index = self.link_index(name)
        if index is not None:
            msg = self.ipr.link("get", index=index)[0]
            data = msg.get("IFLA_LINKINFO").get("IFLA_INFO_DATA") or {}
            same = (
                msg.get("IFLA_LINKINFO").get("IFLA_INFO_KIND") == "vxlan"
                and data.get("IFLA_VXLAN_ID") == vni
                and data.get("IFLA_VXLAN_LOCAL") == local
                and data.get("IFLA_VXLAN_LINK") == dev_index
                and data.get("IFLA_VXLAN_PORT") == port
                and bool(data.get("IFLA_VXLAN_LEARNING")) == learning
            )
            if same:
                self.set_link(index, mtu=mtu, up=True)
                return index
            self.delete_link(index)
        index = self._add_link(
            name,
            kind="vxlan",
            vxlan_id=vni,
            vxlan_local=local,
            vxlan_link=dev_index,
            vxlan_port=port,
            vxlan_learning=learning,
        )
        self.set_link(index, mtu=mtu, up=True)
        return index

    def set_link(
        self,
        name_or_index: str | int,
        up: bool | None = None,
        mtu: int | None = None,
        master: str | int | None = None,
        mac: str | None = None,
        netns: str | None = None,
        promisc: bool | None = None,
    ) -> None:
        """Change only what is given. `netns` moves the link into that namespace."""
        index = self._index(name_or_index)
        changes: dict[str, Any] = {}
        if mtu is not None:
            changes["mtu"] = mtu
        if master is not None:
            changes["master"] = self._index(master)
        if mac is not None:
            changes["address"] = mac
        fd = None
        try:
            if netns is not None:
                fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
                changes["net_ns_fd"] = fd
            if up is not None and netns is None:
                changes["state"] = "up" if up else "down"  # one message with the rest
            if changes:
                self.ipr.link("set", index=index, **changes)
            if promisc is not None:
                self.ipr.link("set", index=index, flags=IFF_PROMISC if promisc else 0, change=IFF_PROMISC)
        except NetlinkError as e:
            raise _kernel_error(f"cannot change link {name_or_index}{self._where()}", e) from e
        finally:
            if fd is not None:
                os.close(fd)

    def set_bridge_port(self, name_or_index: str | int, hairpin: bool) -> None:
        """Bridge-port options of an enslaved link (hairpin: send frames back out the port)."""
        index = self._index(name_or_index)
        try:
            self.ipr.brport("set", index=index, mode=int(hairpin))
        except NetlinkError as e:
            raise _kernel_error(f"cannot set bridge port options on {name_or_index}", e) from e

    def delete_link(self, name_or_index: str | int) -> bool:
        index = self.link_index(name_or_index) if isinstance(name_or_index, str) else name_or_index
        if index is None:
            return False
        try:
            self.ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code in _GONE:
                return False
            raise _kernel_error(f"cannot delete link {name_or_index}{self._where()}", e) from e
        return True

    # Addresses --------------------------------------------------------------------------

    def addresses(self, name_or_index: str | int, family: int = socket.AF_INET) -> list[str]:
        """The link's addresses as CIDR strings."""
        index = self._index(name_or_index)
        return [
            f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}" for m in self.ipr.get_addr(index=index, family=family)
        ]

    def ensure_address(self, name_or_index: str | int, cidr: str) -> bool:
        """Add `cidr` (e.g. 10.244.1.1/24) to the link. Returns True when it was added."""
        index = self._index(name_or_index)
        iface = ipaddress.ip_interface(cidr)
        try:  # the kernel answers EEXIST for an address the link already has
            self.ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                return False
            raise _kernel_error(f"cannot add {cidr} to {name_or_index}{self._where()}", e) from e
        return True

    def delete_address(self, name_or_index: str | int, cidr: str) -> bool:
        index = self.link_index(name_or_index) if isinstance(name_or_index, str) else name_or_index
        if index is None:
            return False
        iface = ipaddress.ip_interface(cidr)
        try:
            self.ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as e:
            if e.code in _GONE:
                return False
            raise _kernel_error(f"cannot remove {cidr} from {name_or_index}", e) from e
        return True

    # Routes -----------------------------------------------------------------------------

    def routes(self, table: int = 254, family: int = socket.AF_INET) -> list[Route]:
        out = []
        for m in self.ipr.get_routes(family=family, table=table):
            dst = m.get("RTA_DST")
            out.append(
                Route(
                    dst=f"{dst or ('0.0.0.0' if family == socket.AF_INET else '::')}/{m['dst_len']}",
                    gateway=m.get("RTA_GATEWAY"),
                    oif=m.get("RTA_OIF"),
                    table=m.get("RTA_TABLE") or m["table"],
                    onlink=bool(m["flags"] & RTNH_F_ONLINK),
                )
            )
        return out

    def ensure_route(
        self,
        dst: str,
        gateway: str | None = None,
        dev: str | int | None = None,
        onlink: bool = False,
        scope: int | None = None,
        src: str | None = None,
        table: int = 254,
    ) -> None:
        """Install or replace the route to `dst` (a CIDR or `default`)."""
        net = ipaddress.ip_network("0.0.0.0/0" if dst == "default" else dst, strict=False)
        spec: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen, "table": table}
        if gateway:
            spec["gateway"] = gateway
        if dev is not None:
            spec["oif"] = self._index(dev)
        if onlink:
            spec["flags"] = RTNH_F_ONLINK
        if scope is not None:
            spec["scope"] = scope
        if src:
            spec["prefsrc"] = src
        try:
            self.ipr.route("replace", **spec)
        except NetlinkError as e:
            raise _kernel_error(f"cannot install route to {dst}{self._where()}", e) from e

    def delete_route(self, dst: str, table: int = 254, gateway: str | None = None) -> bool:
        net = ipaddress.ip_network("0.0.0.0/0" if dst == "default" else dst, strict=False)
        spec: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen, "table": table}
        if gateway:
            spec["gateway"] = gateway
        try:
            self.ipr.route("del", **spec)
        except NetlinkError as e:
            if e.code in _GONE:
                return False
            raise _kernel_error(f"cannot delete route to {dst}{self._where()}", e) from e
        return True

    # Neighbours and FDB -----------------------------------------------------------------

    def neighbours(self, name_or_index: str | int) -> list[Neighbour]:
        index = self._index(name_or_index)
        return [
            Neighbour(m.get("NDA_DST"), m.get("NDA_LLADDR"), m["ifindex"], m["state"])
            for m in self.ipr.get_neighbours(ifindex=index, family=socket.AF_INET)
        ]

    def ensure_neigh(self, dev: str | int, ip: str, mac: str) -> None:
        """A permanent ARP entry `ip -> mac` on `dev` (replaces whatever was there)."""
        index = self._index(dev)
        try:
            self.ipr.neigh("replace", ifindex=index, dst=ip, lladdr=mac, state=NUD_PERMANENT)
        except NetlinkError as e:
            raise _kernel_error(f"cannot set neighbour {ip} on {dev}{self._where()}", e) from e

    def delete_neigh(self, dev: str | int, ip: str) -> bool:
        index = self.link_index(dev) if isinstance(dev, str) else dev
        if index is None:
            return False
        try:
            self.ipr.neigh("del", ifindex=index, dst=ip)
        except NetlinkError as e:
            if e.code in _GONE:
                return False
            raise _kernel_error(f"cannot delete neighbour {ip} on {dev}", e) from e
        return True

    def fdb_entries(self, dev: str | int) -> list[FdbEntry]:
        index = self._index(dev)
        return [
            FdbEntry(m.get("NDA_LLADDR"), m["ifindex"], m.get("NDA_DST"))
            for m in self.ipr.fdb("dump", ifindex=index)
            if m["ifindex"] == index
        ]

    def ensure_fdb(self, dev: str | int, mac: str, dst: str) -> None:
        """A permanent FDB entry on a VXLAN device: frames for `mac` go to underlay `dst`."""
        index = self._index(dev)
        try:
            self.ipr.fdb("replace", ifindex=index, lladdr=mac, dst=dst, state=NUD_PERMANENT, flags=NTF_SELF)
        except NetlinkError as e:
            raise _kernel_error(f"cannot set FDB entry {mac} on {dev}{self._where()}", e) from e

    def delete_fdb(self, dev: str | int, mac: str, dst: str | None = None) -> bool:
        index = self.link_index(dev) if isinstance(dev, str) else dev
        if index is None:
            return False
        spec: dict[str, Any] = {"ifindex": index, "lladdr": mac, "flags": NTF_SELF}
        if dst:
            spec["dst"] = dst
        try:
            self.ipr.fdb("del", **spec)
        except NetlinkError as e:
            if e.code in _GONE:
                return False
            raise _kernel_error(f"cannot delete FDB entry {mac} on {dev}", e) from e
        return True
