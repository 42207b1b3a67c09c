"""Pod sandboxes: a named network namespace held by a pause process, wired by CNI.

This is the part of a container runtime that networking needs, shaped like containerd's pod
sandboxes:

1. the pod's network namespace is created first and pinned under `/run/netns` as
   `<prefix>pod-<name>`, so it exists independently of any process and `ip netns` sees it;
2. the pause process (`netlab/runtime/pause.py`) is started inside it, in fresh IPC and UTS
   namespaces, with the sandbox name as hostname;
3. the pod network is attached (CNI ADD, run on the pod's node);
4. the sandbox is recorded under `layout.sandbox_dir`: node, namespace, pause pid and start
   time, the namespaces' identities, container id and IP.

A sandbox made for a pod carries the pod's identity as labels (a kubelet finds its pods'
sandboxes again by them, and passes them to CNI) and the pod's hostname. Only the name is
reserved under the lab's lock, so many sandboxes are created at once; the containers run in a
sandbox are `netlab.runtime.containers`' business, recorded next to the sandbox's record.

Any failure unwinds what was done (CNI DEL, stop the pause process, delete the namespace,
forget the record), so a failed `run` leaves nothing. Removing a sandbox kills every process
inside it, found through its namespaces (never by name), then runs CNI DEL and deletes the
namespace. Commands join a sandbox with nsenter: the network namespace by its pinned path,
IPC and UTS through the pause process, whose identity (pid and start time) is checked first.

The network is reached through the small `PodNetwork` interface, so the runtime itself knows
nothing about conflists or plugins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from netlab import kernel, names
from netlab.errors import AlreadyExists, NetlabError, NotFound
from netlab.lab import processes
from netlab.layout import Layout

PAUSE_SCRIPT = Path(__file__).with_name("pause.py")
POD_IFNAME = "eth0"
READY_TIMEOUT = 30.0


@dataclass
class Sandbox:
    name: str
    node: str
    netns: str
    container_id: str
    ifname: str = POD_IFNAME
    pause_pid: int | None = None
    pause_start: str | None = None
    ipc_ns: int | None = None  # inode of the pause process's IPC namespace
    uts_ns: int | None = None
    ip: str | None = None  # CIDR, e.g. 10.244.1.2/24
    status: str = "creating"  # creating | ready
    hostname: str | None = None  # the pod's hostname; the sandbox name when not given
    # who the sandbox is for, e.g. the pod's namespace, name and uid (a kubelet's labels)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None

    @property
    def netns_path(self) -> str:
        return kernel.netns_path(self.netns)

    def pause_alive(self) -> bool:
        if self.pause_pid is None or self.pause_start is None:
            return False
        return processes.is_alive(self.pause_pid, self.pause_start)


class PodNetwork(Protocol):
    """Attaches a sandbox to its node's pod network (CNI ADD/DEL for that node)."""

    def add(self, sandbox: Sandbox) -> str:
        """Attach; returns the pod's IP as a CIDR."""
        ...

    def delete(self, sandbox: Sandbox) -> None:
        """Detach; idempotent, works when the namespace is already gone."""
        ...


# Records ----------------------------------------------------------------------------------


def _record_path(layout: Layout, name: str) -> Path:
    return layout.sandbox_dir / f"{name}.json"


def containers_dir(layout: Layout, name: str) -> Path:
    """Where the container runtime keeps the records of the containers run in sandbox `name`."""
    return layout.sandbox_dir / f"{name}.d"


def _save(layout: Layout, sb: Sandbox) -> None:
    path = _record_path(layout, sb.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(sb), indent=2) + "\n")
    os.replace(tmp, path)


def get(layout: Layout, name: str) -> Sandbox:
    try:
        data = json.loads(_record_path(layout, name).read_text())
    except FileNotFoundError:
        raise NotFound(f"sandbox {name} does not exist") from None
    except (OSError, ValueError) as e:
        raise NetlabError(f"cannot read the record of sandbox {name}: {e}") from None
    return Sandbox(**data)


