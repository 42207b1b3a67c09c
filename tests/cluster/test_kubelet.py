"""Kubelets on a real lab and a real apiserver, driven with real kubectl; pods bound by hand.

One module-wide setup (it is the slow part): a two-node lab (namespaces, netlab's CNI plugins
and CNI servers), etcd and the apiserver, and one `netlab kubelet` process per node. Every test
makes its own pods (`spec.nodeName` set, so no scheduler is involved) and deletes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from netlab import kernel
from netlab.lab import build
from netlab.lab.topology import default_topology
from netlab.layout import Layout
from netlab.runtime import sandbox
from netlab.runtime.cgroups import CgroupTree
from tests.cluster.conftest import ApiServerForTest, apiserver_fixture
from tests.polling import wait_for

pytestmark = [pytest.mark.root, pytest.mark.etcd]

api = apiserver_fixture()
NODES = ("node1", "node2")


class Kubelets:
    def __init__(self, layout: Layout, api: ApiServerForTest) -> None:
        self.layout = layout
        self.api = api
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        log = open(self.layout.run_dir / f"kubelet-{node}.log", "ab")  # noqa: SIM115
        argv = [sys.executable, "-m", "netlab.cli", "kubelet", "--node", node, "--port", "0",
                "--kubeconfig", str(self.api.kubeconfig)]  # fmt: skip
        env = {**os.environ, **self.layout.env()}
        self.procs[node] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self, node: str) -> None:
        proc = self.procs.pop(node)
        proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@pytest.fixture(scope="module")
def cluster(api: ApiServerForTest, module_layout: Layout) -> Iterator[Kubelets]:
    build.up(module_layout, default_topology(len(NODES)))
    kubelets = Kubelets(module_layout, api)
    try:
        for node in NODES:
            kubelets.start(node)
        wait_for(lambda: nodes_ready(api) == set(NODES), "nodes Ready", 60)
        yield kubelets
    finally:
        kubelets.stop_all()
        build.down(module_layout)
        assert CgroupTree(module_layout.prefix).leftovers() == []
        assert [ns for ns in kernel.list_netns() if ns.startswith(module_layout.prefix)] == []


def nodes_ready(api: ApiServerForTest) -> set[str]:
    items = json.loads(api.kubectl("get", "nodes", "-o", "json", ok=False).stdout or "{}").get("items") or []
    out = set()
    for n in items:
        for c in n["status"].get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                out.add(n["metadata"]["name"])
    return out


def pod(api: ApiServerForTest, name: str) -> dict[str, Any] | None:
    proc = api.kubectl("get", "pod", name, "-o", "json", ok=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def apply(api: ApiServerForTest, manifest: str) -> None:
    api.kubectl("apply", "-f", "-", input=manifest)


def pod_yaml(name: str, node: str, container: str, **spec: Any) -> str:
    extra = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in spec.items())
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{test: kubelet}}}}\n"
        f"spec:\n  nodeName: {node}\n{extra}  containers:\n{container}"
    )


def container_status(p: dict[str, Any]) -> dict[str, Any]:
    return (p.get("status", {}).get("containerStatuses") or [{}])[0]


def ready(p: dict[str, Any] | None) -> bool:
    conds = (p or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def delete(api: ApiServerForTest, *names: str) -> None:
    api.kubectl("delete", "pod", *names, "--wait=true", "--timeout=60s", ok=False)


ECHO = "  - name: web\n    image: nginx:1.14\n    ports: [{containerPort: 80}]\n"


def test_nodes_register_with_capacity_addresses_lease_and_kubelet_endpoint(cluster, api):
    node = json.loads(api.kubectl("get", "node", "node2", "-o", "json").stdout)
    st = node["status"]
    assert {"type": "InternalIP", "address": "192.168.56.12"} in st["addresses"]
    assert node["spec"]["podCIDR"] == "10.244.2.0/24"
    assert st["allocatable"]["pods"] == "110" and int(st["capacity"]["cpu"]) >= 1
    url = node["metadata"]["annotations"]["netlab.io/kubelet-url"]
    assert url == f"https://127.0.0.1:{st['daemonEndpoints']['kubeletEndpoint']['Port']}"
    lease = json.loads(api.kubectl("get", "lease", "node2", "-n", "kube-node-lease", "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == "node2" and lease["spec"]["leaseDurationSeconds"] == 40
    assert "NotReady" not in api.kubectl("get", "nodes").stdout


def test_a_pod_runs_reports_its_status_and_serves_logs_and_exec(cluster, api):
    container = ECHO + "    env: [{name: GREETING, value: hello}]\n"
    container += "    readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}\n"
    apply(api, pod_yaml("web", "node1", container))
    try:
        p = wait_for(lambda: (q := pod(api, "web")) and ready(q) and q, "web ready")
        st = p["status"]
        assert st["phase"] == "Running" and st["podIP"].startswith("10.244.1.")
        assert st["hostIP"] == "192.168.56.11" and st["qosClass"] == "BestEffort"
        cs = container_status(p)
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
        # the echo server answers from the pod: the node reaches it at its IP
        reply = kernel.run(cluster.layout.node_netns("node1"), ["curl", "-s", f"http://{st['podIP']}/"])
        assert reply.stdout.startswith(f"pod=web ip={st['podIP']} client=10.244.1.1:")
        logs = wait_for(lambda: api.kubectl("logs", "web").stdout, "logs")
        assert "echo web serving on 80" in logs
        stamped = api.kubectl("logs", "web", "--timestamps").stdout
        assert stamped.split(" ", 1)[0].endswith("Z")
        ex = api.kubectl(
            "exec", "web", "--", "sh", "-c", "echo $GREETING $(hostname); echo oops >&2; exit 3", ok=False
        )
        assert (ex.returncode, ex.stdout, ex.stderr) == (
            3,
            "hello web\n",
            "oops\ncommand terminated with exit code 3\n",
        )
        echoed = api.kubectl("exec", "-i", "web", "--", "tr", "a-z", "A-Z", input="from stdin\n")
        assert echoed.stdout == "FROM STDIN\n"
        # PID 1 is the container's own command, in a PID namespace of its own
        assert api.kubectl("exec", "web", "--", "cat", "/proc/1/cmdline").stdout.startswith(sys.executable)
        missing = api.kubectl("exec", "web", "--", "no-such-command", ok=False)
        assert missing.returncode != 0 and "no-such-command" in missing.stderr
        events = api.kubectl("get", "events", "--field-selector", "involvedObject.name=web").stdout
        assert "netlab/echo in place of nginx:1.14" in events and "Started container web" in events
    finally:
        delete(api, "web")


def test_exec_with_a_terminal_follows_resizes(cluster, api):
    apply(api, pod_yaml("tty", "node2", ECHO))
    try:
        wait_for(lambda: ready(pod(api, "tty")), "tty ready")
        out = asyncio.run(tty_exec(api, "tty", ["sh", "-c", "stty size; read line; echo got $line"], b"hi\n"))
        assert "33 101" in out and "got hi" in out
    finally:
        delete(api, "tty")


async def tty_exec(api: ApiServerForTest, name: str, command: list[str], stdin: bytes) -> str:
    ctx = ssl.create_default_context(cafile=str(api.ca))
    params = [("command", c) for c in command] + [("stdin", "true"), ("stdout", "true"), ("tty", "true")]
    headers = {"Authorization": f"Bearer {api.token('admin')}"}
    out = b""
    async with aiohttp.ClientSession() as session:
        url = f"{api.url}/api/v1/namespaces/default/pods/{name}/exec"
        async with session.ws_connect(url, params=params, headers=headers, ssl=ctx,
                                      protocols=["v5.channel.k8s.io"]) as ws:  # fmt: skip
            assert ws.protocol == "v5.channel.k8s.io"
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 101, "Height": 33}).encode())
            await asyncio.sleep(0.3)
            await ws.send_bytes(b"\x00" + stdin)
            status = None
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                if msg.data[0] == 1:
                    out += msg.data[1:]
                elif msg.data[0] == 3:
                    status = json.loads(msg.data[1:])
            assert status == {"metadata": {}, "status": "Success"}
    return out.decode()


def test_crashing_and_unstartable_containers_back_off_without_hurting_the_kubelet(cluster, api):
    crash = "  - name: c\n    image: busybox\n    command: [sh, -c, 'echo run $(date +%N); exit 3']\n"
    nocmd = "  - name: c\n    image: busybox\n    command: [no-such-program]\n"
    apply(api, pod_yaml("crash", "node1", crash) + "---\n" + pod_yaml("nocmd", "node2", nocmd))
    try:
        p = wait_for(
            lambda: (q := pod(api, "crash")) and container_status(q).get("restartCount", 0) >= 1 and q,
            "a restart",
        )
        cs = wait_for(
            lambda: (c := container_status(pod(api, "crash") or {})).get("state", {}).get("waiting") and c,
            "CrashLoopBackOff",
        )
        assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert "back-off 10s restarting failed container=c" in cs["state"]["waiting"]["message"]
        assert cs["lastState"]["terminated"]["exitCode"] == 3 and p["status"]["phase"] == "Running"
        assert api.kubectl("logs", "crash", "--previous").stdout.startswith("run ")
        cs = wait_for(
            lambda: (
                (c := container_status(pod(api, "nocmd") or {})).get("lastState", {}).get("terminated") and c
            ),
            "a failed start",
        )
        term = cs["lastState"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (128, "StartError")
        assert term["message"] == 'exec: "no-such-program": executable file not found in $PATH'
        events = api.kubectl("get", "events", "--field-selector", "involvedObject.name=nocmd").stdout
        assert "BackOff" in events and "executable file not found" in events
        # the kubelet is fine: another pod on that node starts
        apply(api, pod_yaml("after", "node2", ECHO))
        wait_for(lambda: ready(pod(api, "after")), "after ready")
    finally:
        delete(api, "crash", "nocmd", "after")


def test_failing_liveness_probe_restarts_the_container(cluster, api):
    script = (
        "touch /tmp/alive-$HOSTNAME; trap 'exit 0' TERM; sleep 1.5; rm /tmp/alive-$HOSTNAME; "
        "while :; do sleep 0.1; done"
    )
    container = f"  - name: c\n    image: busybox\n    command: [sh, -c, {json.dumps(script)}]\n"
    probe = (
        "{exec: {command: [sh, -c, 'test -f /tmp/alive-$HOSTNAME']}, periodSeconds: 1, failureThreshold: 1}"
    )
    container += f"    livenessProbe: {probe}\n"
    apply(api, pod_yaml("live", "node1", container))
    try:
        first = wait_for(lambda: container_status(pod(api, "live") or {}).get("containerID"), "started")
        cs = wait_for(
            lambda: (c := container_status(pod(api, "live") or {})).get("restartCount") and c, "restart", 40
        )
        assert cs["containerID"] != first and cs["lastState"]["terminated"]["exitCode"] == 0
        events = api.kubectl("get", "events", "--field-selector", "involvedObject.name=live").stdout
        assert "Liveness probe failed" in events and "failed liveness probe, will be restarted" in events
    finally:
        delete(api, "live")


def test_deletion_stops_with_grace_runs_cni_del_and_removes_the_sandbox(cluster, api):
    script = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
    container = f"  - name: c\n    image: busybox\n    command: [sh, -c, {json.dumps(script)}]\n"
    apply(api, pod_yaml("bye", "node2", container, terminationGracePeriodSeconds=20))
    p = wait_for(lambda: (q := pod(api, "bye")) and ready(q) and q, "bye ready")
    sb = next(s for s in sandbox.list_sandboxes(cluster.layout) if s.name == "bye")
    ipam = cluster.layout.ipam_dir("node2")
    assert any(f.name == p["status"]["podIP"] for f in ipam.rglob("*"))
    t0 = time.monotonic()
    api.kubectl("delete", "pod", "bye", "--wait=true", "--timeout=60s")
    assert time.monotonic() - t0 < 15  # the container left on SIGTERM, long before its grace ran out
    assert pod(api, "bye") is None
    assert sb.netns not in kernel.list_netns() and not sb.pause_alive()
    assert not any(f.name == p["status"]["podIP"] for f in ipam.rglob("*"))


def test_a_restarted_kubelet_adopts_its_pods_and_removes_what_was_deleted_meanwhile(cluster, api):
    apply(api, pod_yaml("keep", "node1", ECHO) + "---\n" + pod_yaml("drop", "node1", ECHO))
    try:
        keep = wait_for(lambda: (q := pod(api, "keep")) and ready(q) and q, "keep ready")
        wait_for(lambda: ready(pod(api, "drop")), "drop ready")
        drop_sb = next(s for s in sandbox.list_sandboxes(cluster.layout) if s.name == "drop")
        cluster.kill("node1")
        api.kubectl("delete", "pod", "drop", "--grace-period=0", "--force")
        cluster.start("node1")
        wait_for(
            lambda: not drop_sb.pause_alive() and drop_sb.netns not in kernel.list_netns(), "drop removed"
        )
        again = pod(api, "keep")
        assert (
            ready(again) and container_status(again)["containerID"] == container_status(keep)["containerID"]
        )
        assert container_status(again)["restartCount"] == 0
        assert [s.name for s in sandbox.list_sandboxes(cluster.layout) if s.node == "node1"] == ["keep"]
        # the adopted container's exit is still noticed: kill it and it restarts
        main_pid = int(api.kubectl("exec", "keep", "--", "cat", "/proc/1/stat").stdout.split()[0])
        assert main_pid == 1
        adopted = next(c for c in sandbox_containers(cluster.layout, "keep") if c.alive())
        os.kill(adopted.pid, signal.SIGKILL)
        cs = wait_for(
            lambda: (c := container_status(pod(api, "keep") or {})).get("restartCount") and c, "restart"
        )
        assert cs["lastState"]["terminated"]["exitCode"] == 137
    finally:
        delete(api, "keep", "drop")


def sandbox_containers(layout: Layout, name: str) -> list[Any]:
    from netlab.runtime import containers

    return containers.list_containers(layout, name)


def test_init_containers_run_in_order_and_phases_follow_the_restart_policy(cluster, api):
    inits = (
        "  initContainers:\n"
        "  - {name: one, image: busybox, command: [sh, -c, 'echo one > /tmp/order-$HOSTNAME']}\n"
        "  - {name: two, image: busybox, command: [sh, -c, 'echo two >> /tmp/order-$HOSTNAME']}\n"
    )
    show = "cat /tmp/order-$HOSTNAME; rm /tmp/order-$HOSTNAME"
    done = f"  - name: c\n    image: busybox\n    command: [sh, -c, '{show}']\n"
    ok = pod_yaml("inits", "node1", done, restartPolicy="OnFailure").replace(
        "  containers:\n", inits + "  containers:\n"
    )
    failing = "  - name: c\n    image: busybox\n    command: [sh, -c, 'exit 2']\n"
    bad_init = "  initContainers:\n  - {name: first, image: busybox, command: [false]}\n"
    never = pod_yaml("never", "node2", failing, restartPolicy="Never")
    blocked = pod_yaml("blocked", "node2", ECHO, restartPolicy="Never").replace(
        "  containers:\n", bad_init + "  containers:\n"
    )
    apply(api, ok + "---\n" + never + "---\n" + blocked)
    try:
        p = wait_for(
            lambda: (q := pod(api, "inits")) and q["status"].get("phase") == "Succeeded" and q, "Succeeded"
        )
        assert [s["state"]["terminated"]["exitCode"] for s in p["status"]["initContainerStatuses"]] == [0, 0]
        assert api.kubectl("logs", "inits", "-c", "c").stdout == "one\ntwo\n"
        p = wait_for(
            lambda: (q := pod(api, "never")) and q["status"].get("phase") == "Failed" and q, "Failed"
        )
        assert container_status(p)["state"]["terminated"]["exitCode"] == 2
        assert container_status(p)["restartCount"] == 0
        p = wait_for(
            lambda: (q := pod(api, "blocked")) and q["status"].get("phase") == "Failed" and q, "blocked"
        )
        assert container_status(p)["state"] == {"waiting": {"reason": "PodInitializing"}}
        # a finished pod's sandbox is gone (its IP released) but its logs stay readable
        wait_for(lambda: "never" not in {s.name for s in sandbox.list_sandboxes(cluster.layout)}, "teardown")
    finally:
        delete(api, "inits", "never", "blocked")


def wait_config_error(api, name):
    """The pod's container status once it waits in CreateContainerConfigError."""
    return wait_for(
        lambda: (
            (c := container_status(pod(api, name) or {})).get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            and c
        ),
        "CreateContainerConfigError",
    )


