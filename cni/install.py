"""Writing netlab's plugin launchers into a CNI bin directory (`netlab cni install-plugins`).

A runtime finds plugins by name in its plugin directories, so netlab's must be files there.
pip's console scripts (`.venv/bin/netlab-bridge`) would do, but they start Python with full
site processing (the venv, Debian's dist-packages and their `.pth` files), about 13 ms more
per call than `python -I -S` here, which is most of an ADD when the node's CNI server does
the work. The launchers written here start the same interpreter with `-IS`, put this source
tree first on `sys.path` and call `cni.launch.run`; the launch code loads site-packages
itself only when it must do the work in-process. The launcher names the source tree, so
`netlab.cni.delegate` can tell that a launcher runs this very code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cni.launch import SOURCE_ROOT
from cni.plugins import PLUGINS
from netlab.cni.delegate import LAUNCHER_MARK
from netlab.errors import NetlabError


def launcher_text(name: str) -> str:
    return (
        f"#!{sys.executable} -IS\n"
        f"{LAUNCHER_MARK}: netlab-{name} (written by `netlab cni install-plugins`)\n"
        "import sys\n"
        f"sys.path.insert(0, {SOURCE_ROOT!r})\n"
        "from cni.launch import run\n"
        f"run({name!r})\n"
    )


def install_plugins(directory: str | os.PathLike[str]) -> list[Path]:
    """Write `netlab-<name>` launchers for every plugin into `directory`; their paths."""
    target = Path(directory)
    written = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in PLUGINS:
            path = target / f"netlab-{name}"
            tmp = target / f".netlab-{name}.{os.getpid()}.tmp"
            tmp.write_text(launcher_text(name))
            tmp.chmod(0o755)
            os.replace(tmp, path)  # atomic: a runtime never executes half a launcher
            written.append(path)
    except OSError as e:
        raise NetlabError(f"cannot install the CNI plugins into {target}: {e.strerror}") from None
    return written
