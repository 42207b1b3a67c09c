"""`netlab kube-proxy` as a process per node, driven by a services file; `netlab proxy show|mode`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from netlab.kernel.iptables import iptables_save
from proxy.daemon import read_status
from tests.root.svclab import ServiceLab, service_lab, spread, tcp_ask

pytestmark = pytest.mark.root

NODES = ("node1", "node2")


def netlab(layout, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **layout.env()}
    return subprocess.run(
        [sys.executable, "-m", "netlab.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def write_objects(lab: ServiceLab, path: Path, web: list[str]) -> None:
    objs = [
        lab.service("web", "10.96.0.10", node_port=30080),
        lab.endpoint_slice("web", web),
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(objs))
    os.replace(tmp, path)


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def test_kube_proxy_processes_file_frontend_show_and_mode_switch(layout, tmp_path):
    with service_lab(layout, nodes=2) as lab:
        for pod, node in (("web-1", "node1"), ("web-2", "node2"), ("web-3", "node1")):
            lab.add_pod(pod, node)
        lab.wait_ready()
        services = tmp_path / "services.yaml"
        write_objects(lab, services, ["web-1", "web-2", "web-3"])
        env = {**os.environ, **layout.env()}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "netlab.cli",
                    "kube-proxy",
                    "--node",
                    n,
                    "--services-file",
                    f"{services}",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / f"{n}.log", "w"),  # noqa: SIM115
            )
            for n in NODES
        ]
        try:
            wait_for(lambda: all((read_status(layout, n) or {}).get("services") for n in NODES), 20, "status")
            client = lab.pods["web-2"].netns
            assert set(spread(client, "10.96.0.10", 80, n=24)) == {"web-1", "web-2", "web-3"}
            for n in NODES:
                assert tcp_ask(lab.client_netns, lab.node_ip(n), 30080)["pod"].startswith("web-")

            shown = netlab(layout, "proxy", "show")
            assert shown.returncode == 0, shown.stderr
            assert "default/web:" in shown.stdout and "KUBE-SVC-" in shown.stdout
            assert "10.244.1.10:8080" in shown.stdout

            # scale 3 -> 1: new connections reach only the survivor within two seconds
            write_objects(lab, services, ["web-2"])
            wait_for(lambda: set(spread(client, "10.96.0.10", 80, n=6)) == {"web-2"}, 2.0, "scale down")

            # a broken file is reported and the proxy keeps serving
            services.write_text("kind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.300}\n")
            time.sleep(0.5)
            assert tcp_ask(client, "10.96.0.10", 80)["pod"] == "web-2"
            write_objects(lab, services, ["web-1", "web-2", "web-3"])

            switched = netlab(layout, "proxy", "mode", "userspace")
            assert switched.returncode == 0, switched.stderr
            for n in NODES:
                assert read_status(layout, n)["mode"] == "userspace"
                rules = iptables_save(lab.node_netns(n), "nat")
                assert "KUBE-SVC-" not in rules and "KUBE-PORTALS-CONTAINER" in rules
            wait_for(lambda: len(spread(client, "10.96.0.10", 80, n=9)) == 3, 5, "userspace spread")
            assert "relay :" in netlab(layout, "proxy", "show", "--node", "node1").stdout

            bad = netlab(layout, "proxy", "mode", "ipvs")
            assert bad.returncode != 0 and "not available" in bad.stderr and "Traceback" not in bad.stderr
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
        logs = (tmp_path / "node1.log").read_text()
        assert "spec.clusterIP" in logs  # the bad file was reported
        for n in NODES:
            done = netlab(layout, "kube-proxy", "--node", n, "--cleanup")
            assert done.returncode == 0, done.stderr
            for backend in ("legacy", "nft"):
                assert "KUBE-" not in iptables_save(lab.node_netns(n), "nat", backend)


def test_bad_input_is_one_line(layout, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 0}]}\n")
    r = netlab(layout, "kube-proxy", "--node", "n1", "--netns", "nl-nonexistent", "--services-file", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "spec.ports[0].port" in r.stderr, r.stderr
    r = netlab(
        layout, "kube-proxy", "--node", "n1", "--mode", "ebpf", "--netns", "x", "--services-file", f"{bad}"
    )
    assert r.returncode == 1 and "not available" in r.stderr
