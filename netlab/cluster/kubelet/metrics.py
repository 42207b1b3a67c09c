"""The kubelet's operation timings, served at `/metrics` in the Prometheus text format.

Only what the lab's benchmarks and a curious user need, named as upstream names them (sum
and count of a histogram are enough to get a mean or a share):

- `kubelet_network_plugin_operations_duration_seconds`, operation_type `set_up_pod` and
  `tear_down_pod`: CNI ADD and DEL (the loopback and the pod network, plugins executed);
- `kubelet_runtime_operations_duration_seconds`, operation_type `run_podsandbox`,
  `start_container` and `stop_podsandbox`: sandbox creation (namespace, pause process, CNI),
  container starts, sandbox removal;
- `kubelet_pod_start_duration_seconds`: from the kubelet first seeing a pod to the status
  write that reports all its containers running.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[tuple[str, str], tuple[float, int]] = {}

    def observe(self, name: str, seconds: float, operation: str = "") -> None:
        with self._lock:
            total, count = self._sums.get((name, operation), (0.0, 0))
            self._sums[(name, operation)] = (total + seconds, count + 1)

    @contextlib.contextmanager
    def timed(self, name: str, operation: str = "") -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.observe(name, time.monotonic() - start, operation)

    def get(self, name: str, operation: str = "") -> tuple[float, int]:
        with self._lock:
            return self._sums.get((name, operation), (0.0, 0))

    def render(self) -> str:
        with self._lock:
            items = sorted(self._sums.items())
        lines = []
        for name in sorted({n for (n, _), _ in items}):
            lines.append(f"# TYPE {name} histogram")
            for (n, op), (total, count) in items:
                if n != name:
                    continue
                labels = f'{{operation_type="{op}"}}' if op else ""
                lines.append(f"{name}_sum{labels} {total:.6f}")
                lines.append(f"{name}_count{labels} {count}")
        return "\n".join(lines) + "\n"


def parse(text: str) -> dict[tuple[str, str], float]:
    """`render`'s output back to {(series, operation): value} (for benchmarks and tests)."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        op = ""
        if "{" in series:
            series, _, rest = series.partition("{")
            op = rest.split('"')[1]
        out[(series, op)] = float(value)
    return out
