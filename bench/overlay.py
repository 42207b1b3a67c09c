"""Pod-to-pod data-path benchmark of the overlay, every figure against a raw veth from the same run.

Run as root from the repository: `.venv/bin/python bench/overlay.py [--seconds N] [--rounds N]`.

Paths, each measured with one iperf3 TCP stream (throughput) and a TCP request/response loop
of 1-byte messages over one connection (latency, like netperf's TCP_RR):
- raw veth: two namespaces joined by one veth pair, nothing else (the yardstick);
- same node: two pods on one node's `cni0` bridge;
- VXLAN: pods on two nodes, through `flannel.1` and the underlay switch, as flanneld sets it
  up (transmit checksum offload off on `flannel.1`, the workaround for bad-checksum drops);
- VXLAN, offload on: the same with `--tx-checksum-offload` (the kernel then hands whole TCP
  segments to the underlay instead of one VXLAN packet per MTU-sized segment);
- host-gw: pods on two nodes, routed via the peers' underlay addresses.

The overlay paths run in a real two-node lab (the lab's namespaces, a real etcd, `netlab
flanneld` per node), one lab per backend. Rounds are interleaved across paths so a busy
moment on the shared machine hits every path alike; the median round is reported. Targets:
VXLAN >= 0.8x the raw veth, host-gw >= 0.95x.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab import kernel  # noqa: E402
from netlab.etcd import server  # noqa: E402
from netlab.kernel import Rtnl, run_in_netns  # noqa: E402
from netlab.layout import Layout  # noqa: E402
from netlab.overlay.config import make_config  # noqa: E402
from tests.root.overlaylab import Iperf, OverlayLab, Pod  # noqa: E402

RR_PORT = 7100

_RR_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    b = c.recv(1)
    if not b:
        break
    c.sendall(b)
"""


