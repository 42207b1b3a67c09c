"""`netlab doctor`: prerequisites, kernel features and versions, each with its fix.

Every check answers with what it found and, when something is missing, the one thing to do
about it. Kernel features are probed by doing: a throwaway namespace named with the lab prefix
(`<prefix>doctor-<hex>`) gets a veth, a bridge, a VXLAN device, an iptables chain and an ipset,
and is deleted again, so the host's own namespace is never touched and a crash leaves only
something `netlab clean` removes.

A check is *required* when the lab cannot work without it (the single-host lab, the overlay
and the control plane); optional checks belong to one mode or tool (IPVS, eBPF, kubectl, the
reference CNI plugins) and only warn. `doctor` exits non-zero when a required check fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from netlab import kernel
from netlab.errors import NetlabError
from netlab.kernel import probe
from netlab.lab import state
from netlab.layout import Layout

REFERENCE_CNI_DIR = Path("/usr/lib/cni")
REFERENCE_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
CNI_VERSION = "1.0.0"
APT = "apt-get install"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    required: bool
    found: str
    fix: str = ""


def _check(name: str, required: bool, found: str | None, fix: str, missing: str = "missing") -> Check:
    """A check that passed when `found` is not None."""
    if found is None:
        return Check(name, False, required, missing, fix)
    return Check(name, True, required, found)


def run_checks(layout: Layout) -> list[Check]:
    checks: list[Check] = []
    is_root = os.geteuid() == 0
    checks.append(
        Check(
            "root",
            is_root,
            True,
            "uid 0" if is_root else f"uid {os.geteuid()}",
            "" if is_root else "run as root (sudo)",
        )
    )
    ip_v = probe.tool_version(["ip", "-V"])
    m = re.search(r"iproute2-\S+", ip_v or "")
    checks.append(_check("iproute2", True, m.group(0) if m else ip_v, f"{APT} iproute2"))
    for tool in ("nsenter", "unshare"):
        where = shutil.which(tool)
        checks.append(_check(tool, True, where, f"{APT} util-linux"))
    checks.extend(_kernel_checks(layout, is_root))
    checks.extend(_tool_checks())
    checks.extend(_ebpf_checks())
    checks.append(_leftovers(layout))
    return checks


def _kernel_checks(layout: Layout, is_root: bool) -> list[Check]:
    """Features probed inside a throwaway namespace (needs root)."""
    names = [
        ("network namespaces", True, "a kernel with CONFIG_NET_NS"),
        ("veth", True, "a kernel with CONFIG_VETH"),
        ("bridge", True, "a kernel with CONFIG_BRIDGE (modprobe bridge)"),
        ("vxlan", True, "a kernel with CONFIG_VXLAN (modprobe vxlan)"),
        ("br_netfilter", True, "modprobe br_netfilter (CONFIG_BRIDGE_NETFILTER)"),
        ("iptables", True, f"{APT} iptables"),
        ("iptables nf_tables", False, f"{APT} iptables; a kernel with CONFIG_NF_TABLES"),
        ("iptables legacy", False, f"{APT} iptables; a kernel with CONFIG_IP_NF_IPTABLES"),
        ("ipset", False, f"{APT} ipset (IPVS mode); a kernel with CONFIG_IP_SET"),
        ("conntrack", False, f"{APT} conntrack (clears stale UDP Service flows)"),
    ]
    if not is_root:
        return [Check(n, False, req, "not checked: needs root", "run as root (sudo)") for n, req, _ in names]
    fixes = {n: (req, fix) for n, req, fix in names}
    ns = f"{layout.prefix}doctor-{secrets.token_hex(3)}"
    results: dict[str, str | None] = {}
    try:
        kernel.ensure_netns(ns)
        results["network namespaces"] = None
        results.update(probe.probe_link_kinds(ns))
        bridge_nf = probe.probe_path(ns, "/proc/sys/net/bridge/bridge-nf-call-iptables")
        results["br_netfilter"] = None if bridge_nf else "no net.bridge.bridge-nf-call-iptables"
        results["iptables"] = probe.probe_iptables(ns, "iptables")
        results["iptables nf_tables"] = probe.probe_iptables(ns, "iptables-nft")
        results["iptables legacy"] = probe.probe_iptables(ns, "iptables-legacy")
        results["ipset"] = probe.probe_ipset(ns)
        results["conntrack"] = probe.probe_tool(ns, ["conntrack", "-L"])
    except NetlabError as e:
        results.setdefault("network namespaces", str(e))
    finally:
        kernel.delete_netns(ns)

    versions = {
        "iptables": probe.tool_version(["iptables", "-V"]),
        "iptables nf_tables": probe.tool_version(["iptables-nft", "-V"]),
        "iptables legacy": probe.tool_version(["iptables-legacy", "-V"]),
        "ipset": probe.tool_version(["ipset", "version"]),
        "conntrack": probe.tool_version(["conntrack", "--version"]),
    }
    out = []
    for name, _, _ in names:
        req, fix = fixes[name]
        if name not in results:
            out.append(Check(name, False, req, "not checked: namespace probe failed", fix))
        elif results[name] is None:
            out.append(Check(name, True, req, versions.get(name) or "works"))
        else:
            out.append(Check(name, False, req, _one_line(results[name] or ""), fix))
    ipvs = os.path.exists("/proc/net/ip_vs")
    out.append(
        Check(
            "IPVS",
            ipvs,
            False,
            "ip_vs loaded" if ipvs else "no /proc/net/ip_vs",
            "" if ipvs else "modprobe ip_vs ip_vs_rr (IPVS mode only; a kernel with CONFIG_IP_VS)",
        )
    )
    return out


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "failed"


def _etcd() -> Check:
    line = probe.tool_version(["etcd", "--version"])
    fix = f"{APT} etcd-server"
    if line is None:
        return Check("etcd", False, True, "missing", fix)
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", line)
    if not m or (int(m.group(1)), int(m.group(2))) < (3, 4):
        return Check("etcd", False, True, line, f"{fix} (3.4 or newer)")
    return Check("etcd", True, True, f"etcd {m.group(0)}")


def _kubectl() -> Check:
    fix = "install kubectl v1.32 (client within one minor version of the lab's API)"
    try:
        proc = subprocess.run(
            ["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=15
        )
        version = json.loads(proc.stdout)["clientVersion"]["gitVersion"]
    except (FileNotFoundError, subprocess.TimeoutExpired, ValueError, KeyError):
        return Check("kubectl", False, False, "missing", fix)
    m = re.match(r"v1\.(\d+)", version)
    if not m or not 31 <= int(m.group(1)) <= 33:
        return Check("kubectl", False, False, version, fix)
    return Check("kubectl", True, False, version)


def cni_version_answer(binary: Path) -> str | None:
    """The plugin's answer to CNI_COMMAND=VERSION, when it supports CNI 1.0.0."""
    try:
        proc = subprocess.run(
            [str(binary)],
            input=json.dumps({"cniVersion": CNI_VERSION}),
            env={"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=15,
        )
        answer = json.loads(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if proc.returncode != 0 or CNI_VERSION not in answer.get("supportedVersions", []):
        return None
    return str(answer.get("cniVersion"))


def _reference_plugins() -> Check:
    found: list[str] = []
    bad: list[str] = []
    for name in REFERENCE_PLUGINS:
        version = cni_version_answer(REFERENCE_CNI_DIR / name)
        (found if version else bad).append(name)
    if bad:
        return Check(
            "CNI reference plugins",
            False,
            False,
            f"no CNI {CNI_VERSION} answer from {', '.join(bad)}",
            f"{APT} containernetworking-plugins (interoperability tests only)",
        )
    return Check(
        "CNI reference plugins", True, False, f"{', '.join(found)} in {REFERENCE_CNI_DIR} (CNI {CNI_VERSION})"
    )


def _netlab_plugins() -> Check:
    """netlab's own plugins, through the launchers `up` installs (written to a scratch dir)."""
    import tempfile

    from cni.install import install_plugins

    with tempfile.TemporaryDirectory(prefix="netlab-doctor-") as scratch:
        launchers = install_plugins(scratch)
        bad = [p.name for p in launchers if cni_version_answer(p) is None]
    names = ", ".join(p.name for p in launchers)
    if bad:
        return Check(
            "netlab CNI plugins", False, True, f"no CNI {CNI_VERSION} answer from {', '.join(bad)}",
            "reinstall netlab (`./dev setup`)",
        )  # fmt: skip
    return Check("netlab CNI plugins", True, True, f"{names} (CNI {CNI_VERSION})")


def _tool_checks() -> list[Check]:
    return [_etcd(), _netlab_plugins(), _reference_plugins(), _kubectl()]


def _ebpf_checks() -> list[Check]:
    bcc_ok = (
        subprocess.run([sys.executable, "-c", "import bcc"], capture_output=True, timeout=60).returncode == 0
    )
    checks = [
        Check(
            "bcc (python3-bpfcc)",
            bcc_ok,
            False,
            "importable" if bcc_ok else "not importable",
            "" if bcc_ok else f"{APT} python3-bpfcc; make the venv with --system-site-packages (eBPF mode)",
        )
    ]
    cgroup2 = _cgroup2_mount()
    checks.append(
        _check(
            "cgroup2",
            False,
            cgroup2 and f"mounted at {cgroup2}",
            "mount -t cgroup2 none /sys/fs/cgroup/unified (eBPF mode)",
        )
    )
    build = Path("/lib/modules") / os.uname().release / "build" / "include"
    checks.append(
        _check(
            "kernel headers",
            False,
            str(build.parent) if build.is_dir() else None,
            f"{APT} linux-headers-amd64; `./dev setup` links them for a kernel that ships none (eBPF mode)",
        )
    )
    return checks


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return fields[1]
    except OSError:
        pass
    return None


def _leftovers(layout: Layout) -> Check:
    probe_prefix = f"{layout.prefix}doctor-"
    stray = [
        ns for ns in kernel.list_netns() if ns.startswith(layout.prefix) and not ns.startswith(probe_prefix)
    ]
    if stray and not state.exists(layout):
        return Check(
            "leftovers",
            False,
            False,
            f"{len(stray)} namespaces with prefix {layout.prefix} but no lab",
            "netlab clean",
        )
    return Check("leftovers", True, False, f"{len(stray)} lab namespaces" if stray else "none")


def required_missing(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]
