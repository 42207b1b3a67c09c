"""One node's proxy: a change tracker feeding one mode through the sync runner.

Frontends write Service and EndpointSlice updates into the tracker and call `request_sync`;
the runner calls `sync`, which folds pending changes into a new snapshot and hands it to the
mode, fully or only for the changed service ports. A failed sync leaves the changed set with
the proxier, so the retry (always full) cannot lose it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.mode import Mode
from proxy.model import Snapshot
from proxy.runner import SyncRunner
from proxy.tracker import ChangeTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncStats:
    full: bool
    changed: int
    seconds: float


class Proxier:
    def __init__(
        self,
        mode: Mode,
        min_sync_period: float = 1.0,
        sync_period: float = 30.0,
        retry_period: float = 1.0,
    ) -> None:
        self.mode = mode
        self.tracker = ChangeTracker()
        self.snapshot = Snapshot()
        self.last: SyncStats | None = None
        self._lock = threading.Lock()  # frontends update the tracker from other threads
        self._sync_lock = threading.RLock()  # one sync (or mode switch) at a time
        self.runner = SyncRunner(self.sync, min_sync_period, sync_period, retry_period)

    def request_sync(self) -> None:
        self.runner.request()

    def update_service(self, key: str, obj: Mapping[str, Any] | None) -> None:
        with self._lock:
            changed = self.tracker.update_service(key, obj)
        if changed:
            self.request_sync()

    def update_slice(self, key: str, obj: Mapping[str, Any] | None) -> None:
        with self._lock:
            changed = self.tracker.update_slice(key, obj)
        if changed:
            self.request_sync()

    def set_synced(self, services: bool = False, slices: bool = False) -> None:
        """A frontend finished its first list of that kind."""
        with self._lock:
            self.tracker.services_synced |= services
            self.tracker.slices_synced |= slices
        self.request_sync()

    def replace_services(self, services: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.tracker.replace_services(services)
        self.request_sync()

    def replace_slices(self, slices: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.tracker.replace_slices(slices)
        self.request_sync()

    def replace_all(self, services: Sequence[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.tracker.replace_all(services, slices)
        self.request_sync()

    def switch_mode(self, mode: Mode) -> None:
        """Remove everything the current mode made, then sync the new one from scratch."""
        with self._sync_lock:
            old, self.mode = self.mode, mode
            old.cleanup()
            self.snapshot = Snapshot()
            self.sync(True)

    def show(self) -> str:
        """The mode's view, never taken in the middle of a sync."""
        with self._sync_lock:
            return self.mode.show()

    def sync(self, full: bool) -> None:
        with self._sync_lock:
            self._sync(full)

    def _sync(self, full: bool) -> None:
        with self._lock:
            if not self.tracker.initialized:
                log.info("waiting for the first list of services and endpoints")
                return
            snapshot, changed = self.tracker.apply()
        if not full and not changed and snapshot == self.snapshot:
            return
        start = time.perf_counter()
        self.snapshot = snapshot
        self.mode.sync(snapshot, None if full else changed)
        self.last = SyncStats(full, len(changed), time.perf_counter() - start)
        log.info(
            "%s sync of %d service ports (%d changed) took %.3f s",
            "full" if full else "partial",
            len(snapshot.services),
            len(changed),
            self.last.seconds,
        )
