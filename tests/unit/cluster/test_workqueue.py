"""The controllers' work queue: coalescing, the processing guard, delays and back-off."""

from __future__ import annotations

import threading
import time

from netlab.cluster.workqueue import WorkQueue


def test_a_key_waits_once_however_often_it_is_added() -> None:
    q = WorkQueue()
    for k in ("a", "b", "a", "a", "c", "b"):
        q.add(k)
    assert len(q) == 3
    assert [q.get(0), q.get(0), q.get(0)] == ["a", "b", "c"]
    assert q.get(0) is None


def test_a_key_in_progress_is_not_handed_out_again_but_requeued_on_done() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")  # changed while being processed
    assert q.get(0) is None  # not to a second worker
    q.done("a")
    assert q.get(0) == "a"
    q.done("a")
    assert q.get(0) is None


def test_add_after_delays_a_key() -> None:
    q = WorkQueue()
    t0 = time.monotonic()
    q.add_after("late", 0.1)
    q.add("now")
    assert q.get(1) == "now"
    assert q.get(1) == "late"
    assert time.monotonic() - t0 >= 0.1


def test_rate_limited_retries_back_off_exponentially_until_forgotten() -> None:
    q = WorkQueue(base_delay=0.01, max_delay=0.04)
    delays = []
    for _ in range(4):
        t0 = time.monotonic()
        q.add_rate_limited("k")
        assert q.get(1) == "k"
        q.done("k")
        delays.append(time.monotonic() - t0)
    assert q.failures("k") == 4
    assert delays[0] >= 0.01 and delays[1] >= 0.02 and delays[2] >= 0.04 and delays[3] >= 0.04
    q.forget("k")
    assert q.failures("k") == 0


def test_shutdown_wakes_waiting_workers() -> None:
    q = WorkQueue()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(2)
    assert got == [None]
    q.add("x")
    assert q.get(0) is None


def test_get_times_out() -> None:
    q = WorkQueue()
    t0 = time.monotonic()
    assert q.get(0.05) is None
    assert time.monotonic() - t0 >= 0.05
