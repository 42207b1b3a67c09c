"""The lab's etcd process: start, health, busy port, foreground verb, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from netlab.errors import ConfigError
from netlab.etcd import EtcdClient, server
from netlab.lab import processes
from netlab.layout import Layout

pytestmark = pytest.mark.etcd


def test_start_and_stop(layout: Layout) -> None:
    url = server.start(layout, any_port=True)
    try:
        assert server.endpoint(layout) == url
        assert server.resolve_url(layout, None) == url
        assert (layout.state_dir / "etcd" / "member").is_dir()
        with EtcdClient(url) as c:
            c.put("/k", b"v")
        # starting again while it runs returns the same endpoint
        assert server.start(layout, any_port=True) == url
    finally:
        assert server.stop(layout)
    assert processes.running(layout, server.COMPONENT) is None
    assert server.endpoint(layout) is None
    assert not server.stop(layout)
    # the data survives a restart
    url2 = server.start(layout, any_port=True)
    try:
        with EtcdClient(url2) as c:
            kv = c.get("/k")
            assert kv and kv.value == b"v"
    finally:
        server.stop(layout)


def test_busy_port_is_reported(layout: Layout) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(layout, port=port)
        assert processes.running(layout, server.COMPONENT) is None
        # asked to, it picks another port
        url = server.start(layout, port=port, any_port=True)
        try:
            assert not url.endswith(f":{port}")
        finally:
            server.stop(layout)


def test_foreground_verb(layout: Layout) -> None:
    port = server.free_port()
    env = {**os.environ, **layout.env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "netlab.cli", "etcd", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}", timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert f"client URL http://127.0.0.1:{port}" in err
    assert (layout.state_dir / "etcd" / "member").is_dir()


def test_foreground_verb_busy_port(layout: Layout) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {**os.environ, **layout.env()}
        r = subprocess.run(
            [sys.executable, "-m", "netlab.cli", "etcd", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another etcd?): "
        "stop it, choose another port, or point netlab at it with --etcd URL"
    ]
