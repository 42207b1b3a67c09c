"""Pure parts of the plugins: bridge config, SNAT chain rendering, the fast path's framing."""

from __future__ import annotations

import os
import sys

import pytest

from cni import launch
from cni.install import launcher_text
from cni.plugins.bridge import gateway_for, parse_bridge_conf
from netlab.cni.delegate import find_plugin, own_plugin_key
from netlab.cni.types import CniError
from netlab.kernel.ipmasq import ipmasq_chain, ipmasq_comment, render_ipmasq, render_ipmasq_removal


def test_bridge_conf_defaults_and_keys():
    c = parse_bridge_conf({"name": "n", "ipam": {"type": "netlab-host-local"}})
    assert (c.bridge, c.is_gateway, c.ip_masq, c.mtu, c.ipam_type) == (
        "cni0",
        False,
        False,
        None,
        "netlab-host-local",
    )
    c = parse_bridge_conf(
        {"name": "n", "isDefaultGateway": True, "mtu": 1450, "runtimeConfig": {"mac": "aa:bb"}}
    )
    assert (
        c.is_gateway and c.is_default_gateway and c.mtu == 1450 and c.mac == "aa:bb" and c.ipam_type is None
    )


@pytest.mark.parametrize(
    "extra, code, text",
    [
        ({"bridge": "a-very-long-bridge-name"}, 7, "invalid bridge name"),
        ({"mtu": 10}, 7, "invalid mtu"),
        ({"mtu": True}, 7, "invalid mtu"),
        ({"isGateway": "yes"}, 7, "'isGateway' must be true or false"),
        ({"hairpinMode": True, "promiscMode": True}, 7, "hairpin mode and promiscuous mode"),
        ({"vlan": 100}, 2, "vlan=100"),
        ({"macspoofchk": True}, 2, "macspoofchk"),
        ({"ipam": []}, 7, "'ipam' must be an object"),
    ],
)
def test_bridge_conf_errors(extra, code, text):
    with pytest.raises(CniError, match=text) as e:
        parse_bridge_conf({"name": "n", **extra})
    assert e.value.code == code


def test_gateway_is_the_first_host():
    assert gateway_for("10.244.1.7/24") == "10.244.1.1"
    assert gateway_for("fd00::5/64") == "fd00::1"


def test_ipmasq_render_is_the_reference_layout():
    chain = ipmasq_chain("podnet", "abc")
    assert chain == "CNI-" + __import__("hashlib").sha512(b"podnetabc").hexdigest()[:24] and len(chain) == 28
    assert ipmasq_comment("podnet", "abc") == 'name: "podnet" id: "abc"'
    c = '-m comment --comment "name: \\"podnet\\" id: \\"abc\\""'
    assert render_ipmasq("podnet", "abc", ["10.244.1.5/24", "fd00::5/64"], 4) == "\n".join(
        [
            "*nat",
            f":{chain} - [0:0]",
            f"-A {chain} -d 10.244.1.0/24 {c} -j ACCEPT",
            f"-A {chain} ! -d 224.0.0.0/4 {c} -j MASQUERADE",
            f"-A POSTROUTING -s 10.244.1.5/32 {c} -j {chain}",
            "COMMIT",
            "",
        ]
    )
    assert f"-A POSTROUTING -s fd00::5/128 {c} -j {chain}" in render_ipmasq(
        "podnet", "abc", ["fd00::5/64"], 6
    )


def test_ipmasq_removal_from_saved_rules():
    chain = ipmasq_chain("n", "c")
    saved = "\n".join(
        [
            "*nat",
            ":POSTROUTING ACCEPT [0:0]",
            f":{chain} - [0:0]",
            f"-A POSTROUTING -s 10.0.0.2/32 -m comment --comment x -j {chain}",
            f"-A POSTROUTING -s 10.0.0.2/32 -m comment --comment x -j {chain}",
            "-A POSTROUTING -j OTHER",
            f"-A {chain} -d 10.0.0.0/24 -j ACCEPT",
            "COMMIT",
        ]
    )
    assert render_ipmasq_removal(saved, chain) == "\n".join(
        [
            "*nat",
            f"-D POSTROUTING -s 10.0.0.2/32 -m comment --comment x -j {chain}",
            f"-D POSTROUTING -s 10.0.0.2/32 -m comment --comment x -j {chain}",
            f"-F {chain}",
            f"-X {chain}",
            "COMMIT",
            "",
        ]
    )
    assert render_ipmasq_removal("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n", chain) is None


def test_wire_format_round_trip():
    msg = launch.encode(b"NLCNI1", b"", b"x" * 300000)
    assert launch.decode(msg) == [b"NLCNI1", b"", b"x" * 300000]
    with pytest.raises(ValueError):
        launch.decode(msg[:-1])
    with pytest.raises(ValueError):
        launch.decode(msg[:5])


def test_own_plugin_detection(tmp_path):
    ours = tmp_path / "netlab-host-local"
    ours.write_text(launcher_text("host-local"))
    ours.chmod(0o755)
    assert own_plugin_key(str(ours)) == "host-local"
    for name, key in (("bridge", "bridge"), ("loopback", None), ("flannel", None)):
        launcher = tmp_path / f"netlab-{name}"
        launcher.write_text(launcher_text(name))
        assert own_plugin_key(str(launcher)) == key  # only delegates run in-process
    other_tree = tmp_path / "other" / "netlab-host-local"
    other_tree.parent.mkdir()
    other_tree.write_text(launcher_text("host-local").replace(launch.SOURCE_ROOT, "/somewhere/else"))
    assert own_plugin_key(str(other_tree)) is None
    pip_script = tmp_path / "pip" / "netlab-host-local"
    pip_script.parent.mkdir()
    pip_script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom cni.host_local import main\nsys.exit(main())\n"
    )
    assert own_plugin_key(str(pip_script)) == "host-local"
    pip_script.write_text("#!/usr/bin/python3\nfrom cni.host_local import main\n")
    assert own_plugin_key(str(pip_script)) is None  # another interpreter: another installation
    go = tmp_path / "host-local"
    go.write_bytes(b"\x7fELF...")
    assert own_plugin_key(str(go)) is None
    assert find_plugin("netlab-host-local", [str(tmp_path / "nothing"), str(tmp_path)]) == str(ours)
    with pytest.raises(CniError, match='failed to find plugin "nope"'):
        find_plugin("nope", [str(tmp_path)])
    assert os.access(ours, os.X_OK)
