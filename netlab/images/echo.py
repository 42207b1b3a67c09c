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
the standard library and starts in well under 100 ms, since tests start many of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from functools import partial

HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


class Identity:
    def __init__(self, name: str, ip: str | None) -> None:
        self.name = name
        self.ip = ip

    def line(self, local_ip: str, peer: tuple[str, int]) -> str:
        return f"pod={self.name} ip={self.ip or local_ip} client={peer[0]}:{peer[1]}"


async def handle_tcp(ident: Identity, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    local = writer.get_extra_info("sockname")
    line = ident.line(local[0], peer)
    try:
        first = await reader.readline()
        if not first:
            return
        if first.startswith(HTTP_METHODS):
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # the request headers
            body = (line + "\n").encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head + (b"" if first.startswith(b"HEAD ") else body))
            await writer.drain()
            return
        writer.write((line + "\n").encode())
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, ident: Identity, port: int) -> None:
        self.ident = ident
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        local_ip = self.ident.ip or _route_source(addr[0])
        self.transport.sendto((self.ident.line(local_ip, addr) + "\n").encode(), addr)


def _route_source(dst: str) -> str:
    """The address this host would send from towards `dst` (a UDP socket learns it by connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((dst, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "0.0.0.0"


async def serve(ident: Identity, ports: list[int], bind: str) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for port in ports:
        servers.append(
            await asyncio.start_server(lambda r, w: handle_tcp(ident, r, w), bind, port, reuse_address=True)
        )
        await loop.create_datagram_endpoint(partial(UdpEcho, ident, port), local_addr=(bind, port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"echo {ident.name} serving on {', '.join(map(str, ports))}", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netlab-echo", description=__doc__.split("\n\n")[0])
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
        asyncio.run(serve(Identity(args.name, args.ip), ports, args.bind))
    except OSError as e:
        print(f"netlab-echo: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
