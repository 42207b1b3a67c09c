"""Services end to end on the real cluster: one suite, run against each kube-proxy mode.

For each mode one `netlab up --nodes 3 --proxy-mode MODE` serves the whole module (bringing
a cluster up is the slow part). Everything is what a user would do: a Deployment of
`netlab/echo` pods and Services applied with real kubectl, EndpointSlices made by the
controller-manager from the ready pods, pods on every node reaching ClusterIPs over the
flannel overlay, NodePorts reached from the lab's external client on every node's underlay
address, `kubectl scale`, `netlab proxy mode`, `netlab agent`, `netlab down`.

The tests run in order and each leaves the cluster as the next one expects: three `web`
pods, one per node, and a `probe` pod that backs no Service. Clients run in-process: a thread
joins the pod's (or the client's) network namespace and opens its socket there, so a
hundred connections cost milliseconds rather than a `kubectl exec` each.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from netlab import kernel
from netlab.cluster.kubelet.node import KUBELET_URL_ANNOTATION
from netlab.kernel.iptables import BACKENDS, iptables_save
from netlab.lab import agent, clean, podnet, processes, state
from netlab.layout import Layout
from netlab.runtime import sandbox
from netlab.runtime.cgroups import CgroupTree
from proxy.daemon import read_status
from proxy.userspace.portals import CHAINS as USERSPACE_CHAINS
from proxy.userspace.portals import RELAY_TABLE
from tests.conftest import new_layout, remove_test_namespaces
from tests.root.clusterlab import Cluster, is_ready, wait_for
from tests.root.conftest import Cli
from tests.root.svclab import spread, tcp_ask, tcp_open, udp_ask, udp_socket

pytestmark = [pytest.mark.root, pytest.mark.etcd]

NODES = ("node1", "node2", "node3")
MODES = ("iptables", "userspace")
# enough fresh connections that missing one of three random backends is a real failure
# (a chance of 3 * (2/3)^45, about 3e-8), and still only milliseconds of traffic
SPREAD = 45
APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: echo
        image: netlab/echo
        ports: [{containerPort: 8080}, {containerPort: 8080, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  containers:
  - {name: sleep, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  selector: {app: web}
  ports: [{port: 53, targetPort: 8080, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 8080}]
"""


class ServiceCluster(Cluster):
    def __init__(self, layout: Layout, cli: Cli, mode: str) -> None:
        super().__init__(layout, cli)
        self.mode = mode
        self.topology = state.load(layout).topology
        self._vips: dict[str, str] = {}
        self.agent_children: list[tuple[int, str]] = []

    def vip(self, service: str) -> str:
        if service not in self._vips:
            self._vips[service] = self.json("get", "service", service)["spec"]["clusterIP"]
        return self._vips[service]

    def node_ip(self, node: str) -> str:
        return str(self.topology.node(node).underlay_ip.ip)

    def netns(self, pod: str) -> str:
        return self.layout.pod_netns(pod)

    def web_pods(self) -> dict[str, tuple[str, str]]:
        """Ready web pods that are not being deleted: name -> (node, pod IP)."""
        return {
            p["metadata"]["name"]: (p["spec"]["nodeName"], p["status"]["podIP"])
            for p in self.pods()
            if is_ready(p) and not p["metadata"].get("deletionTimestamp")
        }

    def pod_on(self, node: str) -> str:
        (name,) = [n for n, (where, _) in self.web_pods().items() if where == node]
        return name

    def proxies_have(self, service: str, endpoints: int) -> bool:
        """Every node's kube-proxy has synced `service` with exactly that many ready endpoints."""
        for node in NODES:
            st = read_status(self.layout, node) or {}
            ports = [s for s in st.get("services", []) if s["name"].startswith(f"default/{service}:")]
            if not ports or any(sum(e["ready"] for e in s["endpoints"]) != endpoints for s in ports):
                return False
        return True

    def wait_web_on_every_node(self) -> dict[str, tuple[str, str]]:
        """Three web pods, one per node, in every proxy, answering through the Service."""

        def settled() -> dict[str, tuple[str, str]] | None:
            pods = self.web_pods()
            everything = self.pods()
            if len(everything) != 3 or sorted(node for node, _ in pods.values()) != list(NODES):
                return None
            return pods

        pods = wait_for(settled, "three Ready web pods, one per node", 90)
        wait_for(lambda: self.proxies_have("web", 3), "every kube-proxy to have the three web pods", 30)
        # the containers are running; their echo servers may still be binding
        wait_for(lambda: self._all_answer(pods), "every echo server to answer", 20)
        return pods

    def _all_answer(self, pods: dict[str, tuple[str, str]]) -> bool:
        probe = self.netns("probe")
        try:
            return all(tcp_ask(probe, ip, 8080, timeout=1)["pod"] == n for n, (_, ip) in pods.items())
        except OSError:
            return False


