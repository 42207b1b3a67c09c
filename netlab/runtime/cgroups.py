"""Containers' cgroups: where a lab's pod processes are accounted and limited.

Every lab keeps its cgroups in one tree per hierarchy, `netlab/<lab>` (the lab is the name
prefix without its trailing dash: `nl`, `nl-t1a2b3`), so `down` and `clean` find them by name
and remove them, and nothing else is ever touched. Each container start gets its own leaf,
`netlab/<lab>/pod<uid>/<container id>`, so counters such as the OOM-kill count belong to one
run of one container.

The tree sits beneath the cgroup the runtime itself runs in, in each hierarchy: on a plain host
that is the root (`/sys/fs/cgroup/memory/netlab/nl/...`); under a service manager or a session
that was handed a cgroup, the lab's processes stay inside what it was given, as a delegated
subtree should. Hierarchies are found in /proc/self/mountinfo and /proc/self/cgroup:

- cgroup v1 (one hierarchy per controller, e.g. this machine's `/sys/fs/cgroup/memory`):
  memory (`memory.limit_in_bytes`, and the same for memory plus swap where swap is
  accounted) and cpu (`cpu.cfs_quota_us` for limits, `cpu.shares` for
  requests) are used when mounted;
- cgroup v2 (the unified hierarchy): the leaf is always made, so every pod process is in a
  netlab cgroup there (what cgroup BPF programs attach to); `memory.max`, `cpu.max` and
  `cpu.weight` are set when the kernel offers those controllers and they can be enabled down
  the tree. A v2 cgroup that holds processes cannot enable controllers for its children, so
  below such a cgroup limits are skipped, not forced.

Limits the kernel does not offer are reported back to the caller (which tells the user in an
event), never faked. Plain file writes; there is no library for cgroupfs worth its weight.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from netlab.errors import KernelError

ROOT_NAME = "netlab"
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000
MIN_SHARES = 2
MAX_SHARES = 262_144


@dataclass(frozen=True)
class Hierarchy:
    mount: Path  # where the hierarchy is mounted
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: the mount's controllers; v2: those the kernel offers
    own: str  # this process's cgroup in the hierarchy, e.g. "/" or "/system.slice/x.service"

    @property
    def base(self) -> Path:
        return self.mount / self.own.lstrip("/")


@dataclass(frozen=True)
class Limits:
    """A container's resources: limits are enforced, the CPU request weighs the CPU share."""

    memory_bytes: int | None = None
    cpu_limit_millis: int | None = None
    cpu_request_millis: int | None = None

    def empty(self) -> bool:
        return self.memory_bytes is None and self.cpu_limit_millis is None and self.cpu_request_millis is None


@dataclass
class Placement:
    """The cgroups made for one container, and which requested limits could not be applied."""

    dirs: list[Path] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def lab_name(prefix: str) -> str:
    return prefix.rstrip("-")


