"""Service data-path and sync benchmark, every figure against a yardstick from the same run.

Run as root from the repository: `.venv/bin/python bench/services.py [--quick]`.

Data path, per proxy mode: a one-node lab (real namespaces, `netlab.images.echo` and iperf3
in pods) where a client pod reaches the same backend pod through a ClusterIP and directly by
its pod IP (the yardstick):
- connection setup: connect + one request/response on a fresh TCP connection, p50/p99;
- throughput: one iperf3 TCP stream for a few seconds.
The paths are measured in three interleaved rounds, so a busy moment on the shared machine hits
every path alike; throughput is the median round, latency percentiles are over all rounds.

iptables sync: in a fresh namespace, `IptablesMode.sync` for 100, 1,000 and 5,000 services
of two endpoints each (every tenth a NodePort): the full sync into an empty namespace, a full
resync over the loaded rules, and a partial sync after one endpoint change, for both
iptables backends.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab import kernel  # noqa: E402
from netlab.kernel import run_in_netns  # noqa: E402
from netlab.layout import Layout  # noqa: E402
from proxy.iptables.mode import IptablesMode  # noqa: E402
from proxy.mode import NodeInfo  # noqa: E402
from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot  # noqa: E402
from proxy.modes import make_mode  # noqa: E402
from proxy.proxier import Proxier  # noqa: E402
from tests.root.svclab import ServiceLab  # noqa: E402

VIP = "10.96.0.10"
IPERF_VIP = "10.96.0.11"


def connect_latencies(netns: str, ip: str, port: int, n: int) -> list[float]:
    def work() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            with socket.create_connection((ip, port), timeout=5) as s:
                s.sendall(b"x\n")
                if not s.recv(200):
                    raise RuntimeError("no answer")
            out.append(time.perf_counter() - t0)
        return out

    return run_in_netns(netns, work)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def iperf(netns: str, ip: str, seconds: float) -> float:
    argv = ["iperf3", "-c", ip, "-p", "5201", "-t", str(seconds), "-J"]
    proc = subprocess.run(kernel.in_netns(netns, argv), capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"iperf3 to {ip} failed: {proc.stdout[-300:]} {proc.stderr[-300:]}")
    return float(json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"])


def datapath(quick: bool) -> None:
    n_conn = 300 if quick else 2000
    seconds = 2 if quick else 5
    rounds = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="netlab-bench-"))
    layout = Layout(prefix=f"nl-b{secrets.token_hex(3)}-", state_dir=tmp / "state", run_dir=tmp / "run")
    lab = ServiceLab(layout, nodes=1)
    iperf_proc = None
    try:
        backend = lab.add_pod("backend", "node1")
        client = lab.add_pod("client", "node1")
        lab.wait_ready()
        iperf_proc = subprocess.Popen(
            kernel.in_netns(backend.netns, ["iperf3", "-s", "-p", "5201"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        services = [
            lab.service("echo", VIP, port=80, target=8080),
            lab.service("iperf", IPERF_VIP, port=5201, target=5201),
        ]
        slices = [
            lab.endpoint_slice("echo", ["backend"]),
            lab.endpoint_slice("iperf", ["backend"], port=5201),
        ]

        # interleaved rounds, so a busy moment on the shared machine hits every path alike
        paths = ("direct", "iptables", "userspace")
        lats: dict[str, list[float]] = {p: [] for p in paths}
        bws: dict[str, list[float]] = {p: [] for p in paths}
        per_round = max(1, n_conn // rounds)
        for _ in range(rounds):
            lats["direct"] += connect_latencies(client.netns, backend.ip, 8080, per_round)
            bws["direct"].append(iperf(client.netns, backend.ip, seconds))
            for mode in paths[1:]:
                info = NodeInfo("node1", node_ips=(lab.node_ip("node1"),))
                p = Proxier(make_mode(mode, lab.node_netns("node1"), info))
                p.replace_all(services, slices)
                p.sync(True)
                try:
                    lats[mode] += connect_latencies(client.netns, VIP, 80, per_round)
                    bws[mode].append(iperf(client.netns, IPERF_VIP, seconds))
                finally:
                    p.mode.cleanup()
        print(
            f"\n== data path (client pod -> backend pod, one node; {rounds} interleaved rounds of "
            f"{per_round} connects and iperf3 {seconds}s; median throughput)"
        )
        print(f"{'path':<12}{'connect p50':>13}{'p99':>10}{'throughput':>14}{'ratio':>8}{'p50 ratio':>11}")
        direct_bw, direct_p50 = statistics.median(bws["direct"]), pct(lats["direct"], 50)
        for path in paths:
            bw, lat = statistics.median(bws[path]), lats[path]
            print(
                f"{path:<12}{pct(lat, 50) * 1e6:>10.0f} us{pct(lat, 99) * 1e6:>7.0f} us"
                f"{bw / 1e9:>9.2f} Gb/s{bw / direct_bw:>8.2f}{pct(lat, 50) / direct_p50:>11.2f}"
            )
        print("targets: kernel mode throughput >= 0.95x direct, userspace >= 0.5x direct")
    finally:
        if iperf_proc:
            iperf_proc.kill()
            iperf_proc.wait()
        lab.close()


def big_snapshot(n: int) -> Snapshot:
    services = {}
    endpoints = {}
    for i in range(n):
        spn = ServicePortName(f"ns{i % 50}", f"svc{i}", "http", "TCP")
        vip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        services[spn] = ServicePort(spn, vip, 80, node_port=30000 + i if i % 10 == 0 else None)
        endpoints[spn] = tuple(
            Endpoint(f"10.244.{(2 * i + j) // 250 % 256}.{(2 * i + j) % 250 + 2}", 8080, f"node{j + 1}")
            for j in range(2)
        )
    return Snapshot(services, endpoints)


def sync_times(sizes: list[int], backends: list[str]) -> None:
    print("\n== iptables sync (2 endpoints per service, every 10th a NodePort)")
    print(f"{'backend':<8}{'services':>9}{'lines':>8}{'full (empty)':>14}{'resync':>10}{'partial':>10}")
    for backend in backends:
        for n in sizes:
            ns = f"nl-b{secrets.token_hex(3)}-sync"
            kernel.ensure_netns(ns)
            try:
                snap = big_snapshot(n)
                mode = IptablesMode(ns, NodeInfo("node1"), backend)
                t0 = time.perf_counter()
                mode.sync(snap, None)
                full = time.perf_counter() - t0
                lines = mode.last_restore.count("\n")
                t0 = time.perf_counter()
                mode.sync(snap, None)
                resync = time.perf_counter() - t0
                # one endpoint of one service moves: what a pod restart does
                spn = sorted(snap.services)[n // 2]
                eps = dict(snap.endpoints)
                eps[spn] = (Endpoint("10.250.0.9", 8080, "node1"), eps[spn][1])
                changed = Snapshot(snap.services, eps)
                t0 = time.perf_counter()
                mode.sync(changed, frozenset({spn}))
                partial = time.perf_counter() - t0
            finally:
                kernel.delete_netns(ns)
            print(f"{backend:<8}{n:>9}{lines:>8}{full:>12.3f} s{resync:>8.3f} s{partial * 1000:>7.1f} ms")
    print("targets: full sync of 5,000 services < 0.5 s, one-service partial sync < 50 ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer connections, shorter runs, fewer services")
    ap.add_argument("--no-datapath", action="store_true")
    ap.add_argument("--no-sync", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/services.py: run as root (it builds network namespaces)", file=sys.stderr)
        return 2
    if not args.no_datapath:
        datapath(args.quick)
    if not args.no_sync:
        sync_times([100, 1000] if args.quick else [100, 1000, 5000], ["legacy", "nft"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
