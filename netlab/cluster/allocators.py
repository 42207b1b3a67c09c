"""ClusterIP and NodePort allocation for services: pure bookkeeping of what is taken.

kube-apiserver keeps these bitmaps in etcd (`/registry/ranges/...`) so several apiservers can
share them. Here one apiserver owns allocation, so the sets live in memory and are rebuilt from
the stored services at start; etcd's compare-on-revision create still guards each service
object. Allocation happens at create time (not in a controller), and every failure is a
`Cause` naming the field, which the apiserver answers with 422 Invalid.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from netlab.cluster.status import Cause


class AllocationError(Exception):
    def __init__(self, cause: Cause) -> None:
        super().__init__(f"{cause.field}: {cause.message}")
        self.cause = cause


@dataclass
class IPAllocator:
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    used: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, cidr: str) -> IPAllocator:
        net = ipaddress.ip_network(cidr, strict=True)
        if net.num_addresses < 4:
            raise ValueError(f"service CIDR {cidr} is too small")
        return cls(net)

    @property
    def first(self) -> str:
        """The address of the `kubernetes` service, as upstream reserves it."""
        return str(self.cidr.network_address + 1)

    def _size(self) -> int:
        return self.cidr.num_addresses - 2  # network and broadcast addresses are never handed out

    def allocate(self, ip: str, field_name: str = "spec.clusterIP") -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise AllocationError(
                Cause(field_name, f'Invalid value: "{ip}": must be a valid IP address')
            ) from None
        if addr not in self.cidr or addr in (self.cidr.network_address, self.cidr.broadcast_address):
            raise AllocationError(
                Cause(
                    field_name,
                    f'Invalid value: "{ip}": provided IP is not in the valid '
                    f"range. The range of valid IPs is {self.cidr}",
                )
            )
        if str(addr) in self.used:
            raise AllocationError(
                Cause(field_name, f'Invalid value: "{ip}": provided IP is already allocated')
            )
        self.used.add(str(addr))

    def allocate_next(self, field_name: str = "spec.clusterIP") -> str:
        size = self._size()
        if len(self.used) >= size:
            raise AllocationError(Cause(field_name, "Internal error: range is full", "FieldValueInvalid"))
        base = int(self.cidr.network_address) + 1
        # random probing, then a linear scan from there: O(1) while the range is sparse
        start = random.randrange(size)
        for i in range(size):
            ip = str(ipaddress.ip_address(base + (start + i) % size))
            if ip not in self.used:
                self.used.add(ip)
                return ip
        raise AllocationError(Cause(field_name, "Internal error: range is full"))

    def release(self, ip: str | None) -> None:
        if ip:
            self.used.discard(ip)


@dataclass
class PortAllocator:
    low: int
    high: int
    used: set[int] = field(default_factory=set)

    @classmethod
    def parse(cls, text: str) -> PortAllocator:
        lo, sep, hi = text.partition("-")
        try:
            low, high = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"invalid port range {text!r}: expected LOW-HIGH") from None
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid port range {text!r}: expected 1 <= LOW <= HIGH <= 65535")
        return cls(low, high)

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    def allocate(self, port: int, field_name: str) -> None:
        if not self.low <= port <= self.high:
            raise AllocationError(
                Cause(
                    field_name,
                    f"Invalid value: {port}: provided port is not in the valid "
                    f"range. The range of valid ports is {self}",
                )
            )
        if port in self.used:
            raise AllocationError(
                Cause(field_name, f"Invalid value: {port}: provided port is already allocated")
            )
        self.used.add(port)

    def allocate_next(self, field_name: str) -> int:
        size = self.high - self.low + 1
        start = random.randrange(size)
        for i in range(size):
            port = self.low + (start + i) % size
            if port not in self.used:
                self.used.add(port)
                return port
        raise AllocationError(Cause(field_name, "Internal error: range is full"))

    def release(self, port: int | None) -> None:
        if port:
            self.used.discard(port)


@dataclass
class ServiceAllocator:
    """Both allocators, applied to whole Service objects."""

    ips: IPAllocator
    ports: PortAllocator

    def held_by(self, svc: dict) -> tuple[list[str], list[int]]:
        spec = svc.get("spec") or {}
        ips = [ip for ip in [spec.get("clusterIP")] if ip and ip != "None"]
        ports = [p["nodePort"] for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")]
        return ips, ports

    def restore(self, svc: dict) -> None:
        """Mark a stored service's addresses as taken (at start; conflicts are ignored)."""
        ips, ports = self.held_by(svc)
        for ip in ips:
            self.ips.used.add(ip)
        self.ports.used.update(ports)

    def allocate(self, svc: dict, old: dict | None = None) -> list[Cause]:
        """Fill `clusterIP`/`clusterIPs` and node ports; on any failure hold nothing new.

        `old` is the stored service on update: what it already holds stays held."""
        spec = svc.setdefault("spec", {})
        old_ips, old_ports = self.held_by(old) if old else ([], [])
        taken_ips: list[str] = []
        taken_ports: list[int] = []
        causes: list[Cause] = []
        stype = spec.get("type", "ClusterIP")
        try:
            if stype == "ExternalName":
                spec.pop("clusterIP", None)
            else:
                ip = spec.get("clusterIP")
                if old and old_ips and ip in (None, ""):
                    ip = spec["clusterIP"] = old_ips[0]
                if ip == "None":
                    pass
                elif ip in (None, ""):
                    spec["clusterIP"] = self.ips.allocate_next()
                    taken_ips.append(spec["clusterIP"])
                elif ip not in old_ips:
                    if old is not None and old_ips:
                        causes.append(Cause("spec.clusterIP", f'Invalid value: "{ip}": field is immutable'))
                    else:
                        self.ips.allocate(ip)
                        taken_ips.append(ip)
                if spec.get("clusterIP"):
                    spec["clusterIPs"] = [spec["clusterIP"]]
                    spec.setdefault("ipFamilies", ["IPv6" if ":" in spec["clusterIP"] else "IPv4"])
                    spec.setdefault("ipFamilyPolicy", "SingleStack")
            wants_nodeports = stype in ("NodePort", "LoadBalancer")
            for i, p in enumerate(spec.get("ports") or []):
                if not isinstance(p, dict):
                    continue
                fname = f"spec.ports[{i}].nodePort"
                np = p.get("nodePort")
                if not wants_nodeports:
                    continue
                if np in (None, 0):
                    p["nodePort"] = self.ports.allocate_next(fname)
                    taken_ports.append(p["nodePort"])
                elif np not in old_ports or np in taken_ports:
                    self.ports.allocate(np, fname)
                    taken_ports.append(np)
        except AllocationError as e:
            causes.append(e.cause)
        if causes:
            for ip in taken_ips:
                self.ips.release(ip)
            for port in taken_ports:
                self.ports.release(port)
        return causes

    def release_unused(self, old: dict | None, new: dict | None) -> None:
        """After a successful write: free what `old` held and `new` no longer does."""
        old_ips, old_ports = self.held_by(old) if old else ([], [])
        new_ips, new_ports = self.held_by(new) if new else ([], [])
        for ip in set(old_ips) - set(new_ips):
            self.ips.release(ip)
        for port in set(old_ports) - set(new_ports):
            self.ports.release(port)

    def release_new(self, old: dict | None, new: dict) -> None:
        """After a failed write: free what `new` took beyond what `old` held."""
        self.release_unused(new, old)
