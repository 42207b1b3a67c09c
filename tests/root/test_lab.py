"""The single-host lab end to end: `netlab up/down/status/clean/doctor` as a user runs them."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cni import server as cni_server
from netlab import kernel
from netlab.lab import agent, processes
from tests.root.conftest import one_line_error

pytestmark = pytest.mark.root


def lab_netns(layout):
    return [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)]


def ping(netns, ip):
    return kernel.run(netns, ["ping", "-c", "1", "-W", "2", ip], check=False).returncode == 0


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def assert_nothing_left(layout):
    assert lab_netns(layout) == []
    assert processes.list_running(layout) == []
    assert not layout.run_dir.exists()
    assert not layout.state_dir.exists()


def test_up_status_down_three_nodes(cli, layout):
    cli("up", "--nodes", "3")
    assert sorted(lab_netns(layout)) == sorted(
        [layout.underlay_netns, layout.client_netns, *(layout.node_netns(f"node{i}") for i in (1, 2, 3))]
    )
    # nodes reach each other over the underlay switch, and the client reaches every node
    assert ping(layout.node_netns("node1"), "192.168.56.13")
    assert ping(layout.node_netns("node3"), "192.168.56.12")
    for i in (1, 2, 3):
        assert ping(layout.client_netns, f"192.168.56.1{i}")
    assert kernel.get_sysctl(layout.node_netns("node2"), "net.ipv4.ip_forward") == "1"
    # every node has a CNI server answering inside its namespace, and the plugin launchers
    running = {r.name for r in processes.list_running(layout)}
    assert {f"cni-server-node{i}" for i in (1, 2, 3)} <= running
    for i in (1, 2, 3):
        assert cni_server.serving(layout.node_netns(f"node{i}"))
    assert sorted(p.name for p in layout.cni_bin_dir.iterdir()) == [
        "netlab-bridge",
        "netlab-flannel",
        "netlab-host-local",
        "netlab-loopback",
    ]

    lab = json.loads(layout.lab_file.read_text())
    assert lab["status"] == "running"
    assert [(n["name"], n["underlay_ip"], n["pod_cidr"]) for n in lab["nodes"]] == [
        ("node1", "192.168.56.11/24", "10.244.1.0/24"),
        ("node2", "192.168.56.12/24", "10.244.2.0/24"),
        ("node3", "192.168.56.13/24", "10.244.3.0/24"),
    ]
    conf = json.loads((layout.cni_conf_dir("node2") / "10-netlab.conflist").read_text())
    assert conf["plugins"][0]["type"] == "netlab-flannel"
    assert conf["plugins"][0]["subnetFile"] == str(layout.node_run_dir("node2") / "subnet.env")

    # one agent per node, running that node's flanneld, kubelet and kube-proxy as its children
    children = []
    for i in (1, 2, 3):
        status = agent.read_status(layout, f"node{i}")
        assert status is not None and status.pid == processes.running(layout, f"agent-node{i}").pid
        assert [c.name for c in status.children] == ["flanneld", "kubelet", "kube-proxy"]
        assert all(parent(c.pid) == status.pid for c in status.children)
        children += agent.alive_children(status)
    assert len(children) == 9

    status = cli("status").stdout
    for word in ("node1", "node3", "192.168.56.12/24", "10.244.3.0/24", layout.client_netns, "node agents"):
        assert word in status

    cli("down")
    assert_nothing_left(layout)
    assert not [pid for pid, started in children if processes.is_alive(pid, started)]
    # down is idempotent
    assert cli("down").returncode == 0


def test_topology_file_names_nodes(cli, layout, tmp_path):
    topo = tmp_path / "lab.yaml"
    topo.write_text(
        textwrap.dedent(
            """
            nodes:
              - red
              - {name: blue, underlay_ip: 10.20.0.40}
            underlay_cidr: 10.20.0.0/24
            pod_cidr: 10.30.0.0/16
            """
        )
    )
    cli("up", "--topology", str(topo))
    assert ping(layout.node_netns("red"), "10.20.0.40")
    assert ping(layout.client_netns, "10.20.0.11")
    cli("down")
    assert_nothing_left(layout)


def test_up_twice_is_an_error_and_keeps_the_lab(cli, layout):
    cli("up", "--nodes", "1")
    line = one_line_error(cli("up", "--nodes", "1", ok=False))
    assert "already running" in line
    assert ping(layout.client_netns, "192.168.56.11")
    cli("down")
    assert_nothing_left(layout)


@pytest.mark.parametrize(
    ("args", "topology", "message"),
    [
        (["--nodes", "0"], None, "--nodes must be at least 1"),
        (["--nodes", "many"], None, "'many' is not a valid integer"),
        (["--bogus"], None, "No such option"),
        (["--topology", "{file}"], "nodes: [a, a]\n", "nodes[1].name: node 'a' is listed twice"),
        (["--topology", "{file}"], "pod_cidr: 10.244.0.0/33\n", "pod_cidr: '10.244.0.0/33' is not a network"),
        (["--topology", "{file}", "--nodes", "2"], "nodes: 3\n", "do not also pass --nodes"),
    ],
)
def test_bad_input_gives_one_line_and_builds_nothing(cli, layout, tmp_path, args, topology, message):
    f = tmp_path / "bad.yaml"
    if topology is not None:
        f.write_text(topology)
    proc = cli("up", *(a.format(file=f) for a in args), ok=False)
    assert message in one_line_error(proc)
    assert_nothing_left(layout)


def test_failure_half_way_unwinds_everything(layout):
    from netlab.lab import build
    from netlab.lab.topology import default_topology

    seen = []

    def fail_at_second_cni_server(done, total, what):
        seen.append(what)
        if what == "CNI server of node2":
            assert kernel.netns_exists(layout.client_netns)
            assert processes.running(layout, "cni-server-node1")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build.up(layout, default_topology(2), fail_at_second_cni_server)
    assert "CNI server of node2" in seen
    assert_nothing_left(layout)


def test_clean_removes_a_crashed_lab_and_nothing_else(cli, layout):
    # a real crash: `up` is SIGKILLed half-way, so no undo runs and no lab.json is finished
    code = textwrap.dedent(
        """
        import os, signal
        from netlab.lab import build
        from netlab.lab.topology import default_topology
        from netlab.layout import Layout

        def crash(done, total, what):
            if what == "CNI server of node2":
                os.kill(os.getpid(), signal.SIGKILL)

        build.up(Layout.from_env(), default_topology(2), crash)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli.env(), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    node1 = layout.node_netns("node1")
    assert kernel.netns_exists(node1)
    server = processes.running(layout, "cni-server-node1")
    assert server is not None
    # a process left running inside a lab namespace, and a namespace netlab does not own
    sleeper = subprocess.Popen(kernel.in_netns(node1, ["sleep", "300"]))
    other = f"other-{secrets.token_hex(3)}"
    kernel.ensure_netns(other)
    try:
        wait_for(lambda: sleeper.pid in kernel.netns_pids(node1) and comm(sleeper.pid) == "sleep")
        dry = cli("clean", "--dry-run").stdout
        assert f"would remove network namespace {node1}" in dry
        assert f"process {sleeper.pid} (sleep) in {node1}" in dry
        assert other not in dry
        assert kernel.netns_exists(node1) and sleeper.poll() is None

        assert f"would remove component cni-server-node1 (pid {server.pid})" in dry
        out = cli("clean").stdout
        assert f"removed network namespace {layout.underlay_netns}" in out
        assert f"removed component cni-server-node1 (pid {server.pid})" in out
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert_nothing_left(layout)
        assert kernel.netns_exists(other)
        assert cli("clean").returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()
        kernel.delete_netns(other)


def test_doctor_table_and_exit_code(cli):
    proc = cli("doctor")
    for name in (
        "root",
        "iproute2",
        "vxlan",
        "br_netfilter",
        "etcd",
        "netlab CNI plugins",
        "CNI reference plugins",
        "kubectl",
        "cgroup2",
    ):
        assert name in proc.stdout
    assert "MISSING" not in proc.stdout
    # without /usr/sbin on PATH, iptables is gone: a required check fails, with its fix
    proc = cli("doctor", ok=False, env=cli.env(PATH="/usr/bin:/bin"))
    assert "apt-get install iptables" in proc.stdout
    assert "iptables" in one_line_error(proc)


def test_up_refuses_a_state_dir_that_is_not_netlabs(cli, layout, tmp_path):
    foreign = tmp_path / "someone-elses"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    env = cli.env(NETLAB_STATE_DIR=str(foreign))
    line = one_line_error(cli("up", "--nodes", "1", ok=False, env=env))
    assert f"{foreign} exists and is not netlab's" in line
    assert lab_netns(layout) == []
    # clean and down never delete a directory without netlab's marker either
    cli("clean", env=env)
    cli("down", env=env)
    assert (foreign / "notes.txt").read_text() == "keep me"
