"""Programming one node's namespace for its peers: the VXLAN and host-gw data planes.

Both backends share one shape, so flanneld's event handling is the same for either:
`setup()` prepares the node and says what to publish in its lease, `configure()` installs
what the node's own subnet needs, `apply(lease, previous)` programs one remote node (or
updates it in place), `remove(lease)` unprograms it, and `sync(leases)` makes the kernel match
exactly a full list of remote leases (after start-up, an etcd outage or a compaction), removing
whatever belongs to nodes that are gone.

VXLAN (flannel's `vxlan` backend): a device `flannel.<VNI>` with local = the underlay address,
`nolearning`, MTU = underlay MTU - 50, transmit checksum offload off; per peer, in this order:
1. a permanent neighbour entry: the peer subnet's network address -> the peer's VTEP MAC;
2. a permanent FDB entry: that MAC -> the peer's underlay address;
3. the route to the peer's subnet via its network address, `onlink`, on the VXLAN device.
The route comes last because a route whose gateway has no neighbour entry makes the kernel
ARP on a device that cannot answer, and packets sent meanwhile are dropped. Removal runs in
the reverse order for the same reason. With `DirectRouting`, a peer whose underlay address
is on-link gets a plain route instead, as in host-gw.

host-gw: no device; per peer, a route to its subnet via its underlay address on the uplink.
It requires every peer to be on the uplink's own network (L2 adjacency), which is checked.

Every kernel call goes through `netlab.kernel`; the netns handle is opened once and held.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

from netlab import kernel
from netlab.errors import ConfigError, KernelError, NetlabError, NotFound
from netlab.kernel import Rtnl
from netlab.overlay.config import Backend
from netlab.overlay.subnets import Lease, LeaseAttrs

log = logging.getLogger(__name__)

VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
TX_CSUM_FEATURE = "tx-checksum-ip-generic"


@dataclass(frozen=True)
class Uplink:
    """The node's underlay interface, its address and MTU."""

    name: str
    address: IPv4Interface
    mtu: int

    @property
    def public_ip(self) -> IPv4Address:
        return self.address.ip


def find_uplink(rtnl: Rtnl, iface: str | None = None, public_ip: str | None = None) -> Uplink:
    """The underlay interface: `iface` when given, else the one holding the default route.

    The public IP is `public_ip` when given (it must be on the interface), else the
    interface's first IPv4 address.
    """
    if iface is None:
        defaults = [r for r in rtnl.routes() if r.dst == "0.0.0.0/0" and r.oif]
        if not defaults:
            raise ConfigError("cannot choose the underlay interface: no default route; pass --iface")
        link = rtnl.get_link(defaults[0].oif or 0)
    else:
        try:
            link = rtnl.get_link(iface)
        except NotFound:
            raise ConfigError(f"--iface: no interface {iface} in {rtnl.netns or 'this namespace'}") from None
    addrs = [IPv4Interface(a) for a in rtnl.addresses(link.index)]
    if not addrs:
        raise ConfigError(f"--iface: {link.name} has no IPv4 address")
    if public_ip is None:
        chosen = addrs[0]
    else:
        matches = [a for a in addrs if str(a.ip) == public_ip]
        if not matches:
            raise ConfigError(f"--public-ip: {public_ip} is not an address of {link.name}")
        chosen = matches[0]
    return Uplink(link.name, chosen, link.mtu)


class Dataplane(Protocol):
    backend_type: str
    mtu: int
    netns: str | None

    def setup(self) -> LeaseAttrs: ...

    def undo_setup(self) -> None: ...

    def present(self) -> bool: ...

    def configure(self, own: IPv4Network, network: IPv4Network) -> None: ...

    def apply(self, lease: Lease, previous: Lease | None = None) -> bool: ...

    def remove(self, lease: Lease) -> None: ...

    def sync(self, leases: Iterable[Lease], network: IPv4Network, own: IPv4Network) -> None: ...

    def close(self) -> None: ...


