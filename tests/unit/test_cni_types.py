"""CNI versions, error objects and result shapes."""

from __future__ import annotations

import json

import pytest

from netlab.cni import types as t
from netlab.cni.types import CniError, Result


def test_version_parsing_and_order():
    assert t.parse_version("1.0.0") == (1, 0, 0)
    assert t.parse_version("0.4") == (0, 4, 0)
    assert t.version_ge("1.1.0", "1.0.0") and not t.version_ge("0.3.1", "0.4.0")
    with pytest.raises(CniError) as e:
        t.parse_version("one")
    assert e.value.code == t.DECODING_FAILURE


def test_check_version_names_supported_versions():
    assert t.check_version("1.0.0") == "1.0.0"
    with pytest.raises(CniError) as e:
        t.check_version("0.2.0")
    assert e.value.code == t.INCOMPATIBLE_VERSION
    assert '"1.1.0"' in e.value.details


def test_highest_version():
    assert t.highest_version(["0.4.0", "1.1.0", "9.0.0"]) == "1.1.0"
    assert t.highest_version(["9.0.0"]) is None


def test_error_json_shape():
    err = CniError(t.INVALID_ENVIRONMENT, "required env variables [CNI_NETNS] missing")
    assert err.to_dict("1.0.0") == {
        "cniVersion": "1.0.0",
        "code": 4,
        "msg": "required env variables [CNI_NETNS] missing",
    }
    assert CniError(7, "bad", "why").to_dict()["details"] == "why"


def test_plugin_error_parsing_is_lenient():
    # Go's types.Error: no cniVersion, pretty-printed with four spaces
    go = b'{\n    "code": 999,\n    "msg": "failed to find plugin \\"x\\" in path [/usr/lib/cni]"\n}'
    err = CniError.from_plugin_output("bridge", go, b"", 1)
    assert (err.code, err.plugin) == (999, "bridge")
    assert "failed to find plugin" in str(err) and "bridge" in str(err)
    err = CniError.from_plugin_output("x", b"", b"panic: boom\n", 2)
    assert err.code == t.INTERNAL and "panic: boom" in err.msg
    err = CniError.from_plugin_output("x", b"", b"", 3)
    assert "exit status 3" in err.msg
    err = CniError.from_plugin_output("x", b"not json", b"", 1)
    assert "not json" in err.msg


RESULT_1_0 = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "7a:1c:2e:00:10:01"},
        {"name": "veth3f2a9c1d", "mac": "5e:22:9b:01:02:03"},
        {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/pod-web"},
    ],
    "ips": [{"interface": 2, "address": "10.244.1.5/24", "gateway": "10.244.1.1"}],
    "routes": [{"dst": "10.244.0.0/16"}],
    "dns": {},
}


def test_result_round_trip_1_0():
    res = Result.from_dict(RESULT_1_0)
    assert res.ips[0].interface == 2 and res.interfaces[2].sandbox == "/run/netns/pod-web"
    assert res.to_dict("1.0.0") == RESULT_1_0


def test_result_version_shapes():
    res = Result.from_dict(RESULT_1_0)
    res.interfaces[2].mtu = 1450
    res.routes[0].scope = 0
    old = res.to_dict("0.4.0")
    assert old["ips"][0]["version"] == "4"
    assert "mtu" not in old["interfaces"][2] and "scope" not in old["routes"][0]
    new = res.to_dict("1.1.0")
    assert new["interfaces"][2]["mtu"] == 1450 and new["routes"][0]["scope"] == 0
    assert "version" not in new["ips"][0]
    # reading a 0.4.0 result drops the version key
    assert "version" not in Result.from_dict(old).to_dict("1.0.0")["ips"][0]


def test_legacy_result_is_read():
    res = Result.from_dict(
        {
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        }
    )
    assert [ip.address for ip in res.ips] == ["10.1.0.5/16"] and res.routes[0].dst == "0.0.0.0/0"


def test_bad_results_are_decoding_failures():
    for bad in ([], {"cniVersion": "1.0.0", "ips": [{"gateway": "1.2.3.4"}]}):
        with pytest.raises(CniError) as e:
            Result.from_dict(bad)
        assert e.value.code == t.DECODING_FAILURE
    with pytest.raises(CniError):
        Result.from_json(b"{")


def test_version_answer():
    answer = json.loads(json.dumps(t.version_answer()))
    assert answer["cniVersion"] == "1.1.0" and "1.0.0" in answer["supportedVersions"]