def list_sandboxes(layout: Layout) -> list[Sandbox]:
    try:
        paths = sorted(layout.sandbox_dir.glob("*.json"))
    except FileNotFoundError:
        return []
    out = []
    for p in paths:
        with contextlib.suppress(NotFound, NetlabError):
            out.append(get(layout, p.stem))
    return out


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One sandbox change at a time per lab (names and IPAM must not race)."""
    layout.sandbox_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.sandbox_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# Pause process ----------------------------------------------------------------------------


def _start_pause(sb: Sandbox, log: Path) -> None:
    # the pause program joins the pod's network namespace and unshares IPC and UTS itself
    argv = [sys.executable, "-I", "-S", str(PAUSE_SCRIPT), sb.hostname or sb.name, sb.netns_path]
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    assert proc.stdout is not None
    with proc.stdout:
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
    if line != b"ready\n":
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        problem = log.read_text().strip().splitlines() if log.exists() else []
        raise NetlabError(
            f"pause process of sandbox {sb.name} did not start: {problem[-1] if problem else 'no output'}"
        )
    # mark the Popen as done so it does not warn about a child we deliberately leave running;
    # the pause process outlives this command and is stopped by pid + start time
    proc.returncode = 0
    sb.pause_pid = proc.pid
    sb.pause_start = processes.start_time(proc.pid)
    sb.ipc_ns = os.stat(f"/proc/{proc.pid}/ns/ipc").st_ino
    sb.uts_ns = os.stat(f"/proc/{proc.pid}/ns/uts").st_ino
    if os.stat(f"/proc/{proc.pid}/ns/net").st_ino != kernel.netns_inode(sb.netns):
        raise NetlabError(f"pause process of sandbox {sb.name} is not in {sb.netns}")


def _pids_in_pod(sb: Sandbox) -> list[int]:
    """Processes in the sandbox: in its network namespace, or (while the pause process holds
    them, so the inode numbers cannot have been reused) in its IPC or UTS namespace."""
    pids = set(kernel.netns_pids(sb.netns))
    if sb.pause_alive() and sb.ipc_ns and sb.uts_ns:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ipc = os.stat(f"/proc/{entry}/ns/ipc").st_ino
                uts = os.stat(f"/proc/{entry}/ns/uts").st_ino
            except OSError:
                continue
            if ipc == sb.ipc_ns or uts == sb.uts_ns:
                pids.add(int(entry))
    pids.discard(os.getpid())
    return sorted(pids)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _kill_pod_processes(sb: Sandbox, timeout: float = 10.0) -> None:
    """SIGKILL what runs in the pod, then SIGTERM the pause process (it exits cleanly)."""
    deadline = time.monotonic() + timeout
    while True:
        others = [p for p in _pids_in_pod(sb) if p != sb.pause_pid]
        if not others:
            break
        if time.monotonic() > deadline:
            raise NetlabError(f"processes {others} in sandbox {sb.name} did not exit")
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        time.sleep(0.01)
    if sb.pause_pid and sb.pause_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(sb.pause_pid, signal.SIGTERM)
        while sb.pause_alive():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(sb.pause_pid, signal.SIGKILL)
            _reap(sb.pause_pid)
            time.sleep(0.005)
        _reap(sb.pause_pid)
    # anything that slipped in after the scan (the netns is still pinned)
    processes.kill_netns_processes(sb.netns)


# Life cycle -------------------------------------------------------------------------------


def run(
    layout: Layout,
    name: str,
    node: str,
    network: PodNetwork,
    taken: set[str] | None = None,
    *,
    hostname: str | None = None,
    labels: dict[str, str] | None = None,
) -> Sandbox:
    """Create sandbox `name` on `node` and attach it to `network`. `taken`: names not allowed.

    Only the name is reserved under the lab's lock (the record is written first, status
    `creating`); the namespace, the pause process and CNI ADD run outside it, so sandboxes
    (one kubelet's pods, or several kubelets') are created in parallel. IPAM plugins keep
    their own locks, and CNI operations on one attachment are serialised by the CNI runtime.
    """
    names.check_simple_name("sandbox", name)
    if hostname is not None:
        names.check_simple_name("hostname", hostname)
    with contextlib.ExitStack() as undo:
        with _locked(layout):
            if _record_path(layout, name).exists():
                raise AlreadyExists(f"sandbox {name} already exists")
            if taken and name in taken:
                raise AlreadyExists(f"{name} is the name of a lab node; choose another sandbox name")
            netns = layout.pod_netns(name)
            if kernel.netns_exists(netns):
                raise AlreadyExists(f"network namespace {netns} already exists (`netlab clean` removes it)")
            sb = Sandbox(
                name=name,
                node=node,
                netns=netns,
                container_id=secrets.token_hex(32),
                hostname=hostname,
                labels=dict(labels or {}),
                created_at=time.time(),
            )
            _save(layout, sb)
        log = layout.sandbox_dir / f"{name}.log"
        undo.callback(_record_path(layout, name).unlink, missing_ok=True)
        undo.callback(log.unlink, missing_ok=True)
        kernel.ensure_netns(netns)
        undo.callback(kernel.delete_netns, netns)
        undo.callback(_kill_pod_processes, sb)
        _start_pause(sb, log)
        _save(layout, sb)
        undo.callback(_detach_quietly, network, sb)
        sb.ip = network.add(sb)
        sb.status = "ready"
        _save(layout, sb)
        undo.pop_all()
    return sb


def _detach_quietly(network: PodNetwork, sb: Sandbox) -> None:
    """Undo of an attach: the error being unwound is the one to report, not this one."""
    with contextlib.suppress(NetlabError):
        network.delete(sb)


def remove(layout: Layout, name: str, network: PodNetwork | None) -> None:
    """Kill the sandbox's processes, detach it (CNI DEL), delete its namespace and record.

    `network` is None when the pod's node no longer exists; then there is nothing to detach
    from. When CNI DEL fails the record is kept (and the namespace removed), so running
    `remove` again retries the DEL, as the CNI spec asks of a runtime. Every step is
    idempotent, so no lock is held while they run.
    """
    sb = get(layout, name)
    _kill_pod_processes(sb)
    try:
        if network is not None:
            network.delete(sb)
    finally:
        kernel.delete_netns(sb.netns)
    shutil.rmtree(containers_dir(layout, name), ignore_errors=True)
    with _locked(layout):
        _record_path(layout, name).unlink(missing_ok=True)
        (layout.sandbox_dir / f"{name}.log").unlink(missing_ok=True)


def exec_argv(sb: Sandbox, command: list[str]) -> list[str]:
    """nsenter arguments that run `command` in the sandbox's network, IPC and UTS namespaces."""
    if not sb.pause_alive():
        raise NetlabError(f"sandbox {sb.name} has no pause process; remove it with `netlab sandbox rm`")
    return [
        "nsenter",
        f"--net={sb.netns_path}",
        f"--ipc=/proc/{sb.pause_pid}/ns/ipc",
        f"--uts=/proc/{sb.pause_pid}/ns/uts",
        "--",
        *command,
    ]
