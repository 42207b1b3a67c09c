"""The `netlab/echo` image: a server that says who answered and whom it saw.

On every given port it serves TCP and UDP at once:
- TCP: a request starting with an HTTP method gets an HTTP/1.1 response whose body is the
  identity line; anything else gets the identity line and then an echo of every following
  line, so one connection can be kept open to prove it still reaches the same backend;
- UDP: each datagram gets the identity line back.

The identity line is `pod=<name> ip=<pod ip> client=<ip>:<port>`: which backend answered
(what a load-balancing test counts), and the source address it saw (masquerade or not).
The pod IP is `--ip` (or $POD_IP), else the address the connection arrived on.

Run it as `python -m netlab.images.echo --name web-1 --port 8080 --port 5353`. It uses only
the standard library, and only its light parts: one `selectors` loop over non-blocking
sockets rather than asyncio, whose import alone costs about 30 ms of CPU. A lab starts one
of these per pod, many at once, so its start-up cost is paid many times over.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import sys

HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
MAX_HEAD = 64 * 1024


class Identity:
    def __init__(self, name: str, ip: str | None) -> None:
        self.name = name
        self.ip = ip

    def line(self, local_ip: str, peer: tuple[str, int]) -> str:
        return f"pod={self.name} ip={self.ip or local_ip} client={peer[0]}:{peer[1]}"


class Connection:
    """One TCP client: the first line decides between HTTP and line echo."""

    def __init__(self, sock: socket.socket, ident: Identity) -> None:
        self.sock = sock
        self.line = ident.line(sock.getsockname()[0], sock.getpeername())
        self.inbuf = b""
        self.outbuf = b""
        self.mode = ""  # "" until the first line; then "http" or "echo"
        self.closing = False  # close once outbuf is sent

    def received(self, data: bytes) -> None:
        if self.mode == "echo":
            self.outbuf += data
            return
        self.inbuf += data
        if self.mode == "":
            if b"\n" not in self.inbuf:
                if len(self.inbuf) > MAX_HEAD:
                    self.closing = True
                return
            if self.inbuf.startswith(HTTP_METHODS):
                self.mode = "http"
            else:
                self.mode = "echo"
                first, _, rest = self.inbuf.partition(b"\n")
                self.outbuf += (self.line + "\n").encode() + rest
                self.inbuf = b""
                return
        # HTTP: answer once the request's headers have ended
        if b"\r\n\r\n" in self.inbuf or b"\n\n" in self.inbuf:
            self._respond()
        elif len(self.inbuf) > MAX_HEAD:
            self.closing = True

    def ended(self) -> None:
        """The client closed its side: an HTTP request without its blank line is answered."""
        if self.mode == "http" and not self.closing:
            self._respond()
        self.closing = True

    def _respond(self) -> None:
        body = (self.line + "\n").encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.outbuf += head + (b"" if self.inbuf.startswith(b"HEAD ") else body)
        self.closing = True


def _route_source(dst: str) -> str:
    """The address this host would send from towards `dst` (a UDP socket learns it by connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((dst, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "0.0.0.0"


class Server:
    def __init__(self, ident: Identity, ports: list[int], bind: str) -> None:
        self.ident = ident
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Connection] = {}
        for port in ports:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((bind, port))
            tcp.listen(128)
            tcp.setblocking(False)
            self.sel.register(tcp, selectors.EVENT_READ, "accept")
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((bind, port))
            udp.setblocking(False)
            self.sel.register(udp, selectors.EVENT_READ, "udp")

    def run(self) -> None:
        while True:
            for key, mask in self.sel.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "accept":
                    self._accept(sock)
                elif key.data == "udp":
                    self._datagram(sock)
                else:
                    self._serve(sock, mask)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        try:
            conn = Connection(sock, self.ident)
        except OSError:  # the client is gone already
            sock.close()
            return
        self.conns[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_READ, "conn")

    def _datagram(self, sock: socket.socket) -> None:
        try:
            _, addr = sock.recvfrom(65536)
        except OSError:
            return
        local_ip = self.ident.ip or _route_source(addr[0])
        with contextlib.suppress(OSError):
            sock.sendto((self.ident.line(local_ip, addr) + "\n").encode(), addr)

    def _close(self, sock: socket.socket) -> None:
        self.conns.pop(sock.fileno(), None)
        self.sel.unregister(sock)
        sock.close()

    def _serve(self, sock: socket.socket, mask: int) -> None:
        conn = self.conns[sock.fileno()]
        try:
            if mask & selectors.EVENT_READ:
                data = sock.recv(65536)
                if not data:
                    conn.ended()
                else:
                    conn.received(data)
            if conn.outbuf:
                sent = sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(sock)
            return
        if conn.closing and not conn.outbuf:
            self._close(sock)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if conn.closing:
            want = selectors.EVENT_WRITE
        self.sel.modify(sock, want, "conn")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netlab-echo", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--name", default=os.environ.get("POD_NAME") or socket.gethostname())
    ap.add_argument("--ip", default=os.environ.get("POD_IP"))
    ap.add_argument("--port", type=int, action="append", dest="ports", help="TCP+UDP port (repeatable)")
    ap.add_argument("--bind", default="0.0.0.0")
    args = ap.parse_args(argv)
    ports = args.ports or [int(p) for p in os.environ.get("ECHO_PORTS", "8080").split(",")]
    for p in ports:
        if not 1 <= p <= 65535:
            print(f"netlab-echo: invalid port {p}", file=sys.stderr)
            return 2
    try:
        server = Server(Identity(args.name, args.ip), ports, args.bind)
    except OSError as e:
        print(f"netlab-echo: {e.strerror or e}", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    print(f"echo {args.name} serving on {', '.join(map(str, ports))}", flush=True)
    with contextlib.suppress(SystemExit):
        server.run()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # out of the select loop at once


if __name__ == "__main__":
    sys.exit(main())
