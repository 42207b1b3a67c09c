"""A small lab with pods and echo backends, for testing proxy modes against real packets.

Nodes, the underlay switch and the external client come from the real lab (`netlab.lab.build`).
Pod networking is wired here directly with the kernel layer, host-gw style (a `cni0` bridge
per node, routes to the other nodes' pod subnets over the underlay), so proxy tests depend
only on what a bridge CNI would leave behind; the nodes' default route is the lab's own.
The whole cluster (flannel, kubelets, the EndpointSlice controller) is tested against the
same features in `test_services_e2e.py`; this harness keeps the proxies' own tests fast.
Each pod runs `netlab.images.echo`.

Clients run in-process: a throwaway thread joins the pod's (or client's) namespace and
opens the socket there; the socket keeps that namespace afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from netlab import kernel
from netlab.kernel import Rtnl, run_in_netns
from netlab.lab import build
from netlab.lab.topology import Topology, default_topology
from netlab.layout import Layout
from netlab.names import fit_ifname


@dataclass
class Pod:
    name: str
    node: str
    ip: str
    netns: str
    host_veth: str
    proc: subprocess.Popen[bytes] | None = None


class ServiceLab:
    def __init__(self, layout: Layout, nodes: int = 2) -> None:
        self.layout = layout
        self.topology: Topology = default_topology(nodes)
        self.pods: dict[str, Pod] = {}
        self._next_host: dict[str, int] = {}
        build.up(layout, self.topology)
        try:
            for node in self.topology.nodes:
                self._wire_node(node.name)
        except BaseException:
            build.down(layout)
            raise

    # Building -------------------------------------------------------------------------------

    def node_netns(self, node: str) -> str:
        return self.layout.node_netns(node)

    def node_ip(self, node: str) -> str:
        return str(self.topology.node(node).underlay_ip.ip)

    @property
    def client_netns(self) -> str:
        return self.layout.client_netns

    @property
    def client_ip(self) -> str:
        return str(self.topology.client_ip.ip)

    def _wire_node(self, name: str) -> None:
        node = self.topology.node(name)
        ns = self.node_netns(name)
        with Rtnl(ns) as r:
            r.ensure_bridge("cni0")
            r.ensure_address("cni0", f"{node.pod_gateway}/{node.pod_cidr.prefixlen}")
            for other in self.topology.nodes:
                if other.name != name:
                    r.ensure_route(str(other.pod_cidr), gateway=str(other.underlay_ip.ip))
        # what the bridge CNI and kube-proxy's prerequisites leave on a node
        kernel.set_sysctl(ns, "net.bridge.bridge-nf-call-iptables", 1)
        self._next_host[name] = 10

    def add_pod(self, name: str, node: str, ports: tuple[int, ...] = (8080,)) -> Pod:
        n = self.topology.node(node)
        host = self._next_host[node]
        self._next_host[node] += 1
        ip = str(n.pod_cidr.network_address + host)
        ns = self.layout.pod_netns(name)
        veth = fit_ifname(f"veth{name}", f"{self.layout.prefix}{name}", prefix="veth")
        kernel.ensure_netns(ns)
        with Rtnl(self.node_netns(node)) as r:
            r.add_veth(veth, "eth0", peer_netns=ns)
            r.set_link(veth, master="cni0", up=True)
            r.set_bridge_port(veth, hairpin=True)
        with Rtnl(ns) as r:
            r.set_link("lo", up=True)
            r.set_link("eth0", up=True)
            r.ensure_address("eth0", f"{ip}/{n.pod_cidr.prefixlen}")
            r.ensure_route("default", gateway=str(n.pod_gateway))
        pod = Pod(name, node, ip, ns, veth)
        argv = [sys.executable, "-m", "netlab.images.echo", "--name", name, "--ip", ip]
        for p in ports:
            argv += ["--port", str(p)]
        pod.proc = subprocess.Popen(
            kernel.in_netns(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.pods[name] = pod
        return pod

    def wait_ready(self, port: int = 8080, timeout: float = 10.0) -> None:
        """Every pod's echo server answers on `port` directly."""
        for pod in self.pods.values():
            deadline = time.monotonic() + timeout
            while True:
                try:
                    tcp_ask(pod.netns, pod.ip, port, timeout=0.5)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def remove_pod(self, name: str) -> None:
        pod = self.pods.pop(name)
        if pod.proc:
            pod.proc.terminate()
            pod.proc.wait(5)
        kernel.delete_netns(pod.netns)

    def close(self) -> None:
        for pod in list(self.pods.values()):
            if pod.proc and pod.proc.poll() is None:
                pod.proc.kill()
                pod.proc.wait(5)
            kernel.delete_netns(pod.netns)
        self.pods.clear()
        build.down(self.layout)

    # Manifests ------------------------------------------------------------------------------

    def service(
        self,
        name: str,
        cluster_ip: str,
        port: int = 80,
        target: int = 8080,
        protocol: str = "TCP",
        node_port: int | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        p: dict[str, Any] = {"port": port, "targetPort": target, "protocol": protocol}
        if node_port:
            p["nodePort"] = node_port
            spec.setdefault("type", "NodePort")
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "ports": [p], **spec},
        }

    def endpoint_slice(
        self, service: str, pods: list[str], port: int = 8080, protocol: str = "TCP"
    ) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-slice",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [self.pods[p].ip], "nodeName": self.pods[p].node, "conditions": {"ready": True}}
                for p in pods
            ],
            "ports": [{"port": port, "protocol": protocol}],
        }


@contextlib.contextmanager
def service_lab(layout: Layout, nodes: int = 2) -> Iterator[ServiceLab]:
    lab = ServiceLab(layout, nodes)
    try:
        yield lab
    finally:
        lab.close()


# Clients -------------------------------------------------------------------------------------


def _reply(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split())


def tcp_ask(netns: str, ip: str, port: int, timeout: float = 2.0) -> dict[str, str]:
    """Connect from `netns`, send a line, return the echo server's identity fields."""

    def ask() -> dict[str, str]:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"hello\n")
            f = s.makefile("rb")
            return _reply(f.readline().decode())

    return run_in_netns(netns, ask)


def tcp_open(netns: str, ip: str, port: int, timeout: float = 2.0) -> tuple[socket.socket, dict[str, str]]:
    """A connection kept open: returns the socket and the first identity."""

    def open_() -> tuple[socket.socket, dict[str, str]]:
        s = socket.create_connection((ip, port), timeout=timeout)
        s.sendall(b"hello\n")
        return s, _reply(s.makefile("rb").readline().decode())

    return run_in_netns(netns, open_)


def udp_socket(netns: str, timeout: float = 1.0) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        return s

    return run_in_netns(netns, make)


def udp_ask(sock: socket.socket, ip: str, port: int) -> dict[str, str]:
    sock.sendto(b"hello\n", (ip, port))
    data, _ = sock.recvfrom(65536)
    return _reply(data.decode())


def spread(netns: str, ip: str, port: int, n: int = 30, timeout: float = 2.0) -> Counter[str]:
    """How `n` fresh connections from `netns` were spread over backends (by pod name)."""
    return Counter(tcp_ask(netns, ip, port, timeout)["pod"] for _ in range(n))
