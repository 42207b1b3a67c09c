"""Probe specs, results and workers; CRI log reading; the remote-command frames (pure)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from netlab.cluster.kubelet import logs, probes, remotecommand
from netlab.cluster.kubelet.probes import (
    LIVENESS,
    READINESS,
    STARTUP,
    ProbeError,
    ProbeResult,
    ProbeWorker,
    Target,
)

CONTAINER = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}


def test_probe_specs_with_defaults_and_named_ports():
    spec = probes.parse_probe(READINESS, {"httpGet": {"path": "/ready", "port": "http"}}, CONTAINER)
    assert (spec.handler, spec.port, spec.path, spec.period, spec.timeout) == (
        "httpGet",
        8080,
        "/ready",
        10,
        1,
    )
    assert (spec.initial_delay, spec.success_threshold, spec.failure_threshold) == (0, 1, 3)
    live = probes.parse_probe(LIVENESS, {"tcpSocket": {"port": 80}, "successThreshold": 3}, CONTAINER)
    assert live.success_threshold == 1  # must be 1 for liveness and startup
    ex = probes.parse_probe(STARTUP, {"exec": {"command": ["cat", "/tmp/ok"]}, "periodSeconds": 2}, CONTAINER)
    assert ex.command == ("cat", "/tmp/ok") and ex.period == 2
    with pytest.raises(ProbeError, match="not a number nor a named port"):
        probes.parse_probe(LIVENESS, {"tcpSocket": {"port": "nope"}}, CONTAINER)
    with pytest.raises(ProbeError, match="no handler"):
        probes.parse_probe(LIVENESS, {"periodSeconds": 1}, CONTAINER)
    both = {
        **CONTAINER,
        "livenessProbe": {"tcpSocket": {"port": 1}},
        "startupProbe": {"tcpSocket": {"port": 1}},
    }
    assert [p.kind for p in probes.container_probes(both)] == [STARTUP, LIVENESS]


def test_results_follow_the_thresholds():
    spec = probes.parse_probe(
        READINESS, {"tcpSocket": {"port": 1}, "successThreshold": 2, "failureThreshold": 2}, {}
    )
    r = ProbeResult(spec)
    assert not r.success  # readiness starts as failure
    assert [r.record(True), r.record(True)] == [False, True] and r.success
    assert [r.record(False), r.record(True), r.record(False), r.record(False)] == [False, False, False, True]
    assert not r.success
    live = ProbeResult(probes.parse_probe(LIVENESS, {"tcpSocket": {"port": 1}, "failureThreshold": 1}, {}))
    assert live.success and live.record(False) and not live.success


class Recorder:
    def __init__(self, results):
        self.results = list(results)
        self.changes = 0
        self.failures = []

    def run(self, spec, target):
        return self.results.pop(0)


def worker(kind, rec, target, startup_done=lambda: True, **probe):
    spec = probes.parse_probe(kind, {"exec": {"command": ["x"]}, **probe}, {})

    def changed(w):
        rec.changes += 1

    return ProbeWorker(spec, lambda: target[0], rec.run, startup_done, changed,
                       lambda w, m: rec.failures.append(m))  # fmt: skip


def test_worker_waits_for_the_initial_delay_and_startup_and_resets_on_a_new_run():
    target = [Target("c1", "10.0.0.1", started_at=100.0)]
    rec = Recorder([(True, ""), (False, "boom"), (True, "")])
    w = worker(LIVENESS, rec, target, initialDelaySeconds=5, failureThreshold=1)
    w.probe_once(now=102)  # within the initial delay: nothing runs
    assert rec.results[0] == (True, "")
    w.probe_once(now=106)
    assert w.success and rec.changes == 0
    w.probe_once(now=107)
    assert not w.success and rec.changes == 1 and rec.failures == ["boom"]
    w.probe_once(now=108)  # held after a liveness failure until the container is replaced
    assert rec.results == [(True, "")]
    target[0] = Target("c2", "10.0.0.1", started_at=110.0)
    w.probe_once(now=120)
    assert w.success and rec.changes == 2 and rec.results == []
    # nothing to probe while the container is not running
    target[0] = None
    w.probe_once(now=130)


def test_readiness_waits_for_startup():
    target = [Target("c1", "10.0.0.1", started_at=0.0)]
    rec = Recorder([(True, "")])
    started = [False]
    w = worker(READINESS, rec, target, startup_done=lambda: started[0])
    w.probe_once(now=10)
    assert not w.success and rec.results
    started[0] = True
    w.probe_once(now=11)
    assert w.success and rec.changes == 1


def test_a_triggered_worker_probes_at_once_instead_of_a_period_later():
    target = [None]
    rec = Recorder([(False, "refused"), (True, "")])
    ran = threading.Semaphore(0)
    inner = rec.run

    def run(spec, t):
        try:
            return inner(spec, t)
        finally:
            ran.release()

    rec.run = run
    w = worker(READINESS, rec, target, periodSeconds=60)
    w.start()
    try:
        target[0] = Target("c1", "10.0.0.1", started_at=0.0)
        w.trigger()  # the first probe: the program does not listen yet
        assert ran.acquire(timeout=10) and rec.failures == ["refused"] and not w.success
        w.trigger()  # a later sync asks again, long before the period is over
        assert ran.acquire(timeout=10)
        deadline = time.monotonic() + 10
        while not w.success and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.success and rec.changes == 1
    finally:
        w.stop()
        w.join(10)


def node_socket():
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_http_and_tcp_handlers_against_a_local_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path == "/ok" else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        ok = probes.parse_probe(LIVENESS, {"httpGet": {"path": "/ok", "port": port}}, {})
        bad = probes.parse_probe(LIVENESS, {"httpGet": {"path": "/bad", "port": port}}, {})
        assert probes.http_probe(node_socket, ok, "127.0.0.1", 2) == (True, "")
        assert probes.http_probe(node_socket, bad, "127.0.0.1", 2) == (
            False,
            "HTTP probe failed with statuscode: 503",
        )
        assert probes.tcp_probe(node_socket, "127.0.0.1", port, 2) == (True, "")
    finally:
        server.shutdown()
        server.server_close()
    ok, message = probes.tcp_probe(node_socket, "127.0.0.1", port, 2)
    assert not ok and message == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


LOG = b"""\
2026-11-30T11:00:00.000000001Z stdout F first
2026-11-30T11:00:01.000000000Z stderr P par
2026-11-30T11:00:01.500000000Z stdout F second
2026-11-30T11:00:02.000000000Z stderr F tial
not a log line
2026-11-30T11:00:03.000000000Z stdout F
"""


def test_log_messages_join_partials_per_stream_and_select():
    msgs = list(logs.messages(LOG.splitlines(keepends=True)))
    assert [m.text for m in msgs] == [b"first\n", b"second\n", b"partial\n", b"\n"]
    assert msgs[2].timestamp == "2026-11-30T11:00:01.000000000Z" and msgs[2].stream == "stderr"
    opts = logs.LogOptions(tail_lines=2, timestamps=True)
    assert logs.render(logs.select(msgs, opts), opts) == (
        b"2026-11-30T11:00:01.000000000Z partial\n2026-11-30T11:00:03.000000000Z \n"
    )
    since = logs.timestamp_seconds("2026-11-30T11:00:01.200000000Z")
    assert [m.text for m in logs.select(msgs, logs.LogOptions(since=since))] == [b"second\n", b"\n"]
    assert logs.render(msgs, logs.LogOptions(limit_bytes=8)) == b"first\nse"
    assert logs.select(msgs, logs.LogOptions(tail_lines=0)) == []


def test_follower_returns_what_is_written_until_the_container_stops(tmp_path):
    path = tmp_path / "0.log"
    path.write_bytes(LOG[:48])
    alive = [True]
    f = logs.Follower(path, logs.LogOptions(), lambda: alive[0])
    assert f.poll() == b"first\n"
    assert f.poll() == b""
    with open(path, "ab") as out:
        out.write(LOG[48:])
    assert f.poll() == b"second\npartial\n\n"
    alive[0] = False
    assert f.poll() == b"" and f.done
    f.close()
    assert logs.Follower(tmp_path / "missing.log", logs.LogOptions(), lambda: True).done


def test_remote_command_frames_and_status():
    assert remotecommand.frame(remotecommand.STDOUT, b"hi") == b"\x01hi"
    assert remotecommand.split(b"\xff\x00") == (remotecommand.CLOSE, b"\x00")
    assert remotecommand.split(b"") == (-1, b"")
    assert remotecommand.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = remotecommand.exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert json.loads(remotecommand.status_frame(failed)[1:]) == failed
    assert remotecommand.terminal_size(b'{"Width":120,"Height":40}') == (120, 40)
    assert remotecommand.terminal_size(b"junk") is None
    assert remotecommand.flag({"tty": "true"}, "tty") and not remotecommand.flag({}, "tty")
    assert remotecommand.flag({}, "stdout", True)
