"""The plugin skeleton: environment, versions and error JSON, with a fake plugin."""

from __future__ import annotations

import json

import pytest

from netlab.cni.skel import CmdArgs, dispatch
from netlab.cni.types import SUPPORTED_VERSIONS, CniError, IPConfig, Result
from netlab.errors import ConfigError


class Fake:
    name = "fake"
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[CmdArgs] = []
        self.fail = fail

    def _record(self, a: CmdArgs) -> None:
        self.calls.append(a)
        if self.fail:
            raise self.fail

    def add(self, a: CmdArgs) -> Result:
        self._record(a)
        return Result(cni_version=a.cni_version, ips=[IPConfig("10.0.0.2/24", "10.0.0.1")])

    def delete(self, a: CmdArgs) -> None:
        self._record(a)

    def check(self, a: CmdArgs) -> None:
        self._record(a)

    def gc(self, a: CmdArgs) -> None:
        self._record(a)

    def status(self, a: CmdArgs) -> None:
        self._record(a)


def env(command: str, netns: str, **extra: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    return {**base, **extra}


def request(**extra) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "fake", **extra}).encode()


@pytest.fixture
def netns(tmp_path):
    p = tmp_path / "podns"
    p.write_text("")  # stands in for a netns path; it only has to exist and differ from ours
    return str(p)


def error(reply) -> dict:
    assert reply.status == 1
    return json.loads(reply.stdout)


def test_add_prints_the_result_in_the_requested_version(netns):
    fake = Fake()
    reply = dispatch(fake, env("ADD", netns, CNI_ARGS="A=1;B=x=y"), request(cniVersion="0.4.0"))
    assert reply.status == 0
    out = json.loads(reply.stdout)
    assert out["cniVersion"] == "0.4.0" and out["ips"][0]["version"] == "4"
    a = fake.calls[0]
    assert (a.container_id, a.ifname, a.netns, a.path) == ("c1", "eth0", netns, ("/opt/cni/bin",))
    assert a.cni_args() == {"A": "1", "B": "x=y"} and a.config["name"] == "net"


def test_version_ignores_stdin():
    reply = dispatch(Fake(), {"CNI_COMMAND": "VERSION"}, b"garbage")
    assert json.loads(reply.stdout) == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_del_needs_no_netns_and_succeeds_silently(netns):
    fake = Fake()
    reply = dispatch(fake, env("DEL", "", CNI_NETNS=""), request())
    assert (reply.status, reply.stdout) == (0, b"") and fake.calls[0].netns == ""


@pytest.mark.parametrize(
    "command, drop, missing",
    [
        ("ADD", ("CNI_NETNS", "CNI_PATH"), "[CNI_NETNS,CNI_PATH]"),
        ("CHECK", ("CNI_CONTAINERID",), "[CNI_CONTAINERID]"),
        ("DEL", ("CNI_IFNAME",), "[CNI_IFNAME]"),
        ("GC", ("CNI_PATH",), "[CNI_PATH]"),
    ],
)
def test_missing_variables_are_named(netns, command, drop, missing):
    e = {k: v for k, v in env(command, netns).items() if k not in drop}
    err = error(dispatch(Fake(), e, request(cniVersion="1.1.0")))
    assert err == {"cniVersion": "1.1.0", "code": 4, "msg": f"required env variables {missing} missing"}


@pytest.mark.parametrize(
    "stdin, extra_env, code, text",
    [
        (b"{nope", {}, 6, "error unmarshall network config"),
        (b"[]", {}, 6, "not a JSON object"),
        (json.dumps({"cniVersion": "1.0.0"}).encode(), {}, 7, "missing network name"),
        (json.dumps({"cniVersion": "1.0.0", "name": "a b"}).encode(), {}, 7, "invalid characters"),
        (json.dumps({"name": "n"}).encode(), {}, 1, "incompatible CNI versions"),
        (request(cniVersion="9.0.0"), {}, 1, "incompatible CNI versions"),
        (request(cniVersion="x"), {}, 6, "invalid version"),
        (request(), {"CNI_CONTAINERID": "-x"}, 4, "invalid characters in containerID"),
        (request(), {"CNI_IFNAME": "x" * 16}, 4, "interface name is too long"),
        (request(), {"CNI_IFNAME": "a:b"}, 4, "interface name contains"),
        (request(), {"CNI_NETNS": "/nonexistent/ns"}, 8, 'failed to open netns "/nonexistent/ns"'),
        (request(), {"CNI_NETNS": "/proc/self/ns/net"}, 8, "should not be the same"),
        (request(), {"CNI_ARGS": "novalue"}, 4, "CNI_ARGS: invalid pair"),
    ],
)
def test_bad_input_codes(netns, stdin, extra_env, code, text):
    class ArgsFake(Fake):
        def add(self, a):
            a.cni_args()
            return super().add(a)

    fake = ArgsFake()
    err = error(dispatch(fake, env("ADD", netns, **extra_env), stdin))
    assert err["code"] == code and text in err["msg"] + err.get("details", "")


def test_command_version_floors(netns):
    assert error(dispatch(Fake(), env("CHECK", netns), request(cniVersion="0.3.1")))["code"] == 1
    assert error(dispatch(Fake(), env("GC", netns), request()))["code"] == 1
    assert (
        error(dispatch(Fake(), env("STATUS", netns), request()))["msg"]
        == "config version does not allow STATUS"
    )
    assert dispatch(Fake(), env("STATUS", netns), request(cniVersion="1.1.0")).status == 0
    assert error(dispatch(Fake(), env("RESET", netns), request()))["msg"] == "unknown CNI_COMMAND: RESET"


def test_plugin_errors_become_error_json(netns):
    err = error(dispatch(Fake(CniError(11, "busy", "later")), env("ADD", netns), request()))
    assert err == {"cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "later"}
    assert error(dispatch(Fake(ConfigError("bad key")), env("DEL", netns), request()))["code"] == 7
    reply = dispatch(Fake(ZeroDivisionError("boom")), env("ADD", netns), request())
    assert error(reply)["code"] == 999 and "ZeroDivisionError: boom" in error(reply)["msg"]
    assert b"Traceback" in reply.stderr
