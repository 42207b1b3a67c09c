"""The container runtime as root: processes in a sandbox, their namespaces, logs, cgroups, stop.

One lab node is built for the module (namespaces are slow to make on a shared machine); every
test makes its own sandboxes and removes them, and the module checks at the end that no
cgroup, process or namespace is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlab import kernel
from netlab.lab import build, pods
from netlab.lab.topology import default_topology
from netlab.runtime import containers, sandbox
from netlab.runtime.cgroups import CgroupTree, Limits
from netlab.runtime.containers import EXITED, RUNNING, ContainerConfig

pytestmark = pytest.mark.root

PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def lab(module_layout):
    build.up(module_layout, default_topology(1))
    try:
        yield module_layout
    finally:
        build.down(module_layout)
        assert CgroupTree(module_layout.prefix).leftovers() == []
        assert [ns for ns in kernel.list_netns() if ns.startswith(module_layout.prefix)] == []


@pytest.fixture
def pod(lab, request):
    name = request.node.name.replace("_", "-")[5:40].strip("-")
    sb = sandbox.run(lab, name, "node1", pods.node_network(lab, "node1"), hostname=name)
    yield sb
    pods.remove_pod(lab, name)
    CgroupTree(lab.prefix).remove(f"pod{name}")


def start(lab, sb, argv, attempt=0, **kw):
    config = ContainerConfig(name=kw.pop("name", "c"), argv=argv, **kw)
    log = lab.state_dir / "logs" / sb.name / config.name / f"{attempt}.log"
    return containers.start(lab, sb, config, attempt, log, CgroupTree(lab.prefix), f"pod{sb.name}")


def wait_exit(lab, c, timeout=30.0):
    assert containers.wait_exited(lab, c, timeout)
    st = containers.state(lab, c)
    assert st.status == EXITED
    return st


def ns_of(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def log_lines(c):
    return Path(c.log_path).read_text().splitlines()


def test_container_shares_the_pods_network_ipc_and_uts_and_has_its_own_pid_and_mounts(lab, pod):
    script = "echo pid=$$ host=$(hostname) foo=$FOO cwd=$(pwd); ls /proc | grep -c '^[0-9]'; exec sleep 300"
    c = start(lab, pod, ["sh", "-c", script], env={"FOO": "bar"}, cwd="/tmp")
    try:
        assert containers.state(lab, c).status == RUNNING
        deadline = time.monotonic() + 10
        while len(log_lines(c)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first, count = (line.split(" ", 3)[3] for line in log_lines(c)[:2])
        # PID 1 of a fresh PID namespace, whose /proc shows only its own processes
        assert first == "pid=1 host=" + pod.name + " foo=bar cwd=/tmp"
        assert int(count) <= 3
        assert os.stat(f"/proc/{c.pid}/ns/net").st_ino == kernel.netns_inode(pod.netns)
        for kind in ("ipc", "uts"):
            assert ns_of(c.pid, kind) == ns_of(pod.pause_pid, kind)
        for kind in ("pid", "mnt"):
            assert ns_of(c.pid, kind) != ns_of(pod.pause_pid, kind)
            assert ns_of(c.pid, kind) != ns_of(os.getpid(), kind)
        # exec enters the container: same PID namespace, its environment and directory
        out = subprocess.run(
            containers.exec_argv(c, ["sh", "-c", "echo $FOO $(pwd); ps -o pid= -p 1"]),
            env=containers.exec_env(c),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == ["bar", "/tmp", "1"]
    finally:
        containers.stop(lab, c, 5)
    assert not c.alive()


def test_logs_keep_streams_partial_lines_and_the_exit_status(lab, pod):
    long = "x" * 40000
    script = (
        f"import sys; print('out'); print('err', file=sys.stderr); print('{long}'); "
        "sys.stdout.write('tail'); sys.exit(3)"
    )
    c = start(lab, pod, [PY, "-c", script])
    st = wait_exit(lab, c)
    assert (st.exit_code, st.reason, st.signal) == (3, "Error", None)
    lines = log_lines(c)
    parsed = [line.split(" ", 3) for line in lines]
    for ts, *_ in parsed:
        assert ts.endswith("Z") and len(ts) == len("2026-01-01T00:00:00.000000000Z")
    by_stream = {s: [(tag, text) for _, s2, tag, text in parsed if s2 == s] for s in ("stdout", "stderr")}
    assert by_stream["stderr"] == [("F", "err")]
    out = by_stream["stdout"]
    assert out[0] == ("F", "out")
    # a 40000-byte line is written as 16 KiB parts, then its end; the last line has no newline
    assert [tag for tag, _ in out[1:]] == ["P", "P", "F", "F"]
    assert "".join(text for _, text in out[1:4]) == long
    assert out[-1] == ("F", "tail")


def test_a_command_that_cannot_start_is_an_exited_container_with_the_reason(lab, pod):
    st = containers.state(lab, start(lab, pod, ["no-such-program-x"]))
    assert (st.status, st.exit_code, st.reason) == (EXITED, 128, "StartError")
    assert st.message == 'exec: "no-such-program-x": executable file not found in $PATH'
    st = containers.state(lab, start(lab, pod, ["true"], name="d", cwd="/no/such/dir"))
    assert st.reason == "StartError" and "/no/such/dir" in (st.message or "")


def test_memory_limit_ends_in_an_oom_kill_and_cpu_limit_sets_a_quota(lab, pod):
    limits = Limits(memory_bytes=32 * 1024 * 1024, cpu_limit_millis=250, cpu_request_millis=100)
    c = start(lab, pod, [PY, "-c", "x = bytearray(256 * 1024 * 1024); print('survived')"], limits=limits)
    st = wait_exit(lab, c)
    assert (st.exit_code, st.signal, st.reason) == (137, "SIGKILL", "OOMKilled")
    dirs = [Path(d) for d in c.cgroup_dirs]
    mem = next(d for d in dirs if (d / "memory.limit_in_bytes").exists())
    assert int((mem / "memory.limit_in_bytes").read_text()) == 32 * 1024 * 1024
    cpu = next(d for d in dirs if (d / "cpu.cfs_quota_us").exists())
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 25000
    assert int((cpu / "cpu.shares").read_text()) == 102
    assert c.unsupported_limits == []
    containers.remove(lab, c, CgroupTree(lab.prefix))
    assert not any(d.exists() for d in dirs)


def test_stop_gives_sigterm_and_the_grace_period_then_sigkill(lab, pod):
    polite = start(lab, pod, ["sh", "-c", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"])
    stubborn = start(lab, pod, ["sleep", "300"], name="d")  # PID 1 without a handler ignores TERM
    time.sleep(0.3)
    t0 = time.monotonic()
    containers.stop(lab, polite, 10)
    assert time.monotonic() - t0 < 5
    st = containers.state(lab, polite)
    assert (st.exit_code, st.reason) == (0, "Completed")
    assert log_lines(polite)[-1].endswith(" stdout F bye")
    t0 = time.monotonic()
    containers.stop(lab, stubborn, 1)
    assert time.monotonic() - t0 >= 1
    assert containers.state(lab, stubborn).exit_code == 137


def test_restarts_are_separate_runs_and_survive_the_starters_exit(lab, pod):
    first = start(lab, pod, ["sh", "-c", "echo one"])
    wait_exit(lab, first)
    # the second run is started by another process that exits at once, as a kubelet restarting
    code = f"""
