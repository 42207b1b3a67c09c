"""The plugin side of CNI: what every netlab plugin shares between its input and its work.

`dispatch(plugin, env, stdin)` does what Go's `pkg/skel` does, in the same order, and returns
what the executable must print and its exit status instead of printing and exiting itself, so
that the same code answers both in a plugin process and inside the node's CNI server
(`cni/server.py`), which receives a plugin's environment and stdin over a socket:

1. required `CNI_*` variables per command (code 4 naming the missing ones);
2. VERSION answers without reading stdin;
3. the request must be a JSON object (code 6) with a valid `name` (code 7); the container id
   and interface name follow the spec's rules (codes 3/4);
4. `cniVersion` must be one the plugin speaks (code 1); CHECK needs 0.4.0, GC and STATUS 1.1.0;
5. ADD and CHECK need an existing `CNI_NETNS` that is not the plugin's own namespace (code 8);
6. the plugin method runs; a `CniError` becomes the error JSON, other netlab errors map to
   the nearest spec code, anything else is 999 with the traceback on stderr.

Errors go to stdout as JSON with exit status 1, like the reference plugins; libcni reads them
there. `main` is, with the CLI, the only place in netlab that exits the process.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from netlab.cni.config import NAME_RE
from netlab.cni.types import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENVIRONMENT,
    INVALID_NETNS,
    INVALID_NETWORK_CONFIG,
    LATEST_VERSION,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    Result,
    check_version,
    parse_version,
    version_answer,
    version_ge,
)
from netlab.errors import ConfigError, NetlabError, TryAgain

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# the namespace of the calling thread: a plugin process's own, or that of the CNI server's
# worker thread, which has joined the node's namespace
OWN_NETNS = "/proc/thread-self/ns/net"

# Variables each command needs (SPEC.md "Parameters"; CNI_PATH as Go's skel requires it).
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
_MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
IFNAME_MAX = 15


@dataclass(frozen=True)
class CmdArgs:
    """One invocation: the CNI_* parameters, the decoded request and the whole environment."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: tuple[str, ...]
    config: dict[str, Any]
    cni_version: str
    stdin: bytes
    env: Mapping[str, str] = field(repr=False)

    def cni_args(self) -> dict[str, str]:
        """CNI_ARGS as a dict ("K=V;K2=V2"); a pair without '=' is code 4."""
        out: dict[str, str] = {}
        for pair in self.args.split(";"):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: invalid pair {pair!r}")
            out[key] = value
        return out

    @property
    def prev_result(self) -> Result | None:
        prev = self.config.get("prevResult")
        return Result.from_dict(prev) if prev else None


class Plugin(Protocol):
    """What a plugin implements. ADD returns its result; the others return nothing."""

    name: str
    supported_versions: tuple[str, ...]

    def add(self, a: CmdArgs) -> Result: ...
    def delete(self, a: CmdArgs) -> None: ...
    def check(self, a: CmdArgs) -> None: ...
    def gc(self, a: CmdArgs) -> None: ...
    def status(self, a: CmdArgs) -> None: ...


@dataclass(frozen=True)
class Reply:
    status: int
    stdout: bytes = b""
    stderr: bytes = b""


def dispatch(
    plugin: Plugin,
    env: Mapping[str, str],
    stdin: bytes,
    own_netns: str = OWN_NETNS,
) -> Reply:
    """Run one plugin invocation; `own_netns` is the namespace the plugin acts in."""
    version = LATEST_VERSION
    try:
        command = env.get("CNI_COMMAND", "")
        a = _parse(plugin, env, stdin, command)
        if a is None:
            return Reply(0, _json(version_answer(plugin.supported_versions)))
        version = a.cni_version
        if command in ("ADD", "CHECK"):
            _check_netns(a.netns, own_netns)
        elif command == "DEL" and a.netns and _same_netns(a.netns, own_netns):
            raise CniError(INVALID_NETNS, "plugin's netns and netns from CNI_NETNS should not be the same")
        if command == "ADD":
            return Reply(0, plugin.add(a).to_json(version).encode())
        {"DEL": plugin.delete, "CHECK": plugin.check, "GC": plugin.gc, "STATUS": plugin.status}[command](a)
        return Reply(0)
    except CniError as e:
        return Reply(1, _json(e.to_dict(version)))
    except NetlabError as e:
        return Reply(1, _json(CniError(_code_for(e), str(e)).to_dict(version)))
    except Exception as e:
        tb = traceback.format_exc().encode()
        err = CniError(INTERNAL, f"internal error: {type(e).__name__}: {e}")
        return Reply(1, _json(err.to_dict(version)), tb)


