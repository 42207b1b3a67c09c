"""flannel's network config, subnet keys, lease values and subnet.env: pure logic."""

from __future__ import annotations

import json
import random
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netlab.errors import ConfigError
from netlab.overlay import subnetenv
from netlab.overlay.config import check_no_overlap, make_config, parse_config
from netlab.overlay.subnets import (
    LeaseAttrs,
    candidates,
    first_host,
    free_subnets,
    parse_lease_attrs,
    parse_subnet_key,
    pick_subnet,
    subnet_key,
)


def test_defaults_follow_flannel() -> None:
    c = parse_config('{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')
    assert c.subnet_len == 24
    assert c.subnet_min == IPv4Address("10.244.1.0") and c.subnet_max == IPv4Address("10.244.255.0")
    assert c.backend.vni == 1 and c.backend.port == 8472 and c.capacity == 255
    small = parse_config('{"Network": "10.1.2.0/24", "Backend": {"Type": "host-gw"}}')
    assert small.subnet_len == 26 and small.subnet_min == IPv4Address("10.1.2.64")
    assert small.subnet_max == IPv4Address("10.1.2.192") and small.capacity == 3


def test_render_is_flannel_shaped() -> None:
    c = make_config("10.244.0.0/16")
    assert c.render() == (
        '{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0",'
        '"SubnetMax":"10.244.255.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}'
    )
    assert parse_config(c.render()) == c
    assert json.loads(make_config("10.244.0.0/16", backend="host-gw").render())["Backend"] == {
        "Type": "host-gw"
    }


def test_keys_are_case_insensitive() -> None:
    c = parse_config('{"network": "10.5.0.0/16", "subnetlen": 20, "backend": {"type": "vxlan", "vni": 7}}')
    assert c.subnet_len == 20 and c.backend.vni == 7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "Network: missing"),
        ({"Network": "10.244.0.0/33"}, "Network: '10.244.0.0/33' is not a valid CIDR"),
        ({"Network": "10.244.1.0/16"}, "Network: '10.244.1.0/16' is not a valid CIDR"),
        ({"Network": "fd00::/64"}, "Network: 'fd00::/64' is not an IPv4 CIDR"),
        ({"Network": "10.0.0.0/29"}, "Network: 10.0.0.0/29 is too small"),
        ({"Network": "10.0.0.0/16", "SubnetLen": 31}, "SubnetLen: /31 is too long"),
        ({"Network": "10.0.0.0/16", "SubnetLen": 17}, "SubnetLen: /17 does not fit 10.0.0.0/16"),
        ({"Network": "10.0.0.0/16", "SubnetLen": "24"}, "SubnetLen: expected an integer"),
        ({"Network": "10.0.0.0/16", "SubnetMin": "10.1.0.0"}, "SubnetMin: 10.1.0.0 is outside Network"),
        ({"Network": "10.0.0.0/16", "SubnetMax": "10.0.3.7"}, "SubnetMax: 10.0.3.7 is not on a /24 boundary"),
        (
            {"Network": "10.0.0.0/16", "SubnetMin": "10.0.9.0", "SubnetMax": "10.0.3.0"},
            "SubnetMin: 10.0.9.0 is above",
        ),
    ],
)
def test_bad_network_fields(raw: dict[str, object], message: str) -> None:
    raw = {"Backend": {"Type": "vxlan"}, **raw}
    with pytest.raises(ConfigError) as e:
        parse_config(json.dumps(raw))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (None, "Backend: missing"),
        ({}, "Backend.Type: missing"),
        ({"Type": "udp"}, "Backend.Type: unknown backend 'udp'"),
        ({"Type": "vxlan", "VNI": 0}, "Backend.VNI: 0 is outside"),
        ({"Type": "vxlan", "Port": 70000}, "Backend.Port: 70000"),
        ({"Type": "vxlan", "GBP": True}, "Backend.GBP"),
    ],
)
def test_bad_backend(backend: object, message: str) -> None:
    raw: dict[str, object] = {"Network": "10.244.0.0/16"}
    if backend is not None:
        raw["Backend"] = backend
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config(json.dumps(raw))


def test_invalid_json_and_overlap() -> None:
    with pytest.raises(ConfigError, match="network config: invalid JSON"):
        parse_config("{nope")
    c = make_config("10.96.0.0/16")
    with pytest.raises(ConfigError, match="Network: 10.96.0.0/16 overlaps the service network 10.96.0.0/12"):
        check_no_overlap(
            c, {"underlay": IPv4Network("192.168.56.0/24"), "service network": IPv4Network("10.96.0.0/12")}
        )
    check_no_overlap(make_config("10.244.0.0/16"), {"underlay": IPv4Network("192.168.56.0/24")})


