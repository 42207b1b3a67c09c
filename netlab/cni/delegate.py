"""Running a plugin's delegate, as SPEC.md section "Delegated plugins" says.

A delegate is an IPAM plugin (`ipam.type`, for the bridge) or a whole plugin (`delegate.type`,
for flannel's meta plugin): the first executable of that name on `CNI_PATH`. It runs with the
caller's own environment (only `CNI_COMMAND` changes), in the namespace the caller acts in,
receives its request on stdin, and answers like any plugin: a result on stdout, or an error
object and status 1.

When that executable is netlab's own host-local or bridge, the call runs in this process
instead: `dispatch` of the same plugin class the executable would have loaded, with the same
environment and the same stdin, and its reply decoded exactly as an exec'd plugin's would be.
That is equivalent to exec'ing it because neither keeps state of its own between calls and
both act only on what the call names: host-local on its files under `dataDir` (same
filesystem, same flock, whoever holds it), the bridge on the namespace the caller acts in
(the same one an exec'd delegate would run in, passed down as `netns`) and the pod's
`CNI_NETNS`. The exec'd launcher would in turn hand the call to the node's CNI server, that
is to this very code, or run it itself. What is saved is a process start (for the bridge
under flannel, also a second round trip to the server), which dominates the cost of an ADD.
"Our own" means: the file is a launcher written by `netlab cni install-plugins` for this same
source tree, or the console script of this same Python environment (`sys.prefix`), so the
code that runs in-process is the code the executable would have run. Anything else on
`CNI_PATH` (the reference `bridge` and `host-local`, a third-party plugin) is exec'd.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from netlab.cni.skel import OWN_NETNS
from netlab.cni.types import INTERNAL, INVALID_NETWORK_CONFIG, CniError, Result
from netlab.errors import NotFound
from netlab.kernel import run_process

if TYPE_CHECKING:
    from netlab.cni.skel import Plugin

LAUNCHER_MARK = "# netlab CNI plugin launcher"
# executable name -> (module of its console script, launcher argument)
OWN_PLUGINS = {
    "netlab-host-local": ("cni.host_local", "host-local"),
    "netlab-bridge": ("cni.bridge", "bridge"),
}
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_plugin(plugin_type: str, path: Sequence[str | os.PathLike[str]]) -> str:
    """The first executable named `plugin_type` in the directories `path` (libcni's FindInPath)."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid plugin type {plugin_type!r}")
    for d in path:
        exe = os.path.join(d, plugin_type)
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            return exe
    dirs = " ".join(str(d) for d in path)
    raise CniError(INVALID_NETWORK_CONFIG, f'failed to find plugin "{plugin_type}" in path [{dirs}]')


def own_plugin_key(exe: str) -> str | None:
    """The launcher key ("host-local", "bridge") when `exe` is netlab's own plugin for this
    code, else None."""
    name = os.path.basename(exe)
    if name not in OWN_PLUGINS:
        return None
    module, key = OWN_PLUGINS[name]
    try:
        with open(exe, "rb") as f:
            head = f.read(4096).decode(errors="replace")
    except OSError:
        return None
    first, _, rest = head.partition("\n")
    if not first.startswith("#!"):
        return None
    interpreter = first[2:].split()[0] if first[2:].split() else ""
    if os.path.dirname(os.path.dirname(interpreter)) != sys.prefix:
        return None
    if LAUNCHER_MARK in rest:
        ours = f"sys.path.insert(0, {PACKAGE_ROOT!r})" in rest and f"run({key!r})" in rest
        return key if ours else None
    return key if f"from {module} import main" in rest else None


class Delegates:
    """Runs delegates for one plugin invocation.

    `env`: the invocation's environment. `netns`: the namespace the calling plugin acts in,
    where an exec'd delegate runs too and an in-process one acts (None for a plugin process:
    its own; the node's for the node's CNI server). `in_process(key)`: builds one of netlab's
    own plugins.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        netns: str | None = None,
        in_process: Callable[[str], Plugin] | None = None,
    ) -> None:
        self.env = env
        self.path = [p for p in env.get("CNI_PATH", "").split(":") if p]
        self.netns = netns
        self.in_process = in_process
        self.own_netns = netns or OWN_NETNS

    def call(self, command: str, plugin_type: str, stdin: bytes) -> bytes:
        """Run `plugin_type` for `command`; its stdout, or its error as CniError."""
        exe = find_plugin(plugin_type, self.path)
        env = dict(self.env)
        env["CNI_COMMAND"] = command
        key = own_plugin_key(exe) if self.in_process else None
        if key is not None and self.in_process is not None:
            from netlab.cni.skel import dispatch

            reply = dispatch(self.in_process(key), env, stdin, self.own_netns)
            status, out, err = reply.status, reply.stdout, reply.stderr
        else:
            try:
                proc = run_process(self.netns, [exe], input=stdin, env=env)
            except OSError as e:
                raise CniError(INTERNAL, f"cannot execute {exe}: {e.strerror}", plugin=plugin_type) from None
            except NotFound as e:
                raise CniError(INTERNAL, f"cannot execute {exe}: {e}", plugin=plugin_type) from None
            status, out, err = proc.returncode, proc.stdout, proc.stderr
        if err:
            sys.stderr.write(err.decode(errors="replace"))
        if status != 0:
            failed = CniError.from_plugin_output(plugin_type, out, err, status)
            # reported as the caller's error, like Go's delegates: the message names the problem
            raise CniError(failed.code, failed.msg, failed.details)
        return out

    def add(self, plugin_type: str, stdin: bytes) -> Result:
        out = self.call("ADD", plugin_type, stdin)
        return Result.from_json(out)

    def delete(self, plugin_type: str, stdin: bytes) -> None:
        self.call("DEL", plugin_type, stdin)

    def check(self, plugin_type: str, stdin: bytes) -> None:
        self.call("CHECK", plugin_type, stdin)

    def gc(self, plugin_type: str, stdin: bytes) -> None:
        self.call("GC", plugin_type, stdin)

    def status(self, plugin_type: str, stdin: bytes) -> None:
        self.call("STATUS", plugin_type, stdin)
