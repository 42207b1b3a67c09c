"""netlab-bridge: a pod on the node's Linux bridge, like the reference `bridge` plugin (v1.1.1).

ADD, in the reference plugin's order:
1. ensure the bridge (`cni0` unless `bridge` says otherwise) exists and is up; a new one gets
   `mtu`, `accept_ra=0` and, with `promiscMode`, promiscuous mode; unlike the reference
   plugin it also turns on `bridge-nf-call-iptables` in the node's namespace, which Service
   proxies need for same-node traffic (kube's br_netfilter prerequisite, per namespace);
2. create the veth pair: the pod end, named `CNI_IFNAME`, is created directly in the pod's
   namespace; the host end is `veth` + 8 random hex digits, enslaved to the bridge, with
   hairpin mode when `hairpinMode` is set (a pod reaching itself through a Service VIP);
3. run the IPAM delegate (`ipam.type`) for the addresses;
4. with `isGateway`, an address without a gateway gets the subnet's first host;
5. in the pod: `arp_notify=1`, `accept_dad=0` (unless `enabledad`), the addresses, the link
   up, the IPAM routes (through the family's gateway unless they name one), and with
   `isDefaultGateway` a default route;
6. wait until the host end is operationally up;
7. with `isGateway`, put the gateway address on the bridge (an existing different IPv4 address
   is an error unless `forceAddress`) and turn on forwarding;
8. with `ipMasq`, the per-container SNAT chain (`netlab.kernel.ipmasq`);
9. the result: interfaces bridge, host veth, pod interface; every IP on interface 2.

Every step that creates something pushes its undo; a failure unwinds the stack (SNAT chain,
IPAM reservation, veth pair), so a failed ADD leaves nothing of this container behind, which
the reference plugin does not do (it leaves the veth). The bridge, its gateway address and
`ip_forward` are shared by every pod of the node and stay, as in the reference plugin.

DEL releases the IPAM reservation, deletes the pod interface when the namespace still exists,
deletes the host end named in `prevResult` if it is still on the bridge, and removes the
SNAT chain (found by name, so also after the namespace is gone). It runs
every step even when one fails and is safe to repeat. CHECK compares the live state with
`prevResult`; GC (1.1.0) forwards to IPAM and removes SNAT chains of containers that are not
valid attachments; STATUS forwards to IPAM.

Unsupported reference keys (`vlan`, `macspoofchk`) are refused with code 2 rather than
silently ignored.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cni.plugins import delegates
from cni.plugins.host_local import valid_attachments
from netlab import kernel
from netlab.cni.skel import CmdArgs
from netlab.cni.types import (
    DNS,
    INTERNAL,
    INVALID_NETWORK_CONFIG,
    SUPPORTED_VERSIONS,
    UNSUPPORTED_FIELD,
    CniError,
    Interface,
    IPConfig,
    Result,
    Route,
)
from netlab.errors import AlreadyExists, KernelError, NotFound
from netlab.kernel import Link, Rtnl
from netlab.kernel.ipmasq import delete_ipmasq, ensure_ipmasq, ipmasq_owners

DEFAULT_BRIDGE = "cni0"
OPER_UP_WAITS = (0.0, 0.05, 0.5, 1.0, 1.0)  # the reference plugin's retries, in seconds


@dataclass(frozen=True)
class BridgeConf:
    network: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    mtu: int | None = None
    hairpin: bool = False
    promisc: bool = False
    enable_dad: bool = False
    ipam_type: str | None = None
    dns: DNS | None = None
    mac: str | None = None


def _bool(config: dict[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise CniError(INVALID_NETWORK_CONFIG, f"'{key}' must be true or false, not {value!r}")
    return value


def parse_bridge_conf(config: dict[str, Any]) -> BridgeConf:
    """The bridge plugin's view of its request; code 7 (or 2) naming the key at fault."""
    bridge = config.get("bridge") or DEFAULT_BRIDGE
    if not isinstance(bridge, str) or len(bridge) > 15 or any(c in "/: " for c in bridge):
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid bridge name {bridge!r}")
    mtu = config.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535):
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid mtu {mtu!r}: must be an integer from 68 to 65535")
    for key in ("vlan", "macspoofchk"):
        if config.get(key):
            raise CniError(UNSUPPORTED_FIELD, f"netlab-bridge does not support {key}={config[key]!r}")
    hairpin, promisc = _bool(config, "hairpinMode"), _bool(config, "promiscMode")
    if hairpin and promisc:
        raise CniError(
            INVALID_NETWORK_CONFIG, "cannot set hairpin mode and promiscuous mode at the same time"
        )
    ipam = config.get("ipam")
    ipam_type = None
    if ipam is not None:
        if not isinstance(ipam, dict):
            raise CniError(INVALID_NETWORK_CONFIG, "'ipam' must be an object")
        ipam_type = ipam.get("type")
        if ipam_type is not None and not isinstance(ipam_type, str):
            raise CniError(INVALID_NETWORK_CONFIG, f"invalid ipam type {ipam_type!r}")
    dns = DNS.from_dict(config["dns"]) if isinstance(config.get("dns"), dict) and config["dns"] else None
    runtime = config.get("runtimeConfig") or {}
    mac = runtime.get("mac") if isinstance(runtime, dict) else None
    is_default_gateway = _bool(config, "isDefaultGateway")
    return BridgeConf(
        network=str(config.get("name")),
        bridge=bridge,
        is_gateway=_bool(config, "isGateway") or is_default_gateway,
        is_default_gateway=is_default_gateway,
        force_address=_bool(config, "forceAddress"),
        ip_masq=_bool(config, "ipMasq"),
        mtu=mtu,
        hairpin=hairpin,
        promisc=promisc,
        enable_dad=_bool(config, "enabledad"),
        ipam_type=ipam_type or None,
        dns=dns,
        mac=str(mac) if mac else None,
    )


