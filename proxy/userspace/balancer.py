"""Round-robin over endpoints with ClientIP affinity: the userspace proxy's load balancer.

As kube-proxy's `roundrobin.go` did it: a service port's endpoints are shuffled whenever they
change (so that many proxies do not all start on the same backend), then taken in turn. With
ClientIP affinity a client keeps the endpoint it got while it returns within the timeout;
stale affinity entries are reaped on each sync. A failed dial drops the client's affinity so
the retry moves on.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netlab.errors import NotFound
from proxy.model import Endpoint, ServicePortName


@dataclass
class _State:
    endpoints: list[Endpoint]
    affinity_timeout: int | None
    index: int = 0
    affinity: dict[str, tuple[Endpoint, float]] = field(default_factory=dict)


class RoundRobin:
    def __init__(self, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._services: dict[ServicePortName, _State] = {}

    def update(
        self, spn: ServicePortName, endpoints: tuple[Endpoint, ...], affinity_timeout: int | None
    ) -> None:
        """New endpoints or affinity setting; unchanged input keeps the rotation and affinities."""
        with self._lock:
            st = self._services.get(spn)
            if st is not None and sorted(st.endpoints) == sorted(endpoints):
                if st.affinity_timeout != affinity_timeout:
                    st.affinity_timeout = affinity_timeout
                    st.affinity.clear()
                return
            shuffled = list(endpoints)
            self._rng.shuffle(shuffled)
            keep = set(endpoints)
            affinity = {c: v for c, v in st.affinity.items() if v[0] in keep} if st else {}
            self._services[spn] = _State(shuffled, affinity_timeout, 0, affinity)

    def remove(self, spn: ServicePortName) -> None:
        with self._lock:
            self._services.pop(spn, None)

    def endpoints(self, spn: ServicePortName) -> list[Endpoint]:
        with self._lock:
            st = self._services.get(spn)
            return list(st.endpoints) if st else []

    def next(self, spn: ServicePortName, client_ip: str | None, reset_affinity: bool = False) -> Endpoint:
        """The endpoint for a new connection (or UDP session) from `client_ip`."""
        with self._lock:
            st = self._services.get(spn)
            if st is None or not st.endpoints:
                raise NotFound(f"{spn} has no endpoints")
            now = self._clock()
            sticky = st.affinity_timeout is not None and client_ip is not None
            if sticky and not reset_affinity:
                assert client_ip is not None
                hit = st.affinity.get(client_ip)
                if hit and now - hit[1] < (st.affinity_timeout or 0) and hit[0] in st.endpoints:
                    st.affinity[client_ip] = (hit[0], now)
                    return hit[0]
            ep = st.endpoints[st.index % len(st.endpoints)]
            st.index = (st.index + 1) % len(st.endpoints)
            if sticky:
                assert client_ip is not None
                st.affinity[client_ip] = (ep, now)
            return ep

    def reap(self) -> None:
        """Forget affinities that timed out."""
        with self._lock:
            now = self._clock()
            for st in self._services.values():
                if st.affinity_timeout is None:
                    st.affinity.clear()
                    continue
                for client in [c for c, (_, t) in st.affinity.items() if now - t >= st.affinity_timeout]:
                    del st.affinity[client]
