"""The userspace proxy's sockets: one relay per service port, inside the node's namespace.

The proxy process stays in the host's namespace (it must reach the apiserver on the host's
loopback); its sockets live in the node's namespace because each is created by a thread that
joined it (`netlab.kernel.spawn_in_netns`). Portal rules in the node REDIRECT service traffic
to a relay's port.

TCP: the accept loop hands each connection to its own thread, which dials an endpoint with
kube-proxy's timeouts (250 ms, 500 ms, 1 s, 2 s, moving on and dropping affinity after a
failure) and then copies both directions. Copying uses `os.splice` through a pipe, so payload
moves socket -> pipe -> socket inside the kernel and never enters Python; Go's userspace proxy
copied through user-space buffers and reached about a third of direct throughput.

UDP: one backend socket per client address, each with a reader that returns replies through
the listening socket; a session ends after `idle_timeout` without replies (250 ms, as
kube-proxy had it) or when its endpoint goes away.

A relay that is stopped closes its listener, so connections to the portal are refused by the
kernel at once: that is how a service without endpoints answers.

`externalTrafficPolicy: Local` (TCP): a connection whose original destination
(`SO_ORIGINAL_DST`, from before the portal's REDIRECT) is one of the service's external
destinations and whose client is outside the pod network and the node goes to a local endpoint,
dialled from the client's own address (`IP_TRANSPARENT`), so the backend sees the client as
the iptables mode lets it. The backend's replies are addressed to the client; the portal
rules mark them (`-m socket --transparent`) and a policy-routing rule delivers them to the
relay's socket instead of forwarding them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass
from functools import partial

from netlab.errors import NetlabError
from netlab.kernel import run_in_netns, spawn_in_netns
from proxy.model import Endpoint, ServicePortName
from proxy.userspace.balancer import RoundRobin

log = logging.getLogger(__name__)

DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
IP_TRANSPARENT = 19  # linux/in.h
UDP_IDLE_TIMEOUT = 0.25
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes src -> dst through a pipe until EOF; then half-close dst."""
    r, w = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
        sfd, dfd = src.fileno(), dst.fileno()
        while True:
            n = os.splice(sfd, w, PIPE_SIZE, flags=os.SPLICE_F_MOVE)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dfd, n, flags=os.SPLICE_F_MOVE)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        # a reset on either side ends both directions
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
    finally:
        os.close(r)
        os.close(w)


