"""Probing what this kernel and its tools can do, for `netlab doctor`.

Each probe tries the real thing (create a veth, a bridge, a VXLAN device, an iptables chain, an
ipset) inside a namespace the caller made for the purpose, and answers with None when it
worked or the reason it did not. Probing by doing is the only reliable answer on kernels
without loadable modules, where module lists and config files say little. Nothing here is ever
aimed at the host's own namespace: every probe takes a namespace name and refuses None.
"""

from __future__ import annotations

import subprocess

from netlab.errors import NetlabError
from netlab.kernel.commands import run
from netlab.kernel.netns import run_in_netns
from netlab.kernel.rtnl import Rtnl


def _require_netns(netns: str | None) -> str:
    if not netns:
        raise ValueError("probes run only in a throwaway namespace, never in the host's")
    return netns


def probe_link_kinds(netns: str) -> dict[str, str | None]:
    """Create (and leave for the namespace's deletion) a veth pair, a bridge and a VXLAN device."""
    _require_netns(netns)
    result: dict[str, str | None] = {}
    with Rtnl(netns) as r:
        try:
            r.add_veth("probe0", "probe1")
            result["veth"] = None
        except NetlabError as e:
            result["veth"] = str(e)
        try:
            r.ensure_bridge("probebr")
            result["bridge"] = None
        except NetlabError as e:
            result["bridge"] = str(e)
        if result["veth"] is None:
            try:
                r.ensure_vxlan("probevx", vni=4242, local="192.0.2.1", dev="probe0", port=8472)
                result["vxlan"] = None
            except NetlabError as e:
                result["vxlan"] = str(e)
        else:
            result["vxlan"] = "not tried: veth failed"
    return result


def probe_tool(netns: str, argv: list[str]) -> str | None:
    """Run a tool in the namespace; None when it exits 0, else its last line of complaint."""
    _require_netns(netns)
    try:
        run(netns, argv, timeout=15)
    except NetlabError as e:
        return str(e)
    return None


def probe_iptables(netns: str, tool: str) -> str | None:
    """Create and delete a nat chain with `tool` (iptables, iptables-nft, iptables-legacy)."""
    return probe_tool(netns, [tool, "-w", "-t", "nat", "-N", "NETLAB-PROBE"]) or probe_tool(
        netns, [tool, "-w", "-t", "nat", "-X", "NETLAB-PROBE"]
    )


def probe_ipset(netns: str) -> str | None:
    return probe_tool(netns, ["ipset", "create", "netlab-probe", "hash:ip"]) or probe_tool(
        netns, ["ipset", "destroy", "netlab-probe"]
    )


def probe_path(netns: str, path: str) -> bool:
    """Whether `path` (a per-namespace /proc entry) exists inside the namespace."""
    import os

    _require_netns(netns)
    return run_in_netns(netns, lambda: os.path.exists(path))


def tool_version(argv: list[str]) -> str | None:
    """The first line a tool prints for its version flag, or None when it is not installed."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    if proc.returncode != 0 or not text:
        return None
    return text.splitlines()[0]
