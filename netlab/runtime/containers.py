"""Containers without images: host programs run inside a pod sandbox, as containerd runs them.

A container here is a process that joins its sandbox's network, IPC and UTS namespaces and gets
PID and mount namespaces of its own (it is PID 1 there, with its own /proc), its own cgroups
with the requested limits, the given environment and working directory, and its stdout and
stderr kept in the CRI log format. Each start is one run of `shim.py`, the container process's
parent, started detached so that containers outlive whoever started them; everything about a
start is recorded on disk, so a restarted kubelet finds its containers again:

    <sandbox dir>/<sandbox>.d/<container>.<attempt>.json   the record (pids, start times, ...)
    <sandbox dir>/<sandbox>.d/<container>.<attempt>.exit   written by the shim at exit

`attempt` is the restart count. A container's state is read from those files and /proc: the
exit file means exited (code, signal, OOM kills, or why it could not start), a live container
process (pid and start time both match) means running. Signals go straight to the container
process; a PID 1 without a handler for SIGTERM ignores it (as in any container), which is why
`stop` ends with SIGKILL after the grace period.

`exec_argv` enters a running container (all five namespaces of its PID 1) with nsenter, for
`kubectl exec` and exec probes.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netlab.errors import NetlabError, NotFound
from netlab.lab import processes
from netlab.layout import Layout
from netlab.runtime.cgroups import CgroupTree, Limits
from netlab.runtime.sandbox import Sandbox, containers_dir

SHIM_SCRIPT = Path(__file__).with_name("shim.py")
START_TIMEOUT = 30.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RUNNING = "running"
EXITED = "exited"


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Container:
    id: str
    name: str
    sandbox: str
    attempt: int
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: str
    cgroup: str  # relative to the lab's cgroup tree
    cgroup_dirs: list[str]
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)
    unsupported_limits: list[str] = field(default_factory=list)
    shim_pid: int | None = None
    shim_start: str | None = None
    pid: int | None = None  # the container's PID 1, as the host numbers it
    pid_start: str | None = None
    started_at: float | None = None

    def alive(self) -> bool:
        return bool(self.pid and self.pid_start and processes.is_alive(self.pid, self.pid_start))

    def shim_alive(self) -> bool:
        return bool(self.shim_pid and self.shim_start and processes.is_alive(self.shim_pid, self.shim_start))


@dataclass(frozen=True)
class ContainerState:
    status: str  # running | exited
    started_at: float | None = None
    finished_at: float | None = None  # seconds since the epoch
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None  # Completed | Error | OOMKilled | StartError
    message: str | None = None


def records_dir(layout: Layout, sandbox: str) -> Path:
    return containers_dir(layout, sandbox)


def _save(layout: Layout, c: Container) -> None:
    path = _record_path(layout, c)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(c), indent=2) + "\n")
    os.replace(tmp, path)


def _record_path(layout: Layout, c: Container) -> Path:
    return records_dir(layout, c.sandbox) / f"{c.name}.{c.attempt}.json"


def exit_path(layout: Layout, c: Container) -> Path:
    return records_dir(layout, c.sandbox) / f"{c.name}.{c.attempt}.exit"


def list_containers(layout: Layout, sandbox: str) -> list[Container]:
    """Every recorded start in the sandbox, by name and attempt."""
    d = records_dir(layout, sandbox)
    try:
        paths = list(d.glob("*.json"))
    except FileNotFoundError:
        return []
    out = []
    for p in paths:
        try:
            out.append(Container(**json.loads(p.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda c: (c.name, c.attempt))


def start(
    layout: Layout,
    sb: Sandbox,
    config: ContainerConfig,
    attempt: int,
    log_path: Path,
    cgroups: CgroupTree,
    cgroup_parent: str,
) -> Container:
    """Start one run of a container in `sb`. A command that cannot be started (no such program,
    bad working directory) gives an exited container with reason StartError, not an error: it
    is the container's failure, reported like its other exits. Errors are the runtime's own."""
    if not sb.pause_alive() or sb.pause_pid is None or sb.pause_start is None:
        raise NetlabError(f"sandbox {sb.name} has no pause process")
    cid = secrets.token_hex(32)
    rel = f"{cgroup_parent}/{cid[:16]}"
    d = records_dir(layout, sb.name)
    d.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    placement = cgroups.create(rel, config.limits)
    c = Container(
        id=cid,
        name=config.name,
        sandbox=sb.name,
        attempt=attempt,
        argv=list(config.argv),
        env=dict(config.env),
        cwd=config.cwd or "/",
        log_path=str(log_path),
        cgroup=rel,
        cgroup_dirs=[str(p) for p in placement.dirs],
        created_at=time.time(),
        labels=dict(config.labels),
        unsupported_limits=placement.unsupported,
    )
    exit_file = exit_path(layout, c)
    exit_file.unlink(missing_ok=True)
    spec_path = d / f"{c.name}.{attempt}.spec"
    spec = {
        "argv": c.argv,
        "env": c.env,
        "cwd": c.cwd,
        "netns": sb.netns_path,
        "ipc": f"/proc/{sb.pause_pid}/ns/ipc",
        "uts": f"/proc/{sb.pause_pid}/ns/uts",
        "pause_pid": sb.pause_pid,
        "pause_start": sb.pause_start,
        "cgroups": c.cgroup_dirs,
        "log": c.log_path,
        "exit": str(exit_file),
    }
    spec_path.write_bytes(marshal.dumps(spec))  # the shim reads marshal: no json import there
    _save(layout, c)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SHIM_SCRIPT), str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    except OSError as e:
        _forget(layout, c, cgroups)
        raise NetlabError(f"cannot start the shim of container {c.name}: {e.strerror}") from None
    c.shim_pid = proc.pid
    c.shim_start = processes.start_time(proc.pid)
    assert proc.stdout is not None
    with proc.stdout:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
    # the shim outlives this call; it is found again by pid and start time, never waited for here
    proc.returncode = 0
    try:
        reply = json.loads(line)
    except ValueError:
        reply = {}
    if "pid" in reply:
        c.pid = int(reply["pid"])
        c.pid_start = processes.start_time(c.pid)
        c.started_at = time.time()
        if c.pid_start is None:  # exited already: the exit file tells the rest
            c.pid_start = "gone"
    elif "error" not in reply:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        _forget(layout, c, cgroups)
        raise NetlabError(f"the shim of container {c.name} did not start")
    _save(layout, c)
    spec_path.unlink(missing_ok=True)
    return c


def _forget(layout: Layout, c: Container, cgroups: CgroupTree) -> None:
    for p in (_record_path(layout, c), exit_path(layout, c)):
        p.unlink(missing_ok=True)
    (records_dir(layout, c.sandbox) / f"{c.name}.{c.attempt}.spec").unlink(missing_ok=True)
    with contextlib.suppress(NetlabError):
        cgroups.remove(c.cgroup)


def _read_exit(layout: Layout, c: Container) -> dict | None:  # type: ignore[type-arg]
    try:
        return dict(json.loads(exit_path(layout, c).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


def state(layout: Layout, c: Container) -> ContainerState:
    info = _read_exit(layout, c)
    if info is None and (c.alive() or c.shim_alive()):
        return ContainerState(RUNNING, started_at=c.started_at)
    if info is None:
        # the shim may be writing the exit file this very moment; look once more
        time.sleep(0.01)
        info = _read_exit(layout, c)
    if info is None:
        return ContainerState(
            EXITED,
            started_at=c.started_at,
            finished_at=time.time(),
            exit_code=137,
            reason="Error",
            message="the container's shim ended without recording an exit status",
        )
    code = int(info.get("exitCode", 255))
    reason = info.get("reason")
    if not reason:
        reason = "OOMKilled" if info.get("oomKills") else "Completed" if code == 0 else "Error"
    return ContainerState(
        EXITED,
        started_at=c.started_at,
        finished_at=_float(info.get("finishedAtUnix")),
        exit_code=code,
        signal=info.get("signal"),
        reason=reason,
        message=info.get("message"),
    )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def signal_container(c: Container, sig: int) -> bool:
    """Send `sig` to the container's PID 1; False when it is not running."""
    if not c.alive() or c.pid is None:
        return False
    try:
        os.kill(c.pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_exited(layout: Layout, c: Container, timeout: float) -> bool:
    """Wait until the shim has recorded the exit (or is gone); True when that happened in time.

    The shim exits right after writing the exit status, so this waits on a pidfd of the shim
    (readable once it has exited) instead of polling /proc: a kubelet stopping many pods at
    once would otherwise spend its CPU looking."""
    if exit_path(layout, c).exists():
        return True
    fd = pidfd(c)
    if fd is None:  # the shim is gone already
        return True
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    finally:
        os.close(fd)
    return bool(ready) or exit_path(layout, c).exists()


def stop(layout: Layout, c: Container, grace: float) -> None:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL; returns once the exit is recorded."""
    if signal_container(c, signal.SIGTERM) and wait_exited(layout, c, grace):
        return
    signal_container(c, signal.SIGKILL)
    if not wait_exited(layout, c, 10.0):
        raise NetlabError(f"container {c.name} in sandbox {c.sandbox} did not exit after SIGKILL")


def remove(layout: Layout, c: Container, cgroups: CgroupTree) -> None:
    """Forget an exited container: its records and cgroups (its log is the caller's)."""
    if c.alive():
        raise NetlabError(f"container {c.name} in sandbox {c.sandbox} is still running")
    _forget(layout, c, cgroups)


def exec_argv(c: Container, command: list[str]) -> list[str]:
    """nsenter arguments running `command` inside the running container, in its working dir."""
    if not c.alive() or c.pid is None:
        raise NotFound(f"container {c.name} is not running")
    return [
        "nsenter", f"--target={c.pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--wd",
        "--", *command,
    ]  # fmt: skip


def exec_env(c: Container) -> dict[str, str]:
    env = dict(c.env)
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def pidfd(c: Container) -> int | None:
    """A pidfd that becomes readable when the container's shim exits (None: gone already)."""
    if c.shim_pid is None:
        return None
    try:
        fd = os.pidfd_open(c.shim_pid)
    except OSError:
        return None
    if not c.shim_alive():  # the pid was reused: not our shim
        os.close(fd)
        return None
    return fd
