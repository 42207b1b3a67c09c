"""Liveness, readiness and startup probes: their specs, results and the workers that run them.

As in the kubelet's prober (`pkg/kubelet/prober`), every probe of every container has a worker
of its own that runs the handler every `periodSeconds` (the first time after a random part of
the period when the kubelet has just started, so a restarted kubelet does not probe everything
at once), skipping runs until `initialDelaySeconds` after the container started, and turns
runs into a result with the thresholds: `failureThreshold` failures in a row flip it to
failure, `successThreshold` successes in a row back to success. Initial results: liveness
success, readiness failure, startup failure (not started). While a startup probe has not
succeeded, liveness and readiness wait; once it has, it stops. A new run of the container
(a new container id) starts the worker's result over; after a liveness failure the worker
holds until that new run.

Handlers: `httpGet` (status 200-399 is success) and `tcpSocket` connect from the node's
network namespace to the pod's IP, like the kubelet's own probes (a real data-path check);
`exec` runs the command inside the container; `grpc` is not supported here and fails with a
message saying so. `ProbeSpec`, `ProbeResult` and `parse_probe` are pure.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"
KINDS = (STARTUP, LIVENESS, READINESS)
MAX_BODY = 10 * 1024


@dataclass(frozen=True)
class ProbeSpec:
    kind: str
    handler: str  # exec | httpGet | tcpSocket | grpc
    command: tuple[str, ...] = ()
    host: str = ""
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: int | None = None  # probe-level terminationGracePeriodSeconds (liveness)

    @property
    def title(self) -> str:
        return self.kind.capitalize()


class ProbeError(ValueError):
    """A probe that cannot be run as written (an unknown named port, no handler)."""


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    for p in container.get("ports") or []:
        if p.get("name") == value and isinstance(p.get("containerPort"), int):
            return int(p["containerPort"])
    raise ProbeError(f"port {value!r} is not a number nor a named port of container {container.get('name')}")


def parse_probe(kind: str, probe: Obj, container: Obj) -> ProbeSpec:
    common: dict[str, Any] = {
        "initial_delay": float(probe.get("initialDelaySeconds") or 0),
        "period": float(probe.get("periodSeconds") or 10),
        "timeout": float(probe.get("timeoutSeconds") or 1),
        "success_threshold": int(probe.get("successThreshold") or 1) if kind == READINESS else 1,
        "failure_threshold": int(probe.get("failureThreshold") or 3),
        "termination_grace": probe.get("terminationGracePeriodSeconds"),
    }
    if probe.get("exec"):
        cmd = tuple(str(a) for a in (probe["exec"] or {}).get("command") or [])
        if not cmd:
            raise ProbeError(f"{kind} probe of container {container.get('name')}: exec without a command")
        return ProbeSpec(kind, "exec", command=cmd, **common)
    if probe.get("httpGet"):
        h = probe["httpGet"] or {}
        headers = tuple((str(x.get("name")), str(x.get("value"))) for x in h.get("httpHeaders") or [])
        return ProbeSpec(
            kind,
            "httpGet",
            host=str(h.get("host") or ""),
            port=_port(h.get("port"), container),
            path=str(h.get("path") or "/"),
            scheme=str(h.get("scheme") or "HTTP").upper(),
            headers=headers,
            **common,
        )
    if probe.get("tcpSocket"):
        t = probe["tcpSocket"] or {}
        return ProbeSpec(
            kind, "tcpSocket", host=str(t.get("host") or ""), port=_port(t.get("port"), container), **common
        )
    if probe.get("grpc"):
        return ProbeSpec(kind, "grpc", port=int((probe["grpc"] or {}).get("port") or 0), **common)
    raise ProbeError(f"{kind} probe of container {container.get('name')} has no handler")


def container_probes(container: Obj) -> list[ProbeSpec]:
    out = []
    for kind in KINDS:
        probe = container.get(f"{kind}Probe")
        if probe:
            out.append(parse_probe(kind, probe, container))
    return out


@dataclass
class ProbeResult:
    """The thresholds turned into one result; `record` says whether the result flipped."""

    spec: ProbeSpec
    success: bool = field(init=False)
    successes: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        self.success = self.spec.kind == LIVENESS

    def reset(self) -> None:
        self.success = self.spec.kind == LIVENESS
        self.successes = self.failures = 0

    def record(self, ok: bool) -> bool:
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.success and self.successes >= self.spec.success_threshold:
                self.success = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.success and self.failures >= self.spec.failure_threshold:
                self.success = False
                return True
        return False


# Handlers ------------------------------------------------------------------------------------

SocketFactory = Callable[[], socket.socket]  # a TCP socket in the node's network namespace


def tcp_probe(make_socket: SocketFactory, host: str, port: int, timeout: float) -> tuple[bool, str]:
    sock = make_socket()
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        return True, ""
    except OSError as e:
        return False, f"dial tcp {host}:{port}: {_why(e)}"
    finally:
        sock.close()


class _NodeHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: float, make_socket: SocketFactory) -> None:
        super().__init__(host, port, timeout=timeout)
        self._make_socket = make_socket

    def connect(self) -> None:
        sock = self._make_socket()
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_probe(make_socket: SocketFactory, spec: ProbeSpec, host: str, timeout: float) -> tuple[bool, str]:
    url = f"http://{host}:{spec.port}{spec.path}"
    if spec.scheme != "HTTP":
        return (
            False,
            f'Get "{spec.scheme.lower()}://{host}:{spec.port}{spec.path}": only HTTP probes are supported',
        )
    conn = _NodeHTTPConnection(host, spec.port, timeout, make_socket)
    try:
        headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*"}
        headers.update(dict(spec.headers))
        conn.request("GET", spec.path if spec.path.startswith("/") else "/" + spec.path, headers=headers)
        resp = conn.getresponse()
        resp.read(MAX_BODY)
        if 200 <= resp.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {resp.status}"
    except (OSError, http.client.HTTPException) as e:
        return False, f'Get "{url}": {_why(e)}'
    finally:
        conn.close()


def _why(e: BaseException) -> str:
    if isinstance(e, socket.timeout | TimeoutError):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, OSError) and e.strerror:
        return f"connect: {e.strerror.lower()}"
    return str(e) or type(e).__name__


# Workers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a probe run needs to know about the container it probes, right now."""

    container_id: str
    pod_ip: str
    started_at: float  # seconds since the epoch


