"""The node agent's supervision: order, restarts with back-off, stopping in order, dying together.

The supervisor runs in a process of its own (as `netlab agent` does) over three small Python
children, so the tests can kill a child, SIGTERM the supervisor or SIGKILL it, and look at what
is left through /proc and the status file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netlab.lab import processes
from netlab.lab.supervisor import Backoff, ChildStatus, SupervisorStatus, read_status
from tests import polling

CHILD = """
import os, signal, sys, time
from pathlib import Path
d, name = Path(sys.argv[1]), sys.argv[2]
def on_term(signum, frame):
    with open(d / "stopped", "a") as f:
        f.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print(f"{name} running as {os.getpid()}", flush=True)
while True:
    time.sleep(1)
"""

RUNNER = """
import signal, sys
from pathlib import Path
from netlab.lab.supervisor import Backoff, ChildSpec, Supervisor
d = Path(sys.argv[1])
def child(name, ready=None):
    argv = [sys.executable, "-c", sys.argv[2], str(d), name]
    return ChildSpec(name, lambda: argv, d / f"{name}.log", ready)
sup = Supervisor(
    [child("a", lambda: (d / "a.ready").exists()), child("b"), child("c")],
    d / "status.json",
    Backoff(initial=0.2, cap=1.0),
)
signal.signal(signal.SIGTERM, lambda signum, frame: sup.stop())
sup.run()
"""


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Restarts and stops are timed in tenths of a second here: poll often."""
    return polling.wait_for(check, what, timeout, interval=0.02)


class Running:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(d), CHILD])

    def status(self) -> SupervisorStatus | None:
        return read_status(self.dir / "status.json")

    def started(self, *names: str) -> SupervisorStatus:
        """Once each named child runs and has said so (its SIGTERM handler is in place)."""

        def check() -> SupervisorStatus | None:
            st = self.status()
            if not st or not all(st.child(n).pid for n in names):
                return None
            said = all(
                f"{n} running as {st.child(n).pid}" in (self.dir / f"{n}.log").read_text() for n in names
            )
            return st if said else None

        return wait_for(check, f"{names} to run")


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    try:
        yield r
    finally:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def alive(st: SupervisorStatus) -> list[int]:
    return [c.pid for c in st.children if c.pid and c.start and processes.is_alive(c.pid, c.start)]


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_long_run() -> None:
    b = Backoff(initial=0.5, factor=2.0, cap=4.0, reset_after=60.0)
    delays = [b.next_delay(None, 0.1)]
    for _ in range(5):
        delays.append(b.next_delay(delays[-1], 0.1))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.next_delay(4.0, 60.0) == 0.5


def test_an_exit_is_described_with_the_childs_last_line() -> None:
    assert ChildStatus("x", last_status=3, last_line="error: boom").describe_exit() == (
        "exited with status 3: error: boom"
    )
    assert ChildStatus("x", last_status=-signal.SIGTERM).describe_exit() == "was killed by SIGTERM"


def test_children_start_in_order_and_a_killed_one_is_started_again(sup: Running) -> None:
    st = sup.started("a")
    # b and c wait until a is ready
    time.sleep(0.3)
    st = sup.status()
    assert st is not None and st.child("b").starts == st.child("c").starts == 0
    assert st.pid == sup.proc.pid and not st.child("a").ready
    (sup.dir / "a.ready").touch()
    st = sup.started("a", "b", "c")
    assert st.child("a").ready and [c.starts for c in st.children] == [1, 1, 1]
    for c in st.children:
        with open(f"/proc/{c.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[1]) == sup.proc.pid  # a child of the supervisor
        assert int(fields[2]) == c.pid  # in a process group of its own

    killed = st.child("b")
    os.kill(killed.pid, signal.SIGKILL)  # type: ignore[arg-type]
    again = wait_for(
        lambda: (s := sup.status()) and s.child("b").pid not in (None, killed.pid) and s,
        "b to be started again",
    )
    b = again.child("b")
    assert (b.starts, b.exits, b.last_status) == (2, 1, -signal.SIGKILL)
    assert b.last_line == f"b running as {killed.pid}"
    assert b.describe_exit() == "was killed by SIGKILL"
    # the others were left alone
    assert [again.child(n).pid for n in ("a", "c")] == [st.child(n).pid for n in ("a", "c")]


def test_sigterm_stops_the_children_in_reverse_order_and_leaves_nothing(sup: Running) -> None:
    (sup.dir / "a.ready").touch()
    st = sup.started("a", "b", "c")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) == 0
    assert (sup.dir / "stopped").read_text().split() == ["c", "b", "a"]
    assert alive(st) == []
    assert not (sup.dir / "status.json").exists()


def test_children_die_with_a_killed_supervisor(sup: Running) -> None:
    (sup.dir / "a.ready").touch()
    st = sup.started("a", "b", "c")
    sup.proc.kill()
    sup.proc.wait()
    wait_for(lambda: alive(st) == [], "the children to go")
    assert sorted((sup.dir / "stopped").read_text().split()) == ["a", "b", "c"]