def _bind(netns: str, kind: int, port: int) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            s.close()
            if e.errno != errno.EADDRINUSE or port == 0:
                raise
            s = socket.socket(socket.AF_INET, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", 0))  # the old port was taken meanwhile: any port will do
        return s

    try:
        return run_in_netns(netns, make)
    except OSError as e:
        raise NetlabError(f"cannot open a proxy socket in {netns}: {e.strerror}") from None


@dataclass(frozen=True)
class LocalExternal:
    """A service port's `externalTrafficPolicy: Local`, as its relay applies it."""

    destinations: frozenset[str]  # the node's addresses (its node port), external and LB IPs
    pod_network: ipaddress.IPv4Network | ipaddress.IPv6Network
    node_ips: frozenset[str]

    def applies(self, client_ip: str, original_dst: str) -> bool:
        """External traffic from outside: pods and the node itself are served as Cluster,
        as the iptables mode's `KUBE-EXT-*` chain sends them on to `KUBE-SVC-*`."""
        if original_dst not in self.destinations:
            return False
        ip = ipaddress.ip_address(client_ip)
        return not (ip.is_loopback or client_ip in self.node_ips or ip in self.pod_network)


def original_dst(conn: socket.socket) -> str:
    """The address a redirected connection was sent to."""
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return socket.inet_ntoa(raw[4:8]) if struct.unpack_from("=H", raw)[0] == socket.AF_INET else ""


def _dial_from(source: str, ep: Endpoint, timeout: float) -> socket.socket:
    """A TCP connection to `ep` whose source is `source`, an address of another host."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((ep.ip, ep.port))
    except BaseException:
        s.close()
        raise
    return s


class TcpRelay:
    protocol = "TCP"

    def __init__(
        self,
        netns: str,
        spn: ServicePortName,
        balancer: RoundRobin,
        port: int = 0,
        local_balancer: RoundRobin | None = None,
    ) -> None:
        self.netns = netns
        self.spn = spn
        self.balancer = balancer
        self.local_balancer = local_balancer or balancer
        self.local_external: LocalExternal | None = None  # set by the mode on every sync
        self.sock = _bind(netns, socket.SOCK_STREAM, port)
        self.sock.listen(1024)
        self.port: int = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"relay:{spn}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return  # the listener was shut down
            with self._lock:
                if self._stopped:
                    conn.close()
                    return
                self._conns.add(conn)
            spawn_in_netns(self.netns, partial(self._serve, conn, addr), name=f"conn:{self.spn}")

    def _dial(self, client_ip: str, transparent: bool = False) -> socket.socket | None:
        balancer = self.local_balancer if transparent else self.balancer
        for attempt, timeout in enumerate(DIAL_TIMEOUTS):
            try:
                ep = balancer.next(self.spn, client_ip, reset_affinity=attempt > 0)
            except NetlabError:
                return None  # Local without local endpoints: dropped, as the iptables mode does
            try:
                if transparent:
                    s = _dial_from(client_ip, ep, timeout)
                else:
                    s = socket.create_connection((ep.ip, ep.port), timeout=timeout)
            except OSError as e:
                log.info("%s: dial %s failed: %s", self.spn, ep, e.strerror or e)
                continue
            s.settimeout(None)
            return s
        return None

    def _serve(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        backend = None
        try:
            local = self.local_external
            transparent = local is not None and local.applies(addr[0], original_dst(conn))
            backend = self._dial(addr[0], transparent)
            if backend is None:
                return
            with self._lock:
                if self._stopped:
                    return
                self._conns.add(backend)
            conn.settimeout(None)
            back = threading.Thread(target=_pump, args=(backend, conn), daemon=True)
            back.start()
            _pump(conn, backend)
            back.join()
        finally:
            with self._lock:
                for s in (conn, backend):
                    if s is not None:
                        self._conns.discard(s)
                        s.close()

    def active(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    def stop(self, close_connections: bool = False) -> None:
        """Stop accepting (new connections are refused); optionally cut open ones too."""
        with self._lock:
            self._stopped = True
            conns = list(self._conns) if close_connections else []
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self.sock.close()
        self._thread.join(2)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop_endpoints_except(self, keep: set[Endpoint]) -> None:
        """TCP connections end with their backend; nothing to do."""


class UdpRelay:
    protocol = "UDP"

    def __init__(
        self,
        netns: str,
        spn: ServicePortName,
        balancer: RoundRobin,
        port: int = 0,
        idle_timeout: float = UDP_IDLE_TIMEOUT,
    ) -> None:
        self.netns = netns
        self.spn = spn
        self.balancer = balancer
        self.idle_timeout = idle_timeout
        self.sock = _bind(netns, socket.SOCK_DGRAM, port)
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int], tuple[socket.socket, Endpoint]] = {}
        self._stopped = False
        self._thread = spawn_in_netns(netns, self._recv_loop, name=f"relay:{spn}")

    def _recv_loop(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            with self._lock:
                if self._stopped:
                    return
                session = self._sessions.get(addr)
            if session is None:
                session = self._open_session(addr)
                if session is None:
                    continue
            with contextlib.suppress(OSError):
                session[0].send(data)

    def _open_session(self, addr: tuple[str, int]) -> tuple[socket.socket, Endpoint] | None:
        try:
            ep = self.balancer.next(self.spn, addr[0])
        except NetlabError:
            return None
        backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # this thread is in the netns
        try:
            backend.connect((ep.ip, ep.port))
        except OSError:
            backend.close()
            return None
        backend.settimeout(self.idle_timeout)
        with self._lock:
            self._sessions[addr] = (backend, ep)
        threading.Thread(target=self._replies, args=(addr, backend), daemon=True).start()
        return backend, ep

    def _replies(self, addr: tuple[str, int], backend: socket.socket) -> None:
        try:
            while data := backend.recv(65535):  # b"" once the session is shut down
                self.sock.sendto(data, addr)
        except OSError:
            pass  # idle timeout, or the session was closed
        finally:
            with self._lock:
                if self._sessions.get(addr, (None,))[0] is backend:
                    del self._sessions[addr]
            backend.close()

    def active(self) -> int:
        with self._lock:
            return len(self._sessions)

    def drop_endpoints_except(self, keep: set[Endpoint]) -> None:
        """End sessions pinned to endpoints that went away; the next datagram picks anew."""
        with self._lock:
            gone = [a for a, (_, ep) in self._sessions.items() if ep not in keep]
            socks = [self._sessions.pop(a)[0] for a in gone]
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self, close_connections: bool = False) -> None:
        with self._lock:
            self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes recvfrom()
        self.sock.close()
        self.drop_endpoints_except(set())


Relay = TcpRelay | UdpRelay
