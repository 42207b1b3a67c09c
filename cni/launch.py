"""How a netlab plugin executable starts: hand the call to the node's CNI server, or run it here.

A runtime starts a plugin process for every CNI call, so start-up is most of the cost: a bare
`python -I -S` starts in about 6 ms here, `import json` and `import socket` add about 9 ms,
and the plugin's real work needs pyroute2, whose import alone costs about 150 ms. So this
module uses nothing but built-in modules (`_socket`, `posix`, `sys`) until it knows it must
do the work itself:

1. It connects to the abstract unix socket `@netlab-cni/1`. Abstract sockets belong to the
   network namespace they were bound in, so this reaches exactly the server (`netlab
   cni-server`) that serves the namespace this plugin runs in, the node's, without any path
   or configuration, and nothing is left on disk when a server dies.
2. If one answers, it sends the plugin name, this source tree's location, its whole
   environment and its stdin, prints the server's stdout and stderr and exits with its
   status: the server ran the very same `dispatch` this process would have run.
3. If none answers (or it serves a different source tree), the plugin runs here.

Like `netlab.cni.skel.main`, this is a plugin's process boundary, so it (and only it, with the
CLI and the skeleton) ends the process: it prints what the call produced and exits with its
status.

Wire format: a message is a sequence of fields, each an 8-byte big-endian length and its
bytes. Request: `NLCNI1`, source root, plugin name, environment (`K=V` joined by NUL), stdin;
the client then shuts down its sending side. Reply: status (ASCII digits), stdout, stderr;
or the single field `decline`.
"""

import sys

SOCKET_ADDRESS = b"\0netlab-cni/1"
MAGIC = b"NLCNI1"
DECLINE = b"decline"
# the directory holding the `cni` and `netlab` packages this code was loaded from
SOURCE_ROOT = __file__.rsplit("/", 2)[0]

_LOST = (
    b'{"cniVersion": "1.1.0", "code": 999, '
    b'"msg": "the node\'s netlab CNI server ended the call without an answer"}'
)


def encode(*fields: bytes) -> bytes:
    return b"".join(len(f).to_bytes(8, "big") + f for f in fields)


def decode(data: bytes) -> list[bytes]:
    """The fields of a message; ValueError when it is cut short."""
    out = []
    i = 0
    while i < len(data):
        if i + 8 > len(data):
            raise ValueError("truncated length")
        n = int.from_bytes(data[i : i + 8], "big")
        i += 8
        if i + n > len(data):
            raise ValueError("truncated field")
        out.append(data[i : i + n])
        i += n
    return out


def forward(name: str, env: bytes, stdin: bytes) -> tuple[int, bytes, bytes] | None:
    """The server's (status, stdout, stderr), or None when no server takes the call."""
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(SOCKET_ADDRESS)
    except OSError:
        s.close()
        return None
    chunks = []
    try:
        s.sendall(encode(MAGIC, SOURCE_ROOT.encode(), name.encode(), env, stdin))
        s.shutdown(_socket.SHUT_WR)
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return 1, _LOST, b""
    finally:
        s.close()
    try:
        fields = decode(b"".join(chunks))
        if fields == [DECLINE]:
            return None
        status, out, err = fields
        return int(status), out, err
    except ValueError:
        return 1, _LOST, b""


def _finish(status: int, out: bytes, err: bytes) -> None:
    import posix

    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.buffer.flush()
    posix._exit(status)


def run(name: str) -> None:
    """The whole life of plugin `name` ("bridge", "host-local", "loopback"); does not return."""
    import posix

    env = posix.environ
    command = env.get(b"CNI_COMMAND", b"")
    stdin = b"" if command == b"VERSION" else sys.stdin.buffer.read()
    if command:  # with no command there is nothing a server could add: answer here
        blob = b"\0".join(k + b"=" + v for k, v in env.items())
        reply = forward(name, blob, stdin)
        if reply is not None:
            _finish(*reply)
    run_here(name, stdin)


def run_here(name: str, stdin: bytes) -> None:
    if sys.flags.no_site:
        # launchers start with -S for speed; the implementation needs site-packages (pyroute2)
        import site

        site.main()
    import os

    from cni.plugins import make_plugin
    from netlab.cni.skel import dispatch

    plugin = make_plugin(name, None)
    if not os.environ.get("CNI_COMMAND"):
        versions = ", ".join(plugin.supported_versions)
        sys.stderr.write(f"CNI plugin netlab-{name}; CNI protocol versions supported: {versions}\n")
    reply = dispatch(plugin, os.environ, stdin)
    _finish(reply.status, reply.stdout, reply.stderr)
