"""flannel's network config (`<prefix>/config` in etcd): parsing, validation, defaults, rendering.

Pure data: the same rules flannel applies (`pkg/subnet/config.go`), plus the checks flannel
leaves out (SubnetMin above SubnetMax, an unknown backend, a network that overlaps the
underlay or the service range). Keys are matched case-insensitively, as Go's JSON decoder
does, and rendered with flannel's capitalisation; `Backend.Type` is always written out,
because flannel's code falls back to `udp` when it is missing, which netlab does not implement.

Every error is one line naming the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from netlab.errors import ConfigError

DEFAULT_PREFIX = "/coreos.com/network"
BACKENDS = ("vxlan", "host-gw")
DEFAULT_VNI = 1
DEFAULT_VXLAN_PORT = 8472  # Linux's default, not IANA's 4789: what flannel's Port 0 means
MAX_NETWORK_PREFIX = 28
MAX_SUBNET_LEN = 30


@dataclass(frozen=True)
class Backend:
    type: str = "vxlan"
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_VXLAN_PORT
    mtu: int = 0  # 0: the underlay interface's MTU
    learning: bool = False
    direct_routing: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.type == "host-gw":
            return {"Type": "host-gw"}
        out: dict[str, Any] = {"Type": self.type, "VNI": self.vni, "Port": self.port}
        if self.mtu:
            out["MTU"] = self.mtu
        if self.learning:
            out["Learning"] = True
        if self.direct_routing:
            out["DirectRouting"] = True
        return out


@dataclass(frozen=True)
class NetworkConfig:
    network: IPv4Network
    subnet_len: int
    subnet_min: IPv4Address
    subnet_max: IPv4Address
    backend: Backend

    def to_json(self) -> dict[str, Any]:
        return {
            "Network": str(self.network),
            "SubnetLen": self.subnet_len,
            "SubnetMin": str(self.subnet_min),
            "SubnetMax": str(self.subnet_max),
            "Backend": self.backend.to_json(),
        }

    def render(self) -> str:
        """The value stored in etcd: compact JSON like Go's encoder writes."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    def subnet_fits(self, subnet: IPv4Network) -> bool:
        """Is `subnet` one this config hands out (right length, inside SubnetMin..SubnetMax)?"""
        return (
            subnet.prefixlen == self.subnet_len
            and self.subnet_min <= subnet.network_address <= self.subnet_max
        )

    @property
    def capacity(self) -> int:
        """How many subnets SubnetMin..SubnetMax holds."""
        step = 1 << (32 - self.subnet_len)
        return (int(self.subnet_max) - int(self.subnet_min)) // step + 1


def make_config(
    network: str | IPv4Network,
    subnet_len: int | None = None,
    backend: str = "vxlan",
    subnet_min: str | None = None,
    subnet_max: str | None = None,
    vni: int = DEFAULT_VNI,
    port: int = DEFAULT_VXLAN_PORT,
) -> NetworkConfig:
    """A validated config from plain arguments (what `netlab up` writes)."""
    raw: dict[str, Any] = {"Network": str(network), "Backend": {"Type": backend}}
    if subnet_len is not None:
        raw["SubnetLen"] = subnet_len
    if subnet_min is not None:
        raw["SubnetMin"] = subnet_min
    if subnet_max is not None:
        raw["SubnetMax"] = subnet_max
    if backend == "vxlan":
        raw["Backend"].update({"VNI": vni, "Port": port})
    return config_from_dict(raw)


def parse_config(text: str | bytes, where: str = "network config") -> NetworkConfig:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{where}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _fold(data: Mapping[str, Any]) -> dict[str, Any]:
    """Go matches JSON keys to fields case-insensitively; so do we."""
    return {str(k).lower(): v for k, v in data.items()}


def _int_field(data: dict[str, Any], key: str, name: str, default: int) -> int:
    v = data.get(key.lower())
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name}: expected an integer, not {v!r}")
    return v


def _bool_field(data: dict[str, Any], key: str, name: str) -> bool:
    v = data.get(key.lower(), False)
    if not isinstance(v, bool):
        raise ConfigError(f"{name}: expected true or false, not {v!r}")
    return v


def _addr_field(data: dict[str, Any], key: str) -> IPv4Address | None:
    v = data.get(key.lower())
    if v is None or v == "":
        return None
    try:
        addr = ip_address(v) if isinstance(v, str) else None
    except ValueError:
        addr = None
    if not isinstance(addr, IPv4Address):
        raise ConfigError(f"{key}: {v!r} is not an IPv4 address")
    return addr


