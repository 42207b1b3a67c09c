"""The single-host lab's topology as pure data: nodes, address plan, and its validation.

A `Topology` says what the lab should look like and nothing about how it is built: node names,
each node's underlay address and pod subnet, the client's address, the service range and the
underlay MTU. It comes from `--nodes N` (`default_topology`) or from a YAML file
(`load_topology`), and it is what `lab.json` records, so every later verb sees the same plan.

The default plan follows the design: underlay 192.168.56.0/24 with node i at .10+i and the
external client at .2, pod network 10.244.0.0/16 with node i owning 10.244.i.0/24, services
10.96.0.0/12, and a gateway at the underlay's first host (.1) that every node and the client
use as their default route, as machines on a real network have one. A topology file may
change any of these and name the nodes; anything it leaves
out is derived the same way from the node's position. Every problem is reported as one line
that names the file and the field at fault, and nothing is built before the whole file is
valid.

Node names become namespace names (`<prefix><node>`), so they share the namespace space with
the lab's fixed names: `underlay`, `client` and anything starting with `pod-` are refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from netlab import names
from netlab.errors import ConfigError

DEFAULT_NODES = 2
DEFAULT_UNDERLAY = IPv4Network("192.168.56.0/24")
DEFAULT_POD_CIDR = IPv4Network("10.244.0.0/16")
DEFAULT_NODE_PREFIX = 24
DEFAULT_SERVICE_CIDR = IPv4Network("10.96.0.0/12")
DEFAULT_MTU = 1500
NODE_HOST_OFFSET = 10  # node i gets underlay host number 10 + i
CLIENT_HOST = 2
GATEWAY_HOST = 1

RESERVED_NODE_NAMES = ("underlay", "client")

_TOP_KEYS = {
    "nodes",
    "underlay_cidr",
    "pod_cidr",
    "node_pod_prefix",
    "service_cidr",
    "client_ip",
    "gateway",
    "mtu",
}
_NODE_KEYS = {"name", "underlay_ip", "pod_cidr"}


@dataclass(frozen=True)
class Node:
    name: str
    underlay_ip: IPv4Interface  # with the underlay's prefix length, e.g. 192.168.56.11/24
    pod_cidr: IPv4Network  # e.g. 10.244.1.0/24

    @property
    def pod_gateway(self) -> IPv4Address:
        """The first host of the pod subnet: what the bridge plugin puts on `cni0`."""
        return self.pod_cidr.network_address + 1


@dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    underlay_cidr: IPv4Network = DEFAULT_UNDERLAY
    pod_cidr: IPv4Network = DEFAULT_POD_CIDR
    node_pod_prefix: int = DEFAULT_NODE_PREFIX
    service_cidr: IPv4Network = DEFAULT_SERVICE_CIDR
    client_ip: IPv4Interface = IPv4Interface(f"192.168.56.{CLIENT_HOST}/24")
    gateway: IPv4Interface = IPv4Interface(f"192.168.56.{GATEWAY_HOST}/24")
    mtu: int = DEFAULT_MTU

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def to_dict(self) -> dict[str, Any]:
        """The file form (also what `lab.json` records); `topology_from_dict` reads it back."""
        return {
            "nodes": [
                {"name": n.name, "underlay_ip": str(n.underlay_ip.ip), "pod_cidr": str(n.pod_cidr)}
                for n in self.nodes
            ],
            "underlay_cidr": str(self.underlay_cidr),
            "pod_cidr": str(self.pod_cidr),
            "node_pod_prefix": self.node_pod_prefix,
            "service_cidr": str(self.service_cidr),
            "client_ip": str(self.client_ip.ip),
            "gateway": str(self.gateway.ip),
            "mtu": self.mtu,
        }


def default_topology(nodes: int = DEFAULT_NODES) -> Topology:
    """`nodes` nodes named node1..nodeN on the default address plan."""
    if nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, not {nodes}")
    return topology_from_dict({"nodes": [f"node{i}" for i in range(1, nodes + 1)]})


def load_topology(path: Path, nodes: int | None = None) -> Topology:
    """Read and validate a topology file. `nodes` (from --nodes) fills in a missing `nodes`."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read topology file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(f"topology file {path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"topology file {path}: expected a mapping of settings at the top")
    data = dict(data)
    if nodes is not None:
        if "nodes" in data:
            raise ConfigError(f"topology file {path} lists its nodes; do not also pass --nodes")
        if nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, not {nodes}")
        data["nodes"] = nodes
    try:
        return topology_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"topology file {path}: {e}") from None


