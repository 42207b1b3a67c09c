"""The lab's apiserver as a supervised component, started by `netlab up` after etcd.

`start` runs `netlab apiserver` in the background on the lab's etcd, waits until it serves and
has written the lab's kubeconfig (`layout.kubeconfig`), and returns the server URL; `stop`
stops it and removes the kubeconfig, whose token would otherwise outlive the server. Its
certificates and tokens stay in the lab's state directory, so a restarted lab keeps the same
CA and the kubeconfig stays valid. With a kubeconfig present, the lab's kube-proxies watch the
apiserver instead of the services file.
"""

from __future__ import annotations

import sys
import time

from netlab.errors import NetlabError
from netlab.lab import processes
from netlab.layout import Layout

COMPONENT = "apiserver"
DEFAULT_PORT = 6443


def start(layout: Layout, etcd_url: str, port: int = DEFAULT_PORT, timeout: float = 30.0) -> str:
    """Start the apiserver on `etcd_url`; on failure nothing is left running and the error
    carries the last line it logged."""
    layout.kubeconfig.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "netlab.cli",
        "apiserver",
        "--etcd",
        etcd_url,
        "--port",
        str(port),
        "--write-kubeconfig",
        str(layout.kubeconfig),
    ]
    processes.start(layout, COMPONENT, argv)
    deadline = time.monotonic() + timeout
    while not layout.kubeconfig.exists():
        if processes.running(layout, COMPONENT) is None:
            processes.stop(layout, COMPONENT)
            raise NetlabError(f"apiserver exited: {_last_line(layout)}")
        if time.monotonic() > deadline:
            stop(layout)
            raise NetlabError(f"apiserver did not start within {timeout:g} s: {_last_line(layout)}")
        time.sleep(0.05)
    return f"https://127.0.0.1:{port}"


def stop(layout: Layout) -> bool:
    stopped = processes.stop(layout, COMPONENT)
    layout.kubeconfig.unlink(missing_ok=True)
    return stopped


def _last_line(layout: Layout) -> str:
    log = processes.log_path(layout, COMPONENT)
    lines = log.read_text().strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"