def _parse_self_cgroup(text: str) -> dict[str, str]:
    """`/proc/self/cgroup` as controller (or "" for v2, or "name=x") -> path."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if not ctrls:
            own[""] = path
        for c in ctrls.split(","):
            if c:
                own[c] = path
    return own


def parse_hierarchies(mountinfo: str, self_cgroup: str) -> list[Hierarchy]:
    """The v1 memory/cpu hierarchies and the v2 hierarchy, from the two /proc files (pure)."""
    own = _parse_self_cgroup(self_cgroup)
    found: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        mount, root = Path(fields[4]), fields[3]
        if root != "/":  # a bind mount of a sub-cgroup: our paths would not line up
            continue
        if fstype == "cgroup":
            ctrls = frozenset(o for o in options if o in ("memory", "cpu"))
            if ctrls:
                key = next(iter(sorted(ctrls)))
                found.append(Hierarchy(mount, 1, ctrls, own.get(key, "/")))
        elif fstype == "cgroup2":
            found.append(Hierarchy(mount, 2, frozenset(), own.get("", "/")))
    return found


def hierarchies() -> list[Hierarchy]:
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        self_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    out = []
    for h in parse_hierarchies(mountinfo, self_cgroup):
        if h.version == 2:
            try:
                offered = (h.mount / "cgroup.controllers").read_text().split()
            except OSError:
                offered = []
            h = Hierarchy(h.mount, 2, frozenset(offered), h.own)
        out.append(h)
    return out


# Pure conversions (the same formulas as the kubelet's) -------------------------------------


def cpu_shares(request_millis: int) -> int:
    return max(MIN_SHARES, min(MAX_SHARES, request_millis * 1024 // 1000))


def cpu_quota_us(limit_millis: int) -> int:
    return max(MIN_CFS_QUOTA_US, limit_millis * CFS_PERIOD_US // 1000)


def cpu_weight(shares: int) -> int:
    """cgroup v2 weight for v1 shares (runc's conversion)."""
    return 1 + ((shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


def v1_settings(limits: Limits, controllers: Iterable[str]) -> dict[str, str]:
    ctrls = set(controllers)
    out: dict[str, str] = {}
    if "memory" in ctrls and limits.memory_bytes is not None:
        out["memory.limit_in_bytes"] = str(limits.memory_bytes)
        # no swapping past the limit either (what runc does when no swap limit is given)
        out["memory.memsw.limit_in_bytes"] = str(limits.memory_bytes)
    if "cpu" in ctrls:
        if limits.cpu_limit_millis is not None:
            out["cpu.cfs_period_us"] = str(CFS_PERIOD_US)
            out["cpu.cfs_quota_us"] = str(cpu_quota_us(limits.cpu_limit_millis))
        if limits.cpu_request_millis is not None:
            out["cpu.shares"] = str(cpu_shares(limits.cpu_request_millis))
    return out


def v2_settings(limits: Limits, controllers: Iterable[str]) -> dict[str, str]:
    ctrls = set(controllers)
    out: dict[str, str] = {}
    if "memory" in ctrls and limits.memory_bytes is not None:
        out["memory.max"] = str(limits.memory_bytes)
        out["memory.swap.max"] = "0"
    if "cpu" in ctrls:
        if limits.cpu_limit_millis is not None:
            out["cpu.max"] = f"{cpu_quota_us(limits.cpu_limit_millis)} {CFS_PERIOD_US}"
        if limits.cpu_request_millis is not None:
            out["cpu.weight"] = str(cpu_weight(cpu_shares(limits.cpu_request_millis)))
    return out


def wanted_controllers(limits: Limits) -> set[str]:
    want = set()
    if limits.memory_bytes is not None:
        want.add("memory")
    if limits.cpu_limit_millis is not None or limits.cpu_request_millis is not None:
        want.add("cpu")
    return want


# The lab's tree -------------------------------------------------------------------------------


class CgroupTree:
    """The cgroups of one lab in every hierarchy: `<base>/netlab/<lab>/...`."""

    def __init__(self, prefix: str, found: list[Hierarchy] | None = None) -> None:
        self.lab = lab_name(prefix)
        self.hierarchies = hierarchies() if found is None else found

    def root(self, h: Hierarchy) -> Path:
        return h.base / ROOT_NAME / self.lab

    def unified_root(self) -> Path | None:
        """The lab's cgroup in the v2 hierarchy: what cgroup BPF programs attach to."""
        for h in self.hierarchies:
            if h.version == 2:
                return self.root(h)
        return None

    def create(self, rel: str, limits: Limits) -> Placement:
        """Make `rel` (e.g. `pod<uid>/<id>`) in every hierarchy and apply `limits`."""
        placement = Placement()
        applied: set[str] = set()
        want = wanted_controllers(limits)
        try:
            for h in self.hierarchies:
                path = self.root(h) / rel
                if h.version == 1:
                    path.mkdir(parents=True, exist_ok=True)
                    placement.dirs.append(path)
                    _write_all(path, v1_settings(limits, h.controllers))
                    applied |= want & h.controllers
                else:
                    usable = self._enable_v2(h, rel, want & h.controllers) if want else set()
                    path.mkdir(parents=True, exist_ok=True)
                    placement.dirs.append(path)
                    _write_all(path, v2_settings(limits, usable))
                    applied |= usable
        except OSError as e:
            self.remove(rel)
            raise KernelError(f"cannot set up cgroup {rel}: {e.strerror}", e.errno) from None
        placement.unsupported = sorted(want - applied)
        return placement

    def _enable_v2(self, h: Hierarchy, rel: str, ctrls: set[str]) -> set[str]:
        """Enable `ctrls` in subtree_control from the base down to the leaf's parent."""
        chain = [h.base]
        for part in Path(ROOT_NAME, self.lab, rel).parts[:-1]:
            chain.append(chain[-1] / part)
        usable = set(ctrls)
        for d in chain:
            d.mkdir(exist_ok=True)
            try:
                present = set((d / "cgroup.subtree_control").read_text().split())
            except OSError:
                return set()
            missing = usable - present
            if not missing:
                continue
            try:
                (d / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(missing)))
            except OSError:
                # a cgroup with processes of its own (not the root) cannot hand controllers down
                return set()
        return usable

    def remove(self, rel: str) -> None:
        """Remove `rel` and its parents up to the lab's root, where they are empty."""
        for h in self.hierarchies:
            root = self.root(h)
            path = root / rel
            _rmtree(path)
            parent = path.parent
            while parent != root and root in parent.parents:
                with contextlib.suppress(OSError):
                    parent.rmdir()
                parent = parent.parent

    def remove_all(self) -> list[str]:
        """Remove the lab's whole tree (and `netlab/` when it is left empty); returns problems."""
        problems = []
        for h in self.hierarchies:
            root = self.root(h)
            try:
                _rmtree(root)
            except KernelError as e:
                problems.append(str(e))
                continue
            with contextlib.suppress(OSError):
                root.parent.rmdir()
        return problems

    def leftovers(self) -> list[Path]:
        return [self.root(h) for h in self.hierarchies if self.root(h).exists()]


# present only when the kernel accounts swap
OPTIONAL_FILES = ("memory.memsw.limit_in_bytes", "memory.swap.max")


def _write_all(path: Path, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        if name in OPTIONAL_FILES and not (path / name).exists():
            continue
        (path / name).write_text(value)


def _rmtree(path: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup tree bottom-up. A cgroup whose last process just died may stay busy for
    a moment (EBUSY until the kernel has released it), so busy ones are retried briefly."""
    if not path.is_dir():
        return
    dirs = [Path(d) for d, _, _ in os.walk(path, topdown=False)]
    deadline = time.monotonic() + timeout
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise KernelError(f"cannot remove cgroup {d}: {e.strerror}", e.errno) from None


def oom_kills(dirs: Iterable[Path]) -> int:
    """How many processes the kernel OOM-killed in these cgroups (v1 oom_control, v2 events)."""
    total = 0
    for d in dirs:
        for name in ("memory.oom_control", "memory.events"):
            try:
                text = (Path(d) / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    total += int(value)
    return total
