"""Driving a lab's cluster from tests: real kubectl against `netlab up`'s apiserver."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from netlab.layout import Layout
from tests import polling
from tests.cluster.conftest import KUBECTL
from tests.root.conftest import Cli


class Cluster:
    def __init__(self, layout: Layout, cli: Cli) -> None:
        self.layout = layout
        self.cli = cli

    def kubectl(self, *args: str, input: str | None = None, ok: bool = True, timeout: float = 90):
        env = {
            **self.cli.env(),
            "KUBECONFIG": str(self.layout.kubeconfig),
            "HOME": str(self.layout.state_dir),
        }
        proc = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=env,
                              timeout=timeout)  # fmt: skip
        if ok and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def pods(self, selector: str = "app=web") -> list[dict[str, Any]]:
        return self.json("get", "pods", "-l", selector)["items"]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """A lab's pods and rollouts take seconds: a minute's patience, polled five times a second."""
    return polling.wait_for(check, what, timeout, interval=0.2)


def is_ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
