"""The runtime side of CNI: what a container runtime does to wire a sandbox into a network.

`CniRuntime` executes one network's plugin chain the way libcni does (`libcni/api.go`), for
the sandbox runtime (`netlab sandbox run`) and the kubelet:

- plugins are found by `type` in `plugin_dirs` (the `CNI_PATH`), executed with the caller's
  environment plus `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
  `CNI_PATH`, and their request on stdin (see `config.plugin_request`);
- they run in `plugin_netns`, the *node's* network namespace, since a plugin acts on "its
  own" namespace: the bridge, the host veth and `ip_forward` land there, the pod side in
  `CNI_NETNS`. The plugin is started from a thread that has joined that namespace
  (`kernel.run_process`), which saves an `nsenter` process per call. `None` means the
  caller's own namespace (a real host);
- ADD runs the list in order, each plugin getting the previous one's result as `prevResult`;
  the final result is cached (`cache.ResultCache`). When ADD fails, the runtime runs DEL for
  the whole list before raising (the spec requires a DEL after a failed ADD; doing it here
  means a failed ADD leaves nothing behind for the caller to forget);
- DEL runs the list in reverse with the cached result as `prevResult`. It does not stop at
  the first failing plugin: it runs every DEL, logs and returns the errors, then drops the
  cache entry, so one broken plugin cannot leak the others' state (reference/cni.md section 4);
- CHECK runs in order against the cached result and stops at the first error;
- GC (1.1.0) deletes cached attachments that are not in the valid list, then sends every
  plugin `cni.dev/valid-attachments`; STATUS (1.1.0) asks each plugin in order. Both do
  nothing for older versions, as in libcni;
- operations on one attachment are serialised, and GC excludes everything else (SPEC.md
  "Lifecycle & Ordering"). This holds within one process: one runtime object per node.

Errors are `CniError`s carrying the plugin's code and message (libcni's parsing: the JSON
object on stdout, stderr text when stdout is empty).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from netlab.cni.cache import CachedAttachment, ResultCache
from netlab.cni.config import NAME_RE, NetworkConfigList, load_conflist, plugin_request
from netlab.cni.delegate import find_plugin
from netlab.cni.types import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENVIRONMENT,
    UNKNOWN_CONTAINER,
    CniError,
    Result,
    version_ge,
)
from netlab.errors import AlreadyExists, NotFound
from netlab.kernel import netns_path, run_process

log = logging.getLogger("netlab.cni")

__all__ = ["CniRuntime", "load_conflist", "find_plugin", "validate_attachment"]

_BAD_IFNAME = re.compile(r"[/:\s]")
IFNAME_MAX = 15


def validate_attachment(container_id: str, ifname: str) -> None:
    """The spec's rules for CNI_CONTAINERID and CNI_IFNAME (libcni utils), as code 4 errors."""
    if not container_id:
        raise CniError(UNKNOWN_CONTAINER, "missing container id")
    if not NAME_RE.match(container_id):
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in container id", container_id)
    if not ifname:
        raise CniError(INVALID_ENVIRONMENT, "interface name is empty")
    if len(ifname) > IFNAME_MAX:
        raise CniError(
            INVALID_ENVIRONMENT, "interface name is too long", f"{ifname!r}: at most 15 characters"
        )
    if ifname in (".", "..") or _BAD_IFNAME.search(ifname):
        raise CniError(INVALID_ENVIRONMENT, "interface name contains / or : or whitespace, or is . or ..")


def _args_string(args: Sequence[tuple[str, str]] | Mapping[str, str]) -> str:
    pairs = list(args.items()) if isinstance(args, Mapping) else list(args)
    return ";".join(f"{k}={v}" for k, v in pairs)