def test_a_missing_config_map_holds_the_container_until_it_exists(cluster, api):
    container = ECHO + "    env: [{name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}]\n"
    apply(api, pod_yaml("needs-cm", "node1", container))
    try:
        cs = wait_config_error(api, "needs-cm")
        assert cs["state"]["waiting"]["message"] == 'configmap "settings" not found'
        apply(api, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n")
        wait_for(lambda: ready(pod(api, "needs-cm")), "needs-cm ready")
        assert api.kubectl("exec", "needs-cm", "--", "sh", "-c", "echo $MODE").stdout == "fast\n"
    finally:
        delete(api, "needs-cm")
        api.kubectl("delete", "configmap", "settings", ok=False)


def test_a_secret_reaches_the_container_environment_once_it_exists(cluster, api):
    container = ECHO + (
        "    env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}]\n"
        "    envFrom: [{secretRef: {name: creds}, prefix: S_}]\n"
    )
    apply(api, pod_yaml("needs-secret", "node1", container))
    try:
        cs = wait_config_error(api, "needs-secret")
        assert cs["state"]["waiting"]["message"] == 'secret "creds" not found'
        api.kubectl(
            "create", "secret", "generic", "creds", "--from-literal=password=s3cr3t", "--from-literal=user=me"
        )
        wait_for(lambda: ready(pod(api, "needs-secret")), "needs-secret ready")
        out = api.kubectl(
            "exec", "needs-secret", "--", "sh", "-c", "echo $PASSWORD $S_user $S_password"
        ).stdout
        assert out == "s3cr3t me s3cr3t\n"
    finally:
        delete(api, "needs-secret")
        api.kubectl("delete", "secret", "creds", ok=False)
