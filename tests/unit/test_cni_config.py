"""Network configuration lists: loading, validation and per-plugin requests."""

from __future__ import annotations

import json

import pytest

from netlab.cni import types as t
from netlab.cni.config import load_conflist, parse_conf, parse_conflist, plugin_request
from netlab.cni.types import CniError

LIST = {
    "cniVersion": "1.0.0",
    "name": "podnet",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"}},
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}, "snat": True},
    ],
}


def code_of(data, parse=parse_conflist) -> int:
    with pytest.raises(CniError) as e:
        parse(data if isinstance(data, bytes) else json.dumps(data).encode())
    return e.value.code


def test_parse_conflist():
    conf = parse_conflist(json.dumps(LIST))
    assert conf.name == "podnet" and conf.cni_version == "1.0.0"
    assert [p["type"] for p in conf.plugins] == ["bridge", "portmap"]
    assert conf.raw == json.dumps(LIST).encode()


def test_cni_versions_pick_the_highest_supported():
    conf = parse_conflist(
        json.dumps({**LIST, "cniVersion": "0.4.0", "cniVersions": ["1.0.0", "1.1.0", "2.0.0"]})
    )
    assert conf.cni_version == "1.1.0"
    assert code_of({**LIST, "cniVersion": "7.0.0"}) == t.INCOMPATIBLE_VERSION
    assert code_of({**LIST, "cniVersion": "x.y"}) == t.DECODING_FAILURE


@pytest.mark.parametrize(
    "bad",
    [
        {k: v for k, v in LIST.items() if k != "name"},
        {**LIST, "name": "has space"},
        {k: v for k, v in LIST.items() if k != "cniVersion"},
        {k: v for k, v in LIST.items() if k != "plugins"},
        {**LIST, "plugins": []},
        {**LIST, "plugins": [{"bridge": "cni0"}]},
        {**LIST, "plugins": [{"type": "../bin/sh"}]},
        {**LIST, "plugins": ["bridge"]},
        {**LIST, "plugins": [{"type": "bridge", "ipam": "host-local"}]},
        {**LIST, "disableCheck": "yes"},
        {"cniVersion": "1.0.0", "name": "x", "type": "bridge"},
    ],
)
def test_incomplete_or_invalid_lists_are_code_7(bad):
    assert code_of(bad) == t.INVALID_NETWORK_CONFIG


def test_malformed_json_is_code_6():
    assert code_of(b'{"cniVersion": "1.0.0",') == t.DECODING_FAILURE
    assert code_of(b"[1, 2]") == t.DECODING_FAILURE


def test_legacy_conf_is_wrapped():
    conf = parse_conf(json.dumps({"cniVersion": "0.4.0", "name": "old", "type": "bridge", "bridge": "br9"}))
    assert conf.name == "old" and len(conf.plugins) == 1 and conf.plugins[0]["bridge"] == "br9"
    assert json.loads(conf.raw)["plugins"][0]["type"] == "bridge"
    assert code_of({"cniVersion": "0.4.0", "name": "old"}, parse_conf) == t.INVALID_NETWORK_CONFIG


def test_load_from_directory(tmp_path):
    (tmp_path / "20-b.conflist").write_text(json.dumps({**LIST, "name": "b"}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "a", "type": "loopback"}))
    (tmp_path / "README").write_text("not a config")
    assert load_conflist(tmp_path).name == "a"
    assert load_conflist(tmp_path, name="b").name == "b"
    assert load_conflist(tmp_path / "20-b.conflist").name == "b"
    with pytest.raises(CniError, match="no network named 'c'"):
        load_conflist(tmp_path, name="c")
    with pytest.raises(CniError, match="no such file"):
        load_conflist(tmp_path / "missing.conflist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CniError, match="no network configuration files"):
        load_conflist(tmp_path / "empty")


def test_plugin_request_injects_runtime_keys():
    conf = parse_conflist(json.dumps(LIST))
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.5/24"}]}
    caps = {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"x": 1},
    }
    first = plugin_request(conf, conf.plugins[0], None, caps)
    assert first["name"] == "podnet" and first["cniVersion"] == "1.0.0"
    assert "prevResult" not in first and "runtimeConfig" not in first
    second = plugin_request(conf, conf.plugins[1], prev, caps)
    assert second["prevResult"] == prev
    assert second["runtimeConfig"] == {"portMappings": caps["portMappings"]}  # bandwidth declared false
    assert "capabilities" not in second and second["snat"] is True
    gc = plugin_request(conf, conf.plugins[0], extra={"cni.dev/valid-attachments": []})
    assert gc["cni.dev/valid-attachments"] == []