class _Base:
    backend_type = ""

    def __init__(self, netns: str | None, uplink: Uplink) -> None:
        self.netns = netns
        self.uplink = uplink
        self.rtnl = Rtnl(netns)

    def close(self) -> None:
        self.rtnl.close()

    def undo_setup(self) -> None:
        pass

    def present(self) -> bool:
        """Is what `setup` made still there? (Someone may delete the VXLAN device by hand.)"""
        return True

    def _direct_route(self, lease: Lease) -> None:
        self.rtnl.ensure_route(str(lease.subnet), gateway=str(lease.attrs.public_ip), dev=self.uplink.name)

    def _onlink(self, ip: IPv4Address) -> bool:
        return ip in self.uplink.address.network and ip != self.uplink.public_ip

    def _stale_routes(self, network: IPv4Network, own: IPv4Network, wanted: set[IPv4Network]) -> list[str]:
        """Routes this backend owns (inside `network`, not the node's own) for unwanted subnets."""
        out = []
        for r in self.rtnl.routes():
            dst = IPv4Network(r.dst)
            if dst == own or not dst.subnet_of(network) or dst in wanted:
                continue
            if self._owns_route(r.oif, r.gateway):
                out.append(r.dst)
        return out

    def _owns_route(self, oif: int | None, gateway: str | None) -> bool:
        uplink_index = self.rtnl.link_index(self.uplink.name)
        return oif == uplink_index and gateway is not None


class HostGw(_Base):
    """Plain routes to each peer's subnet via its underlay address."""

    backend_type = "host-gw"

    def __init__(self, netns: str | None, uplink: Uplink) -> None:
        super().__init__(netns, uplink)
        self.mtu = uplink.mtu

    def setup(self) -> LeaseAttrs:
        return LeaseAttrs(self.uplink.public_ip, self.backend_type)

    def configure(self, own: IPv4Network, network: IPv4Network) -> None:
        pass  # the bridge plugin puts the gateway address on cni0

    def apply(self, lease: Lease, previous: Lease | None = None) -> bool:
        if not self._onlink(lease.attrs.public_ip):
            log.error(
                "host-gw: peer %s (%s) is not on %s's network %s; host-gw needs all nodes on one L2 network",
                lease.subnet,
                lease.attrs.public_ip,
                self.uplink.name,
                self.uplink.address.network,
            )
            return False
        self._direct_route(lease)
        return True

    def remove(self, lease: Lease) -> None:
        self.rtnl.delete_route(str(lease.subnet))

    def sync(self, leases: Iterable[Lease], network: IPv4Network, own: IPv4Network) -> None:
        leases = list(leases)
        for dst in self._stale_routes(network, own, {lease.subnet for lease in leases}):
            log.info("removing stale route to %s", dst)
            self.rtnl.delete_route(dst)
        for lease in leases:
            self.apply(lease)


