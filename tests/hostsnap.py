"""A picture of the host's own network namespace, to prove the lab never touched it.

The suite takes one at the start and one at the end (see conftest.py) and fails when they
differ. It covers what netlab could plausibly change: links, addresses, routes in every table,
both iptables backends, a few forwarding sysctls, and the named namespaces and processes the
tests themselves create (which must all be gone again).
"""

from __future__ import annotations

import os
import re
import subprocess

_COUNTERS = re.compile(r"\[\d+:\d+\]")


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        return f"<{argv[0]} missing>"
    return out


def _iptables(tool: str) -> str:
    lines = []
    for line in _run([tool]).splitlines():
        if line.startswith("#"):
            continue
        lines.append(_COUNTERS.sub("[]", line))
    return "\n".join(lines)


def _links() -> str:
    # name, kind-ish flags and MTU; not counters or operational state of physical NICs
    out = []
    for line in _run(["ip", "-o", "link", "show"]).splitlines():
        m = re.match(r"\d+: ([^:@]+)[^<]*<([^>]*)> mtu (\d+)", line)
        if m:
            flags = ",".join(f for f in m.group(2).split(",") if f != "LOWER_UP")
            out.append(f"{m.group(1)} {flags} {m.group(3)}")
    return "\n".join(sorted(out))


def _sysctls() -> str:
    keys = [
        "net/ipv4/ip_forward",
        "net/ipv4/conf/all/forwarding",
        "net/ipv4/conf/all/rp_filter",
        "net/bridge/bridge-nf-call-iptables",
    ]
    out = []
    for k in keys:
        try:
            with open("/proc/sys/" + k) as f:
                out.append(f"{k}={f.read().strip()}")
        except OSError:
            out.append(f"{k}=<absent>")
    return "\n".join(out)


def _test_netns(prefixes: set[str]) -> str:
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        names = []
    return "\n".join(sorted(n for n in names if any(n.startswith(p) for p in prefixes)))


def snapshot(test_prefixes: set[str]) -> dict[str, str]:
    """`test_prefixes`: the lab prefixes this session handed out; their namespaces must go."""
    return {
        "links": _links(),
        "addresses": _run(["ip", "-o", "addr", "show"]),
        "routes": _run(["ip", "route", "show", "table", "all"]),
        "iptables-nft": _iptables("iptables-nft-save"),
        "iptables-legacy": _iptables("iptables-legacy-save"),
        "sysctls": _sysctls(),
        "test namespaces": _test_netns(test_prefixes),
    }


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    import difflib

    out = []
    for key in before:
        if before[key] != after[key]:
            diff = difflib.unified_diff(
                before[key].splitlines(), after[key].splitlines(), "before", "after", lineterm=""
            )
            out.append(f"host {key} changed:\n" + "\n".join(diff))
    return out
