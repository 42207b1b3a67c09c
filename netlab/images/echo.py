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
the standard library, and only its light parts: one epoll loop over non-blocking sockets
rather than asyncio, whose import alone costs about 30 ms of CPU. A lab starts one of these
per pod, many at once, so its start-up cost is paid many times over; for the same reason it
uses the built-in `_socket` and `_signal` modules rather than `socket`, `signal` and
`selectors` (which import `enum` and turn every constant into one: about 7 ms of CPU here,
as much again as the interpreter's own start) and reads its few options itself rather than
through `argparse` (3 ms).
"""

from __future__ import annotations

import _signal
import _socket
import os
import select
import sys
from _socket import AF_INET, SO_REUSEADDR, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET

Socket = _socket.socket
USAGE = "usage: netlab-echo [-h] [--name NAME] [--ip IP] [--port PORTS] [--bind BIND]"
HELP = (
    USAGE
    + """

A server that says who answered and whom it saw.

options:
  -h, --help     show this help message and exit
  --name NAME
  --ip IP
  --port PORTS   TCP+UDP port (repeatable)
  --bind BIND
"""
)

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

    def __init__(self, sock: Socket, ident: Identity) -> None:
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
    s = Socket(AF_INET, SOCK_DGRAM)
    try:
        s.connect((dst, 9))
        return str(s.getsockname()[0])
    except OSError:
        return "0.0.0.0"
    finally:
        s.close()


ACCEPT, UDP, CONN = "accept", "udp", "conn"


class Server:
    def __init__(self, ident: Identity, ports: list[int], bind: str) -> None:
        self.ident = ident
        self.poller = select.epoll()
        self.socks: dict[int, tuple[Socket, str]] = {}  # fd -> (socket, role)
        self.conns: dict[int, Connection] = {}
        for port in ports:
            tcp = Socket(AF_INET, SOCK_STREAM)
            tcp.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
            tcp.bind((bind, port))
            tcp.listen(128)
            tcp.setblocking(False)
            self._register(tcp, ACCEPT)
            udp = Socket(AF_INET, SOCK_DGRAM)
            udp.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
            udp.bind((bind, port))
            udp.setblocking(False)
            self._register(udp, UDP)

    def _register(self, sock: Socket, role: str) -> None:
        self.socks[sock.fileno()] = (sock, role)
        self.poller.register(sock.fileno(), select.EPOLLIN)

    def run(self) -> None:
        while True:
            try:
                events = self.poller.poll()
            except InterruptedError:
                continue
            for fd, mask in events:
                entry = self.socks.get(fd)
                if entry is None:
                    continue  # closed by an earlier event of this round
                sock, role = entry
                if role == ACCEPT:
                    self._accept(sock)
                elif role == UDP:
                    self._datagram(sock)
                else:
                    self._serve(sock, mask)

    def _accept(self, listener: Socket) -> None:
        try:
            fd, _ = listener._accept()  # type: ignore[attr-defined]  # _socket's accept(2)
        except OSError:
            return
        sock = Socket(AF_INET, SOCK_STREAM, 0, fd)
        sock.setblocking(False)
        try:
            conn = Connection(sock, self.ident)
        except OSError:  # the client is gone already
            sock.close()
            return
        self.conns[fd] = conn
        self._register(sock, CONN)

    def _datagram(self, sock: Socket) -> None:
        try:
            _, addr = sock.recvfrom(65536)
        except OSError:
            return
        local_ip = self.ident.ip or _route_source(addr[0])
        try:  # noqa: SIM105 (contextlib costs start-up time)
            sock.sendto((self.ident.line(local_ip, addr) + "\n").encode(), addr)
        except OSError:
            pass

    def _close(self, sock: Socket) -> None:
        fd = sock.fileno()
        self.conns.pop(fd, None)
        self.socks.pop(fd, None)
        self.poller.unregister(fd)
        sock.close()

    def _serve(self, sock: Socket, mask: int) -> None:
        conn = self.conns[sock.fileno()]
        try:
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
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
        want = select.EPOLLIN | (select.EPOLLOUT if conn.outbuf else 0)
        if conn.closing:
            want = select.EPOLLOUT
        self.poller.modify(sock.fileno(), want)


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, object]:
    """--name, --ip, --bind (last one wins) and --port (repeatable), as `--opt V` or `--opt=V`."""
    opts: dict[str, object] = {"ports": []}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            opts["help"] = True
            i += 1
            continue
        key, eq, value = arg.partition("=")
        if key not in ("--name", "--ip", "--port", "--bind"):
            raise UsageError(f"unrecognized arguments: {' '.join(argv[i:])}")
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"argument {key}: expected one argument")
            value = argv[i + 1]
            i += 1
        i += 1
        if key == "--port":
            try:
                ports = opts["ports"]
                assert isinstance(ports, list)
                ports.append(int(value))
            except ValueError:
                raise UsageError(f"argument --port: invalid int value: '{value}'") from None
        else:
            opts[key[2:]] = value
    return opts


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"{USAGE}\nnetlab-echo: error: {e}", file=sys.stderr)
        return 2
    if opts.get("help"):
        print(HELP, end="")
        return 0
    name = str(opts.get("name") or os.environ.get("POD_NAME") or _socket.gethostname())
    ip = opts.get("ip", os.environ.get("POD_IP"))
    given = opts["ports"]
    assert isinstance(given, list)
    ports: list[int] = given or [int(p) for p in os.environ.get("ECHO_PORTS", "8080").split(",")]
    for p in ports:
        if not 1 <= p <= 65535:
            print(f"netlab-echo: invalid port {p}", file=sys.stderr)
            return 2
    try:
        server = Server(Identity(name, str(ip) if ip else None), ports, str(opts.get("bind", "0.0.0.0")))
    except OSError as e:
        print(f"netlab-echo: {e.strerror or e}", file=sys.stderr)
        return 1
    for sig in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(sig, _stop)
    print(f"echo {name} serving on {', '.join(map(str, ports))}", flush=True)
    try:  # noqa: SIM105 (contextlib costs start-up time)
        server.run()
    except SystemExit:
        pass
    return 0


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # out of the select loop at once


if __name__ == "__main__":
    sys.exit(main())
