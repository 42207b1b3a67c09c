"""Pod sandboxes end to end: `netlab sandbox run/ls/rm` and `netlab exec`, with real packets.

The lab's nodes run netlab's own plugins (through each node's CNI server); one test runs the
same conflists with Debian's reference bridge, host-local and loopback plugins instead (only
the plugin types differ), which shows that the sandbox runtime interoperates with them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from netlab import kernel
from netlab.kernel import Rtnl
from netlab.runtime import sandbox as runtime
from tests.root.conftest import NETLAB, one_line_error, use_reference_plugins

pytestmark = pytest.mark.root

SERVER = """
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], socket.gethostname(), os.readlink("/proc/self/ns/ipc"), flush=True)
conn, _ = s.accept()
conn.sendall(socket.gethostname().encode())
conn.close()
"""

CLIENT = """
import os, socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
print(c.recv(100).decode(), socket.gethostname(), os.readlink("/proc/self/ns/ipc"))
"""


@pytest.fixture
def lab(cli, layout):
    cli("up", "--nodes", "2")
    return cli


def lab_netns(layout):
    return sorted(ns for ns in kernel.list_netns() if ns.startswith(layout.prefix))


def pod_ping(cli, pod, ip):
    return cli("exec", pod, "--", "ping", "-c", "1", "-W", "2", ip, ok=False).returncode == 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def node_links(layout, node):
    with Rtnl(layout.node_netns(node)) as r:
        return sorted(link.name for link in r.links())


def ipam_files(layout, node):
    d = layout.ipam_dir(node) / "netlab"
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def cache_files(layout):
    return sorted(os.listdir(layout.cni_cache_dir)) if layout.cni_cache_dir.exists() else []


def test_two_sandboxes_reach_each_other_and_their_gateway(lab, layout):
    ip_a = lab("sandbox", "run", "a", "--node", "node1").stdout.strip()
    ip_b = lab("sandbox", "run", "b", "--node", "node1").stdout.strip()
    assert ip_a.startswith("10.244.1.") and ip_b.startswith("10.244.1.") and ip_a != ip_b
    assert layout.pod_netns("a") in lab_netns(layout)
    assert pod_ping(lab, "a", ip_b)
    assert pod_ping(lab, "b", ip_a)
    assert pod_ping(lab, "a", "10.244.1.1")
    # the node routes for its pods: another node's underlay address is reachable too
    assert pod_ping(lab, "b", "192.168.56.12")
    assert lab("exec", "a", "--", "hostname").stdout.strip() == "a"
    listing = lab("sandbox", "ls").stdout
    assert f"{ip_a}/24" in listing and f"{ip_b}/24" in listing and layout.pod_netns("b") in listing
    assert "b" in lab("status").stdout
    # the exit status of the command is exec's
    assert lab("exec", "a", "--", "sh", "-c", "exit 7", ok=False).returncode == 7
    assert lab("exec", "node1", "--", "ip", "-o", "addr", "show", "cni0").stdout.count("10.244.1.1/24") == 1


def test_reference_plugins_through_the_same_conflists(lab, layout):
    use_reference_plugins(layout, "node2")
    ip_a = lab("sandbox", "run", "a", "--node", "node2").stdout.strip()
    ip_b = lab("sandbox", "run", "b", "--node", "node2").stdout.strip()
    assert ip_a.startswith("10.244.2.") and ip_b.startswith("10.244.2.")
    assert pod_ping(lab, "a", ip_b)
    assert pod_ping(lab, "b", "10.244.2.1")
    assert lab("exec", "b", "--", "hostname").stdout.strip() == "b"
    lab("sandbox", "rm", "a", "b")
    assert ipam_files(layout, "node2") == []
    assert [n for n in node_links(layout, "node2") if n.startswith("veth")] == []
    assert cache_files(layout) == []


def test_processes_in_one_sandbox_share_localhost_hostname_and_ipc(lab, layout):
    lab("sandbox", "run", "web", "--node", "node1")
    lab("sandbox", "run", "other", "--node", "node1")
    server = subprocess.Popen(
        [str(NETLAB), "exec", "web", "--", "python3", "-c", SERVER],
        env=lab.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port, server_host, server_ipc = server.stdout.readline().split()
        # another sandbox has a localhost of its own: nothing listens there
        refused = lab("exec", "other", "--", "python3", "-c", CLIENT, port, ok=False)
        assert refused.returncode != 0 and "Connection refused" in refused.stderr
        reply, client_host, client_ipc = lab(
            "exec", "web", "--", "python3", "-c", CLIENT, port
        ).stdout.split()
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait()
    assert reply == server_host == client_host == "web"
    pause = runtime.get(layout, "web").pause_pid
    assert server_ipc == client_ipc == os.readlink(f"/proc/{pause}/ns/ipc")
    assert client_ipc != os.readlink("/proc/self/ns/ipc")


def test_run_with_taken_name_or_unknown_node_fails_cleanly(lab, layout):
    lab("sandbox", "run", "a", "--node", "node1")
    before = (lab_netns(layout), node_links(layout, "node1"), ipam_files(layout, "node1"))
    before_records = sorted(p.name for p in layout.sandbox_dir.iterdir())

    def fails(*args):
        return one_line_error(lab(*args, ok=False))

    assert fails("sandbox", "run", "a", "--node", "node1") == "error: sandbox a already exists"
    assert "node node9 does not exist" in fails("sandbox", "run", "b", "--node", "node9")
    assert "lab node" in fails("sandbox", "run", "node2", "--node", "node1")
    assert "invalid sandbox name" in fails("sandbox", "run", "Bad_Name", "--node", "node1")
    assert "Missing option '--node'" in fails("sandbox", "run", "b")
    assert "no sandbox or node named zz" in fails("exec", "zz", "--", "true")
    assert "sandbox zz does not exist" in fails("sandbox", "rm", "zz")

    after = (lab_netns(layout), node_links(layout, "node1"), ipam_files(layout, "node1"))
    assert after == before
    assert sorted(p.name for p in layout.sandbox_dir.iterdir()) == before_records


def test_failed_cni_add_leaves_nothing(lab, layout):
    conf_path = layout.cni_conf_dir("node1") / "10-netlab.conflist"
    conf = json.loads(conf_path.read_text())
    conf["plugins"].append({"type": "no-such-plugin"})
    conf_path.write_text(json.dumps(conf))
    links_before = node_links(layout, "node1")

    line = one_line_error(lab("sandbox", "run", "a", "--node", "node1", ok=False))
    assert "CNI ADD for sandbox a failed" in line and "no-such-plugin" in line
    assert layout.pod_netns("a") not in kernel.list_netns()
    assert runtime.list_sandboxes(layout) == []
    assert not any(p.suffix == ".json" for p in layout.sandbox_dir.iterdir())
    # the bridge stays (plugins never delete it) but the pod's veth, address and caches are gone
    assert [n for n in node_links(layout, "node1") if n.startswith("veth")] == []
    assert set(links_before) <= set(node_links(layout, "node1"))
    assert ipam_files(layout, "node1") == []
    assert cache_files(layout) == []
    assert kernel.netns_pids(layout.node_netns("node1")) == []


def test_rm_kills_everything_in_the_sandbox_and_releases_its_address(lab, layout):
    ip_a = lab("sandbox", "run", "a", "--node", "node1").stdout.strip()
    lab("sandbox", "run", "b", "--node", "node1")
    sleeper = subprocess.Popen([str(NETLAB), "exec", "a", "--", "sleep", "300"], env=lab.env())
    sb = runtime.get(layout, "a")
    deadline = time.monotonic() + 30
    while sleeper.pid not in kernel.netns_pids(sb.netns):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert ip_a in ipam_files(layout, "node1")
    veths_before = [n for n in node_links(layout, "node1") if n.startswith("veth")]

    lab("sandbox", "rm", "a")
    assert sleeper.wait(timeout=30) == -signal.SIGKILL
    assert not alive(sb.pause_pid)
    assert sb.netns not in kernel.list_netns()
    assert [s.name for s in runtime.list_sandboxes(layout)] == ["b"]
    assert ip_a not in ipam_files(layout, "node1")
    assert len([n for n in node_links(layout, "node1") if n.startswith("veth")]) == len(veths_before) - 1
    assert not any(sb.container_id in f for f in cache_files(layout))
    # b is untouched and the name can be used again
    assert pod_ping(lab, "b", "10.244.1.1")
    assert lab("sandbox", "run", "a", "--node", "node2").stdout.strip().startswith("10.244.2.")


def test_down_removes_sandboxes_and_their_processes(lab, layout):
    lab("sandbox", "run", "a", "--node", "node1")
    lab("sandbox", "run", "b", "--node", "node2")
    pauses = [s.pause_pid for s in runtime.list_sandboxes(layout)]
    sleeper = subprocess.Popen([str(NETLAB), "exec", "b", "--", "sleep", "300"], env=lab.env())
    lab("down")
    assert sleeper.wait(timeout=30) == -signal.SIGKILL
    assert not any(alive(p) for p in pauses)
    assert [ns for ns in kernel.list_netns() if ns.startswith(layout.prefix)] == []
    assert not layout.run_dir.exists() and not layout.state_dir.exists()


def test_pause_exits_cleanly_on_sigterm_and_sigint(layout):
    ns = layout.pod_netns("p")
    kernel.ensure_netns(ns)
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(
            ["nsenter", f"--net={kernel.netns_path(ns)}", "--", "unshare", "--uts", "--ipc", "--",
             sys.executable, "-I", "-S", str(runtime.PAUSE_SCRIPT), "p"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout.readline() == b"ready\n"
        assert (
            kernel.run(None, ["nsenter", f"--uts=/proc/{proc.pid}/ns/uts", "hostname"]).stdout.strip() == "p"
        )
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
