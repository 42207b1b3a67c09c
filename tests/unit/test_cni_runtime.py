"""The runtime's chaining rules, with recording fake plugins (no kernel work)."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

import pytest

from netlab.cni.config import parse_conflist
from netlab.cni.runtime import CniRuntime, validate_attachment
from netlab.cni.types import CniError
from netlab.errors import AlreadyExists

# A plugin that appends {name, env, request} to $FAKE_LOG, fails when its request says so,
# and on ADD returns prevResult plus one address of its own.
FAKE = textwrap.dedent(
    """\
    #!{python} -IS
    import json, os, sys
    name = os.path.basename(sys.argv[0])
    req = json.loads(sys.stdin.read() or "{{}}")
    env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({{"name": name, "env": env, "req": req}}) + "\\n")
    cmd = env["CNI_COMMAND"]
    if cmd in req.get("failOn", []):
        print(json.dumps({{"code": 123, "msg": name + " refuses " + cmd}}))
        sys.exit(1)
    if cmd == "ADD":
        res = req.get("prevResult") or {{"cniVersion": req["cniVersion"], "ips": []}}
        res["ips"].append({{"address": req["addr"]}})
        print(json.dumps(res))
    """
)


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("one", "two"):
        p = d / name
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_LOG", str(log))

    def calls() -> list[dict]:
        if not log.exists():
            return []
        out = [json.loads(line) for line in log.read_text().splitlines()]
        log.unlink()
        return out

    return d, calls


def runtime(tmp_path, bindir, one=None, two=None, version="1.1.0", **top):
    doc = {
        "cniVersion": version,
        "name": "net",
        "plugins": [
            {"type": "one", "addr": "10.0.0.2/24", **(one or {})},
            {"type": "two", "addr": "10.1.0.2/24", "capabilities": {"portMappings": True}, **(two or {})},
        ],
        **top,
    }
    return CniRuntime(parse_conflist(json.dumps(doc)), [bindir], tmp_path / "cache")


def test_add_chains_prev_result_and_caches(tmp_path, plugins):
    bindir, calls = plugins
    rt = runtime(tmp_path, bindir)
    pm = {"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]}
    res = rt.add("c1", "/run/netns/p", "eth0", args=[("A", "1"), ("B", "2")], capability_args=pm)
    assert [ip.address for ip in res.ips] == ["10.0.0.2/24", "10.1.0.2/24"]
    one, two = calls()
    assert one["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/p",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "A=1;B=2",
        "CNI_PATH": str(bindir),
    }
    assert "prevResult" not in one["req"] and "runtimeConfig" not in one["req"]
    assert two["req"]["prevResult"]["ips"] == [{"address": "10.0.0.2/24"}]
    assert two["req"]["runtimeConfig"] == pm and "capabilities" not in two["req"]
    cached = rt.cached("c1")
    assert cached is not None and cached.result is not None and len(cached.result["ips"]) == 2
    with pytest.raises(AlreadyExists):
        rt.add("c1", "/run/netns/p", "eth0")


def test_del_is_reverse_keeps_going_and_drops_cache(tmp_path, plugins):
    bindir, calls = plugins
    rt = runtime(tmp_path, bindir, two={"failOn": ["DEL"]})
    rt.add("c1", "p", "eth0", capability_args={"portMappings": []})
    calls()
    errors = rt.delete("c1", "p", "eth0")
    assert [e.code for e in errors] == [123] and errors[0].plugin == "two"
    two, one = calls()  # reverse order, and "one" ran although "two" failed
    assert (two["name"], one["name"]) == ("two", "one")
    assert one["env"]["CNI_NETNS"] == "/run/netns/p"  # a name becomes its /run/netns path
    assert one["req"]["prevResult"]["ips"][1]["address"] == "10.1.0.2/24"
    assert two["req"]["runtimeConfig"] == {"portMappings": []}  # capability args from the cache
    assert rt.cached("c1") is None
    rt.delete("c1", None, "eth0")  # again, without a netns and without a cache
    assert [c["env"]["CNI_NETNS"] for c in calls()] == ["", ""]


def test_failed_add_runs_del_for_the_whole_list(tmp_path, plugins):
    bindir, calls = plugins
    rt = runtime(tmp_path, bindir, two={"failOn": ["ADD"]})
    with pytest.raises(CniError) as e:
        rt.add("c1", "p", "eth0")
    assert (e.value.code, e.value.plugin, e.value.msg) == (123, "two", "two refuses ADD")
    assert [(c["name"], c["env"]["CNI_COMMAND"]) for c in calls()] == [
        ("one", "ADD"),
        ("two", "ADD"),
        ("two", "DEL"),
        ("one", "DEL"),
    ]
    assert rt.cached("c1") is None


def test_check_uses_cache_and_respects_disable_check(tmp_path, plugins):
    bindir, calls = plugins
    rt = runtime(tmp_path, bindir)
    with pytest.raises(CniError) as e:
        rt.check("c1", "p", "eth0")
    assert e.value.code == 3
    rt.add("c1", "p", "eth0")
    calls()
    rt.check("c1", "p", "eth0")
    checks = calls()
    assert [c["env"]["CNI_COMMAND"] for c in checks] == ["CHECK", "CHECK"]
    assert all(len(c["req"]["prevResult"]["ips"]) == 2 for c in checks)
    runtime(tmp_path, bindir, disableCheck=True).check("c1", "p", "eth0")
    assert calls() == []
    with pytest.raises(CniError) as e:
        runtime(tmp_path, bindir, version="0.3.1").check("c1", "p", "eth0")
    assert e.value.code == 1


def test_gc_deletes_stale_and_sends_valid_attachments(tmp_path, plugins):
    bindir, calls = plugins
    rt = runtime(tmp_path, bindir)
    rt.add("keep", "p", "eth0")
    rt.add("stale", "q", "eth0")
    calls()
    assert rt.gc([("keep", "eth0")]) == []
    seen = [(c["name"], c["env"]["CNI_COMMAND"], c["env"]["CNI_CONTAINERID"]) for c in calls()]
    assert seen == [("two", "DEL", "stale"), ("one", "DEL", "stale"), ("one", "GC", ""), ("two", "GC", "")]
    assert rt.cached("stale") is None and rt.cached("keep") is not None
    runtime(tmp_path, bindir, disableGC=True).gc([])
    assert calls() == []
    runtime(tmp_path, bindir, version="1.0.0").gc([("keep", "eth0")])  # no GC verb before 1.1.0
    assert calls() == []


def test_status_and_version(tmp_path, plugins):
    bindir, calls = plugins
    runtime(tmp_path, bindir).status()
    assert [c["env"]["CNI_COMMAND"] for c in calls()] == ["STATUS", "STATUS"]
    with pytest.raises(CniError) as e:
        runtime(tmp_path, bindir, one={"failOn": ["STATUS"]}).status()
    assert e.value.code == 123
    assert [c["name"] for c in calls()] == ["one"]  # stops at the first error
    runtime(tmp_path, bindir, version="1.0.0").status()
    assert calls() == []


@pytest.mark.parametrize(
    "cid, ifname, code",
    [
        ("", "eth0", 3),
        ("-bad", "eth0", 4),
        ("ok", "", 4),
        ("ok", "a" * 16, 4),
        ("ok", "et/h", 4),
        ("ok", "..", 4),
    ],
)
def test_attachment_validation(cid, ifname, code):
    with pytest.raises(CniError) as e:
        validate_attachment(cid, ifname)
    assert e.value.code == code


def test_plugin_output_problems(tmp_path, plugins):
    bindir, _ = plugins
    silent = bindir / "silent"
    silent.write_text("#!/bin/sh\ncat >/dev/null\n")
    silent.chmod(0o755)
    broken = bindir / "broken"
    broken.write_text("#!/bin/sh\necho 'it went wrong' >&2\nexit 2\n")
    broken.chmod(0o755)
    for ptype, text in (("silent", "printed no result"), ("broken", "it went wrong")):
        conf = parse_conflist(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": ptype}]}))
        with pytest.raises(CniError, match=text):
            CniRuntime(conf, [bindir], tmp_path / "c").add("c1", "p")
    assert not (tmp_path / "c").exists() or os.listdir(tmp_path / "c") == []
