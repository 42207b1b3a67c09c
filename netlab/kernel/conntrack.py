"""Connection-tracking entries in one namespace, through the `conntrack` tool.

Used to clear UDP flows that NAT pinned to a backend that no longer exists: UDP has no
connection to break, so without this a client that keeps its socket (a DNS resolver) would
keep sending into the void until the entry times out.
"""

from __future__ import annotations

import re

from netlab.errors import KernelError
from netlab.kernel.commands import run

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


def delete_conntrack(
    netns: str | None,
    protocol: str = "udp",
    orig_dst: str | None = None,
    orig_port_dst: int | None = None,
    dst_nat: str | None = None,
) -> int:
    """Delete the matching entries; returns how many were deleted."""
    argv = ["conntrack", "-D", "-p", protocol]
    if orig_dst:
        argv += ["--orig-dst", orig_dst]
    if orig_port_dst:
        argv += ["--orig-port-dst", str(orig_port_dst)]
    if dst_nat:
        argv += ["--dst-nat", dst_nat]
    proc = run(netns, argv, check=False)
    # exit 1 with "0 flow entries" just means nothing matched
    m = _DELETED.search(proc.stderr + proc.stdout)
    if m:
        return int(m.group(1))
    if proc.returncode != 0:
        raise KernelError(f"conntrack -D in {netns} failed: {proc.stderr.strip()}")
    return 0


def list_conntrack(netns: str | None, protocol: str = "udp") -> list[str]:
    """The table's entries for `protocol`, one line each (`conntrack -L` format)."""
    proc = run(netns, ["conntrack", "-L", "-p", protocol], check=False)
    return [line for line in proc.stdout.splitlines() if line.strip()]
