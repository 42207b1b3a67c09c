"""Running the kernel's own command-line tools inside a namespace.

Some kernel interfaces are best driven by their standard tools (`iptables-restore`, `ipset`,
`conntrack`, `tc`); those run as child processes entered into the target namespace with
`nsenter`, so the calling process never changes namespace. Only `netlab.kernel` calls this.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from netlab.errors import KernelError, PrerequisiteError
from netlab.kernel.netns import netns_path


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed so that it runs in `netns` (unchanged for None)."""
    if netns is None:
        return list(argv)
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def run(
    netns: str | None,
    argv: Sequence[str],
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in `netns`; on failure raise KernelError with the tool's own message."""
    try:
        proc = subprocess.run(
            in_netns(netns, argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise PrerequisiteError(f"{argv[0]} is not installed (run the setup step)") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        where = f" in {netns}" if netns else ""
        raise KernelError(f"{' '.join(argv[:2])}{where} failed: {msg[-1] if msg else proc.returncode}")
    return proc
