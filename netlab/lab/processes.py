"""Long-running lab components as supervised host processes (etcd, apiserver, node agents).

`netlab up` starts each component as a detached child in its own session, with its output in a
log file and its pid in a pid file under the lab's run directory. The pid file also records the
process's start time (from /proc/<pid>/stat), so a later `stop` never signals an unrelated
process that happens to reuse the pid: cleanup acts on what netlab started and nothing else,
never on a process name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from netlab import kernel
from netlab.errors import AlreadyExists, NetlabError
from netlab.layout import Layout


@dataclass(frozen=True)
class Running:
    name: str
    pid: int
    log: Path


def _pid_dir(layout: Layout) -> Path:
    return layout.run_dir / "pids"


def log_path(layout: Layout, name: str) -> Path:
    return layout.run_dir / "logs" / f"{name}.log"


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot (None: no such pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; fields after it are plain
    return stat.rsplit(")", 1)[1].split()[19]


def is_alive(pid: int, start: str) -> bool:
    """True while the process recorded as (`pid`, `start`) runs; a zombie counts as gone.

    Together with the pid, the start time identifies one process for its whole life, so a
    later process that reuses the pid is never mistaken for it.
    """
    st = start_time(pid)
    if st is None or st != start:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _read_pidfile(path: Path) -> tuple[int, str] | None:
    try:
        pid_s, start = path.read_text().split()
        return int(pid_s), start
    except (OSError, ValueError):
        return None


def running(layout: Layout, name: str) -> Running | None:
    entry = _read_pidfile(_pid_dir(layout) / f"{name}.pid")
    if entry and is_alive(*entry):
        return Running(name, entry[0], log_path(layout, name))
    return None


def list_running(layout: Layout) -> list[Running]:
    try:
        names = sorted(p.stem for p in _pid_dir(layout).glob("*.pid"))
    except FileNotFoundError:
        return []
    return [r for n in names if (r := running(layout, n))]


def start(
    layout: Layout,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Running:
    """Start `argv` detached, logging to the component's log file. Fails if already running."""
    if running(layout, name):
        raise AlreadyExists(f"component {name} is already running")
    _pid_dir(layout).mkdir(parents=True, exist_ok=True)
    log = log_path(layout, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **layout.env(), **(env or {})}
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise NetlabError(f"cannot start {name}: {argv[0]} not found") from None
    started = None
    for _ in range(100):
        started = start_time(proc.pid)
        if started:
            break
        time.sleep(0.001)
    (_pid_dir(layout) / f"{name}.pid").write_text(f"{proc.pid} {started}\n")
    return Running(name, proc.pid, log)


def stop(layout: Layout, name: str, timeout: float = 10.0) -> bool:
    """SIGTERM the component, SIGKILL after `timeout`. Returns False if it was not running."""
    pidfile = _pid_dir(layout) / f"{name}.pid"
    entry = _read_pidfile(pidfile)
    stopped = False
    if entry and is_alive(*entry):
        pid, started = entry
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(pid, started) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        if is_alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while is_alive(pid, started):
                _reap(pid)
                time.sleep(0.01)
        _reap(pid)
        stopped = True
    pidfile.unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    """Collect the exit status when the component is our own child (started by this process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_exit(layout: Layout, name: str, timeout: float) -> bool:
    """Wait until the component is gone; True when it exited within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = running(layout, name)
        if r is None:
            return True
        _reap(r.pid)
        time.sleep(0.02)
    return running(layout, name) is None


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a child, before exec: receive SIGTERM when the parent dies, however it dies.

    For a supervisor's children (`netlab agent`'s flanneld, kubelet and kube-proxy): a killed
    supervisor must not leave its children running where nothing tracks them. `parent` is the
    supervisor's pid, read before the fork: if it died before the signal was armed, the child
    has already been handed to another parent and ends itself. Runs between fork and exec, so
    it only calls prctl(2), getppid(2) and kill(2).
    """
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def last_line(path: Path, limit: int = 4096) -> str:
    """The last non-empty line of a log file ("no output" for none), read from its tail only."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def last_log_line(layout: Layout, name: str) -> str:
    """The last line a component logged: what a failing component's error shows."""
    return last_line(log_path(layout, name))


def kill_netns_processes(netns: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process whose network namespace is `netns`; wait until none is left.

    Processes are found through their namespace (/proc/<pid>/ns/net), never by name, so only
    what runs inside the lab's own namespace is touched. This process is never a target.
    Returns the pids that were signalled.
    """
    me = os.getpid()
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in kernel.netns_pids(netns) if p != me]
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise NetlabError(f"processes {pids} in {netns} did not exit after SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
            _reap(pid)
        time.sleep(0.01)