@pytest.fixture(scope="module", params=MODES)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceCluster]:
    mode = request.param
    layout = new_layout(tmp_path_factory.mktemp(f"svc-{mode}"))
    cli = Cli(layout)
    try:
        cli("up", "--nodes", str(len(NODES)), "--proxy-mode", mode, timeout=300)
        c = ServiceCluster(layout, cli, mode)
        c.kubectl("apply", "-f", "-", input=APP)
        wait_for(lambda: is_ready(c.json("get", "pod", "probe")), "the probe pod")
        c.wait_web_on_every_node()
        yield c
    finally:
        cli("down", ok=False, timeout=300)
        clean.apply_clean(layout, clean.plan_clean(layout))
        remove_test_namespaces(layout)


def test_cluster_ip_from_a_pod_on_every_node_spreads_over_all_backends_itself_included(cluster):
    pods = cluster.web_pods()
    for name, (node, _) in pods.items():
        seen = spread(cluster.netns(name), cluster.vip("web"), 80, n=SPREAD)
        assert set(seen) == set(pods), f"from {name} on {node}: {seen}"
        # the pod reached itself through its own Service (hairpin), so itself is among them


def test_node_port_from_the_client_on_every_node(cluster):
    pods = cluster.web_pods()
    for node in NODES:
        seen = spread(cluster.layout.client_netns, cluster.node_ip(node), 30080, n=SPREAD)
        assert set(seen) == set(pods), f"via {node}: {seen}"


def test_client_ip_affinity_keeps_one_client_on_one_backend(cluster):
    for name in cluster.web_pods():
        seen = spread(cluster.netns(name), cluster.vip("sticky"), 80, n=12)
        assert len(seen) == 1, f"from {name}: {seen}"


def test_udp_service_answers_a_pod_on_every_node(cluster):
    pods = cluster.web_pods()
    for name in pods:
        sock = udp_socket(cluster.netns(name), timeout=3)
        try:
            assert udp_ask(sock, cluster.vip("dns"), 53)["pod"] in pods
        finally:
            sock.close()


def test_service_without_endpoints_refuses_at_once(cluster):
    for name in cluster.web_pods():
        # refused, not a timeout (TimeoutError) nor an unroutable destination (ENETUNREACH)
        with pytest.raises(ConnectionRefusedError):
            tcp_ask(cluster.netns(name), cluster.vip("empty"), 80, timeout=3)


def test_external_local_policy_and_the_client_address(cluster):
    client_ip = str(cluster.topology.client_ip.ip)
    for node in NODES:
        replies = [tcp_ask(cluster.layout.client_netns, cluster.node_ip(node), 30081) for _ in range(10)]
        sources = {r["client"].rsplit(":", 1)[0] for r in replies}
        # only the node's own pod serves, and it sees the client's own address: no SNAT in
        # iptables mode, a relay that dials from the client's address in userspace mode
        assert {r["pod"] for r in replies} == {cluster.pod_on(node)}, node
        assert sources == {client_ip}, node


