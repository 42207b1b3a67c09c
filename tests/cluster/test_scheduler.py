"""The scheduler against a real apiserver on a real etcd, with nodes registered through the API."""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from netlab.cluster.client import ApiClient
from netlab.cluster.scheduler import Scheduler
from netlab.cluster.status import ApiError
from tests.cluster.conftest import ApiServerForTest, apiserver_fixture
from tests.cluster.fakes import register_node, set_node_ready, wait_until

pytestmark = pytest.mark.etcd

api = apiserver_fixture()
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def client(api: ApiServerForTest) -> Iterator[ApiClient]:
    with api.client() as c:
        yield c


@pytest.fixture(scope="module")
def scheduler(api: ApiServerForTest) -> Iterator[Scheduler]:
    c = ApiClient.from_kubeconfig(api.kubeconfig, pool_size=32)
    s = Scheduler(c, backoff_initial=0.2, backoff_max=1.0)
    s.start()
    yield s
    s.stop()
    c.close()


class Nodes:
    """Nodes made by one test and deleted after it, so reason tallies count only them."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.names: list[str] = []

    def add(self, name: str, **kw: Any) -> str:
        register_node(self.client, name, **kw)
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        for n in self.names:
            with contextlib.suppress(ApiError):
                self.client.delete("nodes", n)


@pytest.fixture
def nodes(client: ApiClient) -> Iterator[Nodes]:
    n = Nodes(client)
    yield n
    n.cleanup()


@pytest.fixture
def ns(client: ApiClient) -> Iterator[str]:
    name = f"s-{secrets.token_hex(3)}"
    client.create("namespaces", {"metadata": {"name": name}})
    yield name
    client.delete("namespaces", name)


def make_pod(
    client: ApiClient, ns: str, name: str, cpu: str | None = None, memory: str | None = None, **spec: Any
) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: Obj = {"name": "c", "image": "nginx:1.14"}
    if requests:
        container["resources"] = {"requests": requests}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return client.create(
        "pods", {"metadata": {"name": name}, "spec": {"containers": [container], **spec}}, ns
    )


def node_of(client: ApiClient, ns: str, name: str) -> str | None:
    return client.get("pods", name, ns)["spec"].get("nodeName")


def events_for(client: ApiClient, ns: str, name: str, reason: str) -> list[Obj]:
    items = client.list("events", ns, field_selector=f"involvedObject.name={name},reason={reason}")["items"]
    return list(items)


def scheduled_condition(client: ApiClient, ns: str, name: str) -> Obj | None:
    conds = client.get("pods", name, ns)["status"].get("conditions") or []
    return next((c for c in conds if c["type"] == "PodScheduled"), None)


def test_pods_spread_over_nodes_with_scheduled_events(
    client: ApiClient, scheduler: Scheduler, nodes: Nodes, ns: str
) -> None:
    for i in range(3):
        nodes.add(f"spread{i}", labels={"pool": ns})
    for i in range(6):
        make_pod(client, ns, f"web-{i}", nodeSelector={"pool": ns})

    def all_bound() -> list[str] | None:
        got = [node_of(client, ns, f"web-{i}") for i in range(6)]
        return [n for n in got if n] if all(got) else None

    placed = wait_until("all six pods bound", all_bound)
    assert Counter(placed) == {"spread0": 2, "spread1": 2, "spread2": 2}
    ev = wait_until("a Scheduled event", lambda: events_for(client, ns, "web-0", "Scheduled"))
    node = node_of(client, ns, "web-0")
    assert ev[0]["message"] == f"Successfully assigned {ns}/web-0 to {node}"
    assert ev[0]["source"]["component"] == "default-scheduler"
    assert scheduled_condition(client, ns, "web-0")["status"] == "True"  # type: ignore[index]


def test_a_pod_too_large_stays_pending_with_the_reasons_then_fits_a_new_node(
    client: ApiClient, scheduler: Scheduler, nodes: Nodes, ns: str
) -> None:
    nodes.add("small0")
    nodes.add("small1", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    nodes.add("small2", ready="False")
    make_pod(client, ns, "huge", cpu="16", memory="1Gi")
    want = (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: db}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    )
    ev = wait_until("a FailedScheduling event", lambda: events_for(client, ns, "huge", "FailedScheduling"))
    assert ev[0]["message"] == want
    assert ev[0]["type"] == "Warning"
    cond = wait_until("PodScheduled=False", lambda: scheduled_condition(client, ns, "huge"))
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", want)
    assert client.get("pods", "huge", ns)["status"]["phase"] == "Pending"
    assert node_of(client, ns, "huge") is None
    # a node change that does not help retries the pod: the event repeats as a count, not anew
    client.patch("nodes", "small0", {"metadata": {"labels": {"touched": "yes"}}})
    wait_until(
        "the event repeated",
        lambda: events_for(client, ns, "huge", "FailedScheduling")[0].get("count", 1) > 1,
        timeout=10,
    )
    assert len(events_for(client, ns, "huge", "FailedScheduling")) == 1
    # a node that fits appears: the pending pod is retried and lands there
    nodes.add("big0", cpu="32")
    assert wait_until("the huge pod bound", lambda: node_of(client, ns, "huge")) == "big0"


def test_node_changes_retry_pending_pods(
    client: ApiClient, scheduler: Scheduler, nodes: Nodes, ns: str
) -> None:
    nodes.add("sel0", labels={"pool": ns})
    nodes.add("sel1", ready="False", labels={"pool": ns, "disk": "ssd"})
    make_pod(client, ns, "wants-ssd", nodeSelector={"disk": "ssd", "pool": ns})
    ev = wait_until("FailedScheduling", lambda: events_for(client, ns, "wants-ssd", "FailedScheduling"))
    assert "node(s) didn't match Pod's node affinity/selector" in ev[0]["message"]
    set_node_ready(client, "sel1", "True")
    assert wait_until("bound after the node became Ready", lambda: node_of(client, ns, "wants-ssd")) == "sel1"


def test_deleting_a_pod_frees_room_and_host_ports_clash(
    client: ApiClient, scheduler: Scheduler, nodes: Nodes, ns: str
) -> None:
    nodes.add("one", cpu="1", labels={"pool": ns})
    make_pod(client, ns, "first", cpu="700m", nodeSelector={"pool": ns})
    assert wait_until("first bound", lambda: node_of(client, ns, "first")) == "one"
    make_pod(client, ns, "second", cpu="700m", nodeSelector={"pool": ns})
    ev = wait_until("FailedScheduling", lambda: events_for(client, ns, "second", "FailedScheduling"))
    assert "Insufficient cpu" in ev[0]["message"]
    client.delete("pods", "first", ns, grace_period=0)
    assert wait_until("second bound once first is gone", lambda: node_of(client, ns, "second")) == "one"
    port = [{"containerPort": 80, "hostPort": 8080}]
    make_pod(client, ns, "port-a", nodeSelector={"pool": ns}, ports=port)
    assert wait_until("port-a bound", lambda: node_of(client, ns, "port-a")) == "one"
    make_pod(client, ns, "port-b", nodeSelector={"pool": ns}, ports=port)
    ev = wait_until("FailedScheduling", lambda: events_for(client, ns, "port-b", "FailedScheduling"))
    assert "node(s) didn't have free ports for the requested pod ports" in ev[0]["message"]


def test_pods_for_another_scheduler_or_preassigned_are_left_alone(
    client: ApiClient, scheduler: Scheduler, nodes: Nodes, ns: str
) -> None:
    nodes.add("free0", labels={"pool": ns})
    make_pod(client, ns, "other", schedulerName="someone-else")
    make_pod(client, ns, "mine", nodeSelector={"pool": ns})
    wait_until("mine bound", lambda: node_of(client, ns, "mine"))
    assert node_of(client, ns, "other") is None
    assert not events_for(client, ns, "other", "FailedScheduling")
