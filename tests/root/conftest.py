"""Helpers for tests that drive the real `netlab` CLI against real namespaces."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.layout import Layout

NETLAB = Path(sys.executable).parent / "netlab"


class Cli:
    """Runs `netlab ARGS` as a user would, with the test's private layout in the environment."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def env(self, **extra: str) -> dict[str, str]:
        # the lab's etcd on a free port: suites run side by side on one machine
        return {
            **os.environ,
            **self.layout.env(),
            "COLUMNS": "200",
            "NETLAB_ETCD_PORT": "0",
            "NETLAB_APISERVER_PORT": "0",
            **extra,
        }

    def __call__(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(NETLAB), *args], env=env or self.env(), capture_output=True, text=True, timeout=timeout
        )
        if ok and proc.returncode != 0:
            raise AssertionError(f"netlab {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI's failure contract: non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def cli(layout: Layout) -> Iterator[Cli]:
    """The CLI bound to `layout`; whatever the test leaves running is removed afterwards."""
    yield Cli(layout)
    from netlab.lab import clean

    clean.apply_clean(layout, clean.plan_clean(layout))


REFERENCE_TYPES = {
    "netlab-bridge": "bridge",
    "netlab-host-local": "host-local",
    "netlab-loopback": "loopback",
}


def use_reference_plugins(layout: Layout, node: str) -> None:
    """Point a node's CNI configs at Debian's reference plugins (same keys, same behaviour)."""
    import json

    for path in layout.cni_conf_dir(node).glob("*.conflist"):
        conf = json.loads(path.read_text())
        for plugin in conf["plugins"]:
            plugin["type"] = REFERENCE_TYPES.get(plugin["type"], plugin["type"])
            if "ipam" in plugin:
                plugin["ipam"]["type"] = REFERENCE_TYPES.get(plugin["ipam"]["type"], plugin["ipam"]["type"])
        path.write_text(json.dumps(conf))