def test_subnet_keys() -> None:
    sn = IPv4Network("10.244.7.0/24")
    assert subnet_key(sn) == "10.244.7.0-24"
    assert parse_subnet_key("/coreos.com/network/subnets/10.244.7.0-24") == sn
    assert parse_subnet_key("10.244.7.0-24&fc00::-64") == sn
    assert parse_subnet_key("config") is None
    assert parse_subnet_key("10.244.7.1-24") is None  # host bits set
    assert first_host(sn) == "10.244.7.1/24"


def test_lease_values() -> None:
    attrs = LeaseAttrs(IPv4Address("192.168.56.11"), "vxlan", 1, "c6:d2:32:6f:8f:44")
    assert attrs.render() == (
        '{"PublicIP":"192.168.56.11","PublicIPv6":null,"BackendType":"vxlan",'
        '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}'
    )
    assert parse_lease_attrs(attrs.render()) == attrs
    hostgw = LeaseAttrs(IPv4Address("192.168.56.12"), "host-gw")
    assert hostgw.render() == '{"PublicIP":"192.168.56.12","PublicIPv6":null,"BackendType":"host-gw"}'
    assert parse_lease_attrs(hostgw.render()) == hostgw
    # flannel's reservation doc writes only the PublicIP
    assert parse_lease_attrs('{"PublicIP":"10.0.0.5"}') == LeaseAttrs(IPv4Address("10.0.0.5"), "")
    for bad in (b"", b"[]", b"{}", b'{"PublicIP":"nope"}', b'{"PublicIP":"fd00::1"}', b"\xff"):
        assert parse_lease_attrs(bad) is None
    odd = parse_lease_attrs('{"PublicIP":"10.0.0.5","BackendType":"vxlan","BackendData":{"VtepMAC":"zz"}}')
    assert odd is not None and odd.vtep_mac is None


def test_choosing_subnets() -> None:
    c = make_config("10.0.0.0/16", subnet_len=24, subnet_min="10.0.1.0", subnet_max="10.0.4.0")
    assert [str(s) for s in candidates(c)] == ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "10.0.4.0/24"]
    taken = [IPv4Network("10.0.1.0/24"), IPv4Network("10.0.2.128/25"), IPv4Network("10.0.0.0/23")]
    assert free_subnets(c, taken) == [IPv4Network("10.0.3.0/24"), IPv4Network("10.0.4.0/24")]
    assert pick_subnet(c, taken, random.Random(1)) in free_subnets(c, taken)
    assert pick_subnet(c, list(candidates(c))) is None
    big = make_config("10.0.0.0/8", subnet_len=24)
    assert len(free_subnets(big, [])) == 100  # the walk stops at 100 candidates


def test_subnet_env_roundtrip(tmp_path: Path) -> None:
    env = subnetenv.SubnetEnv((IPv4Network("10.244.0.0/16"),), IPv4Interface("10.244.3.1/24"), 1450, False)
    path = tmp_path / "run" / "subnet.env"
    assert subnetenv.read(path) is None
    subnetenv.write(path, env)
    assert path.read_text() == (
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    )
    assert oct(path.stat().st_mode & 0o777) == "0o644" and list(path.parent.iterdir()) == [path]
    assert subnetenv.read(path) == env and env.node_subnet == IPv4Network("10.244.3.0/24")
    two = subnetenv.parse(
        "FLANNEL_NETWORK=10.1.0.0/16,10.2.0.0/16\nFLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n"
    )
    assert len(two.networks) == 2 and two.ipmasq
    with pytest.raises(ConfigError, match="missing FLANNEL_MTU, FLANNEL_IPMASQ"):
        subnetenv.parse("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.1.1/24\n")


def test_masq_rules_golden() -> None:
    from netlab.overlay.masq import render_masq

    c = '-m comment --comment "flanneld masq"'
    assert render_masq(IPv4Network("10.244.0.0/16"), IPv4Network("10.244.1.0/24")).splitlines() == [
        "*nat",
        ":FLANNEL-POSTRTG - [0:0]",
        f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 {c} -j MASQUERADE --random-fully",
        f"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 {c} -j MASQUERADE --random-fully",
        "COMMIT",
    ]