def test_scaling_3_to_1_stops_traffic_to_the_removed_backends_within_2_s(cluster):
    pods = cluster.web_pods()
    probe = cluster.netns("probe")
    web, dns = cluster.vip("web"), cluster.vip("dns")
    # before: a kept-open TCP connection and a UDP socket (its own conntrack entry or relay
    # session) on each backend
    conns: dict[str, Any] = {}
    udp: dict[str, Any] = {}
    for _ in range(100):
        if len(conns) == len(udp) == 3:
            break
        if len(conns) < 3:
            sock, reply = tcp_open(probe, web, 80)
            if reply["pod"] in conns:
                sock.close()
            else:
                conns[reply["pod"]] = sock
        if len(udp) < 3:
            usock = udp_socket(probe, timeout=3)
            who = udp_ask(usock, dns, 53)["pod"]
            if who in udp:
                usock.close()
            else:
                udp[who] = usock
    assert set(conns) == set(udp) == set(pods)
    try:
        start = time.monotonic()
        cluster.kubectl("scale", "deployment/web", "--replicas=1")
        while True:
            try:
                # a short timeout: a SYN sent to a removed pod's address goes unanswered, and
                # must not hide for seconds that the rules have moved on meanwhile
                seen = spread(probe, web, 80, n=12, timeout=0.25)
            except (OSError, KeyError):  # unanswered, or a removed pod closing mid-reply
                seen = Counter()
            elapsed = time.monotonic() - start
            if len(seen) == 1:
                break
            assert elapsed < 30, f"still {seen} 30 s after scaling to 1"
        (answering,) = seen
        (survivor,) = wait_for(lambda: len(left := cluster.web_pods()) == 1 and left, "one web pod left")
        assert answering == survivor
        assert elapsed <= 2.0, f"only {survivor} answered {elapsed:.2f} s after the scale command"
        assert set(spread(probe, web, 80, n=SPREAD)) == {survivor}
        conns[survivor].sendall(b"still there\n")
        assert conns[survivor].recv(100) == b"still there\n"
        # UDP sockets whose backend was removed move to the survivor: nothing keeps sending
        # to a deleted backend (stale conntrack entries deleted, relay sessions dropped). The
        # dns Service's change may come a sync after web's, so a datagram sent before it can
        # still go the old way and be lost; the next ones must not. Without the cleanup every
        # datagram would refresh the stale entry and none would ever reach the survivor.
        for who, usock in udp.items():
            usock.settimeout(0.5)

            def answered_by_survivor(usock: Any = usock) -> bool:
                try:
                    return udp_ask(usock, dns, 53)["pod"] == survivor
                except TimeoutError:
                    return False

            wait_for(answered_by_survivor, f"the UDP socket that talked to {who} to reach {survivor}", 10)
            assert udp_ask(usock, dns, 53)["pod"] == survivor
    finally:
        for s in [*conns.values(), *udp.values()]:
            s.close()
    cluster.kubectl("scale", "deployment/web", "--replicas=3")
    cluster.wait_web_on_every_node()


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_a_stopped_node_agent_leaves_nothing_running_and_a_new_one_takes_its_node_back(cluster):
    """SIGTERM stops node3's agent and its flanneld, kubelet and kube-proxy, in that reverse
    order; a new `netlab agent` (as a systemd unit would start it) brings node3 back with its
    pods and Services."""
    layout, node = cluster.layout, "node3"
    url_before = cluster.json("get", "node", node)["metadata"]["annotations"][KUBELET_URL_ANNOTATION]
    proxy_before = read_status(layout, node)["pid"]
    pod = cluster.pod_on(node)
    (sb,) = [s for s in sandbox.list_sandboxes(layout) if s.name == pod]
    before = agent.read_status(layout, node)
    assert before is not None and [c.name for c in before.children] == list(agent.CHILDREN)
    children = agent.alive_children(before)
    assert len(children) == 3 and all(_parent(pid) == before.pid for pid, _ in children)

    assert processes.stop(layout, agent.component(node), agent.STOP_WAIT)
    assert not [pid for pid, started in children if processes.is_alive(pid, started)]
    assert agent.read_status(layout, node) is None
    log = processes.log_path(layout, agent.component(node)).read_text()
    stops = [line.split(" stopping ")[1].split()[0] for line in log.splitlines() if " stopping " in line]
    assert stops == ["kube-proxy", "kubelet", "flanneld"]
    # flanneld gave node3's lease back on its way out; the pod stays for the next kubelet
    net = podnet.load(layout)
    assert net is not None
    assert node not in {x.node for x in podnet.leases(net.etcd_url, cluster.topology)}
    assert sb.pause_alive()

    started = processes.start(layout, agent.component(node), agent.agent_argv(node, cluster.mode))

    def proxy_of_the_agent() -> bool:
        st = read_status(layout, node)
        return bool(st and st["pid"] != proxy_before and _parent(st["pid"]) == started.pid)

    wait_for(proxy_of_the_agent, "the new agent's kube-proxy to sync", 60)
    wait_for(
        lambda: (
            (n := cluster.json("get", "node", node))["metadata"]["annotations"][KUBELET_URL_ANNOTATION]
            != url_before
            and any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        ),
        "the new agent's kubelet to register node3",
    )
    after = agent.read_status(layout, node)
    assert after is not None and after.pid == started.pid
    assert len(agent.alive_children(after)) == 3 and all(c.starts == 1 for c in after.children)
    # every agent's children, for `netlab down` to stop
    for n in NODES:
        st = agent.read_status(layout, n)
        assert st is not None
        cluster.agent_children += agent.alive_children(st)
    # the adopted pod on node3 and the pods elsewhere reach each other again (flanneld leased
    # node3's subnet back), and node3's kube-proxy serves its NodePort
    pods = cluster.wait_web_on_every_node()
    assert pod in pods
    for name in pods:
        assert set(spread(cluster.netns(name), cluster.vip("web"), 80, n=SPREAD)) == set(pods), name
    assert set(spread(layout.client_netns, cluster.node_ip(node), 30080, n=SPREAD)) == set(pods)


