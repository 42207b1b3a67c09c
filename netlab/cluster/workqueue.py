"""A work queue of object keys for controllers, with client-go's guarantees.

- A key waiting in the queue is there once, however often it is added (events coalesce).
- A key being processed is never handed to a second worker; if it is added meanwhile it is
  queued again when the first worker calls `done`, so no change is lost.
- `add_after` delays a key (a pod becoming available after `minReadySeconds`, a node's
  heartbeat deadline); `add_rate_limited` retries a failed key with per-key exponential
  back-off (5 ms doubling up to `max_delay`), and `forget` resets it after a success.

Delayed keys live in a heap that `get` drains when they are due, so the queue needs no thread
of its own. Written here because client-go has no Python counterpart and `queue.Queue` offers
neither de-duplication nor the processing guard.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque


class WorkQueue:
    def __init__(self, name: str = "", base_delay: float = 0.005, max_delay: float = 30.0) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._failures: dict[str, int] = {}
        self._cond = threading.Condition()
        self._shutting_down = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def add(self, key: str) -> None:
        with self._cond:
            self._add(key)

    def _add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: str) -> None:
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2**n), self.max_delay))

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> str | None:
        """The next key (mark it `done` when finished); None after shutdown or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._add(heapq.heappop(self._delayed)[2])
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                if self._shutting_down:
                    return None
                waits = [
                    w
                    for w in (
                        self._delayed[0][0] - now if self._delayed else None,
                        deadline - now if deadline is not None else None,
                    )
                    if w is not None
                ]
                if deadline is not None and deadline <= now:
                    return None
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down
