"""kube-proxy's apiserver frontend against a real apiserver on a real etcd."""

from __future__ import annotations

import time

import pytest

from proxy.frontends.apiserver import ApiserverFrontend
from proxy.model import ServicePortName, Snapshot
from proxy.proxier import Proxier
from tests.cluster.conftest import apiserver_fixture

pytestmark = pytest.mark.etcd

api = apiserver_fixture()
WEB = ServicePortName("default", "web", "http", "TCP")


class RecordingMode:
    name = "recording"

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.syncs = 0

    def sync(self, snapshot, changed):
        self.snapshot = snapshot
        self.syncs += 1

    def cleanup(self) -> None: ...
    def close(self) -> None: ...
    def show(self) -> str:
        return ""


def eventually(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def slice_obj(ips: list[str]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node1"} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def test_frontend_lists_and_watches_services_and_slices(api):
    client = api.client()
    svc = client.create(
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    client.create("endpointslices.discovery.k8s.io", slice_obj(["10.244.1.5"]))
    mode = RecordingMode()
    proxier = Proxier(mode, min_sync_period=0)
    fe = ApiserverFrontend(proxier, client=api.client(), watch_timeout=5)
    import threading

    threading.Thread(target=fe.run, daemon=True).start()
    runner = threading.Thread(target=proxier.runner.run, daemon=True)
    runner.start()
    try:
        # the listed state: the allocated cluster IP and node port, and the endpoint
        eventually(lambda: WEB in mode.snapshot.services and mode.snapshot.endpoints_of(WEB))
        port = mode.snapshot.services[WEB]
        assert port.cluster_ip == svc["spec"]["clusterIP"]
        assert port.node_port == svc["spec"]["ports"][0]["nodePort"]
        # watched changes
        current = client.get("endpointslices.discovery.k8s.io", "web-abc", "default")
        current.update({k: v for k, v in slice_obj(["10.244.1.6", "10.244.2.7"]).items() if k != "metadata"})
        client.update("endpointslices.discovery.k8s.io", current)
        eventually(lambda: [e.ip for e in mode.snapshot.endpoints_of(WEB)] == ["10.244.1.6", "10.244.2.7"])
        client.delete("services", "web", "default")
        eventually(lambda: WEB not in mode.snapshot.services)
    finally:
        proxier.runner.stop()
        fe.stop()
        client.close()
