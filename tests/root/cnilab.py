"""Small helpers for CNI tests as root: a node namespace, pods, configs, TCP probes.

A test plays a node with a namespace of its own (`<prefix>node`): every plugin runs there,
never in the host's namespace. Pods are bare namespaces (`<prefix>pod-<name>`); the `layout`
fixture removes all of them, and kills whatever still runs inside, after each test.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netlab import kernel
from netlab.cni.config import NetworkConfigList, parse_conflist
from netlab.kernel import Rtnl
from netlab.layout import Layout

REFERENCE_DIR = "/usr/lib/cni"


@contextlib.contextmanager
def cni_server(netns: str) -> Iterator[None]:
    """`netlab cni-server` for `netns`, serving while the block runs; it must stop cleanly."""
    from cni.server import wait_serving

    netlab = Path(sys.executable).parent / "netlab"
    proc = subprocess.Popen(
        [str(netlab), "cni-server", "--netns", netns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_serving(netns, alive=lambda: proc.poll() is None)
        yield
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def make_node(layout: Layout, name: str = "node") -> str:
    ns = layout.node_netns(name)
    kernel.ensure_netns(ns)
    with Rtnl(ns) as r:
        r.set_link("lo", up=True)
    return ns


def make_pod(layout: Layout, name: str) -> str:
    ns = layout.pod_netns(name)
    kernel.ensure_netns(ns)
    return ns


def conflist(name: str, *plugins: dict[str, Any], version: str = "1.0.0") -> NetworkConfigList:
    return parse_conflist(json.dumps({"cniVersion": version, "name": name, "plugins": list(plugins)}))


def bridge_plugin(
    ptype: str, ipam_type: str, data_dir: Path, subnet: str = "10.77.0.0/24", **extra: Any
) -> dict[str, Any]:
    plugin: dict[str, Any] = {
        "type": ptype,
        "bridge": "cni0",
        "isGateway": True,
        "ipam": {"type": ipam_type, "ranges": [[{"subnet": subnet}]], "dataDir": str(data_dir)},
    }
    plugin.update(extra)
    return plugin


def links(netns: str) -> dict[str, kernel.Link]:
    with Rtnl(netns) as r:
        return {link.name: link for link in r.links()}


def addresses(netns: str, dev: str) -> list[str]:
    with Rtnl(netns) as r:
        return r.addresses(dev)


def ping(netns: str, ip: str) -> bool:
    return kernel.run(netns, ["ping", "-c", "1", "-W", "2", ip], check=False).returncode == 0


def nat_rules(netns: str) -> str:
    return kernel.run(netns, ["iptables-save", "-t", "nat"]).stdout


_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode())
    c.close()
"""

_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(c.recv(100).decode())
"""


class TcpServer:
    """A TCP server in `netns` that answers every connection with `reply`."""

    def __init__(self, netns: str, port: int, reply: str) -> None:
        argv = kernel.in_netns(netns, [sys.executable, "-c", _SERVER, str(port), reply])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> TcpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tcp_fetch(netns: str, host: str, port: int) -> str:
    """What the server at host:port says, connecting from `netns` ('' when it fails)."""
    for _ in range(3):
        proc = kernel.run(netns, [sys.executable, "-c", _CLIENT, host, str(port)], check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
        time.sleep(0.2)
    return ""


def link_client(
    layout: Layout, node_ns: str, node_ip: str = "192.168.99.1", client_ip: str = "192.168.99.2"
) -> str:
    """A client namespace wired to the node with a veth (the node side gets `node_ip`/24)."""
    client = layout.node_netns("client")
    kernel.ensure_netns(client)
    with Rtnl(node_ns) as r:
        r.add_veth("toclient", "eth0", peer_netns=client)
        r.set_link("toclient", up=True)
        r.ensure_address("toclient", f"{node_ip}/24")
    with Rtnl(client) as r:
        r.set_link("lo", up=True)
        r.set_link("eth0", up=True)
        r.ensure_address("eth0", f"{client_ip}/24")
    return client
