"""Scheduler binding throughput against a yardstick from the same run.

Run from the repository: `.venv/bin/python bench/scheduler.py [--pods N] [--nodes M] [--quick]`.

A private etcd and apiserver (free ports, temporary directories) get M fake Ready nodes
registered through the API and N pending pods (each a little cpu and memory, as a Deployment's
pods would be). Then:

- yardstick: the same number of pods bound straight through `pods/binding` by a pool of the
  scheduler's parallelism, round-robin over the nodes, no decisions: the apiserver's ceiling
  for bindings on this machine;
- scheduler: `netlab.cluster.scheduler.Scheduler` started on the backlog; bindings per second
  from its first to its last binding, and pods per second from its start (informers listing
  included) to its last binding. Its `Scheduled` events are posted meanwhile, as upstream's
  are, so the apiserver does more work per pod than in the yardstick.

It prints both rates, their ratio and the spread of pods over nodes (max/min per node).
The target is at least 200 bindings per second.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab.cluster.client import ApiClient  # noqa: E402
from netlab.cluster.scheduler import Scheduler  # noqa: E402
from netlab.etcd import server as etcd_server  # noqa: E402
from tests.cluster.conftest import ApiServerForTest  # noqa: E402
from tests.cluster.fakes import node_object  # noqa: E402
from tests.conftest import new_layout  # noqa: E402

Obj = dict[str, Any]


def make_pods(client: ApiClient, ns: str, n: int, pool: ThreadPoolExecutor) -> None:
    """n pods owned by one ReplicaSet (which no controller runs here), as a Deployment's are."""
    rs = client.create(
        "replicasets",
        {
            "metadata": {"name": "bench"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "bench"}},
                "template": {
                    "metadata": {"labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1.14"}]},
                },
            },
        },
        ns,
    )
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "bench",
        "uid": rs["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }

    def one(i: int) -> None:
        client.create(
            "pods",
            {
                "metadata": {"name": f"p-{i}", "labels": {"app": "bench"}, "ownerReferences": [owner]},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "nginx:1.14",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ]
                },
            },
            ns,
        )

    list(pool.map(one, range(n)))


def yardstick(client: ApiClient, ns: str, n: int, nodes: list[str], parallelism: int) -> float:
    with ThreadPoolExecutor(parallelism) as pool:
        t0 = time.monotonic()
        list(pool.map(lambda i: client.bind(ns, f"p-{i}", nodes[i % len(nodes)]), range(n)))
        return n / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--parallelism", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="200 pods over 10 nodes")
    args = ap.parse_args()
    if args.quick:
        args.pods, args.nodes = 200, 10

    with tempfile.TemporaryDirectory(prefix="netlab-bench-") as tmp:
        base = Path(tmp)
        etcd_layout = new_layout(base / "etcd")
        url = etcd_server.start(etcd_layout, any_port=True)
        api = ApiServerForTest(base / "api", url)
        try:
            api.start()
            run(api, args)
        finally:
            api.stop()
            etcd_server.stop(etcd_layout)


def run(api: ApiServerForTest, args: argparse.Namespace) -> None:
    client = ApiClient.from_kubeconfig(api.kubeconfig, pool_size=args.parallelism + 8)
    nodes = [f"bench-{i:03d}" for i in range(args.nodes)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: client.create("nodes", node_object(n, cpu="64", memory="256Gi")), nodes))
        print(f"{args.nodes} nodes, {args.pods} pods, parallelism {args.parallelism}")

        ns_raw = f"raw-{secrets.token_hex(3)}"
        client.create("namespaces", {"metadata": {"name": ns_raw}})
        make_pods(client, ns_raw, args.pods, pool)
    raw = yardstick(client, ns_raw, args.pods, nodes, args.parallelism)
    print(f"yardstick: {raw:7.1f} bindings/s (direct pods/binding, no decisions)")

    ns = f"sched-{secrets.token_hex(3)}"
    client.create("namespaces", {"metadata": {"name": ns}})
    with ThreadPoolExecutor(16) as pool:
        make_pods(client, ns, args.pods, pool)
    sched_client = ApiClient.from_kubeconfig(api.kubeconfig, pool_size=args.parallelism + 8)
    scheduler = Scheduler(sched_client, parallelism=args.parallelism)
    t0 = time.monotonic()
    scheduler.start()
    deadline = t0 + 300
    while scheduler.stats.bound < args.pods and time.monotonic() < deadline:
        time.sleep(0.02)
    wall = scheduler.stats.last_bind - t0
    stats = scheduler.stats
    scheduler.recorder.flush(60)
    events_posted, events_dropped = scheduler.recorder.posted, scheduler.recorder.dropped
    scheduler.stop()
    placed = Counter(p["spec"]["nodeName"] for p in client.list("pods", ns)["items"])
    rate = stats.bindings_per_second
    print(
        f"scheduler: {rate:7.1f} bindings/s (first to last binding; {stats.bound} bound, "
        f"{stats.bind_errors} binding errors)"
    )
    print(
        f"scheduler: {args.pods / wall:7.1f} pods/s end to end ({wall:.2f}s from start, listing included, "
        "to the last binding)"
    )
    print(f"ratio scheduler/yardstick: {rate / raw:.2f}")
    print(f"spread: {min(placed.values())}..{max(placed.values())} pods per node over {len(placed)} nodes")
    print(f"Scheduled events: {events_posted} posted, {events_dropped} dropped (queue full)")
    print(f"target >= 200 bindings/s: {'met' if rate >= 200 else 'NOT met'}")
    sched_client.close()
    client.close()


if __name__ == "__main__":
    main()