class Vxlan(_Base):
    """flannel's VXLAN backend (see the module docstring)."""

    backend_type = "vxlan"

    def __init__(
        self, netns: str | None, uplink: Uplink, backend: Backend, disable_tx_checksum: bool = True
    ) -> None:
        super().__init__(netns, uplink)
        self.backend = backend
        self.device = f"flannel.{backend.vni}"
        self.mtu = (backend.mtu or uplink.mtu) - VXLAN_OVERHEAD
        self.disable_tx_checksum = disable_tx_checksum
        self.mac = ""
        self.created = False

    def setup(self) -> LeaseAttrs:
        self.created = self.rtnl.link_index(self.device) is None
        self.rtnl.ensure_vxlan(
            self.device,
            vni=self.backend.vni,
            local=str(self.uplink.public_ip),
            dev=self.uplink.name,
            port=self.backend.port,
            learning=self.backend.learning,
            mtu=self.mtu,
        )
        if self.disable_tx_checksum:
            kernel.set_offloads(self.netns, self.device, {TX_CSUM_FEATURE: False})
        with contextlib.suppress(NotFound):
            kernel.set_sysctl(self.netns, f"net/ipv6/conf/{self.device}/accept_ra", 0)
        # read the MAC only now that the device is up: it may change on first up (flannel#1795)
        mac = self.rtnl.get_link(self.device).mac
        if not mac:
            raise KernelError(f"{self.device} has no MAC address")
        self.mac = mac
        return LeaseAttrs(self.uplink.public_ip, self.backend_type, self.backend.vni, mac)

    def present(self) -> bool:
        return self.rtnl.link_index(self.device) is not None

    def undo_setup(self) -> None:
        if self.created:
            self.rtnl.delete_link(self.device)
            self.created = False

    def configure(self, own: IPv4Network, network: IPv4Network) -> None:
        """`<own network address>/32` on the device; other addresses inside `network` go."""
        want = f"{own.network_address}/32"
        for addr in self.rtnl.addresses(self.device):
            if addr != want and IPv4Interface(addr).ip in network:
                self.rtnl.delete_address(self.device, addr)
        self.rtnl.ensure_address(self.device, want)

    def _direct(self, lease: Lease) -> bool:
        return self.backend.direct_routing and self._onlink(lease.attrs.public_ip)

    def apply(self, lease: Lease, previous: Lease | None = None) -> bool:
        a = lease.attrs
        if self._direct(lease):
            if previous is not None and not self._direct(previous):
                self._remove_vxlan(previous)
            self._direct_route(lease)
            return True
        if a.vtep_mac is None:
            log.warning("ignoring lease %s: no VtepMAC in its BackendData", lease.subnet)
            return False
        gw = str(lease.subnet.network_address)
        # 1. neighbour, 2. FDB, 3. route: with rollback so a failure leaves nothing half-made
        self.rtnl.ensure_neigh(self.device, gw, a.vtep_mac)
        try:
            self.rtnl.ensure_fdb(self.device, a.vtep_mac, str(a.public_ip))
        except NetlabError:
            self.rtnl.delete_neigh(self.device, gw)
            raise
        try:
            self.rtnl.ensure_route(str(lease.subnet), gateway=gw, dev=self.device, onlink=True)
        except NetlabError:
            self.rtnl.delete_fdb(self.device, a.vtep_mac, str(a.public_ip))
            self.rtnl.delete_neigh(self.device, gw)
            raise
        if previous is not None and previous.attrs.vtep_mac and previous.attrs.vtep_mac != a.vtep_mac:
            # the peer's device was recreated: its old MAC must not linger in the FDB
            self.rtnl.delete_fdb(self.device, previous.attrs.vtep_mac)
        return True

    def _remove_vxlan(self, lease: Lease) -> None:
        self.rtnl.delete_route(str(lease.subnet))
        if lease.attrs.vtep_mac:
            self.rtnl.delete_fdb(self.device, lease.attrs.vtep_mac)
        self.rtnl.delete_neigh(self.device, str(lease.subnet.network_address))

    def remove(self, lease: Lease) -> None:
        # the route first, so nothing is routed to a gateway whose neighbour entry is gone
        self._remove_vxlan(lease)

    def _owns_route(self, oif: int | None, gateway: str | None) -> bool:
        if oif is not None and oif == self.rtnl.link_index(self.device):
            return True
        return self.backend.direct_routing and super()._owns_route(oif, gateway)

    def sync(self, leases: Iterable[Lease], network: IPv4Network, own: IPv4Network) -> None:
        leases = list(leases)
        wanted = {lease.subnet for lease in leases}
        for dst in self._stale_routes(network, own, wanted):
            log.info("removing stale route to %s", dst)
            self.rtnl.delete_route(dst)
        tunnelled = [lease for lease in leases if not self._direct(lease) and lease.attrs.vtep_mac]
        want_neigh = {str(lease.subnet.network_address): lease.attrs.vtep_mac for lease in tunnelled}
        want_fdb = {(lease.attrs.vtep_mac, str(lease.attrs.public_ip)) for lease in tunnelled}
        for n in self.rtnl.neighbours(self.device):
            if n.state & 0x80 and want_neigh.get(n.ip) != n.mac:  # NUD_PERMANENT: ours
                log.info("removing stale neighbour %s on %s", n.ip, self.device)
                self.rtnl.delete_neigh(self.device, n.ip)
        for f in self.rtnl.fdb_entries(self.device):
            if f.dst is not None and (f.mac, f.dst) not in want_fdb:
                log.info("removing stale FDB entry %s -> %s", f.mac, f.dst)
                self.rtnl.delete_fdb(self.device, f.mac, f.dst)
        for lease in leases:
            self.apply(lease)


def make_dataplane(
    backend: Backend, netns: str | None, uplink: Uplink, disable_tx_checksum: bool = True
) -> Dataplane:
    if backend.type == "vxlan":
        return Vxlan(netns, uplink, backend, disable_tx_checksum)
    if backend.type == "host-gw":
        return HostGw(netns, uplink)
    raise ConfigError(f"Backend.Type: unknown backend {backend.type!r}")
