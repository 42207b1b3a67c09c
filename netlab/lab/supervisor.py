"""Supervising a few child processes: start them in order, restart them, stop them in reverse.

This is what a node's agent (`netlab agent`, see `netlab.lab.agent`) does for flanneld, the
kubelet and kube-proxy, and what systemd does for a node's units:

- children start in order, each one once the one before it is ready (a readiness check per
  child; flanneld is ready when it has leased the node's subnet);
- a child that exits, for whatever reason, is started again after a back-off (systemd's
  `Restart=always` with a growing `RestartSec`): `Backoff.next_delay` doubles the delay from
  `initial` to `cap` while the child keeps failing soon after it started, and starts over once
  a run lasted `reset_after`;
- `stop()` (the agent's SIGTERM or SIGINT) stops the children in reverse order, each with
  SIGTERM and, after `stop_timeout`, SIGKILL, so nothing outlives the supervisor's `run`;
- each child gets `PR_SET_PDEATHSIG`, so it also goes when the supervisor is killed outright.
  The kernel sends that signal when the *thread* that forked the child exits, so children are
  only ever started from the thread that runs `run`; each child has its own process group, so
  a Ctrl-C in a terminal reaches the supervisor alone, which then stops the children in order.

Each child's output goes to its own log file; its last line is kept with its exit status. A
status file (JSON, replaced atomically on every change) says what runs: each child's pid and
start time, how often it started and exited, its last exit status and log line, and when it
is due to start again. `read_status` reads it back for `netlab up` (which fails at once,
with the child's last line, when a child exits while the lab comes up) and `netlab status`.

The loop sleeps in one `select` on the children's pidfds and a wake-up pipe, so a child's exit
or a stop request is handled at once without polling. supervisord and circus would do the
restarting, but they are daemons driven by configuration files and control sockets; a node
agent needs readiness ordering, the death signal and a status file, which take less code
than adapting either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from netlab.errors import NetlabError
from netlab.lab import processes

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
IDLE_WAKEUP = 5.0
READY_POLL = 0.05


@dataclass(frozen=True)
class Backoff:
    """Delays before a child that exited starts again (seconds)."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 60.0  # a run this long counts as healthy: the next delay starts over

    def next_delay(self, previous: float | None, ran_for: float) -> float:
        if previous is None or ran_for >= self.reset_after:
            return self.initial
        return min(previous * self.factor, self.cap)


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Callable[[], list[str]]  # asked at every start: a restart may take other arguments
    log: Path
    ready: Callable[[], bool] | None = None  # the next child starts once this is True (asked until it is)


@dataclass
class ChildStatus:
    """One child as the status file records it."""

    name: str
    pid: int | None = None  # None: not running
    start: str | None = None  # its start time (see processes.start_time), with pid its identity
    ready: bool = False  # its readiness check passed (once is enough: a restart does not undo it)
    starts: int = 0
    exits: int = 0
    last_status: int | None = None  # Popen's returncode: negative for a signal
    last_line: str | None = None  # the last line it logged before that exit
    restart_at: float | None = None  # wall-clock time of the next start, while backing off

    def describe_exit(self) -> str:
        """ "exited with status 1: <its last line>", or "was killed by SIGKILL"."""
        code = self.last_status
        if code is None:
            return "has not exited"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}: {self.last_line or 'no output'}"


@dataclass
class SupervisorStatus:
    pid: int
    start: str
    children: list[ChildStatus] = field(default_factory=list)

    def child(self, name: str) -> ChildStatus:
        return next(c for c in self.children if c.name == name)