import json, sys
from pathlib import Path
from netlab.layout import Layout
from netlab.runtime import containers, sandbox
from netlab.runtime.cgroups import CgroupTree
from netlab.runtime.containers import ContainerConfig
lay = Layout(prefix={lab.prefix!r}, state_dir=Path({str(lab.state_dir)!r}),
             run_dir=Path({str(lab.run_dir)!r}))
sb = sandbox.get(lay, {pod.name!r})
log = Path({str(Path(first.log_path).with_name("1.log"))!r})
config = ContainerConfig("c", ["sh", "-c", "echo two; exec sleep 300"])
c = containers.start(lay, sb, config, 1, log, CgroupTree(lay.prefix), "pod{pod.name}")
print(c.id)
"""
    second_id = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    runs = containers.list_containers(lab, pod.name)
    assert [(r.name, r.attempt) for r in runs] == [("c", 0), ("c", 1)]
    second = runs[1]
    assert second.id == second_id and second.alive()
    assert containers.state(lab, second).status == RUNNING
    assert Path(first.log_path).read_text().endswith(" stdout F one\n")
    fd = containers.pidfd(second)
    assert fd is not None
    try:
        containers.stop(lab, second, 1)
        assert containers.state(lab, second).exit_code == 137
    finally:
        os.close(fd)
    record = json.loads((containers.records_dir(lab, pod.name) / "c.1.exit").read_text())
    assert record["exitCode"] == 137 and record["signal"] == "SIGKILL"


def test_removing_the_sandbox_kills_its_containers_and_forgets_them(lab):
    sb = sandbox.run(lab, "gone", "node1", pods.node_network(lab, "node1"))
    c = start(lab, sb, ["sleep", "300"])
    pods.remove_pod(lab, "gone")
    assert containers.wait_exited(lab, c, 10)
    assert not c.alive() and not containers.records_dir(lab, "gone").exists()
    CgroupTree(lab.prefix).remove("podgone")
    assert not any(Path(d).exists() for d in c.cgroup_dirs)
