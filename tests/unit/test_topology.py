"""Topology parsing, defaults and validation (pure logic)."""

from __future__ import annotations

import json
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netlab.errors import ConfigError
from netlab.lab import cniconf
from netlab.lab.topology import default_topology, load_topology, topology_from_dict

GOLDEN = Path(__file__).parent / "golden"


def test_default_plan():
    topo = default_topology(3)
    assert topo.node_names == ["node1", "node2", "node3"]
    assert [str(n.underlay_ip) for n in topo.nodes] == [
        "192.168.56.11/24",
        "192.168.56.12/24",
        "192.168.56.13/24",
    ]
    assert [str(n.pod_cidr) for n in topo.nodes] == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert topo.client_ip == IPv4Interface("192.168.56.2/24")
    assert topo.gateway == IPv4Interface("192.168.56.1/24")
    assert topo.service_cidr == IPv4Network("10.96.0.0/12")
    assert str(topo.nodes[0].pod_gateway) == "10.244.1.1"


def test_file_with_named_nodes_and_own_plan(tmp_path):
    f = tmp_path / "lab.yaml"
    f.write_text(
        """
nodes:
  - alpha
  - name: beta
    underlay_ip: 10.0.0.50
    pod_cidr: 172.16.9.0/24
underlay_cidr: 10.0.0.0/24
pod_cidr: 172.16.0.0/16
service_cidr: 10.100.0.0/16
client_ip: 10.0.0.200
gateway: 10.0.0.254
mtu: 1400
"""
    )
    topo = load_topology(f)
    alpha, beta = topo.nodes
    assert (alpha.name, str(alpha.underlay_ip), str(alpha.pod_cidr)) == (
        "alpha",
        "10.0.0.11/24",
        "172.16.1.0/24",
    )
    assert (beta.name, str(beta.underlay_ip), str(beta.pod_cidr)) == ("beta", "10.0.0.50/24", "172.16.9.0/24")
    assert str(topo.client_ip) == "10.0.0.200/24"
    assert str(topo.gateway) == "10.0.0.254/24"
    assert topo.mtu == 1400
    # the file form round-trips (lab.json stores it)
    assert topology_from_dict(topo.to_dict()) == topo