def read_status(path: Path) -> SupervisorStatus | None:
    """The status a running supervisor wrote; None when there is none or it no longer runs."""
    try:
        data = json.loads(path.read_text())
        status = SupervisorStatus(
            pid=int(data["pid"]),
            start=str(data["start"]),
            children=[ChildStatus(**c) for c in data["children"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status if processes.is_alive(status.pid, status.start) else None


@dataclass
class _Child:
    spec: ChildSpec
    status: ChildStatus
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    started: float = 0.0  # monotonic
    delay: float | None = None
    due: float = 0.0  # monotonic time it may start (again)


class Supervisor:
    def __init__(
        self,
        children: list[ChildSpec],
        status_file: Path | None = None,
        backoff: Backoff = Backoff(),
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.children = [_Child(spec, ChildStatus(spec.name)) for spec in children]
        self.status_file = status_file
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self._stopping = False
        self._written = ""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)

    def stop(self) -> None:
        """Ask `run` to stop the children and return; safe in a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):  # a full pipe is already a wake-up
            os.write(self._wake_w, b"x")

    def run(self) -> None:
        """Supervise until `stop()`; the children are stopped before this returns."""
        try:
            while not self._stopping:
                self._start_due()
                self._write_status()
                for key, _ in self._selector.select(self._timeout()):
                    if key.fileobj == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 512)
                    else:
                        self._reap(key.data)
        finally:
            self._stop_children()
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self.status_file is not None:
                self.status_file.unlink(missing_ok=True)

    # the loop's steps -----------------------------------------------------------------------

    def _start_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None and now >= child.due:
                self._start(child)
            st = child.status
            if not st.ready:
                check = child.spec.ready
                st.ready = child.proc is not None and (check is None or check())
                if not st.ready:
                    return  # the children after it wait

    def _timeout(self) -> float:
        if any(c.proc is not None and not c.status.ready for c in self.children):
            return READY_POLL
        now = time.monotonic()
        dues = [c.due - now for c in self.children if c.proc is None]
        return max(0.0, min([IDLE_WAKEUP, *dues]))

    def _start(self, child: _Child) -> None:
        spec = child.spec
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        argv = spec.argv()
        with open(spec.log, "ab") as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    process_group=0,
                    preexec_fn=partial(processes.die_with_parent, os.getpid()),
                )
            except OSError as e:
                raise NetlabError(f"cannot start {spec.name}: {argv[0]}: {e.strerror}") from None
        child.proc = proc
        child.started = time.monotonic()
        child.pidfd = os.pidfd_open(proc.pid)
        self._selector.register(child.pidfd, selectors.EVENT_READ, child)
        st = child.status
        st.pid, st.start = proc.pid, processes.start_time(proc.pid)
        st.starts += 1
        st.restart_at = None
        if st.starts == 1:
            log.info("started %s (pid %d)", spec.name, proc.pid)
        else:
            log.info("started %s again (pid %d, restart %d)", spec.name, proc.pid, st.starts - 1)

    def _reap(self, child: _Child) -> None:
        assert child.proc is not None and child.pidfd is not None
        code = child.proc.wait()
        self._selector.unregister(child.pidfd)
        os.close(child.pidfd)
        child.proc, child.pidfd = None, None
        now = time.monotonic()
        st = child.status
        st.pid = st.start = None
        st.exits += 1
        st.last_status = code
        st.last_line = processes.last_line(child.spec.log)
        if self._stopping:
            return
        child.delay = self.backoff.next_delay(child.delay, now - child.started)
        child.due = now + child.delay
        st.restart_at = time.time() + child.delay
        log.warning("%s %s; starting it again in %g s", child.spec.name, st.describe_exit(), child.delay)

    def _stop_children(self) -> None:
        for child in reversed(self.children):
            proc = child.proc
            if proc is None:
                continue
            log.info("stopping %s (pid %d)", child.spec.name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s: killing it", child.spec.name, self.stop_timeout)
                proc.kill()
            self._reap(child)

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        me = os.getpid()
        data: dict[str, Any] = {
            "pid": me,
            "start": processes.start_time(me),
            "children": [asdict(c.status) for c in self.children],
        }
        text = json.dumps(data, indent=1) + "\n"
        if text == self._written:
            return
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_name(f".{self.status_file.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.status_file)
        self._written = text
