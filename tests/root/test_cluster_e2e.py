"""The whole cluster end to end: `netlab up --nodes 3`, real kubectl, real pods on three nodes.

One lab for the module (bringing a cluster up is the slow part); the tests run in order on it
and each leaves the `web` Deployment as the next one expects. What they show, as a user would
see it: a Deployment of `nginx:1.14` (netlab/echo stands in) with a Service spreads over the
nodes with addresses from each node's flannel subnet; `kubectl exec` on every node reaches
every pod; `kubectl logs` works; pods are replaced, scaled and rolled without dropping below
the availability bound; a failing liveness probe restarts its container; EndpointSlices list
exactly the ready pods; an oversized pod stays Pending; a killed kubelet is started again by its
node's agent and comes back to its pods;
`netlab down` leaves nothing.
"""

from __future__ import annotations

import calendar
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from netlab import kernel
from netlab.lab import agent, processes
from netlab.layout import Layout
from netlab.overlay import subnetenv
from netlab.runtime import sandbox
from netlab.runtime.cgroups import CgroupTree
from tests.root.clusterlab import Cluster, is_ready, wait_for
from tests.root.conftest import Cli

pytestmark = [pytest.mark.root, pytest.mark.etcd]

NODES = ("node1", "node2", "node3")
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
      - name: nginx
        image: nginx:1.14
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
"""


@pytest.fixture(scope="module")
def cluster(module_layout: Layout) -> Iterator[Cluster]:
    cli = Cli(module_layout)
    try:
        cli("up", "--nodes", str(len(NODES)), timeout=300)
        c = Cluster(module_layout, cli)
        c.kubectl("apply", "-f", "-", input=APP)
        yield c
    finally:
        from netlab.lab import clean

        cli("down", ok=False, timeout=300)
        clean.apply_clean(module_layout, clean.plan_clean(module_layout))


def ready_web(c: Cluster, n: int) -> list[dict[str, Any]]:
    """Exactly n Ready, not terminating web pods, and no others."""
    pods = c.pods()
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live if len(pods) == n and all(is_ready(p) for p in live) and len(live) == n else []


def test_deployment_spreads_over_the_nodes_with_addresses_from_their_subnets(cluster):
    assert cluster.kubectl("get", "nodes").stdout.count(" Ready ") == len(NODES)
    pods = wait_for(lambda: ready_web(cluster, 3), "3 Ready web pods")
    assert sorted(p["spec"]["nodeName"] for p in pods) == list(NODES)
    for p in pods:
        assert p["status"]["phase"] == "Running"
        lease = subnetenv.read(cluster.layout.node_run_dir(p["spec"]["nodeName"]) / subnetenv.FILENAME)
        assert lease is not None
        assert ip_address(p["status"]["podIP"]) in ip_network(lease.node_subnet)
        node = cluster.json("get", "node", p["spec"]["nodeName"])
        assert node["spec"]["podCIDR"] == str(lease.node_subnet)


def test_exec_on_every_node_reaches_every_pod_and_logs_show_output(cluster):
    pods = wait_for(lambda: ready_web(cluster, 3), "3 Ready web pods")
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    for name in ips:
        for other, ip in ips.items():
            out = wait_for(
                lambda ip=ip, name=name: (
                    cluster.kubectl(
                        "exec", name, "--", "curl", "-s", "-m", "3", f"http://{ip}/", ok=False
                    ).stdout
                ),
                f"{name} -> {ip}",
                20,
            )
            assert out.startswith(f"pod={other} ip={ip} client=")
        logs = cluster.kubectl("logs", name).stdout
        assert f"echo {name} serving on 80" in logs


def test_endpoint_slices_list_exactly_the_ready_pods(cluster):
    lame = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lame, labels: {app: web}}\nspec:\n  containers:\n"
        "  - {name: c, image: nginx:1.14, ports: [{containerPort: 80}],\n"
        "     readinessProbe: {tcpSocket: {port: 81}, periodSeconds: 1}}\n"
    )
    cluster.kubectl("apply", "-f", "-", input=lame)
    try:
        lame_ip = wait_for(lambda: cluster.json("get", "pod", "lame")["status"].get("podIP"), "lame's IP")

        def endpoints() -> dict[str, bool]:
            slices = cluster.json("get", "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
            return {
                addr: bool(ep["conditions"].get("ready"))
                for s in slices
                for ep in s.get("endpoints") or []
                for addr in ep["addresses"]
            }

        def settled() -> dict[str, bool] | None:
            eps = endpoints()
            pods = cluster.pods()
            ready = {p["status"]["podIP"] for p in pods if is_ready(p)}
            return (
                eps
                if lame_ip in eps and {a for a, r in eps.items() if r} == ready and len(ready) == 3
                else None
            )

        eps = wait_for(settled, "the slice to list lame as not ready and the three web pods as ready")
        assert eps[lame_ip] is False
        assert not is_ready(cluster.json("get", "pod", "lame"))
    finally:
        cluster.kubectl("delete", "pod", "lame", "--wait=true")


def test_a_deleted_pod_is_replaced_and_scaling_works(cluster):
    victim = wait_for(lambda: ready_web(cluster, 3), "3 Ready web pods")[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "--wait=true")
    pods = wait_for(lambda: ready_web(cluster, 3), "a replacement")
    assert victim not in {p["metadata"]["name"] for p in pods}
    cluster.kubectl("scale", "deployment", "web", "--replicas=6")
    wait_for(lambda: ready_web(cluster, 6), "6 Ready web pods")
    cluster.kubectl("scale", "deployment", "web", "--replicas=2")
    pods = wait_for(lambda: ready_web(cluster, 2), "2 web pods")
    # the removed pods' sandboxes are gone too
    names = {p["metadata"]["name"] for p in pods}
    wait_for(lambda: {s.name for s in sandbox.list_sandboxes(cluster.layout)} == names, "4 sandboxes removed")


def test_rolling_update_never_drops_below_the_availability_bound(cluster):
    wait_for(lambda: ready_web(cluster, 2), "2 Ready web pods")
    before = {p["metadata"]["name"] for p in cluster.pods()}
    # replicas 2: maxSurge 25% rounds up to 1, maxUnavailable 25% rounds down to 0
    lowest = [99]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            pods = cluster.pods()
            available = [p for p in pods if is_ready(p) and not p["metadata"].get("deletionTimestamp")]
            lowest[0] = min(lowest[0], len(available))
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        cluster.kubectl("set", "image", "deployment/web", "nginx=nginx:1.16")
        cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
        pods = wait_for(lambda: ready_web(cluster, 2), "2 new web pods")
    finally:
        stop.set()
        t.join()
    assert lowest[0] >= 2
    assert not before & {p["metadata"]["name"] for p in pods}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.16"}


def test_failing_liveness_probe_restarts_the_container(cluster):
    script = (
        "touch /tmp/ok-$HOSTNAME; trap 'exit 0' TERM; sleep 2; rm /tmp/ok-$HOSTNAME; "
        "while :; do sleep 0.2; done"
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sick"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "command": ["sh", "-c", script],
                    "livenessProbe": {
                        "exec": {"command": ["sh", "-c", "test -f /tmp/ok-$HOSTNAME"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }
            ]
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    try:
        status = wait_for(
            lambda: (
                (s := (cluster.json("get", "pod", "sick")["status"].get("containerStatuses") or [{}])[0]).get(
                    "restartCount"
                )
                and s
            ),
            "a restart",
        )
        assert status["lastState"]["terminated"]["exitCode"] == 0
        events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=sick").stdout
        assert "Liveness probe failed" in events
    finally:
        cluster.kubectl("delete", "pod", "sick", "--wait=true")


def test_a_pod_too_large_for_any_node_stays_pending_with_an_event(cluster):
    big = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: huge}\nspec:\n  containers:\n"
        "  - {name: c, image: nginx:1.14, resources: {requests: {cpu: '1000'}}}\n"
    )
    cluster.kubectl("apply", "-f", "-", input=big)
    try:
        events = wait_for(
            lambda: (
                (
                    out := cluster.kubectl(
                        "get", "events", "--field-selector", "involvedObject.name=huge"
                    ).stdout
                )
                and "FailedScheduling" in out
                and out
            ),
            "FailedScheduling",
        )
        assert "Insufficient cpu" in events
        pod = cluster.json("get", "pod", "huge")
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    finally:
        cluster.kubectl("delete", "pod", "huge", "--wait=true")


def test_a_killed_kubelet_is_restarted_by_its_agent_keeps_its_pods_and_leaks_nothing(cluster):
    pods = wait_for(lambda: ready_web(cluster, 2), "2 Ready web pods")
    node = pods[0]["spec"]["nodeName"]
    on_node = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["containerID"] for p in pods
               if p["spec"]["nodeName"] == node}  # fmt: skip
    before = agent.read_status(cluster.layout, node)
    assert before is not None
    killed = before.child("kubelet")
    assert killed.pid is not None and killed.start is not None and killed.exits == 0
    pauses = {s.name: s.pause_pid for s in sandbox.list_sandboxes(cluster.layout)}
    os.kill(killed.pid, signal.SIGKILL)
    wait_for(lambda: not processes.is_alive(killed.pid, killed.start), "the kubelet to die")
    restarted = time.time()

    # the node's agent notices and starts a new kubelet; its other children carry on
    def kubelet_again() -> Any:
        st = agent.read_status(cluster.layout, node)
        return st if st and st.child("kubelet").pid not in (None, killed.pid) else None

    after_kill = wait_for(kubelet_again, "the agent to start the kubelet again")
    kubelet = after_kill.child("kubelet")
    assert after_kill.pid == before.pid
    assert (kubelet.starts, kubelet.exits, kubelet.last_status) == (2, 1, -signal.SIGKILL)
    for other in ("flanneld", "kube-proxy"):
        assert after_kill.child(other).pid == before.child(other).pid and after_kill.child(other).exits == 0
    agent_log = processes.log_path(cluster.layout, agent.component(node)).read_text()
    assert "kubelet was killed by SIGKILL; starting it again in" in agent_log
    # the new kubelet registers (renewing the lease) before it takes up its pods
    wait_for(
        lambda: _renew_time(cluster.json("get", "lease", node, "-n", "kube-node-lease")) >= restarted,
        "a heartbeat from the restarted kubelet",
    )
    after = wait_for(lambda: ready_web(cluster, 2), "2 Ready web pods")
    # it serves its pods' logs again (at its new address)
    name = next(iter(on_node))
    assert f"echo {name} serving on 80" in cluster.kubectl("logs", name).stdout
    for p in after:
        if p["metadata"]["name"] in on_node:
            cs = p["status"]["containerStatuses"][0]
            assert cs["containerID"] == on_node[p["metadata"]["name"]] and cs["restartCount"] == 0
    # one sandbox per pod, the same pause processes: nothing duplicated, nothing leaked
    sandboxes = sandbox.list_sandboxes(cluster.layout)
    assert sorted(s.name for s in sandboxes) == sorted(p["metadata"]["name"] for p in after)
    assert all(s.pause_pid == pauses[s.name] and s.pause_alive() for s in sandboxes)
    pod_netns = [ns for ns in kernel.list_netns() if ns.startswith(cluster.layout.pod_netns(""))]
    assert sorted(pod_netns) == sorted(s.netns for s in sandboxes)


def _renew_time(lease: dict[str, Any]) -> float:
    stamp = lease["spec"]["renewTime"]  # 2026-11-30T11:03:16.123456Z
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")


def test_down_leaves_nothing(cluster):
    cluster.cli("down", timeout=300)
    layout = cluster.layout
    assert [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)] == []
    assert CgroupTree(layout.prefix).leftovers() == []
    assert processes.list_running(layout) == []
    assert not layout.state_dir.exists() and not layout.run_dir.exists()
