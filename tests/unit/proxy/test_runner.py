from __future__ import annotations

from proxy.runner import SyncRunner


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(fail: list[bool] | None = None):
    clock = Clock()
    calls: list[tuple[float, bool]] = []

    def sync(full: bool) -> None:
        calls.append((clock.now, full))
        if fail and fail.pop(0):
            raise RuntimeError("boom")

    return SyncRunner(sync, min_interval=1, max_interval=30, retry_interval=2, clock=clock), clock, calls


def test_first_sync_is_full_then_partial_and_rate_limited():
    r, clock, calls = make()
    assert r.run_once() == 0 and calls == [(100.0, True)]
    assert r.run_once() > 0  # nothing requested
    r.request()
    assert r.run_once() == 0  # the bucket's second token: at once
    assert calls[-1] == (100.0, False)
    r.request()
    assert r.run_once() == 1.0  # the bucket is empty: one token per min_interval
    clock.now += 0.5
    assert r.run_once() == 0.5
    clock.now += 0.5
    r.run_once()
    assert calls[-1] == (101.0, False)
    # many requests while waiting become one sync
    r.request()
    r.request()
    clock.now += 1
    r.run_once()
    r.run_once()
    assert len(calls) == 4


def test_a_quiet_spell_refills_the_burst_and_no_more():
    r, clock, calls = make()
    r.run_once()
    clock.now += 60  # far more than two intervals: still only two syncs at once
    for _ in range(3):
        r.request()
        r.run_once()
    assert [t for t, _ in calls] == [100.0, 160.0, 160.0]
    assert r.run_once() == 1.0


def test_periodic_full_resync():
    r, clock, calls = make()
    r.run_once()
    assert r.run_once() == 30.0
    clock.now += 30
    r.run_once()
    assert calls[-1] == (130.0, True)


def test_failure_retries_with_a_full_sync():
    r, clock, calls = make(fail=[False, True, False])
    r.run_once()
    clock.now += 5
    r.request()
    r.run_once()  # partial, fails
    assert calls[-1] == (105.0, False) and r.errors == 1
    assert r.run_once() == 2.0  # retry due after retry_interval
    clock.now += 2
    r.run_once()
    assert calls[-1] == (107.0, True)
