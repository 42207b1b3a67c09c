"""The node's CNI server: netlab's plugins, kept warm, for one network namespace.

A plugin executable costs a Python start per call, and a cold one also pays for importing
pyroute2 (about 150 ms here, against about 9 ms for a whole reference-plugin ADD). The
server is a long-lived process that has all of that loaded and answers the executables'
calls instead (see `cni/launch.py` for the client side and the wire format):

- it serves exactly one network namespace, the node's: it binds the abstract unix socket
  `@netlab-cni/1` inside that namespace (abstract sockets are scoped by network namespace),
  so a plugin reaches it only when the runtime ran the plugin there;
- a call carries the plugin's name, environment and stdin; the server runs the same
  `netlab.cni.skel.dispatch` of the same plugin class the executable would have loaded and
  returns stdout, stderr and status;
- calls run on worker threads that joined the served namespace when they started (setns
  affects only the calling thread; the main thread stays where it is), so a plugin acts in
  "its own" namespace exactly as a plugin process that the runtime started there: netlink
  sockets, sysctls and the tools and delegates it runs all land in the node's namespace
  without a trip through another thread or `nsenter` per step;
- calls from a different source tree are declined (the executable then runs itself), so the
  server never answers with code other than the caller's;
- only root (or the server's own user) may call: the peer's uid is checked (SO_PEERCRED);
- plugins keep nothing about containers between calls and serialise shared state
  themselves (host-local's flock), exactly as separate processes would.

When no server runs, the executables do the same work themselves; the server only makes it
faster. `netlab cni-server [--netns NAME]` runs one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cni import launch
from cni.plugins import PLUGINS, make_plugin
from netlab.cni.skel import OWN_NETNS, Plugin, Reply, dispatch
from netlab.errors import AlreadyExists, KernelError
from netlab.kernel import netns_path, run_in_netns
from netlab.kernel.netns import setns_current_thread

log = logging.getLogger("netlab.cni.server")

_PEERCRED = struct.Struct("3i")
WORKERS = 64  # calls served at once; more wait in the listen backlog


class CniServer:
    """Serves plugin calls for `netns` (a name or path; None: this process's own namespace)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns_path(netns) if netns else None
        # built for "their own" namespace: the workers run them inside the served one
        self.plugins: dict[str, Plugin] = {name: make_plugin(name, None) for name in PLUGINS}
        self.sock = run_in_netns(self.netns, self._bind)
        self._stopping = threading.Event()
        # persistent workers, each joined to the served namespace for its whole life; plugins
        # keep per-thread netlink handles to the node
        self._workers = ThreadPoolExecutor(
            max_workers=WORKERS, thread_name_prefix="cni-call", initializer=self._join_netns
        )

    def _join_netns(self) -> None:
        if self.netns is not None:
            setns_current_thread(self.netns)

    def _bind(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.bind(launch.SOCKET_ADDRESS)
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRINUSE:
                where = self.netns or "this network namespace"
                raise AlreadyExists(f"a netlab CNI server already serves {where}") from None
            raise KernelError(f"cannot bind the CNI server socket: {e.strerror}", e.errno) from e
        s.listen(128)
        return s

    def serve_forever(self) -> None:
        """Accept calls until `stop`; then wait for the calls in flight."""
        log.info("serving CNI calls for %s", self.netns or "this network namespace")
        try:
            while not self._stopping.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                self._workers.submit(self._handle, conn)
        finally:
            self.close()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()

    def close(self) -> None:
        """Stop accepting, then let the calls in flight finish."""
        self._stopping.set()
        self.sock.close()
        self._workers.shutdown(wait=True)

    def __enter__(self) -> CniServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    # One call -----------------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                _, uid, _ = _PEERCRED.unpack(
                    conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                )
                if uid not in (0, os.getuid()):
                    log.warning("refused a CNI call from uid %d", uid)
                    return
                chunks = []
                while chunk := conn.recv(262144):
                    chunks.append(chunk)
                if chunks:  # an empty request is a probe (see `serving`)
                    conn.sendall(self.answer(b"".join(chunks)))
        except OSError as e:
            log.warning("CNI call lost: %s", e)

    def answer(self, request: bytes) -> bytes:
        """The reply message for one request message."""
        try:
            magic, root, name, env_blob, stdin = launch.decode(request)
        except ValueError:
            return launch.encode(launch.DECLINE)
        if magic != launch.MAGIC or root.decode() != launch.SOURCE_ROOT or name.decode() not in self.plugins:
            return launch.encode(launch.DECLINE)
        env = _decode_env(env_blob)
        started = time.perf_counter()
        reply = self.call(name.decode(), env, stdin)
        log.info(
            "%s %s %s/%s: status %d in %.1f ms",
            name.decode(),
            env.get("CNI_COMMAND", "?"),
            env.get("CNI_CONTAINERID", ""),
            env.get("CNI_IFNAME", ""),
            reply.status,
            (time.perf_counter() - started) * 1000,
        )
        return launch.encode(str(reply.status).encode(), reply.stdout, reply.stderr)

    def call(self, name: str, env: dict[str, str], stdin: bytes) -> Reply:
        return dispatch(self.plugins[name], env, stdin, OWN_NETNS)


def _decode_env(blob: bytes) -> dict[str, str]:
    env = {}
    for item in blob.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def serving(netns: str | None) -> bool:
    """Whether a CNI server answers in `netns` (connects from a thread inside it)."""

    def probe() -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(launch.SOCKET_ADDRESS)
        except OSError:
            return False
        finally:
            s.close()
        return True

    return run_in_netns(netns_path(netns) if netns else None, probe)


def wait_serving(netns: str | None, timeout: float = 10.0, alive: Callable[[], bool] | None = None) -> None:
    """Block until a server answers in `netns`; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not serving(netns):
        if alive is not None and not alive():
            raise RuntimeError("the CNI server exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no CNI server answered in {netns} within {timeout:g}s")
        time.sleep(0.02)