class _Locks:
    """Per-attachment mutual exclusion, and GC excluding everything (a readers-writer lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[tuple[str, str]] = set()
        self._gc = False

    @contextlib.contextmanager
    def attachment(self, key: tuple[str, str]) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._gc and key not in self._busy)
            self._busy.add(key)
        try:
            yield
        finally:
            with self._cond:
                self._busy.discard(key)
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._gc)
            self._gc = True
            self._cond.wait_for(lambda: not self._busy)
        try:
            yield
        finally:
            with self._cond:
                self._gc = False
                self._cond.notify_all()


class CniRuntime:
    """Runs the plugin chain of one network for sandboxes on one node.

    `conf`: the network (see `load_conflist`). `plugin_dirs`: where plugins are found, in
    order; also passed as `CNI_PATH`. `cache_dir`: the directory holding the cached results
    (`Layout.cni_cache_dir` in the lab). `plugin_netns`: name or path of the namespace the
    plugins run in (the node's); None runs them in the caller's own namespace.
    `env`: environment for the plugins instead of this process's (CNI_* are always set).
    """

    def __init__(
        self,
        conf: NetworkConfigList,
        plugin_dirs: Sequence[str | os.PathLike[str]],
        cache_dir: str | os.PathLike[str],
        plugin_netns: str | None = None,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.conf = conf
        self.plugin_dirs = [os.path.abspath(d) for d in plugin_dirs]
        self.cache = ResultCache(cache_dir)
        self.plugin_netns = plugin_netns
        self.timeout = timeout
        self.env = dict(env) if env is not None else None
        self._locks = _Locks()

    @property
    def cni_path(self) -> str:
        return ":".join(self.plugin_dirs)

    # Operations ---------------------------------------------------------------------------

    def add(
        self,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        args: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        capability_args: Mapping[str, Any] | None = None,
    ) -> Result:
        """Attach the sandbox in `netns` (a netns name or path) as `ifname`; return the result.

        On failure every plugin's DEL has run before the CniError is raised.
        """
        validate_attachment(container_id, ifname)
        path = netns_path(netns)
        caps = dict(capability_args or {})
        with self._locks.attachment((container_id, ifname)):
            if self.cache.load(self.conf.name, container_id, ifname) is not None:
                # a failing second ADD would be rolled back with a DEL that tears down the first
                raise AlreadyExists(
                    f"{container_id}/{ifname} is already attached to network {self.conf.name}; DEL it first"
                )
            prev: dict[str, Any] | None = None
            try:
                for plugin in self.conf.plugins:
                    req = plugin_request(self.conf, plugin, prev, caps)
                    out = self._exec(plugin["type"], "ADD", req, container_id, path, ifname, args)
                    prev = self._decode_result(plugin["type"], out)
            except CniError:
                self._delete_all(container_id, path, ifname, args, caps, None)
                raise
            assert prev is not None
            result = Result.from_dict(prev)
            self.cache.save(
                CachedAttachment(
                    network=self.conf.name,
                    container_id=container_id,
                    ifname=ifname,
                    netns=path,
                    cni_args=list(args.items()) if isinstance(args, Mapping) else list(args),
                    capability_args=caps,
                    result=prev,
                    config=self.conf.raw,
                )
            )
            return result

    def delete(
        self,
        container_id: str,
        netns: str | None,
        ifname: str = "eth0",
        args: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        capability_args: Mapping[str, Any] | None = None,
    ) -> list[CniError]:
        """Detach; safe to repeat and when `netns` is gone or None. Returns the plugins' errors.

        `args` and `capability_args` default to what ADD was given (from the cache).
        """
        validate_attachment(container_id, ifname)
        with self._locks.attachment((container_id, ifname)):
            return self._delete_cached(container_id, netns, ifname, args, capability_args)

    def check(
        self,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        args: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        capability_args: Mapping[str, Any] | None = None,
    ) -> None:
        """Ask every plugin whether the attachment is still as ADD left it; raises CniError."""
        validate_attachment(container_id, ifname)
        if self.conf.disable_check:
            return
        if not version_ge(self.conf.cni_version, "0.4.0"):
            raise CniError(
                INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, not {self.conf.cni_version}"
            )
        with self._locks.attachment((container_id, ifname)):
            cached = self.cache.load(self.conf.name, container_id, ifname)
            if cached is None or cached.result is None:
                raise CniError(
                    UNKNOWN_CONTAINER,
                    f"no cached result for {container_id}/{ifname} in network {self.conf.name}",
                )
            use_args = args if args is not None else cached.cni_args
            caps = dict(capability_args if capability_args is not None else cached.capability_args)
            for plugin in self.conf.plugins:
                req = plugin_request(self.conf, plugin, cached.result, caps)
                self._exec(plugin["type"], "CHECK", req, container_id, netns_path(netns), ifname, use_args)

    def gc(self, valid_attachments: Iterable[tuple[str, str]]) -> list[CniError]:
        """Remove every attachment of this network not in `valid_attachments` (containerID, ifname).

        Stale cached attachments get a full DEL; then (1.1.0) every plugin gets GC with the
        valid list. Keeps going past errors and returns them all.
        """
        if self.conf.disable_gc:
            return []
        valid = {(c, i) for c, i in valid_attachments}
        errors: list[CniError] = []
        with self._locks.exclusive():
            for cached in self.cache.attachments(self.conf.name):
                if (cached.container_id, cached.ifname) in valid:
                    continue
                log.info("GC: deleting stale attachment %s/%s", cached.container_id, cached.ifname)
                errors += self._delete_cached(
                    cached.container_id, cached.netns or None, cached.ifname, None, None
                )
            if version_ge(self.conf.cni_version, "1.1.0"):
                extra = {
                    "cni.dev/valid-attachments": [{"containerID": c, "ifname": i} for c, i in sorted(valid)]
                }
                for plugin in self.conf.plugins:
                    req = plugin_request(self.conf, plugin, extra=extra)
                    try:
                        self._exec(plugin["type"], "GC", req, "", "", "", ())
                    except CniError as e:
                        log.warning("GC: %s", e)
                        errors.append(e)
        return errors

    def status(self) -> None:
        """Raise the first plugin's STATUS error (50/51: cannot ADD now); 1.1.0 only."""
        if not version_ge(self.conf.cni_version, "1.1.0"):
            return
        for plugin in self.conf.plugins:
            self._exec(plugin["type"], "STATUS", plugin_request(self.conf, plugin), "", "", "", ())

    def version(self, plugin_type: str) -> dict[str, Any]:
        """A plugin's VERSION answer: {"cniVersion", "supportedVersions"}."""
        out = self._exec(plugin_type, "VERSION", {"cniVersion": self.conf.cni_version}, "", "", "", ())
        try:
            answer = json.loads(out)
        except ValueError:
            raise CniError(DECODING_FAILURE, "cannot decode VERSION answer", plugin=plugin_type) from None
        if not isinstance(answer, dict):
            raise CniError(DECODING_FAILURE, "VERSION answer is not an object", plugin=plugin_type)
        return answer

    def cached(self, container_id: str, ifname: str = "eth0") -> CachedAttachment | None:
        return self.cache.load(self.conf.name, container_id, ifname)

    # Internals ----------------------------------------------------------------------------

    def _delete_cached(
        self,
        container_id: str,
        netns: str | None,
        ifname: str,
        args: Sequence[tuple[str, str]] | Mapping[str, str] | None,
        capability_args: Mapping[str, Any] | None,
    ) -> list[CniError]:
        cached = self.cache.load(self.conf.name, container_id, ifname)
        prev = cached.result if cached else None
        if args is None:
            args = cached.cni_args if cached else ()
        if capability_args is None:
            capability_args = cached.capability_args if cached else {}
        path = netns_path(netns) if netns else ""
        errors = self._delete_all(container_id, path, ifname, args, dict(capability_args), prev)
        self.cache.delete(self.conf.name, container_id, ifname)
        return errors

    def _delete_all(
        self,
        container_id: str,
        netns_path_: str,
        ifname: str,
        args: Sequence[tuple[str, str]] | Mapping[str, str],
        caps: dict[str, Any],
        prev: dict[str, Any] | None,
    ) -> list[CniError]:
        if not version_ge(self.conf.cni_version, "0.4.0"):
            prev = None  # prevResult on DEL arrived with 0.4.0
        errors = []
        for plugin in reversed(self.conf.plugins):
            req = plugin_request(self.conf, plugin, prev, caps)
            try:
                self._exec(plugin["type"], "DEL", req, container_id, netns_path_, ifname, args)
            except CniError as e:
                log.warning("DEL %s/%s: %s", container_id, ifname, e)
                errors.append(e)
        return errors

    def _decode_result(self, plugin_type: str, out: bytes) -> dict[str, Any]:
        if not out.strip():
            raise CniError(DECODING_FAILURE, "ADD succeeded but printed no result", plugin=plugin_type)
        try:
            obj = json.loads(out)
        except ValueError as e:
            raise CniError(DECODING_FAILURE, f"cannot decode ADD result: {e}", plugin=plugin_type) from None
        try:
            Result.from_dict(obj)
        except CniError as e:
            raise CniError(e.code, e.msg, e.details, plugin=plugin_type) from None
        return obj  # type: ignore[no-any-return]

    def _exec(
        self,
        plugin_type: str,
        command: str,
        request: dict[str, Any],
        container_id: str,
        netns: str,
        ifname: str,
        args: Sequence[tuple[str, str]] | Mapping[str, str],
    ) -> bytes:
        """Run one plugin; its stdout on success, CniError on failure."""
        exe = find_plugin(plugin_type, self.plugin_dirs)
        env = dict(self.env if self.env is not None else os.environ)
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=container_id,
            CNI_NETNS=netns,
            CNI_IFNAME=ifname,
            CNI_ARGS=_args_string(args),
            CNI_PATH=self.cni_path,
        )
        try:
            proc = run_process(
                self.plugin_netns, [exe], input=json.dumps(request).encode(), env=env, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise CniError(
                INTERNAL, f"{command} timed out after {self.timeout:g}s", plugin=plugin_type
            ) from None
        except OSError as e:
            raise CniError(INTERNAL, f"cannot execute {exe}: {e.strerror}", plugin=plugin_type) from None
        except NotFound as e:
            raise CniError(INTERNAL, f"cannot execute {exe}: {e}", plugin=plugin_type) from None
        if proc.stderr:
            log.debug("%s %s stderr: %s", plugin_type, command, proc.stderr.decode(errors="replace").strip())
        if proc.returncode != 0:
            raise CniError.from_plugin_output(plugin_type, proc.stdout, proc.stderr, proc.returncode)
        return proc.stdout