def config_from_dict(data: Mapping[str, Any]) -> NetworkConfig:
    d = _fold(data)
    if d.get("enableipv6"):
        raise ConfigError("EnableIPv6: IPv6 networks are not supported by netlab")
    if d.get("enableipv4") is False:
        raise ConfigError("EnableIPv4: netlab needs an IPv4 network")
    raw_net = d.get("network")
    if not raw_net:
        raise ConfigError('Network: missing (e.g. "10.244.0.0/16")')
    try:
        network = ip_network(raw_net) if isinstance(raw_net, str) else None
    except ValueError as e:
        raise ConfigError(f"Network: {raw_net!r} is not a valid CIDR ({e})") from None
    if not isinstance(network, IPv4Network):
        raise ConfigError(f"Network: {raw_net!r} is not an IPv4 CIDR")
    if network.prefixlen > MAX_NETWORK_PREFIX:
        raise ConfigError(f"Network: {network} is too small (the smallest useful network is /28)")

    default_len = 24 if network.prefixlen <= 22 else network.prefixlen + 2
    subnet_len = _int_field(d, "SubnetLen", "SubnetLen", default_len)
    if subnet_len > MAX_SUBNET_LEN:
        raise ConfigError(f"SubnetLen: /{subnet_len} is too long (at most /30)")
    if subnet_len < network.prefixlen + 2:
        raise ConfigError(
            f"SubnetLen: /{subnet_len} does not fit {network} at least four times "
            f"(use /{network.prefixlen + 2} or longer)"
        )
    step = 1 << (32 - subnet_len)
    first = network.network_address + step  # the first subnet is never handed out
    last = IPv4Address(int(network.broadcast_address) - step + 1)
    subnet_min = _addr_field(d, "SubnetMin") or first
    subnet_max = _addr_field(d, "SubnetMax") or last
    for name, addr in (("SubnetMin", subnet_min), ("SubnetMax", subnet_max)):
        if addr not in network:
            raise ConfigError(f"{name}: {addr} is outside Network {network}")
        if int(addr) % step:
            raise ConfigError(f"{name}: {addr} is not on a /{subnet_len} boundary")
    if subnet_min > subnet_max:
        raise ConfigError(f"SubnetMin: {subnet_min} is above SubnetMax {subnet_max}")

    backend = _backend(d.get("backend"))
    return NetworkConfig(network, subnet_len, subnet_min, subnet_max, backend)


def _backend(raw: Any) -> Backend:
    if raw is None:
        raise ConfigError(
            'Backend: missing; set {"Type": "vxlan"} or {"Type": "host-gw"} '
            "(flannel would fall back to udp, which netlab does not implement)"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Backend: expected an object, not {raw!r}")
    b = _fold(raw)
    kind = b.get("type")
    if not kind:
        raise ConfigError("Backend.Type: missing; use vxlan or host-gw")
    if kind not in BACKENDS:
        raise ConfigError(f"Backend.Type: unknown backend {kind!r} (netlab implements vxlan and host-gw)")
    if kind == "host-gw":
        return Backend(type="host-gw")
    vni = _int_field(b, "VNI", "Backend.VNI", DEFAULT_VNI)
    if not 0 < vni < (1 << 24):
        raise ConfigError(f"Backend.VNI: {vni} is outside 1..16777215")
    port = _int_field(b, "Port", "Backend.Port", 0) or DEFAULT_VXLAN_PORT
    if not 0 < port < 65536:
        raise ConfigError(f"Backend.Port: {port} is not a UDP port")
    mtu = _int_field(b, "MTU", "Backend.MTU", 0)
    if mtu and not 576 <= mtu <= 65535:
        raise ConfigError(f"Backend.MTU: {mtu} is outside 576..65535")
    if _bool_field(b, "GBP", "Backend.GBP"):
        raise ConfigError("Backend.GBP: group-based policy is not supported by netlab")
    return Backend(
        type="vxlan",
        vni=vni,
        port=port,
        mtu=mtu,
        learning=_bool_field(b, "Learning", "Backend.Learning"),
        direct_routing=_bool_field(b, "DirectRouting", "Backend.DirectRouting"),
    )


def check_no_overlap(config: NetworkConfig, others: Mapping[str, IPv4Network]) -> None:
    """The pod network must not overlap the lab's other networks (underlay, services)."""
    for name, net in others.items():
        if config.network.overlaps(net):
            raise ConfigError(f"Network: {config.network} overlaps the {name} {net}")