class ProbeWorker:
    """Runs one probe of one container on its own thread until stopped.

    `target()` returns the running container (None: not running, nothing to probe);
    `run(spec, target)` executes the handler and returns (success, message);
    `startup_done()` says whether the container's startup probe (if any) has succeeded;
    `on_change(worker)` is called when the result flips; `on_failure(worker, message)` for
    every failed run (the kubelet records an `Unhealthy` event).
    """

    def __init__(
        self,
        spec: ProbeSpec,
        target: Callable[[], Target | None],
        run: Callable[[ProbeSpec, Target], tuple[bool, str]],
        startup_done: Callable[[], bool],
        on_change: Callable[[ProbeWorker], None],
        on_failure: Callable[[ProbeWorker, str], None],
        jitter: bool = False,
    ) -> None:
        self.spec = spec
        self.result = ProbeResult(spec)
        self._target = target
        self._run = run
        self._startup_done = startup_done
        self._on_change = on_change
        self._on_failure = on_failure
        self._jitter = jitter
        self._container_id: str | None = None
        self._on_hold = False
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._triggered = False
        self._thread = threading.Thread(target=self._loop, name=f"probe-{spec.kind}", daemon=True)

    @property
    def success(self) -> bool:
        return self.result.success

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()

    def trigger(self) -> None:
        """Probe now instead of at the next period (upstream's manual trigger, which the
        kubelet pulls for a running container whose readiness is not known yet)."""
        with self._wake:
            self._triggered = True
            self._wake.notify()

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until triggered; True when the worker is being stopped."""
        with self._wake:
            if not self._triggered and not self._stop.is_set():
                self._wake.wait(seconds)
            self._triggered = False
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _loop(self) -> None:
        if self._jitter and self._stop.wait(random.random() * self.spec.period):
            return
        while not self._stop.is_set():
            try:
                self.probe_once()
            except Exception as e:  # a probe must never take the worker down
                self._on_failure(self, f"probe error: {e}")
            if self.spec.kind == STARTUP and self.result.success:
                return
            if self._sleep(self.spec.period):
                return

    def probe_once(self, now: float | None = None) -> None:
        target = self._target()
        if target is None:
            return
        if target.container_id != self._container_id:
            self._container_id = target.container_id
            flipped = self.result.success != (self.spec.kind == LIVENESS)
            self.result.reset()
            self._on_hold = False
            if flipped:
                self._on_change(self)
        if self._on_hold:
            return
        if self.spec.kind != STARTUP and not self._startup_done():
            return
        now = time.time() if now is None else now
        if now - target.started_at < self.spec.initial_delay:
            return
        ok, message = self._run(self.spec, target)
        if not ok:
            self._on_failure(self, message)
        if self.result.record(ok):
            if self.spec.kind == LIVENESS and not self.result.success:
                self._on_hold = True
            self._on_change(self)