def gateway_for(address: str) -> str:
    """The first host of the address's subnet (what `isGateway` uses when IPAM gave none)."""
    return str(ipaddress.ip_interface(address).network.network_address + 1)


def default_route(family: int) -> str:
    return "0.0.0.0/0" if family == 4 else "::/0"


class Undo:
    """A stack of undo steps; `unwind` runs them newest first and reports, never raises."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, fn: Callable[[], object]) -> None:
        self._steps.append((what, fn))

    def unwind(self) -> None:
        while self._steps:
            what, fn = self._steps.pop()
            try:
                fn()
            except Exception as e:  # keep unwinding: the rest must still go
                sys.stderr.write(f"netlab-bridge: undo {what} failed: {e}\n")


class NodeHandles:
    """A netlink handle to the node's namespace per thread, kept open between calls.

    In the node's CNI server one plugin object serves every call on a pool of worker
    threads, so a worker's handle can serve its next call too (a pyroute2 handle belongs to
    the thread that made it). A handle that saw an error is closed, not reused.
    """

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._local = threading.local()

    @contextlib.contextmanager
    def get(self) -> Iterator[Rtnl]:
        handle: Rtnl | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = Rtnl(self.netns)
        self._local.handle = None  # a nested call in this thread gets a handle of its own
        try:
            yield handle
        except BaseException:
            handle.close()
            raise
        self._local.handle = handle


class BridgePlugin:
    name = "bridge"
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns  # the node's namespace; None: this process's own
        self.node = NodeHandles(netns)

    # ADD ----------------------------------------------------------------------------------

    def add(self, a: CmdArgs) -> Result:
        conf = parse_bridge_conf(a.config)
        mac = a.cni_args().get("MAC") or conf.mac
        undo = Undo()
        with self.node.get() as node, contextlib.ExitStack() as stack:
            try:
                return self._add(a, conf, mac, node, stack, undo)
            except BaseException:
                undo.unwind()
                raise

    def _add(
        self,
        a: CmdArgs,
        conf: BridgeConf,
        mac: str | None,
        node: Rtnl,
        stack: contextlib.ExitStack,
        undo: Undo,
    ) -> Result:
        # links are named by index once they exist: every name lookup is one more netlink call
        br = self._ensure_bridge(node, conf)
        host = self._create_veth(node, a, conf, mac, br, undo)
        if conf.hairpin:
            node.set_bridge_port(host, hairpin=True)
        # the pod's socket is opened once its interface exists, so that the interface's
        # sysctls are written on the same trip into the pod's namespace
        sysctls: dict[str, int] = {f"net/ipv4/conf/{a.ifname}/arp_notify": 1}
        if not conf.enable_dad:
            sysctls[f"net/ipv6/conf/{a.ifname}/accept_dad"] = 0
        pod = stack.enter_context(Rtnl(a.netns, sysctls=sysctls))

        ipam = Result(cni_version=a.cni_version)
        if conf.ipam_type:
            ipam_plugins = delegates(a.env, self.netns)
            ipam_type = conf.ipam_type
            ipam = ipam_plugins.add(ipam_type, a.stdin)
            undo.push("IPAM reservation", lambda: ipam_plugins.delete(ipam_type, a.stdin))
            if not ipam.ips:
                raise CniError(INTERNAL, "IPAM plugin returned missing IP config")
        ips = [IPConfig(ip.address, ip.gateway, interface=2) for ip in ipam.ips]
        routes = list(ipam.routes)
        for ip in ips:
            if ip.gateway is None and conf.is_gateway:
                ip.gateway = gateway_for(ip.address)
            if conf.is_default_gateway and ip.gateway:
                dst = default_route(ip.family)
                if not any(
                    ipaddress.ip_network(r.dst, strict=False) == ipaddress.ip_network(dst) for r in routes
                ):
                    routes.append(Route(dst=dst, gw=ip.gateway))

        pod_link = self._configure_pod(a, conf, pod, ips, routes)
        host_link = self._wait_oper_up(node, host)

        if conf.is_gateway:
            for ip in ips:
                if ip.gateway:
                    prefix = ipaddress.ip_interface(ip.address).network.prefixlen
                    self._ensure_gateway_address(node, conf, br, f"{ip.gateway}/{prefix}")
            forwarding = {4: "net.ipv4.ip_forward", 6: "net/ipv6/conf/all/forwarding"}
            for family in sorted({ip.family for ip in ips}):
                kernel.set_sysctl(self.netns, forwarding[family], 1)
        if conf.ip_masq and ips:
            undo.push("SNAT chain", lambda: delete_ipmasq(self.netns, conf.network, a.container_id))
            ensure_ipmasq(self.netns, conf.network, a.container_id, [ip.address for ip in ips])

        br_link = node.get_link(br)  # read again: a bridge takes the lowest MAC of its ports
        return Result(
            cni_version=a.cni_version,
            interfaces=[
                Interface(br_link.name, br_link.mac or "", mtu=br_link.mtu),
                Interface(host_link.name, host_link.mac or "", mtu=host_link.mtu),
                Interface(pod_link.name, pod_link.mac or "", sandbox=a.netns, mtu=pod_link.mtu),
            ],
            ips=ips,
            routes=routes,
            dns=conf.dns or ipam.dns,
        )

    def _ensure_bridge(self, node: Rtnl, conf: BridgeConf) -> int:
        try:
            link = node.get_link(conf.bridge)
        except NotFound:
            index = node.ensure_bridge(conf.bridge, mtu=conf.mtu)
            # bridged pod-to-pod frames must traverse iptables, or a same-node pod -> Service
            # reply skips the reverse NAT (kubernetes#38802); the key is per namespace
            kernel.set_sysctls(
                self.netns,
                {f"net/ipv6/conf/{conf.bridge}/accept_ra": 0, "net/bridge/bridge-nf-call-iptables": 1},
                missing_ok=True,
            )
        else:
            if link.kind != "bridge":
                raise CniError(INTERNAL, f"{conf.bridge} already exists but is not a bridge ({link.kind})")
            index = link.index
            if not link.up:
                node.set_link(index, up=True)
        if conf.promisc:
            node.set_link(index, promisc=True)
        return index

    def _create_veth(
        self, node: Rtnl, a: CmdArgs, conf: BridgeConf, mac: str | None, br: int, undo: Undo
    ) -> int:
        """The veth pair: the host end made on the bridge and up, the pod end (down) in the pod."""
        for _ in range(8):
            host_name = "veth" + secrets.token_hex(4)
            try:
                index = node.add_veth(
                    host_name, a.ifname, peer_netns=a.netns, mtu=conf.mtu, peer_mac=mac, master=br, up=True
                )
            except AlreadyExists:
                # the pod's end, or (rarely) a host name collision: then try another name
                with Rtnl(a.netns) as pod:
                    if pod.link_index(a.ifname) is not None:
                        raise CniError(
                            INTERNAL, f"container veth name provided ({a.ifname}) already exists"
                        ) from None
                continue
            undo.push(f"veth {host_name}", functools.partial(node.delete_link, index))
            return index
        raise CniError(INTERNAL, f"cannot create a veth pair for {a.ifname}: names keep colliding")

    def _configure_pod(
        self, a: CmdArgs, conf: BridgeConf, pod: Rtnl, ips: list[IPConfig], routes: list[Route]
    ) -> Link:
        """Addresses, link up and routes in the pod (its sysctls are set as `pod` opened)."""
        link = pod.get_link(a.ifname)  # its MAC and MTU are final: the result reports them
        for ip in ips:
            pod.ensure_address(link.index, ip.address)
        pod.set_link(link.index, up=True)
        gateways = {ip.family: ip.gateway for ip in reversed(ips) if ip.gateway}
        for r in routes:
            family = ipaddress.ip_network(r.dst, strict=False).version
            pod.ensure_route(r.dst, gateway=r.gw or gateways.get(family), dev=link.index)
        return link

    def _wait_oper_up(self, node: Rtnl, host: int) -> Link:
        link = None
        for pause in OPER_UP_WAITS:
            time.sleep(pause)
            link = node.get_link(host)
            if link.oper_state == "UP":
                return link
        raise CniError(INTERNAL, f"bridge port in error state: {link.oper_state if link else '?'}")

    def _ensure_gateway_address(self, node: Rtnl, conf: BridgeConf, br: int, cidr: str) -> None:
        want = ipaddress.ip_interface(cidr)
        for have_text in node.addresses(br, socket.AF_INET if want.version == 4 else socket.AF_INET6):
            have = ipaddress.ip_interface(have_text)
            if have == want:
                return
            if want.version == 4 or want.ip in have.network or have.ip in want.network:
                if not conf.force_address:
                    raise CniError(
                        INTERNAL, f'"{conf.bridge}" already has an IP address different from {cidr}'
                    )
                node.delete_address(br, have_text)
        node.ensure_address(br, cidr)

    # DEL ----------------------------------------------------------------------------------

    def delete(self, a: CmdArgs) -> None:
        conf = parse_bridge_conf(a.config)
        errors: list[Exception] = []
        if conf.ipam_type:
            try:
                delegates(a.env, self.netns).delete(conf.ipam_type, a.stdin)
            except CniError as e:
                errors.append(e)
        if a.netns:
            try:
                with Rtnl(a.netns) as pod:
                    pod.delete_link(a.ifname)
            except NotFound:
                pass  # the namespace is gone, and the veth pair with it
            except KernelError as e:
                if e.errno != errno.EINVAL:  # EINVAL: the path is no longer a namespace
                    errors.append(e)
        try:
            self._delete_host_veths(a, conf)
        except KernelError as e:
            errors.append(e)
        if conf.ip_masq:
            try:
                delete_ipmasq(self.netns, conf.network, a.container_id)
            except KernelError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def _delete_host_veths(self, a: CmdArgs, conf: BridgeConf) -> None:
        """The host end named in prevResult, if it is still a port of our bridge.

        Usually deleting the pod end took it along. But a namespace whose path is gone may
        live on (a process still holds it) and keep its veth pair, and a namespace being
        destroyed releases its links only later: deleting the host end here makes DEL
        synchronous in both cases.
        """
        try:
            prev = a.prev_result
        except CniError:
            prev = None
        if prev is None:
            return
        names = [i.name for i in prev.interfaces if not i.sandbox and i.name != conf.bridge]
        if not names:
            return
        with self.node.get() as node:
            br = node.link_index(conf.bridge)
            for name in names:
                try:
                    link = node.get_link(name)
                except NotFound:
                    continue
                if link.kind == "veth" and br is not None and link.master == br:
                    node.delete_link(link.index)

    # CHECK --------------------------------------------------------------------------------

    def check(self, a: CmdArgs) -> None:
        conf = parse_bridge_conf(a.config)
        prev = a.prev_result
        if prev is None:
            raise CniError(INVALID_NETWORK_CONFIG, "Required prevResult missing")
        if conf.ipam_type:
            delegates(a.env, self.netns).check(conf.ipam_type, a.stdin)
        pod_index = next(
            (i for i, itf in enumerate(prev.interfaces) if itf.name == a.ifname and itf.sandbox == a.netns),
            None,
        )
        if pod_index is None:
            raise CniError(INTERNAL, f"prevResult has no interface {a.ifname} in {a.netns}")
        host_names = [itf.name for itf in prev.interfaces if not itf.sandbox and itf.name != conf.bridge]
        if not host_names:
            raise CniError(INTERNAL, "prevResult has no host veth")
        with self.node.get() as node, Rtnl(a.netns) as pod:
            br = node.link_index(conf.bridge)
            if br is None or node.get_link(br).kind != "bridge":
                raise CniError(INTERNAL, f"bridge {conf.bridge} is missing")
            try:
                host = node.get_link(host_names[0])
                link = pod.get_link(a.ifname)
            except NotFound as e:
                raise CniError(INTERNAL, str(e)) from None
            if host.master != br:
                raise CniError(INTERNAL, f"{host.name} is not attached to {conf.bridge}")
            if link.kind != "veth" or host.peer_index != link.index:
                raise CniError(INTERNAL, f"{a.ifname} is not the peer of {host.name}")
            want_mac = prev.interfaces[pod_index].mac
            if want_mac and (link.mac or "").lower() != want_mac.lower():
                raise CniError(INTERNAL, f"{a.ifname} has MAC {link.mac}, expected {want_mac}")
            have = set(pod.addresses(a.ifname, socket.AF_INET)) | set(
                pod.addresses(a.ifname, socket.AF_INET6)
            )
            for ip in prev.ips:
                if ip.interface == pod_index and ip.address not in have:
                    raise CniError(INTERNAL, f"{a.ifname} lacks its address {ip.address}")

    # GC, STATUS ---------------------------------------------------------------------------

    def gc(self, a: CmdArgs) -> None:
        conf = parse_bridge_conf(a.config)
        valid_ids = {cid for cid, _ in valid_attachments(a)}
        errors: list[Exception] = []
        if conf.ipam_type:
            try:
                delegates(a.env, self.netns).gc(conf.ipam_type, a.stdin)
            except CniError as e:
                errors.append(e)
        if conf.ip_masq:
            for family in (4, 6):
                for cid in ipmasq_owners(self.netns, conf.network, family):
                    if cid not in valid_ids:
                        try:
                            delete_ipmasq(self.netns, conf.network, cid)
                        except KernelError as e:
                            errors.append(e)
        if errors:
            raise errors[0]

    def status(self, a: CmdArgs) -> None:
        conf = parse_bridge_conf(a.config)
        if conf.ipam_type:
            delegates(a.env, self.netns).status(conf.ipam_type, a.stdin)
