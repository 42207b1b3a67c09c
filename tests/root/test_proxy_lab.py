"""Services on the real lab: `netlab up --proxy-mode`, sandboxes with netlab/echo, Services and
EndpointSlices written to the lab's apiserver, `netlab proxy mode` on the running lab, and
`netlab down` leaving nothing.

The pods are bare sandboxes (no kubelet runs them) and their EndpointSlices are written by
hand, so the proxies are tested on their own; the nodes reach each other's pod subnets by
host-gw routes added here (plus a default route, so that traffic to a Service without endpoints
reaches the filter table's REJECT instead of failing routing); pods are wired by netlab-bridge.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from netlab import kernel
from netlab.kernel import Rtnl
from netlab.lab import state
from proxy.daemon import read_status
from tests.cluster.conftest import KUBECTL
from tests.root.conftest import NETLAB
from tests.root.svclab import spread, tcp_ask

pytestmark = [pytest.mark.root, pytest.mark.etcd]

NODES = ("node1", "node2", "node3")


def service(name: str, ip: str, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80, "targetPort": 8080}], **spec},
    }


def endpoint_slice(name: str, pods: dict[str, tuple[str, str]]):
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "nodeName": node, "conditions": {"ready": True}} for ip, node in pods.values()
        ],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }


@pytest.mark.parametrize("mode", ["iptables", "userspace"])
def test_services_on_the_lab(cli, layout, mode):
    cli("up", "--nodes", "3", "--proxy-mode", mode)
    topo = state.load(layout).topology
    for node in topo.nodes:
        with Rtnl(layout.node_netns(node.name)) as r:
            for other in topo.nodes:
                if other.name != node.name:
                    r.ensure_route(str(other.pod_cidr), gateway=str(other.underlay_ip.ip))
            r.ensure_route("default", gateway=str(topo.client_ip.ip))
    pods: dict[str, tuple[str, str]] = {}
    echoes = []
    for i, node in enumerate(NODES, 1):
        name = f"web-{i}"
        ip = cli("sandbox", "run", name, "--node", node).stdout.strip()
        pods[name] = (ip, node)
        argv = [str(NETLAB), "exec", name, "--", sys.executable, "-m", "netlab.images.echo", "--name", name]
        echoes.append(
            subprocess.Popen(argv, env=cli.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    try:
        objs = [
            service(
                "web",
                "10.96.0.10",
                type="NodePort",
                ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}],
            ),
            endpoint_slice("web", pods),
            service("empty", "10.96.0.99"),
            service("self", "10.96.0.13"),
            endpoint_slice("self", {"web-1": pods["web-1"]}),
        ]
        env = {**cli.env(), "KUBECONFIG": str(layout.kubeconfig)}
        subprocess.run([KUBECTL, "apply", "-f", "-"], input=yaml.safe_dump_all(objs), text=True, env=env,
                       check=True, capture_output=True)  # fmt: skip
        wanted = {"default/web:", "default/empty:", "default/self:"}

        def synced(node: str) -> bool:
            names = {
                s["name"].split(":")[0] + ":" for s in (read_status(layout, node) or {}).get("services", [])
            }
            return wanted <= names

        deadline = time.monotonic() + 20
        while not all(synced(n) for n in NODES):
            assert time.monotonic() < deadline, "the proxies did not pick up the services"
            time.sleep(0.1)
        pod_ns = {name: layout.pod_netns(name) for name in pods}
        deadline = time.monotonic() + 10
        while True:  # the echo servers start in the background
            try:
                for name, (ip, _) in pods.items():
                    tcp_ask(pod_ns[name], ip, 8080, timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)

        for name in pods:
            assert set(spread(pod_ns[name], "10.96.0.10", 80, n=24)) == set(pods), name
        for node in topo.nodes:
            assert tcp_ask(layout.client_netns, str(node.underlay_ip.ip), 30080)["pod"] in pods
        assert tcp_ask(pod_ns["web-1"], "10.96.0.13", 80)["pod"] == "web-1"  # hairpin
        with pytest.raises(ConnectionRefusedError):
            tcp_ask(pod_ns["web-2"], "10.96.0.99", 80)

        other = "userspace" if mode == "iptables" else "iptables"
        cli("proxy", "mode", other)
        for name in pods:
            assert set(spread(pod_ns[name], "10.96.0.10", 80, n=24)) == set(pods), name
        shown = cli("proxy", "show").stdout
        assert f"{other} mode" in shown and "default/web:" in shown
    finally:
        cli("down")
        for p in echoes:
            p.wait(10)
    assert not [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)]
