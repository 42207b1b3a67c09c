"""A multi-node overlay for tests: the lab's namespaces, a real etcd, one flanneld per node.

The lab's namespaces come from `netlab.lab.build` (underlay switch, `nl-…nodeN` with `eth0`);
flanneld runs as the real `netlab flanneld` command, supervised like `netlab up` does it. Pods
here are bare namespaces wired to the node's `cni0` bridge the way the bridge plugin wires
them, with addresses from the node's `subnet.env`, so these tests depend on flanneld alone.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from netlab import kernel
from netlab.etcd import EtcdClient
from netlab.kernel import Rtnl
from netlab.lab import build, processes
from netlab.lab.topology import default_topology
from netlab.layout import Layout
from netlab.overlay import subnetenv
from netlab.overlay.config import NetworkConfig, make_config
from netlab.overlay.leases import LeaseManager

PREFIX = "/coreos.com/network"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)


@dataclass
class Pod:
    name: str
    node: str
    netns: str
    ip: str


class OverlayLab:
    def __init__(self, layout: Layout, etcd_url: str, nodes: int = 3, etcd_prefix: str = PREFIX) -> None:
        self.layout = layout
        self.etcd_url = etcd_url
        self.etcd_prefix = etcd_prefix
        self.topology = default_topology(nodes)
        self.client = EtcdClient(etcd_url)
        self.manager = LeaseManager(self.client, etcd_prefix)
        self.pods: dict[str, Pod] = {}
        self._pod_count = 0

    @property
    def nodes(self) -> list[str]:
        return self.topology.node_names

    def up(self, config: NetworkConfig | None = None) -> None:
        build.up(self.layout, self.topology)
        self.manager.put_config(config or make_config("10.244.0.0/16"))

    def netns(self, node: str) -> str:
        return self.layout.node_netns(node)

    def subnet_file(self, node: str) -> Path:
        return self.layout.node_run_dir(node) / "subnet.env"

    def flanneld_argv(self, node: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "netlab.cli", "flanneld",
            "--node", node, "--iface", "eth0", "--etcd", self.etcd_url, "--etcd-prefix", self.etcd_prefix,
            *extra,
        ]  # fmt: skip

    def run_flanneld(self, node: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """flanneld in the foreground, for start-up failures."""
        import os

        env = {**os.environ, **self.layout.env()}
        return subprocess.run(
            self.flanneld_argv(node, *extra), env=env, capture_output=True, text=True, timeout=60
        )

    def start_flanneld(self, node: str, *extra: str, wait: bool = True) -> None:
        before = _inode(self.subnet_file(node))
        processes.start(self.layout, f"flanneld-{node}", self.flanneld_argv(node, *extra))
        if wait:
            self.wait_ready(node, before)

    def wait_ready(self, node: str, before: int | None = None) -> None:
        """Until this flanneld has written subnet.env (a new file: it is replaced atomically)."""

        def ready() -> bool:
            assert processes.running(self.layout, f"flanneld-{node}"), self.log(node)
            now = _inode(self.subnet_file(node))
            return now is not None and now != before

        wait_for(ready, what=f"flanneld on {node} ready")

    def stop_flanneld(self, node: str) -> None:
        processes.stop(self.layout, f"flanneld-{node}")

    def kill_flanneld(self, node: str) -> None:
        r = processes.running(self.layout, f"flanneld-{node}")
        assert r is not None
        import os
        import signal

        os.kill(r.pid, signal.SIGKILL)
        processes.wait_exit(self.layout, f"flanneld-{node}", 10)
        processes.stop(self.layout, f"flanneld-{node}")  # removes the pid file

    def log(self, node: str) -> str:
        try:
            return processes.log_path(self.layout, f"flanneld-{node}").read_text()
        except OSError:
            return ""

    def subnet(self, node: str) -> IPv4Network:
        env = subnetenv.read(self.subnet_file(node))
        assert env is not None
        return env.node_subnet

    def pod(self, node: str, name: str) -> Pod:
        """A pod namespace on `node`'s cni0, addressed from the node's subnet."""
        env = subnetenv.read(self.subnet_file(node))
        assert env is not None
        self._pod_count += 1
        gw = env.subnet  # x.y.z.1/len
        ip = IPv4Interface(f"{gw.ip + 1 + self._pod_count}/{gw.network.prefixlen}")
        pod_ns = self.layout.pod_netns(name)
        kernel.ensure_netns(pod_ns)
        host = f"veth{name}"[:15]
        with Rtnl(self.netns(node)) as r:
            r.ensure_bridge("cni0", mtu=env.mtu)
            r.ensure_address("cni0", str(gw))
            r.add_veth(host, "eth0", peer_netns=pod_ns, mtu=env.mtu)
            r.set_link(host, master="cni0", up=True)
        with Rtnl(pod_ns) as r:
            r.set_link("lo", up=True)
            r.set_link("eth0", up=True)
            r.ensure_address("eth0", str(ip))
            r.ensure_route("default", gateway=str(gw.ip))
        pod = Pod(name, node, pod_ns, str(ip.ip))
        self.pods[name] = pod
        return pod

    def peer_state(self, node: str) -> dict[str, object]:
        """What flanneld programmed on `node`: routes into the pod network, neighbours, FDB."""
        with Rtnl(self.netns(node)) as r:
            routes = {
                x.dst: x.gateway
                for x in r.routes()
                if IPv4Network(x.dst).subnet_of(IPv4Network("10.244.0.0/16"))
            }
            if r.link_index("flannel.1") is None:
                return {"routes": routes, "neigh": {}, "fdb": {}}
            neigh = {n.ip: n.mac for n in r.neighbours("flannel.1") if n.state & 0x80}
            fdb = {f.mac: f.dst for f in r.fdb_entries("flannel.1") if f.dst}
        return {"routes": routes, "neigh": neigh, "fdb": fdb}

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                self.stop_flanneld(node)
        for pod in self.pods.values():
            kernel.delete_netns(pod.netns)
        build.down(self.layout)
        self.client.close()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def ping(netns: str, ip: str, count: int = 1) -> bool:
    return kernel.run(netns, ["ping", "-c", str(count), "-W", "2", ip], check=False).returncode == 0


class Iperf:
    """An iperf3 server in one pod and a timed client in another; `result()` waits for it."""

    def __init__(
        self, server: Pod, client: Pod, seconds: int, port: int = 5201, extra: tuple[str, ...] = ()
    ) -> None:
        self.extra = extra
        self.server = subprocess.Popen(
            kernel.in_netns(server.netns, ["iperf3", "-s", "-1", "-p", str(port)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _listening(server.netns, port), what="iperf3 server")
        self.client = subprocess.Popen(
            kernel.in_netns(
                client.netns,
                ["iperf3", "-c", server.ip, "-p", str(port), "-t", str(seconds), "-J", *self.extra],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, object]:
        import json

        out, err = self.client.communicate(timeout=120)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # the client has its numbers; a server that missed the end of the test is not news
            self.server.kill()
            self.server.wait()
        assert self.client.returncode == 0, f"iperf3 failed: {out[-2000:]} {err}"
        data: dict[str, object] = json.loads(out)
        return data

    def close(self) -> None:
        for p in (self.client, self.server):
            if p.poll() is None:
                p.kill()
                p.wait()


def _listening(netns: str, port: int) -> bool:
    out = kernel.run(netns, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
    return bool(out.strip())


def tcp_transfer(src: Pod, dst: Pod, nbytes: int = 2_000_000, port: int = 7000) -> int:
    """Send `nbytes` from `src` to a sink in `dst`; returns what the sink counted."""
    sink = subprocess.Popen(
        kernel.in_netns(
            dst.netns,
            [
                sys.executable,
                "-c",
                "import socket,sys\n"
                "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(('0.0.0.0',{port}));s.listen(1);print('ready',flush=True)\n"
                "c,_=s.accept();n=0\n"
                "while True:\n"
                "    b=c.recv(65536)\n"
                "    if not b: break\n"
                "    n+=len(b)\n"
                "print(n)\n",
            ],
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        kernel.run(
            src.netns,
            [
                sys.executable,
                "-c",
                f"import socket;c=socket.create_connection(('{dst.ip}',{port}),timeout=10);"
                f"c.sendall(b'x'*{nbytes});c.close()",
            ],
        )
        out, _ = sink.communicate(timeout=30)
        return int(out.strip())
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
