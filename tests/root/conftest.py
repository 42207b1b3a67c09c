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
        return {**os.environ, **self.layout.env(), "COLUMNS": "200", **extra}

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
