"""`netlab apiserver` refuses bad flags with one line and a non-zero exit, before serving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service-cidr", "10.96.0.0/33"], "--service-cidr"),
        (["--node-port-range", "32767-30000"], "--node-port-range"),
        (["--bind-address", "localhost:6443"], "--bind-address"),
        (["--etcd", "ftp://somewhere"], "invalid etcd URL"),
        (["--etcd", "http://127.0.0.1:1"], "unreachable"),
    ],
)
def test_bad_flags(tmp_path: Path, args: list[str], message: str) -> None:
    env = {**os.environ, "NETLAB_STATE_DIR": str(tmp_path / "state"), "NETLAB_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(
        [sys.executable, "-m", "netlab.cli", "apiserver", "--port", "1", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