def kube_chains(netns: str) -> set[str]:
    """Every KUBE-* chain in the namespace, in both iptables backends and every table we use."""
    return {
        line[1:].split()[0]
        for backend in BACKENDS
        for table in ("nat", "filter", "mangle")
        for line in iptables_save(netns, table, backend).splitlines()
        if line.startswith(":KUBE-")
    }


def relay_ports(view: str) -> set[int]:
    return {int(p) for p in re.findall(r"relay :(\d+)", view)}


def listening_ports(netns: str) -> set[int]:
    out = kernel.run(netns, ["ss", "-Htuln"]).stdout
    return {int(line.split()[4].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def test_switching_modes_keeps_services_reachable_and_leaves_nothing_of_the_old_mode(cluster):
    other = "userspace" if cluster.mode == "iptables" else "iptables"
    relays = {node: relay_ports(read_status(cluster.layout, node)["view"]) for node in NODES}
    assert all(relays.values()) or cluster.mode == "iptables"
    cluster.cli("proxy", "mode", other)
    pods = cluster.web_pods()
    for name in pods:
        assert set(spread(cluster.netns(name), cluster.vip("web"), 80, n=SPREAD)) == set(pods), name
    for node in NODES:
        assert {tcp_ask(cluster.layout.client_netns, cluster.node_ip(node), 30080)["pod"]} <= set(pods)
        assert read_status(cluster.layout, node)["mode"] == other
        ns = cluster.layout.node_netns(node)
        chains = kube_chains(ns)
        if other == "userspace":
            # nothing but the portal chains: no KUBE-SERVICES, -SVC-, -SEP-, -MARK-MASQ ...
            assert chains == set(USERSPACE_CHAINS), (node, chains)
        else:
            assert not chains & set(USERSPACE_CHAINS), (node, chains)
            assert {"KUBE-SERVICES", "KUBE-POSTROUTING"} <= chains
            assert not relays[node] & listening_ports(ns), f"relay sockets left on {node}"
        # the relays' policy routing for transparent connections exists in userspace mode only
        rules = (
            kernel.run(ns, ["ip", "rule"]).stdout
            + kernel.run(ns, ["ip", "route", "show", "table", "all"]).stdout
        )
        assert (f"lookup {RELAY_TABLE}" in rules) == (other == "userspace"), (node, rules)
        assert (f"table {RELAY_TABLE}" in rules) == (other == "userspace"), (node, rules)
    assert f"{other} mode" in cluster.cli("proxy", "show").stdout


def test_a_kube_proxy_its_agent_starts_again_keeps_the_mode_it_was_switched_to(cluster):
    switched = "userspace" if cluster.mode == "iptables" else "iptables"  # by the test before
    layout, node = cluster.layout, "node1"
    before = read_status(layout, node)
    assert before["mode"] == switched
    os.kill(before["pid"], signal.SIGKILL)

    def synced_again() -> dict[str, Any] | None:
        st = read_status(layout, node)
        return st if st and st["pid"] != before["pid"] and st["last_sync"] else None

    after = wait_for(synced_again, "the agent's new kube-proxy to sync", 30)
    assert after["mode"] == switched
    status = agent.read_status(layout, node)
    assert status is not None and status.child("kube-proxy").pid == after["pid"]
    cluster.agent_children += agent.alive_children(status)
    pods = cluster.web_pods()
    assert set(spread(layout.client_netns, cluster.node_ip(node), 30080, n=SPREAD)) == set(pods)
    name = cluster.pod_on(node)
    assert set(spread(cluster.netns(name), cluster.vip("web"), 80, n=SPREAD)) == set(pods)


def test_down_leaves_nothing(cluster):
    cluster.cli("down", timeout=300)
    layout = cluster.layout
    assert [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)] == []
    assert CgroupTree(layout.prefix).leftovers() == []
    assert processes.list_running(layout) == []
    assert not [pid for pid, started in cluster.agent_children if processes.is_alive(pid, started)]
    assert not layout.state_dir.exists() and not layout.run_dir.exists()
