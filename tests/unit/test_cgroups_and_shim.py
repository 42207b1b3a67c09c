"""Pure parts of the container runtime: cgroup discovery and settings, CRI log lines."""

from __future__ import annotations

from pathlib import Path

from netlab.runtime import cgroups, shim
from netlab.runtime.cgroups import Hierarchy, Limits

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 /sub /mnt/elsewhere rw,relatime - cgroup cgroup rw,memory
"""
SELF = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
"""


def test_hierarchies_are_the_memory_and_cpu_ones_and_v2_with_our_own_paths():
    found = cgroups.parse_hierarchies(MOUNTINFO, SELF)
    assert found == [
        Hierarchy(Path("/sys/fs/cgroup/cpu,cpuacct"), 1, frozenset({"cpu"}), "/"),
        Hierarchy(Path("/sys/fs/cgroup/memory"), 1, frozenset({"memory"}), "/process_api/abc"),
        Hierarchy(Path("/sys/fs/cgroup/unified"), 2, frozenset(), "/"),
    ]
    tree = cgroups.CgroupTree("nl-t1234-", found)
    assert tree.root(found[1]) == Path("/sys/fs/cgroup/memory/process_api/abc/netlab/nl-t1234")
    assert tree.unified_root() == Path("/sys/fs/cgroup/unified/netlab/nl-t1234")


def test_limits_become_v1_and_v2_settings():
    limits = Limits(memory_bytes=64 << 20, cpu_limit_millis=500, cpu_request_millis=250)
    assert cgroups.v1_settings(limits, {"memory"}) == {
        "memory.limit_in_bytes": str(64 << 20),
        "memory.memsw.limit_in_bytes": str(64 << 20),
    }
    assert cgroups.v1_settings(limits, {"cpu"}) == {
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "50000",
        "cpu.shares": "256",
    }
    assert cgroups.v2_settings(limits, {"memory", "cpu"}) == {
        "memory.max": str(64 << 20),
        "memory.swap.max": "0",
        "cpu.max": "50000 100000",
        "cpu.weight": str(cgroups.cpu_weight(256)),
    }
    # tiny values are clamped the kubelet's way
    assert cgroups.cpu_quota_us(1) == 1000 and cgroups.cpu_shares(1) == 2
    assert cgroups.cpu_weight(2) == 1 and cgroups.cpu_weight(262144) == 10000
    assert cgroups.wanted_controllers(Limits()) == set()
    assert cgroups.v1_settings(Limits(), {"memory", "cpu"}) == {}


def test_oom_kills_are_read_from_v1_and_v2_files(tmp_path):
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert cgroups.oom_kills([v1, v2, tmp_path / "missing"]) == 3


def test_cri_lines_split_full_and_partial_lines():
    ts = 1_796_036_596_000_000_123
    stamp = b"2026-11-30T11:03:16.000000123Z"
    lines, rest = shim.cri_lines("stdout", b"a\nb\nc", ts)
    assert lines == [stamp + b" stdout F a\n", stamp + b" stdout F b\n"] and rest == b"c"
    lines, rest = shim.cri_lines("stderr", rest, ts, eof=True)
    assert lines == [stamp + b" stderr F c\n"] and rest == b""
    big = b"y" * (shim.MAX_LINE + 10)
    lines, rest = shim.cri_lines("stdout", big, ts)
    assert lines == [stamp + b" stdout P " + b"y" * shim.MAX_LINE + b"\n"] and rest == b"y" * 10
    lines, rest = shim.cri_lines("stdout", rest + b"\n", ts)
    assert lines == [stamp + b" stdout F " + b"y" * 10 + b"\n"] and rest == b""
    assert shim.timestamp(0) == "1970-01-01T00:00:00.000000000Z"


def test_the_shims_json_is_json():
    import json

    record = {"error": 'exec: "x\\y": not found\n\tbad \x01', "pid": 12, "t": 1.5, "ok": True, "none": None}
    assert json.loads(shim.to_json(record)) == record
