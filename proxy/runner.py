"""The sync runner: when to sync, and whether the sync must be full.

kube-proxy's bounded-frequency runner, reduced to what the lab needs:
- a change asks for a sync (`request`); syncs are rate-limited by a token bucket that refills
  one token per `min_interval` and holds `burst` (2, as kube-proxy's runner): after a quiet
  spell two syncs may run back to back, so the change that follows right after another is
  not held back for a whole `min_interval`, while a steady stream of changes still syncs at
  most once per `min_interval`, each sync taking every change that arrived meanwhile;
- every `max_interval` a full sync runs even without changes, repairing anything that changed
  the kernel behind the proxy's back;
- a sync that raises is retried after `retry_interval`, and the retry is full, because a failed
  apply leaves the kernel in an unknown state.

The decision is the pure `Schedule.next` (a clock value in, an action out), so tests drive it
with a fake clock; `SyncRunner.run` is the thin loop around it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


BURST = 2  # kube-proxy's burstSyncs


@dataclass
class Schedule:
    min_interval: float = 1.0
    max_interval: float = 30.0
    retry_interval: float = 1.0
    burst: int = BURST
    last_run: float | None = None
    last_full: float | None = None
    requested: bool = True  # the first sync runs as soon as allowed
    retry_at: float | None = None
    need_full: bool = True
    tokens: float = BURST
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def request(self) -> None:
        with self._lock:
            self.requested = True

    def _tokens(self, now: float) -> float:
        """The bucket's level at `now`: what it held at the last run plus the refill since."""
        if self.last_run is None or self.min_interval <= 0:
            return float(self.burst)
        return min(float(self.burst), self.tokens + (now - self.last_run) / self.min_interval)

    def next(self, now: float) -> tuple[str, float]:
        """("full"|"partial", 0) to sync now, or ("wait", seconds) until something is due."""
        with self._lock:
            periodic = self.last_full is not None and now - self.last_full >= self.max_interval
            if periodic:
                self.need_full = True
            retry_due = self.retry_at is not None and now >= self.retry_at
            if periodic or self.requested or retry_due:
                tokens = self._tokens(now)
                if tokens >= 1:
                    return ("full" if self.need_full else "partial", 0.0)
                return ("wait", (1 - tokens) * self.min_interval)
            deadlines = [t for t in (self.retry_at,) if t is not None]
            if self.last_full is not None:
                deadlines.append(self.last_full + self.max_interval)
            return ("wait", max(0.0, min(deadlines) - now) if deadlines else self.max_interval)

    def started(self, now: float, full: bool) -> None:
        with self._lock:
            self.tokens = max(0.0, self._tokens(now) - 1)
            self.last_run = now
            self.requested = False
            self.retry_at = None
            if full:
                self.need_full = False

    def finished(self, now: float, full: bool, ok: bool) -> None:
        with self._lock:
            if ok:
                if full:
                    self.last_full = now
            else:
                self.need_full = True
                self.retry_at = now + self.retry_interval


class SyncRunner:
    """Calls `sync(full)` on its own thread as the schedule says; `request()` from anywhere."""

    def __init__(
        self,
        sync: Callable[[bool], None],
        min_interval: float = 1.0,
        max_interval: float = 30.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sync = sync
        self.schedule = Schedule(min_interval, max_interval, retry_interval)
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.errors = 0

    def request(self) -> None:
        self.schedule.request()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_once(self) -> float:
        """Run one sync if one is due; return how long to wait before asking again."""
        action, wait = self.schedule.next(self._clock())
        if action == "wait":
            return wait
        full = action == "full"
        self.schedule.started(self._clock(), full)
        ok = False
        try:
            self._sync(full)
            ok = True
        except Exception as e:  # a failed sync is retried, never fatal
            self.errors += 1
            log.error("sync failed (will retry with a full sync): %s", e)
        finally:
            self.schedule.finished(self._clock(), full, ok)
        return 0.0

    def run(self) -> None:
        """Loop until `stop()`."""
        while not self._stop.is_set():
            wait = self.run_once()
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