def topology_from_dict(data: Mapping[str, Any]) -> Topology:
    """Validate the file form and derive what it leaves out. Raises ConfigError naming the field."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (known: {', '.join(sorted(_TOP_KEYS))})")

    underlay = _network(data, "underlay_cidr", DEFAULT_UNDERLAY)
    pod_cidr = _network(data, "pod_cidr", DEFAULT_POD_CIDR)
    service_cidr = _network(data, "service_cidr", DEFAULT_SERVICE_CIDR)
    node_prefix = _int(data, "node_pod_prefix", DEFAULT_NODE_PREFIX)
    mtu = _int(data, "mtu", DEFAULT_MTU)

    if underlay.prefixlen > 29:
        raise ConfigError(f"underlay_cidr: {underlay} is too small for a lab (at most /29)")
    if not pod_cidr.prefixlen < node_prefix <= 28:
        raise ConfigError(
            f"node_pod_prefix: must be longer than pod_cidr's /{pod_cidr.prefixlen} and at most 28, "
            f"not {node_prefix}"
        )
    if not 1280 <= mtu <= 9000:
        raise ConfigError(f"mtu: must be between 1280 and 9000, not {mtu}")
    for (a_name, a), (b_name, b) in (
        (("underlay_cidr", underlay), ("pod_cidr", pod_cidr)),
        (("underlay_cidr", underlay), ("service_cidr", service_cidr)),
        (("pod_cidr", pod_cidr), ("service_cidr", service_cidr)),
    ):
        if a.overlaps(b):
            raise ConfigError(f"{b_name}: {b} overlaps {a_name} {a}")

    client = _host_in(data.get("client_ip"), "client_ip", underlay, underlay.network_address + CLIENT_HOST)
    gateway = _host_in(data.get("gateway"), "gateway", underlay, underlay.network_address + GATEWAY_HOST)
    if gateway.ip == client.ip:
        if "gateway" in data:
            raise ConfigError(f"gateway: {gateway.ip} is already used by client_ip")
        raise ConfigError(f"client_ip: {client.ip} is the gateway's address (set gateway to another)")

    raw_nodes = data.get("nodes", DEFAULT_NODES)
    if isinstance(raw_nodes, bool) or not isinstance(raw_nodes, int | list):
        raise ConfigError("nodes: expected a node count or a list of nodes")
    if isinstance(raw_nodes, int):
        if raw_nodes < 1:
            raise ConfigError(f"nodes: must be at least 1, not {raw_nodes}")
        raw_nodes = [f"node{i}" for i in range(1, raw_nodes + 1)]
    if not raw_nodes:
        raise ConfigError("nodes: the lab needs at least one node")

    subnets = _SubnetPicker(pod_cidr, node_prefix)
    nodes: list[Node] = []
    seen_names: set[str] = set()
    seen_ips: dict[IPv4Address, str] = {client.ip: "client_ip", gateway.ip: "the gateway"}
    for i, raw in enumerate(raw_nodes, start=1):
        field = f"nodes[{i - 1}]"
        spec = {"name": raw} if isinstance(raw, str) else raw
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{field}: expected a node name or a mapping with 'name'")
        unknown = sorted(set(spec) - _NODE_KEYS)
        if unknown:
            raise ConfigError(
                f"{field}.{unknown[0]}: unknown setting (known: {', '.join(sorted(_NODE_KEYS))})"
            )
        name = spec.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"{field}.name: missing or not a string")
        try:
            names.check_simple_name("node", name)
        except ConfigError as e:
            raise ConfigError(f"{field}.name: {e}") from None
        if name in RESERVED_NODE_NAMES or name.startswith("pod-"):
            raise ConfigError(f"{field}.name: {name!r} is reserved for the lab's own namespaces")
        if name in seen_names:
            raise ConfigError(f"{field}.name: node {name!r} is listed twice")
        seen_names.add(name)

        default_ip = underlay.network_address + NODE_HOST_OFFSET + i
        ip = _host_in(spec.get("underlay_ip"), f"{field}.underlay_ip", underlay, default_ip)
        if ip.ip in seen_ips:
            raise ConfigError(f"{field}.underlay_ip: {ip.ip} is already used by {seen_ips[ip.ip]}")
        seen_ips[ip.ip] = f"node {name}"

        if "pod_cidr" in spec:
            subnet = _parse_network(spec["pod_cidr"], f"{field}.pod_cidr")
            if not subnet.subnet_of(pod_cidr):
                raise ConfigError(f"{field}.pod_cidr: {subnet} is not inside pod_cidr {pod_cidr}")
            if subnet.prefixlen > 28:
                raise ConfigError(f"{field}.pod_cidr: {subnet} is too small for pods (at most /28)")
        else:
            subnet = subnets.nth(i, f"{field}.pod_cidr")
        for other in nodes:
            if other.pod_cidr.overlaps(subnet):
                raise ConfigError(f"{field}.pod_cidr: {subnet} overlaps node {other.name}'s {other.pod_cidr}")
        nodes.append(Node(name=name, underlay_ip=ip, pod_cidr=subnet))

    return Topology(
        nodes=tuple(nodes),
        underlay_cidr=underlay,
        pod_cidr=pod_cidr,
        node_pod_prefix=node_prefix,
        service_cidr=service_cidr,
        client_ip=client,
        gateway=gateway,
        mtu=mtu,
    )


class _SubnetPicker:
    """Node i's default pod subnet is the i-th subnet of pod_cidr (10.244.i.0/24)."""

    def __init__(self, pod_cidr: IPv4Network, prefix: int) -> None:
        self.pod_cidr = pod_cidr
        self.prefix = prefix

    def nth(self, i: int, field: str) -> IPv4Network:
        count = 1 << (self.prefix - self.pod_cidr.prefixlen)
        if i >= count:
            raise ConfigError(
                f"{field}: pod_cidr {self.pod_cidr} has only {count - 1} /{self.prefix} subnets for nodes"
            )
        size = 1 << (32 - self.prefix)
        return IPv4Network((int(self.pod_cidr.network_address) + i * size, self.prefix))


