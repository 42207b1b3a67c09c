"""netlab-flannel's pure part: the delegate configuration it builds from subnet.env."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest

from cni.plugins.flannel import parse_flannel_conf, render_delegate
from netlab.cni.types import INVALID_NETWORK_CONFIG, CniError
from netlab.overlay.subnetenv import SubnetEnv

ENV = SubnetEnv((IPv4Network("10.244.0.0/16"),), IPv4Interface("10.244.1.1/24"), 1450, False)


def test_delegate_like_flannels() -> None:
    # kube-flannel.yml's conflist with the reference plugins gives flannel's composed delegate
    conf = parse_flannel_conf(
        {
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "type": "netlab-flannel",
            "delegate": {"type": "bridge", "hairpinMode": True, "isDefaultGateway": True},
            "ipam": {"type": "host-local"},
        }
    )
    assert render_delegate(conf, ENV) == {
        "cniVersion": "1.0.0",
        "name": "cbr0",
        "type": "bridge",
        "hairpinMode": True,
        "isDefaultGateway": True,
        "isGateway": True,
        "ipMasq": True,
        "mtu": 1450,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.1.0/24"}]],
            "routes": [{"dst": "10.244.0.0/16"}],
        },
    }


def test_defaults_and_what_the_user_keeps() -> None:
    conf = parse_flannel_conf(
        {
            "cniVersion": "1.1.0",
            "name": "netlab",
            "subnetFile": "/run/x/subnet.env",
            "dataDir": "/var/lib/x",
            "delegate": {"ipMasq": False, "mtu": 1300, "isGateway": False},
            "ipam": {"dataDir": "/var/lib/ipam", "routes": [{"dst": "192.0.2.0/24"}]},
            "runtimeConfig": {"portMappings": []},
        }
    )
    env = SubnetEnv(
        (IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16")), IPv4Interface("10.1.7.1/24"), 1450, True
    )
    d = render_delegate(conf, env)
    assert (
        d["type"] == "netlab-bridge" and d["ipMasq"] is False and d["mtu"] == 1300 and d["isGateway"] is False
    )
    assert d["runtimeConfig"] == {"portMappings": []} and d["cniVersion"] == "1.1.0"
    assert d["ipam"] == {
        "type": "netlab-host-local",
        "dataDir": "/var/lib/ipam",
        "ranges": [[{"subnet": "10.1.7.0/24"}]],
        "routes": [{"dst": "192.0.2.0/24"}, {"dst": "10.1.0.0/16"}, {"dst": "10.2.0.0/16"}],
    }
    # FLANNEL_IPMASQ=true: flanneld masquerades, so the bridge does not
    assert render_delegate(parse_flannel_conf({"name": "n"}), env)["ipMasq"] is False
    # a non-bridge delegate gets no isGateway
    assert "isGateway" not in render_delegate(
        parse_flannel_conf({"name": "n", "delegate": {"type": "ipvlan"}}), ENV
    )
    assert conf.subnet_file.name == "subnet.env" and str(conf.data_dir) == "/var/lib/x"
    plain = parse_flannel_conf({"name": "n"})
    assert (
        str(plain.subnet_file) == "/run/flannel/subnet.env" and str(plain.data_dir) == "/var/lib/cni/flannel"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"delegate": {"name": "x"}}, "delegate must not set 'name'"),
        ({"delegate": {"ipam": {}}}, "delegate must not set 'ipam'"),
        ({"delegate": {"type": 5}}, "delegate's 'type' must be a string"),
        ({"delegate": []}, "delegate must be an object"),
        ({"ipam": "host-local"}, "ipam must be an object"),
        ({"subnetFile": ""}, "subnetFile must be a non-empty path"),
    ],
)
def test_bad_conf(config: dict[str, object], message: str) -> None:
    with pytest.raises(CniError) as e:
        parse_flannel_conf({"name": "n", **config})
    assert e.value.code == INVALID_NETWORK_CONFIG and e.value.msg == message
