"""Subnet arithmetic and flannel's lease records, as pure functions.

- Subnet keys: `10.244.1.0/24` is stored under `<prefix>/subnets/10.244.1.0-24` (flannel's
  `MakeSubnetKey`; the parser accepts the dual-stack suffix `&<v6>-<len>` and ignores it).
- Lease values: flannel's `LeaseAttrs` JSON, written in Go's field order and compact form, so
  `etcdctl get` shows byte-for-byte what flanneld would have written:
  `{"PublicIP":"192.168.56.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"..."}}`.
  Values we cannot read are reported (None) for the caller to log and skip, never fatal.
- Choosing a subnet: walk SubnetMin..SubnetMax, skip every subnet that overlaps a taken one,
  and pick at random among the first 100 free ones (flannel's rule: random spreads racing
  nodes apart, the cap keeps the walk short on a big network).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from netlab.overlay.config import NetworkConfig

MAX_CANDIDATES = 100

_KEY_RE = re.compile(r"^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def subnet_key(subnet: IPv4Network) -> str:
    return f"{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key(key: str) -> IPv4Network | None:
    """`10.244.1.0-24` (the last path element) -> 10.244.1.0/24; None when it is not one."""
    m = _KEY_RE.match(key.rsplit("/", 1)[-1])
    if not m:
        return None
    try:
        return IPv4Network(f"{m.group(1)}/{m.group(2)}")
    except ValueError:
        return None


def subnets_prefix(prefix: str) -> str:
    return prefix.rstrip("/") + "/subnets/"


def config_key(prefix: str) -> str:
    return prefix.rstrip("/") + "/config"


def lease_key(prefix: str, subnet: IPv4Network) -> str:
    return subnets_prefix(prefix) + subnet_key(subnet)


@dataclass(frozen=True)
class LeaseAttrs:
    """What a node publishes about itself with its subnet."""

    public_ip: IPv4Address
    backend_type: str
    vni: int | None = None
    vtep_mac: str | None = None

    def render(self) -> str:
        d: dict[str, Any] = {"PublicIP": str(self.public_ip), "PublicIPv6": None}
        if self.backend_type:
            d["BackendType"] = self.backend_type
        if self.vtep_mac is not None:
            d["BackendData"] = {"VNI": self.vni, "VtepMAC": self.vtep_mac}
        return json.dumps(d, separators=(",", ":"))


def parse_lease_attrs(value: bytes | str) -> LeaseAttrs | None:
    """flannel's lease JSON; None when it is not a usable lease value."""
    try:
        d = json.loads(value)
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    d = {str(k).lower(): v for k, v in d.items()}
    raw_ip = d.get("publicip")
    if not isinstance(raw_ip, str):
        return None
    try:
        public_ip = ip_address(raw_ip)
    except ValueError:
        return None
    if not isinstance(public_ip, IPv4Address):
        return None
    backend_type = d.get("backendtype") or ""
    if not isinstance(backend_type, str):
        return None
    data = d.get("backenddata")
    vni = mac = None
    if isinstance(data, dict):
        data = {str(k).lower(): v for k, v in data.items()}
        raw_mac = data.get("vtepmac")
        if isinstance(raw_mac, str) and _MAC_RE.match(raw_mac.lower()):
            mac = raw_mac.lower()
        raw_vni = data.get("vni")
        if isinstance(raw_vni, int) and not isinstance(raw_vni, bool):
            vni = raw_vni
    return LeaseAttrs(public_ip, backend_type, vni, mac)


@dataclass(frozen=True)
class Lease:
    """One node's subnet as found in etcd."""

    subnet: IPv4Network
    attrs: LeaseAttrs
    lease_id: int  # the etcd lease the key is attached to; 0 for a reservation
    mod_revision: int
    expires_in: int | None = None  # seconds, when known; None for a reservation

    @property
    def reserved(self) -> bool:
        return self.lease_id == 0


def candidates(config: NetworkConfig) -> Iterator[IPv4Network]:
    """Every subnet SubnetMin..SubnetMax, in order."""
    step = 1 << (32 - config.subnet_len)
    addr = int(config.subnet_min)
    while addr <= int(config.subnet_max):
        yield IPv4Network((addr, config.subnet_len))
        addr += step


def free_subnets(
    config: NetworkConfig, taken: Iterable[IPv4Network], limit: int = MAX_CANDIDATES
) -> list[IPv4Network]:
    """Up to `limit` subnets in range that overlap none of `taken`, in address order."""
    taken = list(taken)
    out = []
    for sn in candidates(config):
        if any(sn.overlaps(t) for t in taken):
            continue
        out.append(sn)
        if len(out) >= limit:
            break
    return out


def pick_subnet(
    config: NetworkConfig, taken: Iterable[IPv4Network], rng: random.Random | None = None
) -> IPv4Network | None:
    """A random free subnet among the first 100, or None when the range is exhausted."""
    free = free_subnets(config, taken)
    if not free:
        return None
    return (rng or random).choice(free)


def first_host(subnet: IPv4Network) -> str:
    """`10.244.1.1/24` for 10.244.1.0/24: what subnet.env's FLANNEL_SUBNET holds."""
    return f"{subnet.network_address + 1}/{subnet.prefixlen}"