def rr_latency(client: Pod, server_pod: Pod, seconds: float) -> float:
    """Mean round-trip time in microseconds of 1-byte request/response over one connection."""
    srv = subprocess.Popen(
        kernel.in_netns(server_pod.netns, [sys.executable, "-c", _RR_SERVER, str(RR_PORT)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"

        def work() -> float:
            with socket.create_connection((server_pod.ip, RR_PORT), timeout=5) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(200):  # warm up caches and the neighbour tables
                    s.sendall(b"x")
                    s.recv(1)
                n = 0
                t0 = time.perf_counter()
                deadline = t0 + seconds
                while True:
                    s.sendall(b"x")
                    s.recv(1)
                    n += 1
                    if n % 100 == 0 and time.perf_counter() >= deadline:
                        break
                return (time.perf_counter() - t0) / n * 1e6

        return run_in_netns(client.netns, work)
    finally:
        srv.kill()
        srv.wait()


def throughput(client: Pod, server_pod: Pod, seconds: int) -> float:
    """Gbit/s of one iperf3 TCP stream, as the receiver counted it."""
    # client and server on different CPUs, the same for every path: less scheduler noise
    run = Iperf(server_pod, client, seconds, extra=("-A", "0,1"))
    try:
        result = run.result()
    finally:
        run.close()
    end = result["end"]
    assert isinstance(end, dict)
    return float(end["sum_received"]["bits_per_second"]) / 1e9


@contextlib.contextmanager
def raw_veth(layout: Layout) -> Iterator[tuple[Pod, Pod]]:
    a, b = layout.pod_netns("raw-a"), layout.pod_netns("raw-b")
    try:
        for ns in (a, b):
            kernel.ensure_netns(ns)
        with Rtnl(a) as r:
            r.add_veth("eth0", "eth0", peer_netns=b)
            r.set_link("lo", up=True)
            r.set_link("eth0", up=True)
            r.ensure_address("eth0", "10.99.0.1/24")
        with Rtnl(b) as r:
            r.set_link("lo", up=True)
            r.set_link("eth0", up=True)
            r.ensure_address("eth0", "10.99.0.2/24")
        yield Pod("raw-a", "-", a, "10.99.0.1"), Pod("raw-b", "-", b, "10.99.0.2")
    finally:
        for ns in (a, b):
            kernel.delete_netns(ns)


@contextlib.contextmanager
def overlay_lab(base: Path, etcd_url: str, backend: str, *flanneld_args: str) -> Iterator[OverlayLab]:
    tag = secrets.token_hex(2)
    layout = Layout(prefix=f"nl-b{tag}-", state_dir=base / tag / "state", run_dir=base / tag / "run")
    # one etcd, one key prefix per lab: the labs' nodes share underlay addresses
    lab = OverlayLab(layout, etcd_url, nodes=2, etcd_prefix=f"/{tag}/coreos.com/network")
    try:
        lab.up(make_config("10.244.0.0/16", backend=backend))
        for node in lab.nodes:
            lab.start_flanneld(node, *flanneld_args)
        yield lab
    finally:
        lab.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="length of each iperf3 run (default 5)")
    ap.add_argument("--rr-seconds", type=float, default=2.0, help="length of each latency run (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per path (default 3)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="netlab-bench-overlay-") as tmp:
        base = Path(tmp)
        etcd_layout = Layout(
            prefix=f"nl-b{secrets.token_hex(2)}-",
            state_dir=base / "etcd" / "state",
            run_dir=base / "etcd" / "run",
        )
        url = server.start(etcd_layout, any_port=True)
        try:
            with contextlib.ExitStack() as stack:
                raw = stack.enter_context(raw_veth(etcd_layout))
                vx = stack.enter_context(overlay_lab(base, url, "vxlan"))
                paths: dict[str, tuple[Pod, Pod]] = {"raw veth": raw}
                paths["same node"] = (vx.pod("node1", "sn-a"), vx.pod("node1", "sn-b"))
                paths["VXLAN"] = (vx.pod("node1", "vx-a"), vx.pod("node2", "vx-b"))
                vo = stack.enter_context(overlay_lab(base, url, "vxlan", "--tx-checksum-offload"))
                paths["VXLAN, offload on"] = (vo.pod("node1", "vo-a"), vo.pod("node2", "vo-b"))
                # host-gw needs its own lab: a network has one backend
                hg = stack.enter_context(overlay_lab(base, url, "host-gw"))
                paths["host-gw"] = (hg.pod("node1", "hg-a"), hg.pod("node2", "hg-b"))
                results = measure(paths, args.seconds, args.rr_seconds, args.rounds)
        finally:
            server.stop(etcd_layout)
    report(results, args)
    return 0


def measure(
    paths: dict[str, tuple[Pod, Pod]], seconds: int, rr_seconds: float, rounds: int
) -> dict[str, tuple[float, float]]:
    tput: dict[str, list[float]] = {p: [] for p in paths}
    lat: dict[str, list[float]] = {p: [] for p in paths}
    for r in range(rounds):
        for name, (a, b) in paths.items():
            tput[name].append(throughput(a, b, seconds))
            lat[name].append(rr_latency(a, b, rr_seconds))
            print(
                f"round {r + 1}/{rounds} {name:18s} {tput[name][-1]:6.2f} Gbit/s  {lat[name][-1]:7.1f} us",
                file=sys.stderr,
                flush=True,
            )
    return {p: (statistics.median(tput[p]), statistics.median(lat[p])) for p in paths}


def report(results: dict[str, tuple[float, float]], args: argparse.Namespace) -> None:
    raw_t, raw_l = results["raw veth"]
    print(f"\npod-to-pod, median of {args.rounds} rounds (iperf3 {args.seconds}s, TCP RR {args.rr_seconds}s)")
    print(f"{'path':18s} {'Gbit/s':>8s} {'x veth':>7s} {'RR us':>8s} {'x veth':>7s}")
    for name, (t, lat) in results.items():
        print(f"{name:18s} {t:8.2f} {t / raw_t:7.2f} {lat:8.1f} {lat / raw_l:7.2f}")
    vx = results["VXLAN"][0] / raw_t
    hg = results["host-gw"][0] / raw_t
    print(
        f"targets: VXLAN >= 0.80x ({'met' if vx >= 0.8 else 'NOT met'}: {vx:.2f}x), "
        f"host-gw >= 0.95x ({'met' if hg >= 0.95 else 'NOT met'}: {hg:.2f}x)"
    )


if __name__ == "__main__":
    sys.exit(main())
