"""Golden-file comparison: `NETLAB_UPDATE_GOLDEN=1 pytest ...` rewrites the files."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("NETLAB_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} missing (run with NETLAB_UPDATE_GOLDEN=1)"
    assert text == path.read_text(), f"output differs from {path}"
