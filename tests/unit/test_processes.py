"""Supervising lab components: start, find, stop, and never signal a stranger."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from netlab.errors import AlreadyExists
from netlab.lab import processes


def test_start_find_stop(layout):
    code = "import time; print('hi', flush=True); time.sleep(60)"
    r = processes.start(layout, "sleeper", [sys.executable, "-c", code])
    assert processes.running(layout, "sleeper").pid == r.pid
    assert [x.name for x in processes.list_running(layout)] == ["sleeper"]
    with pytest.raises(AlreadyExists):
        processes.start(layout, "sleeper", ["sleep", "1"])
    for _ in range(500):  # the log is the component's stdout
        if "hi" in r.log.read_text():
            break
        time.sleep(0.01)
    assert "hi" in r.log.read_text()
    assert processes.stop(layout, "sleeper") is True
    assert processes.running(layout, "sleeper") is None
    assert processes.stop(layout, "sleeper") is False


def test_stale_pidfile_never_signals_another_process(layout):
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        pids = layout.run_dir / "pids"
        pids.mkdir(parents=True)
        # same pid, different start time: a reused pid must not be treated as ours
        (pids / "ghost.pid").write_text(f"{stranger.pid} 1\n")
        assert processes.running(layout, "ghost") is None
        assert processes.stop(layout, "ghost") is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_component_that_ignores_sigterm_is_killed(layout):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    processes.start(layout, "stubborn", [sys.executable, "-c", code])
    assert processes.stop(layout, "stubborn", timeout=0.3) is True
    assert processes.running(layout, "stubborn") is None
