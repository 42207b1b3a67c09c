#!/usr/bin/env python3
"""CNI ADD/DEL latency: netlab-bridge + netlab-host-local against the reference plugins.

For N pods, times ADD and then DEL through `netlab.cni.CniRuntime` (the runtime the sandbox
runtime and the kubelet use) for two networks that differ only in their plugins:

- ours: `netlab-bridge` with `netlab-host-local` (launchers from `netlab cni install-plugins`),
  with the node's CNI server running (`server`) or without it (`no-server`);
- reference: `bridge` with `host-local` from /usr/lib/cni (Debian's Go binaries).

Both use the lab's bridge keys (isGateway, ipMasq, hairpinMode, mtu, a default route), each
in a node namespace of its own, and the calls alternate (ours/reference, then
reference/ours) so that both see the same machine. Prints p50 and p99 per side and the ratio
ours/reference; the goal is an ADD p50 ratio of at most 1.5 with the server running.

Everything happens in namespaces this script creates (prefix `nl-b<hex>-`) and is removed at
the end, also on failure. Run as root:

    .venv/bin/python bench/cni_add.py [--pods 50] [--mode server|no-server|both] [--no-masq]
                                      [--launcher launcher|console-script]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cni.install import install_plugins  # noqa: E402
from cni.server import wait_serving  # noqa: E402
from netlab import kernel  # noqa: E402
from netlab.cni.config import parse_conflist  # noqa: E402
from netlab.cni.runtime import CniRuntime  # noqa: E402
from netlab.kernel import Rtnl  # noqa: E402
from netlab.layout import Layout  # noqa: E402

REFERENCE_DIR = "/usr/lib/cni"
TARGET = 1.5


def conflist(name: str, bridge: str, ipam: str, subnet: str, data_dir: Path, masq: bool) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": bridge,
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": masq,
                "hairpinMode": True,
                "mtu": 1450,
                "ipam": {
                    "type": ipam,
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(data_dir),
                },
            }
        ],
    }


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Side:
    def __init__(self, label: str, layout: Layout, node: str, conf: dict[str, Any], dirs: list[str]) -> None:
        self.label = label
        self.node = layout.node_netns(node)
        kernel.ensure_netns(self.node)
        with Rtnl(self.node) as r:
            r.set_link("lo", up=True)
        self.rt = CniRuntime(
            parse_conflist(json.dumps(conf)), dirs, layout.state_dir / node / "cache", self.node
        )
        self.add_ms: list[float] = []
        self.del_ms: list[float] = []

    def add(self, cid: str, pod: str) -> float:
        return timed(lambda: self.rt.add(cid, pod, "eth0"))

    def delete(self, cid: str, pod: str) -> float:
        def run() -> None:
            errors = self.rt.delete(cid, pod, "eth0")
            if errors:
                raise errors[0]

        return timed(run)


def run_mode(mode: str, pods: int, masq: bool, launcher: str, work: Path) -> dict[str, dict[str, float]]:
    layout = Layout(prefix=f"nl-b{secrets.token_hex(3)}-", state_dir=work / mode, run_dir=work / mode / "run")
    if launcher == "launcher":
        bin_dir = str(install_plugins(work / mode / "bin")[0].parent)
    else:
        bin_dir = str(Path(sys.executable).parent)  # pip's console scripts
    server = None
    try:
        ours = Side(
            "netlab",
            layout,
            "ours",
            conflist(
                "bench",
                "netlab-bridge",
                "netlab-host-local",
                "10.200.0.0/16",
                work / mode / "ipam-ours",
                masq,
            ),
            [bin_dir, REFERENCE_DIR],
        )
        ref = Side(
            "reference",
            layout,
            "ref",
            conflist("bench", "bridge", "host-local", "10.201.0.0/16", work / mode / "ipam-ref", masq),
            [REFERENCE_DIR],
        )
        if mode == "server":
            netlab = Path(sys.executable).parent / "netlab"
            server = subprocess.Popen(
                [str(netlab), "cni-server", "--netns", ours.node],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_serving(ours.node, alive=lambda: server is not None and server.poll() is None)
        sides = (ours, ref)
        names = [layout.pod_netns(f"{s.label[0]}{i}") for s in sides for i in range(pods + 1)]
        for name in names:
            kernel.ensure_netns(name)

        def pod(side: Side, i: int) -> str:
            return layout.pod_netns(f"{side.label[0]}{i}")

        for side in sides:  # warm-up: creates the bridge, loads what is loaded once
            side.add("warmup", pod(side, pods))
            side.delete("warmup", pod(side, pods))
        for i in range(pods):
            for side in sides if i % 2 == 0 else sides[::-1]:
                side.add_ms.append(side.add(f"c{i}", pod(side, i)))
        for i in range(pods):
            for side in sides if i % 2 == 0 else sides[::-1]:
                side.del_ms.append(side.delete(f"c{i}", pod(side, i)))
        return {
            s.label: {
                "add_p50": pct(s.add_ms, 50),
                "add_p99": pct(s.add_ms, 99),
                "del_p50": pct(s.del_ms, 50),
                "del_p99": pct(s.del_ms, 99),
            }
            for s in sides
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        for name in kernel.list_netns():
            if name.startswith(layout.prefix):
                kernel.delete_netns(name)


def report(mode: str, pods: int, masq: bool, launcher: str, r: dict[str, dict[str, float]]) -> float:
    ours, ref = r["netlab"], r["reference"]
    print(f"\nmode: {mode}, {pods} pods, ipMasq {'on' if masq else 'off'}, plugins via {launcher}")
    print(f"{'':10}{'netlab ms':>12}{'reference ms':>14}{'ratio':>8}")
    for key in ("add_p50", "add_p99", "del_p50", "del_p99"):
        print(f"{key:10}{ours[key]:12.1f}{ref[key]:14.1f}{ours[key] / ref[key]:8.2f}")
    ratio = ours["add_p50"] / ref["add_p50"]
    print(f"ADD p50 ratio {ratio:.2f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'not met'}")
    return ratio


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=50)
    p.add_argument("--mode", choices=("server", "no-server", "both"), default="both")
    p.add_argument("--no-masq", action="store_true", help="ipMasq off on both sides")
    p.add_argument(
        "--launcher",
        choices=("launcher", "console-script"),
        default="launcher",
        help="netlab plugins via `netlab cni install-plugins` launchers (python -IS) or pip's scripts",
    )
    args = p.parse_args()
    if os.geteuid() != 0:
        print("cni_add.py: run as root (it builds network namespaces)", file=sys.stderr)
        return 2
    if not os.path.exists(f"{REFERENCE_DIR}/bridge"):
        print(f"cni_add.py: reference plugins missing in {REFERENCE_DIR}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="netlab-bench-cni-"))
    try:
        modes = ("server", "no-server") if args.mode == "both" else (args.mode,)
        for mode in modes:
            result = run_mode(mode, args.pods, not args.no_masq, args.launcher, work)
            report(mode, args.pods, not args.no_masq, args.launcher, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
