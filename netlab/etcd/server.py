"""Running Debian's etcd for a lab: a single member on the host's loopback.

The data lives under the lab's state directory (`<state>/etcd`), so leases and the network
config survive a restart of etcd; the client URL is `http://127.0.0.1:<port>` (2379 unless
asked otherwise) and the peer URL another loopback port picked free each time (a single member
never dials its peer URL, and etcd accepts a changed one on restart). A client port that is
already taken is reported before starting, naming the port; `any_port=True` picks a free one
instead (tests always do). Supervision (pid file with start time, log file, stop) is
`netlab.lab.processes`; `run_foreground` is what `netlab etcd` does in a terminal.

The chosen endpoint is recorded in `<run>/etcd.json` while etcd runs, so other verbs of the
same lab (`netlab status`, `netlab flanneld` without `--etcd`) find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from netlab.errors import ConfigError, NetlabError, PrerequisiteError, Unavailable
from netlab.etcd.client import DEFAULT_URL, EtcdClient, parse_url
from netlab.lab import processes
from netlab.layout import Layout

COMPONENT = "etcd"
HOST = "127.0.0.1"
DEFAULT_PORT = 2379


@dataclass(frozen=True)
class EtcdConfig:
    data_dir: Path
    client_port: int
    peer_port: int
    name: str = "netlab"
    # how often a quiet watch with progress_notify hears from etcd; etcd's own default is 10m
    progress_interval: str = "5s"

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    def argv(self, binary: str = "etcd") -> list[str]:
        return [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
            "--initial-cluster-state=new",
            f"--experimental-watch-progress-notify-interval={self.progress_interval}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if not path:
        raise PrerequisiteError("etcd is not installed (apt-get install etcd-server, or ./dev setup)")
    return path


def data_dir(layout: Layout) -> Path:
    return layout.state_dir / "etcd"


def _endpoint_file(layout: Layout) -> Path:
    return layout.run_dir / "etcd.json"


def plan(
    layout: Layout, port: int | None = None, any_port: bool = False, progress_interval: str = "5s"
) -> EtcdConfig:
    """Ports and paths for this lab's etcd; a busy client port is a ConfigError naming it."""
    client_port = free_port() if any_port else (DEFAULT_PORT if port is None else port)
    if not (0 < client_port < 65536):
        raise ConfigError(f"invalid etcd port {client_port}")
    if not port_free(client_port):
        raise ConfigError(
            f"port {client_port} on {HOST} is already in use (another etcd?): "
            "stop it, choose another port, or point netlab at it with --etcd URL"
        )
    peer_port = free_port()
    while peer_port == client_port:
        peer_port = free_port()
    return EtcdConfig(
        data_dir=data_dir(layout),
        client_port=client_port,
        peer_port=peer_port,
        progress_interval=progress_interval,
    )


def start(
    layout: Layout,
    port: int | None = None,
    any_port: bool = False,
    timeout: float = 30.0,
    progress_interval: str = "5s",
) -> str:
    """Start the lab's etcd, wait until it is healthy, and return its client URL.

    On failure nothing is left running and the error carries the last line etcd logged.
    """
    binary = etcd_binary()
    running = processes.running(layout, COMPONENT)
    if running:
        url = endpoint(layout)
        if url:
            return url
        processes.stop(layout, COMPONENT)
    config = plan(layout, port, any_port, progress_interval)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    processes.start(layout, COMPONENT, config.argv(binary))
    try:
        wait_healthy(config.client_url, timeout, layout=layout)
    except BaseException:
        processes.stop(layout, COMPONENT)
        raise
    path = _endpoint_file(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": config.client_url, "peer_url": config.peer_url}) + "\n")
    tmp.replace(path)
    return config.client_url


def stop(layout: Layout) -> bool:
    """Stop the lab's etcd (its data stays). False when it was not running."""
    stopped = processes.stop(layout, COMPONENT, timeout=10.0)
    _endpoint_file(layout).unlink(missing_ok=True)
    return stopped


def endpoint(layout: Layout) -> str | None:
    """The client URL of this lab's running etcd, or None when netlab did not start one."""
    if not processes.running(layout, COMPONENT):
        return None
    try:
        return str(json.loads(_endpoint_file(layout).read_text())["url"])
    except (OSError, ValueError, KeyError):
        return None


def resolve_url(layout: Layout, url: str | None) -> str:
    """The etcd a component should use: `url` when given, else the lab's own, else 2379."""
    if url:
        parse_url(url)
        return url
    return endpoint(layout) or DEFAULT_URL


def remove_data(layout: Layout) -> None:
    """Delete the lab's etcd data (only when etcd is not running)."""
    if processes.running(layout, COMPONENT):
        raise NetlabError("etcd is running; stop it before removing its data")
    shutil.rmtree(data_dir(layout), ignore_errors=True)


def wait_healthy(url: str, timeout: float, layout: Layout | None = None) -> None:
    """Wait for etcd at `url` to answer its health check; Unavailable naming the URL if not.

    With `layout`, also stop waiting as soon as the lab's etcd process has exited, and say why.
    """
    deadline = time.monotonic() + timeout
    with EtcdClient(url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if client.healthy(timeout=1.0):
                return
            if layout is not None and not processes.running(layout, COMPONENT):
                raise NetlabError(f"etcd exited during start-up: {_last_log_line(layout)}")
            time.sleep(0.1)
    why = f" ({_last_log_line(layout)})" if layout is not None else ""
    raise Unavailable(f"etcd at {url} did not become healthy within {timeout:.0f}s{why}")


def _last_log_line(layout: Layout) -> str:
    """The last message etcd logged (zap writes JSON lines; fall back to raw text)."""
    path = processes.log_path(layout, COMPONENT)
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"no log at {path}"
    for line in reversed(lines):
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "fatal", "panic"):
                msg, err = entry.get("msg", ""), entry.get("error")
                return f"{msg}: {err}" if err else str(msg)
    return lines[-1][:200] if lines else f"empty log {path}"


def run_foreground(layout: Layout, config: EtcdConfig) -> int:
    """Run etcd attached to the terminal until it exits (what `netlab etcd` does)."""
    import subprocess

    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    proc = subprocess.Popen(config.argv(etcd_binary()))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