def _parse_network(value: Any, field: str) -> IPv4Network:
    if not isinstance(value, str):
        raise ConfigError(f"{field}: expected a CIDR such as 10.0.0.0/16")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(f"{field}: {value!r} is not a network CIDR such as 10.0.0.0/16") from None
    if str(net) != value and net.with_prefixlen != value:
        raise ConfigError(f"{field}: {value} has host bits set (did you mean {net}?)")
    if not isinstance(net, IPv4Network):
        raise ConfigError(f"{field}: {value} is not IPv4 (the lab is IPv4-only)")
    return net


def _network(data: Mapping[str, Any], key: str, default: IPv4Network) -> IPv4Network:
    return _parse_network(data[key], key) if key in data else default


def _int(data: Mapping[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected a whole number, not {value!r}")
    return value


def _host_in(value: Any, field: str, net: IPv4Network, default: IPv4Address) -> IPv4Interface:
    """An address inside `net` (not its network or broadcast address), with net's prefix."""
    if value is None:
        addr = default
    else:
        if not isinstance(value, str):
            raise ConfigError(f"{field}: expected an IPv4 address such as 192.168.56.11")
        try:
            addr = IPv4Address(value)
        except ValueError:
            raise ConfigError(f"{field}: {value!r} is not an IPv4 address") from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        if value is None:
            raise ConfigError(f"{field}: the default address {addr} does not fit underlay_cidr {net}")
        raise ConfigError(f"{field}: {addr} is not a host address in {net}")
    return IPv4Interface(f"{addr}/{net.prefixlen}")
