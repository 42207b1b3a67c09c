"""Pod start-up on the lab: creation-to-Ready of a 30-pod Deployment over 3 nodes.

Run as root from the repository: `.venv/bin/python bench/pod_startup.py [--pods N] [--nodes M]
[--rounds R]`.

A private lab (`netlab up --nodes M`, its own name prefix, directories and free ports) runs the
whole path: a Deployment of N `nginx:1.14` pods (netlab/echo stands in) is applied, the
controllers create the pods, the scheduler binds them, the kubelets make sandboxes, run CNI ADD
and start the containers. A watch started before the Deployment times every pod on this
machine's clock: created (the watch's ADDED), bound (`spec.nodeName` appears) and Ready. It
prints:

- creation-to-Ready p50 and p99 (nearest rank) over the pods; targets: p99 <= 2 s
  (Kubernetes' SLO is 5 s);
- the scheduler's binding throughput: the lab's scheduler is stopped, the Deployment's N pods
  are created and wait Pending, the scheduler is started again, and bindings per second are
  counted from the first binding to the last (target >= 200). Twice: once with the kubelets
  stopped until the last binding (the scheduler's own rate, as scheduler_perf measures it with
  no kubelets) and once with the kubelets starting each pod as it is bound, competing for the
  machine's cores. While the pods are applied normally, bindings cannot outpace the ReplicaSet
  controller's creations, so that rate is printed too, as what the timings above saw;
- the share of the pods' creation-to-Ready time spent in the CNI plugins, from the kubelets'
  `/metrics` (CNI ADD seconds summed over the pods, divided by creation-to-Ready summed);
- CPU seconds per pod by lab component (etcd, apiserver, each kubelet with the plugins,
  pause processes, shims and containers it started and reaped, each CNI server...), from
  /proc over the whole round including the deletion, and the machine's total for comparison
  (the machine is shared: its total includes other users' work and the kernel's own threads);
- yardstick: the same number of sandboxes with the same container started straight through
  the container runtime on the same nodes, with no apiserver, scheduler or kubelet (the
  runtime's own p99, in parallel per node as the kubelets run them), and the ratio.

With R rounds the Deployment is deleted and applied again; each round is printed and the
median p99 summarises them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab.cluster.client import ApiClient  # noqa: E402
from netlab.cluster.kubelet import images  # noqa: E402
from netlab.cluster.kubelet.metrics import parse as parse_metrics  # noqa: E402
from netlab.lab import agent, processes, state  # noqa: E402
from netlab.lab import pods as lab_pods  # noqa: E402
from netlab.layout import Layout  # noqa: E402
from netlab.runtime import containers, sandbox  # noqa: E402
from netlab.runtime.cgroups import CgroupTree  # noqa: E402
from netlab.runtime.containers import ContainerConfig  # noqa: E402

NETLAB = Path(sys.executable).parent / "netlab"
NAMESPACE = "default"
CNI = ("kubelet_network_plugin_operations_duration_seconds_sum", "set_up_pod")
RUNTIME = "kubelet_runtime_operations_duration_seconds"


def deployment(n: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": NAMESPACE},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "web", "image": "nginx:1.14", "ports": [{"containerPort": 80}]}],
                },
            },
        },
    }


@dataclass
class Timing:
    created: float
    bound: float | None = None
    ready: float | None = None


@dataclass
class Watcher:
    client: ApiClient
    timings: dict[str, Timing] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, rv: str) -> None:
        while not self.stop.is_set():
            for ev in self.client.watch("pods", NAMESPACE, resource_version=rv, label_selector="app=bench",
                                        timeout_seconds=60):  # fmt: skip
                now = time.monotonic()
                obj = ev.object
                rv = obj["metadata"].get("resourceVersion", rv)
                if ev.type == "DELETED" or self.stop.is_set():
                    continue
                uid = obj["metadata"]["uid"]
                with self.lock:
                    t = self.timings.setdefault(uid, Timing(now))
                    if t.bound is None and (obj.get("spec") or {}).get("nodeName"):
                        t.bound = now
                    conds = (obj.get("status") or {}).get("conditions") or []
                    if t.ready is None and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                        t.ready = now


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # nearest rank
    return ordered[int(rank) - 1]


def kubelet_metrics(client: ApiClient) -> dict[tuple[str, str], float]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # kubelets serve self-signed certificates
    total: dict[tuple[str, str], float] = {}
    for node in client.list("nodes")["items"]:
        url = node["metadata"]["annotations"]["netlab.io/kubelet-url"]
        with urllib.request.urlopen(f"{url}/metrics", context=ctx, timeout=10) as resp:
            for k, v in parse_metrics(resp.read().decode()).items():
                total[k] = total.get(k, 0.0) + v
    return total


def _cpu(pid: int) -> float:
    """CPU seconds of a process and of the children it has reaped (utime, stime, cutime, cstime)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_by_component(layout: Layout) -> dict[str, float]:
    """CPU seconds so far of every running lab component, children reaped included; a node
    agent's children (flanneld, kubelet, kube-proxy) are counted on their own, as
    `<child>-<node>`, and the agent itself as what is left."""
    out = {r.name: _cpu(r.pid) for r in processes.list_running(layout)}
    for node in state.load(layout).topology.node_names:
        status = agent.read_status(layout, node)
        for child in status.children if status else []:
            if child.pid is not None:
                out[f"{child.name}-{node}"] = _cpu(child.pid)
    return out


