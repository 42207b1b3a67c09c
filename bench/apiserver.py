"""Apiserver benchmark: create/get/list/update/delete throughput and latency, and watch delay.

Starts a private etcd and `netlab apiserver` on free loopback ports (or uses `--kubeconfig`),
then, for 1, 10 and 50 concurrent clients (each its own HTTPS connection), times every call
of each verb and reports throughput and p50/p99. Watch delivery is measured with 50 watchers
on one namespace while 10 clients write: each object carries its send time, each watcher
notes when the event arrives. The yardstick is the raw etcd round trip (a compare-and-set
write and a point read through netlab's etcd client) measured in the same run; the ratios say
what the HTTP, TLS, JSON and API logic on top of etcd cost.

When it starts the apiserver itself, it also reports the apiserver's CPU time per call (per
delivered event for the watch): on a shared machine that is a steadier measure of what a
change to the server saved than latencies, which move with everything else running.

    .venv/bin/python bench/apiserver.py [--objects N] [--kubeconfig PATH]

Target: mutating calls p99 < 50 ms and watch delivery p99 < 50 ms with 10 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab.cluster.kubeconfig import load_kubeconfig  # noqa: E402
from netlab.etcd import EtcdClient  # noqa: E402
from netlab.etcd import server as etcd_server  # noqa: E402
from netlab.layout import Layout  # noqa: E402


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def ms(v: float) -> str:
    return f"{v * 1000:7.2f}"


class Api:
    def __init__(self, server: str, token: str, ca: bytes) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.ssl = ssl.create_default_context(cadata=ca.decode())

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=1), headers=self.headers
        )


async def timed(times: list[float], coro: Any) -> Any:
    t0 = time.perf_counter()
    resp = await coro
    async with resp:
        body = await resp.read()
        times.append(time.perf_counter() - t0)
        if resp.status >= 400:
            raise RuntimeError(f"{resp.method} {resp.url}: {resp.status} {body[:200]!r}")
        return json.loads(body) if body else None


async def run_level(api: Api, clients: int, per_client: int, ns: str) -> dict[str, Any]:
    base = f"{api.server}/api/v1/namespaces/{ns}/configmaps"
    times: dict[str, list[float]] = {v: [] for v in ("create", "get", "list", "update", "patch", "delete")}
    walls: dict[str, float] = {}
    sessions = [api.session() for _ in range(clients)]
    try:

        async def phase(verb: str, fn: Any) -> None:
            t0 = time.perf_counter()
            await asyncio.gather(*(fn(c, s) for c, s in enumerate(sessions)))
            walls[verb] = time.perf_counter() - t0

        async def create(c: int, s: aiohttp.ClientSession) -> None:
            for i in range(per_client):
                body = {
                    "metadata": {"name": f"c{clients}-{c}-{i}", "labels": {"client": str(c)}},
                    "data": {"k": "v"},
                }
                await timed(times["create"], s.post(base, data=json.dumps(body)))

        async def get(c: int, s: aiohttp.ClientSession) -> None:
            for i in range(per_client):
                await timed(times["get"], s.get(f"{base}/c{clients}-{c}-{i}"))

        async def list_(c: int, s: aiohttp.ClientSession) -> None:
            for _ in range(max(per_client // 5, 2)):
                await timed(times["list"], s.get(base, params={"labelSelector": f"client={c}"}))

        async def update(c: int, s: aiohttp.ClientSession) -> None:
            for i in range(per_client):
                obj = await (await s.get(f"{base}/c{clients}-{c}-{i}")).json()
                obj["data"]["k"] = "v2"
                await timed(times["update"], s.put(f"{base}/c{clients}-{c}-{i}", data=json.dumps(obj)))

        async def patch(c: int, s: aiohttp.ClientSession) -> None:
            for i in range(per_client):
                await timed(
                    times["patch"],
                    s.patch(
                        f"{base}/c{clients}-{c}-{i}",
                        data=json.dumps({"data": {"p": str(i)}}),
                        headers={"Content-Type": "application/merge-patch+json"},
                    ),
                )

        async def delete(c: int, s: aiohttp.ClientSession) -> None:
            for i in range(per_client):
                await timed(times["delete"], s.delete(f"{base}/c{clients}-{c}-{i}"))

        for verb, fn in (
            ("create", create),
            ("get", get),
            ("list", list_),
            ("update", update),
            ("patch", patch),
            ("delete", delete),
        ):
            await phase(verb, fn)
    finally:
        for s in sessions:
            await s.close()
    return {
        v: {"n": len(t), "rps": len(t) / walls[v], "p50": pct(t, 50), "p99": pct(t, 99)}
        for v, t in times.items()
    }


async def watch_delay(api: Api, watchers: int, writers: int, per_writer: int, ns: str) -> dict[str, float]:
    url = f"{api.server}/api/v1/namespaces/{ns}/configmaps"
    delays: list[float] = []
    expected = writers * per_writer
    ready = asyncio.Event()
    started = 0

    async def watch(s: aiohttp.ClientSession) -> None:
        nonlocal started
        async with s.get(
            url, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "120"}
        ) as resp:
            started += 1
            if started == watchers:
                ready.set()
            seen = 0
            async for line in resp.content:
                ev = json.loads(line)
                sent = float(ev["object"]["metadata"]["annotations"]["sent"])
                delays.append(time.time() - sent)
                seen += 1
                if seen == expected:
                    return

    async def write(c: int, s: aiohttp.ClientSession) -> None:
        for i in range(per_writer):
            body = {"metadata": {"name": f"w-{c}-{i}", "annotations": {"sent": repr(time.time())}}}
            await timed([], s.post(url, data=json.dumps(body)))

    probe = api.session()
    async with probe.get(url) as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    await probe.close()
    wsessions = [api.session() for _ in range(watchers)]
    psessions = [api.session() for _ in range(writers)]
    try:
        tasks = [asyncio.create_task(watch(s)) for s in wsessions]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.2)
        await asyncio.gather(*(write(c, s) for c, s in enumerate(psessions)))
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for s in wsessions + psessions:
            await s.close()
    return {"events": len(delays), "p50": pct(delays, 50), "p99": pct(delays, 99)}


def etcd_yardstick(url: str, n: int = 300) -> dict[str, float]:
    """Raw etcd: a compare-and-set create/update and a point read, one at a time."""
    writes, reads = [], []
    with EtcdClient(url) as c:
        key = "/bench-yardstick/k"
        c.delete(key)
        rev = 0
        for i in range(n):
            t0 = time.perf_counter()
            r = c.create(key, b"v") if i == 0 else c.update(key, f"v{i}".encode(), rev)
            writes.append(time.perf_counter() - t0)
            rev = r.revision
            t0 = time.perf_counter()
            c.get(key)
            reads.append(time.perf_counter() - t0)
        c.delete(key)
    return {
        "write_p50": pct(writes, 50),
        "write_p99": pct(writes, 99),
        "read_p50": pct(reads, 50),
        "read_p99": pct(reads, 99),
    }


def start_stack(tmp: Path) -> tuple[Layout, subprocess.Popen[bytes], str]:
    lay = Layout(prefix="nl-bench-", state_dir=tmp / "state", run_dir=tmp / "run")
    etcd_url = etcd_server.start(lay, any_port=True)
    port = etcd_server.free_port()
    kubeconfig = tmp / "kubeconfig"
    log = open(tmp / "apiserver.log", "wb")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netlab.cli",
            "apiserver",
            "--etcd",
            etcd_url,
            "--port",
            str(port),
            "--write-kubeconfig",
            str(kubeconfig),
        ],
        env={**os.environ, **lay.env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the child has its own copy
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"apiserver did not start:\n{(tmp / 'apiserver.log').read_text()}")
        time.sleep(0.05)
    return lay, proc, etcd_url


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when not ours to measure)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main_async(api: Api, objects: int, etcd_url: str, pid: int | None) -> None:
    yard = etcd_yardstick(etcd_url)
    print(
        f"etcd yardstick (one client): CAS write p50 {ms(yard['write_p50'])} ms "
        f"p99 {ms(yard['write_p99'])} ms, read p50 {ms(yard['read_p50'])} ms p99 {ms(yard['read_p99'])} ms"
    )
    mutating = ("create", "update", "patch", "delete")
    run = secrets.token_hex(3)  # namespaces of their own, so a reused etcd is fine
    for clients in (1, 10, 50):
        ns = f"bench-{run}-{clients}"
        async with api.session() as s:
            await timed(
                [], s.post(f"{api.server}/api/v1/namespaces", data=json.dumps({"metadata": {"name": ns}}))
            )
        per_client = max(objects // clients, 4)
        cpu0 = cpu_seconds(pid)
        res = await run_level(api, clients, per_client, ns)
        cpu = cpu_seconds(pid) - cpu0
        print(f"\n{clients} client(s), {per_client} objects each")
        print(f"  {'verb':7} {'calls':>6} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50/etcd':>9}")
        for verb, r in res.items():
            base = yard["write_p50"] if verb in mutating else yard["read_p50"]
            print(
                f"  {verb:7} {r['n']:6d} {r['rps']:8.0f} {ms(r['p50']):>8} {ms(r['p99']):>8} "
                f"{r['p50'] / base:8.1f}x"
            )
        worst = max(res[v]["p99"] for v in mutating)
        print(f"  mutating p99 (worst verb): {ms(worst)} ms")
        if pid is not None:
            calls = sum(r["n"] for r in res.values())
            print(f"  apiserver CPU: {cpu * 1e6 / calls:.0f} us per call ({calls} calls)")
    async with api.session() as s:
        await timed(
            [],
            s.post(
                f"{api.server}/api/v1/namespaces", data=json.dumps({"metadata": {"name": f"bench-{run}-w"}})
            ),
        )
    cpu0 = cpu_seconds(pid)
    w = await watch_delay(
        api, watchers=50, writers=10, per_writer=max(objects // 10, 10), ns=f"bench-{run}-w"
    )
    cpu = cpu_seconds(pid) - cpu0
    print(
        f"\nwatch delivery, 50 watchers, 10 writers: {w['events']:.0f} events, p50 {ms(w['p50'])} ms, "
        f"p99 {ms(w['p99'])} ms ({w['p99'] / yard['write_p50']:.1f}x an etcd write)"
    )
    if pid is not None:
        print(f"  apiserver CPU: {cpu * 1e6 / w['events']:.0f} us per delivered event (creates included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=200, help="objects per concurrency level (default 200)")
    ap.add_argument(
        "--kubeconfig", type=Path, help="use a running apiserver (needs --etcd for the yardstick)"
    )
    ap.add_argument("--etcd", help="etcd client URL of that apiserver")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="netlab-bench-") as d:
        tmp = Path(d)
        proc = lay = None
        if args.kubeconfig:
            kc_path, etcd_url = args.kubeconfig, args.etcd or "http://127.0.0.1:2379"
        else:
            lay, proc, etcd_url = start_stack(tmp)
            kc_path = tmp / "kubeconfig"
        kc = load_kubeconfig(kc_path)
        try:
            pid = proc.pid if proc is not None else None
            asyncio.run(main_async(Api(kc.server, kc.token, kc.ca_pem), args.objects, etcd_url, pid))
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
            if lay is not None:
                etcd_server.stop(lay)


if __name__ == "__main__":
    main()