def test_node_count_from_file_or_flag(tmp_path):
    f = tmp_path / "lab.yaml"
    f.write_text("pod_cidr: 10.50.0.0/16\n")
    topo = load_topology(f, nodes=3)
    assert topo.node_names == ["node1", "node2", "node3"]
    assert str(topo.nodes[2].pod_cidr) == "10.50.3.0/24"
    f.write_text("nodes: 4\n")
    assert len(load_topology(f).nodes) == 4
    with pytest.raises(ConfigError, match="do not also pass --nodes"):
        load_topology(f, nodes=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: [a, a]", r"nodes\[1\]\.name: node 'a' is listed twice"),
        ("nodes: [Bad_Name]", r"nodes\[0\]\.name: invalid node name"),
        ("nodes: [client]", r"nodes\[0\]\.name: 'client' is reserved"),
        ("nodes: [pod-x]", r"nodes\[0\]\.name: 'pod-x' is reserved"),
        ("nodes: []", r"nodes: the lab needs at least one node"),
        ("nodes: 0", r"nodes: must be at least 1"),
        ("nodes: [{name: a, colour: red}]", r"nodes\[0\]\.colour: unknown setting"),
        ("nodes: [{underlay_ip: 192.168.56.3}]", r"nodes\[0\]\.name: missing"),
        (
            "nodes: [{name: a, underlay_ip: 10.1.1.1}]",
            r"nodes\[0\]\.underlay_ip: 10.1.1.1 is not a host address",
        ),
        (
            "nodes: [{name: a, underlay_ip: 192.168.56.2}]",
            r"nodes\[0\]\.underlay_ip: 192.168.56.2 is already used",
        ),
        ("nodes: [{name: a, underlay_ip: nope}]", r"nodes\[0\]\.underlay_ip: 'nope' is not an IPv4 address"),
        (
            "nodes: [{name: a, pod_cidr: 10.1.0.0/24}]",
            r"nodes\[0\]\.pod_cidr: 10.1.0.0/24 is not inside pod_cidr",
        ),
        (
            "nodes: [a, {name: b, pod_cidr: 10.244.1.0/24}]",
            r"nodes\[1\]\.pod_cidr: 10.244.1.0/24 overlaps node a",
        ),
        ("underlay_cidr: 10.244.0.0/24", r"pod_cidr: 10.244.0.0/16 overlaps underlay_cidr"),
        (
            "service_cidr: 10.244.0.0/12",
            r"service_cidr: 10.244.0.0/12 has host bits set \(did you mean 10.240.0.0/12\?\)",
        ),
        ("service_cidr: 10.240.0.0/12", r"service_cidr: 10.240.0.0/12 overlaps pod_cidr"),
        ("pod_cidr: fd00::/64", r"pod_cidr: fd00::/64 is not IPv4"),
        ("pod_cidr: 10.244.0.0/24", r"node_pod_prefix: must be longer than pod_cidr's /24"),
        ("node_pod_prefix: 30", r"node_pod_prefix: must be longer"),
        ("pod_cidr: 10.244/16", r"pod_cidr: '10.244/16' is not a network CIDR"),
        ("mtu: 100", r"mtu: must be between 1280 and 9000"),
        ("mtu: lots", r"mtu: expected a whole number"),
        ("client_ip: 192.168.56.255", r"client_ip: 192.168.56.255 is not a host address"),
        ("client_ip: 192.168.56.1", r"client_ip: 192.168.56.1 is the gateway's address"),
        ("gateway: 192.168.56.2", r"gateway: 192.168.56.2 is already used by client_ip"),
        (
            "nodes: [{name: a, underlay_ip: 192.168.56.1}]",
            r"underlay_ip: 192.168.56.1 is already used by the gateway",
        ),
        ("gateway: 10.0.0.1", r"gateway: 10.0.0.1 is not a host address in 192.168.56.0/24"),
        ("underlay_cidr: 192.168.56.0/29", r"underlay_cidr: .* too small|underlay_ip: the default address"),
        ("nodes: 300", r"nodes\[\d+\]\.(underlay_ip|pod_cidr):"),
        ("colour: red", r"colour: unknown setting"),
        ("- just\n- a list", r"expected a mapping"),
        ("nodes: [a\n", r"invalid YAML at line \d+"),
    ],
)
def test_bad_files_get_one_line_naming_the_field(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_topology(f)
    assert str(info.value).startswith(f"topology file {f}: ")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read topology file"):
        load_topology(tmp_path / "nope.yaml")


def test_node_conflist_golden():
    topo = default_topology(2)
    conf = cniconf.render_node_conflist(topo, topo.nodes[1], Path("/var/lib/netlab/nodes/node2/networks"))
    golden = GOLDEN / "node2.conflist"
    assert conf == json.loads(golden.read_text())


def test_flannel_conflist_golden():
    conf = cniconf.render_flannel_conflist(
        Path("/run/netlab/nodes/node2/subnet.env"),
        Path("/var/lib/netlab/nodes/node2/flannel"),
        Path("/var/lib/netlab/nodes/node2/networks"),
    )
    assert conf == json.loads((GOLDEN / "node2-flannel.conflist").read_text())


def test_lab_state_names_its_nodes_when_asked_for_one_it_lacks():
    from netlab.errors import NotFound
    from netlab.lab.state import LabState

    lab = LabState("nl-", default_topology(2))
    assert lab.node("node2").name == "node2"
    with pytest.raises(NotFound, match=r"^node node9 is not part of the lab \(nodes: node1, node2\)$"):
        lab.node("node9")