def machine_cpu() -> float:
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def one_round(client: ApiClient, layout: Layout, n: int, timeout: float) -> dict[str, Any]:
    cpu_before, machine_before = cpu_by_component(layout), machine_cpu()
    before = kubelet_metrics(client)
    rv = client.list("pods", NAMESPACE)["metadata"]["resourceVersion"]
    w = Watcher(client)
    t = threading.Thread(target=w.run, args=(rv,), daemon=True)
    t.start()
    client.create("deployments", deployment(n), NAMESPACE)
    deadline = time.monotonic() + timeout
    while True:
        with w.lock:
            done = [x for x in w.timings.values() if x.ready is not None]
            seen = len(w.timings)
        if len(done) >= n:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(done)} of {n} pods Ready ({seen} created) within {timeout:g} s")
        time.sleep(0.05)
    w.stop.set()
    after = kubelet_metrics(client)
    with w.lock:
        timings = list(w.timings.values())
    to_ready = [x.ready - x.created for x in timings if x.ready is not None]
    to_bound = [x.bound - x.created for x in timings if x.bound is not None]
    bound_to_ready = [x.ready - x.bound for x in timings if x.ready is not None and x.bound is not None]
    binds = sorted(x.bound for x in timings if x.bound is not None)

    def delta(series: str, op: str) -> float:
        return after.get((series, op), 0.0) - before.get((series, op), 0.0)

    cni = delta(*CNI)
    sandbox_s = delta(RUNTIME + "_sum", "run_podsandbox")
    start_s = delta(RUNTIME + "_sum", "start_container")
    client.delete("deployments", "bench", NAMESPACE, propagation="Foreground")
    while client.list("pods", NAMESPACE, label_selector="app=bench")["items"]:
        time.sleep(0.2)
    cpu_after, machine_after = cpu_by_component(layout), machine_cpu()
    cpu = {k: (v - cpu_before.get(k, 0.0)) / n for k, v in cpu_after.items()}
    return {
        "cpu_per_pod": {k: round(v, 4) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
        "machine_cpu_per_pod": (machine_after - machine_before) / n,
        "p50": percentile(to_ready, 50),
        "p99": percentile(to_ready, 99),
        "binds_per_s": (len(binds) - 1) / (binds[-1] - binds[0])
        if len(binds) > 1 and binds[-1] > binds[0]
        else 0.0,
        "cni_share": cni / sum(to_ready),
        "cni_mean": cni / len(to_ready),
        "bound_p50": percentile(to_bound, 50),
        "bound_to_ready_p50": percentile(bound_to_ready, 50),
        "sandbox_mean": sandbox_s / len(to_ready),
        "start_mean": start_s / len(to_ready),
    }


def kubelet_pids(layout: Layout) -> list[int]:
    pids = []
    for node in state.load(layout).topology.node_names:
        status = agent.read_status(layout, node)
        pids += [c.pid for c in (status.children if status else []) if c.name == "kubelet" and c.pid]
    return pids


def binding_throughput(client: ApiClient, layout: Layout, n: int, timeout: float, *, alone: bool) -> float:
    """Bindings per second of the lab's scheduler on a backlog of n Pending pods.

    With `alone`, the kubelets are stopped (SIGSTOP) until the last binding, so the figure is
    the scheduler's and the apiserver's, as kube-scheduler's own benchmark (scheduler_perf)
    measures it with no kubelets; without, the kubelets start each pod as it is bound and
    compete for this machine's two cores.
    """
    argv = [sys.executable, "-m", "netlab.cli", "scheduler", "--kubeconfig", str(layout.kubeconfig)]
    processes.stop(layout, "scheduler")
    frozen = kubelet_pids(layout) if alone else []
    try:
        client.create("deployments", deployment(n), NAMESPACE)
        deadline = time.monotonic() + timeout
        while len(client.list("pods", NAMESPACE, label_selector="app=bench")["items"]) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the controllers did not create {n} pods within {timeout:g} s")
            time.sleep(0.1)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
    finally:
        processes.start(layout, "scheduler", argv)
    try:
        rv = client.list("pods", NAMESPACE)["metadata"]["resourceVersion"]
        w = Watcher(client)
        t = threading.Thread(target=w.run, args=(rv,), daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while True:
            with w.lock:
                binds = sorted(x.bound for x in w.timings.values() if x.bound is not None)
            if len(binds) >= n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(binds)} of {n} pods bound within {timeout:g} s")
            time.sleep(0.02)
        w.stop.set()
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    client.delete("deployments", "bench", NAMESPACE, propagation="Foreground")
    while client.list("pods", NAMESPACE, label_selector="app=bench")["items"]:
        time.sleep(0.2)
    return (n - 1) / (binds[-1] - binds[0]) if binds[-1] > binds[0] else float("inf")


def yardstick(layout: Layout, n: int) -> float:
    """p99 of sandbox + container started straight through the runtime, in parallel per node."""
    nodes = state.load(layout).topology.node_names
    prog = images.resolve({"image": "nginx:1.14", "ports": [{"containerPort": 80}]})
    tree = CgroupTree(layout.prefix)
    results: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        node = nodes[i % len(nodes)]
        t0 = time.monotonic()
        sb = sandbox.run(layout, f"yard-{i}", node, lab_pods.node_network(layout, node))
        log = layout.state_dir / "bench" / f"yard-{i}.log"
        containers.start(layout, sb, ContainerConfig("web", prog.argv), 0, log, tree, f"podyard-{i}")
        with lock:
            results.append(time.monotonic() - t0)

    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(one, range(n)))
    for i in range(n):
        lab_pods.remove_pod(layout, f"yard-{i}")
        tree.remove(f"podyard-{i}")
    return percentile(results, 99)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=30, help="replicas of the Deployment (default 30)")
    ap.add_argument("--nodes", type=int, default=3, help="lab nodes (default 3)")
    ap.add_argument("--rounds", type=int, default=1, help="apply-and-delete rounds (default 1)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for all pods to be Ready")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("pod_startup: run as root (the lab builds namespaces)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="netlab-bench-"))
    layout = Layout(prefix=f"nl-b{secrets.token_hex(3)}-", state_dir=base / "state", run_dir=base / "run")
    env = {**os.environ, **layout.env(), "NETLAB_ETCD_PORT": "0", "NETLAB_APISERVER_PORT": "0"}
    up = subprocess.run(
        [str(NETLAB), "up", "--nodes", str(args.nodes)], env=env, capture_output=True, text=True
    )
    try:
        if up.returncode != 0:
            print(f"netlab up failed: {up.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        with ApiClient.from_kubeconfig(layout.kubeconfig) as client:
            rounds = []
            for r in range(args.rounds):
                res = one_round(client, layout, args.pods, args.timeout)
                rounds.append(res)
                print(
                    f"round {r + 1}: creation-to-Ready p50 {res['p50']:.2f} s, p99 {res['p99']:.2f} s; "
                    f"{res['binds_per_s']:.0f} bindings/s; CNI ADD {res['cni_mean'] * 1000:.0f} ms per pod, "
                    f"{res['cni_share'] * 100:.1f}% of creation-to-Ready"
                )
                print(
                    f"  created->bound p50 {res['bound_p50']:.2f} s, "
                    f"bound->Ready p50 {res['bound_to_ready_p50']:.2f} s; "
                    f"per pod: sandbox {res['sandbox_mean'] * 1000:.0f} ms (CNI included), "
                    f"container start {res['start_mean'] * 1000:.0f} ms"
                )
                top = ", ".join(f"{k} {v * 1000:.0f}" for k, v in list(res["cpu_per_pod"].items())[:8])
                lab_ms = sum(res["cpu_per_pod"].values()) * 1000
                print(
                    f"  CPU ms per pod (create and delete): lab {lab_ms:.0f} ({top}); "
                    f"machine {res['machine_cpu_per_pod'] * 1000:.0f}"
                )
            backlog = binding_throughput(client, layout, args.pods, args.timeout, alone=False)
            alone = binding_throughput(client, layout, args.pods, args.timeout, alone=True)
        yard = yardstick(layout, args.pods)
        p99 = statistics.median(r["p99"] for r in rounds)
        print(json.dumps({"pods": args.pods, "nodes": args.nodes, "rounds": rounds}, indent=None))
        print(f"creation-to-Ready p99 (median of rounds): {p99:.2f} s (target <= 2 s; Kubernetes SLO 5 s)")
        print(
            f"binding throughput on a backlog of {args.pods} pods: {alone:.0f}/s with the kubelets "
            f"paused (the scheduler's own rate; target >= 200), {backlog:.0f}/s with the kubelets "
            f"starting the pods meanwhile; "
            f"{statistics.median(r['binds_per_s'] for r in rounds):.0f}/s as the pods were created"
        )
        share = statistics.median(r["cni_share"] for r in rounds)
        print(f"share of creation-to-Ready in CNI: {share * 100:.1f}%")
        lab_cpu = statistics.median(sum(r["cpu_per_pod"].values()) for r in rounds)
        print(f"lab CPU per pod (create and delete): {lab_cpu * 1000:.0f} ms; load average {os.getloadavg()}")
        print(f"yardstick: runtime alone (sandbox + container, no control plane) p99 {yard:.2f} s; "
              f"ratio {p99 / yard:.1f}x")  # fmt: skip
        return 0
    finally:
        subprocess.run([str(NETLAB), "down"], env=env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