def _parse(plugin: Plugin, env: Mapping[str, str], stdin: bytes, command: str) -> CmdArgs | None:
    missing = ["CNI_COMMAND"] if not command else []
    missing += [k for k in _REQUIRED.get(command, ()) if not env.get(k)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    if command == "VERSION":
        return None
    try:
        config = json.loads(stdin)
    except ValueError as e:
        raise CniError(DECODING_FAILURE, f"error unmarshall network config: {e}") from None
    if not isinstance(config, dict):
        raise CniError(DECODING_FAILURE, "error unmarshall network config: not a JSON object")
    name = config.get("name")
    if not name:
        raise CniError(INVALID_NETWORK_CONFIG, "missing network name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CniError(INVALID_NETWORK_CONFIG, "invalid characters found in network name", str(name))
    version = config.get("cniVersion") or "0.1.0"  # libcni's reading of a missing version
    if not isinstance(version, str):
        raise CniError(DECODING_FAILURE, "cniVersion must be a string")
    parse_version(version)
    check_version(version, plugin.supported_versions)
    need = _MIN_VERSION.get(command)
    if need and not version_ge(version, need):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}", f"needs {need}")
    a = CmdArgs(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        config=config,
        cni_version=version,
        stdin=stdin,
        env=env,
    )
    if command in ("ADD", "DEL", "CHECK"):
        _check_container_id(a.container_id)
        _check_ifname(a.ifname)
    return a


def _check_container_id(cid: str) -> None:
    if not cid:
        raise CniError(UNKNOWN_CONTAINER, "missing containerID")
    if not NAME_RE.match(cid):
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in containerID", cid)


def _check_ifname(ifname: str) -> None:
    if len(ifname) > IFNAME_MAX:
        raise CniError(INVALID_ENVIRONMENT, "interface name is too long", "at most 15 characters")
    if ifname in (".", "..") or any(c in "/:" or c.isspace() for c in ifname):
        raise CniError(INVALID_ENVIRONMENT, "interface name contains / or : or whitespace characters")


def _same_netns(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _check_netns(netns: str, own: str) -> None:
    try:
        os.stat(netns)
    except OSError as e:
        raise CniError(
            INVALID_NETNS, f'failed to open netns "{netns}": {os.strerror(e.errno or errno.ENOENT)}'
        ) from None
    if _same_netns(netns, own):
        raise CniError(INVALID_NETNS, "plugin's netns and netns from CNI_NETNS should not be the same")


def _code_for(e: NetlabError) -> int:
    if isinstance(e, ConfigError):
        return INVALID_NETWORK_CONFIG
    if isinstance(e, TryAgain):
        return TRY_AGAIN_LATER
    return INTERNAL


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, indent=4).encode()


def main(plugin: Plugin) -> NoReturn:
    """Run `plugin` on this process's environment and stdin, print, and exit."""
    command = os.environ.get("CNI_COMMAND", "")
    stdin = b"" if command == "VERSION" else sys.stdin.buffer.read()
    if not command:
        sys.stderr.write(
            f"CNI plugin {plugin.name} (netlab); CNI protocol versions supported: "
            f"{', '.join(plugin.supported_versions)}\n"
        )
    reply = dispatch(plugin, os.environ, stdin)
    sys.stdout.buffer.write(reply.stdout)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(reply.stderr)
    sys.stderr.buffer.flush()
    sys.exit(reply.status)


__all__ = ["CmdArgs", "OWN_NETNS", "Plugin", "Reply", "dispatch", "main", "SUPPORTED_VERSIONS"]
