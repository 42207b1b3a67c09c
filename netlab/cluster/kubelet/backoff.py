"""Restart back-off for crashing containers: 10 s, doubling, at most 5 minutes.

The same bookkeeping as client-go's `flowcontrol.Backoff` as the kubelet uses it: one entry per
container (pod uid + container name). A container that exits is restarted at once the first
time; the restart records a delay of 10 s, and each further exit within the delay of the
previous one waits out the delay, which then doubles up to the cap. An entry not touched for
twice the cap (the container ran for 10 minutes) starts over at 10 s. Times are seconds on any
clock that the caller uses consistently (the container's exit time and "now").
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL = 10.0
CAP = 300.0


@dataclass
class _Entry:
    delay: float
    last: float  # the event time of the restart that set `delay`


class BackOff:
    def __init__(self, initial: float = INITIAL, cap: float = CAP) -> None:
        self.initial = initial
        self.cap = cap
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, event_time: float) -> bool:
        return event_time - entry.last > 2 * self.cap

    def remaining(self, key: str, event_time: float, now: float) -> float:
        """Seconds still to wait before restarting after an exit at `event_time` (0: go)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return 0.0
        return max(0.0, event_time + entry.delay - now)

    def next(self, key: str, event_time: float) -> float:
        """Record a restart for the exit at `event_time`; returns the delay now in force."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            entry = _Entry(self.initial, event_time)
        else:
            entry = _Entry(min(entry.delay * 2, self.cap), event_time)
        self._entries[key] = entry
        return entry.delay

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def forget(self, prefix: str) -> None:
        """Drop the entries of a pod (keys starting with `prefix`)."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
