"""Informers and the event recorder against a real apiserver."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from netlab.cluster.client import ApiClient, Gone
from netlab.cluster.events import EventRecorder
from netlab.cluster.informer import Informer, index_by_node
from tests.cluster.conftest import ApiServerForTest, apiserver_fixture
from tests.cluster.fakes import wait_until

pytestmark = pytest.mark.etcd

# etcd compacted every second: watches resuming from old versions get 410 Gone quickly
api = apiserver_fixture("--compact-interval", "1")
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def client(api: ApiServerForTest) -> Iterator[ApiClient]:
    with api.client() as c:
        yield c


@pytest.fixture
def ns(client: ApiClient) -> Iterator[str]:
    name = f"i-{secrets.token_hex(3)}"
    client.create("namespaces", {"metadata": {"name": name}})
    yield name
    client.delete("namespaces", name)


def pod(name: str, node: str = "") -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": {"app": "a"}}, "spec": spec}


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def add(self, o: Obj) -> None:
        with self.lock:
            self.seen.append(("add", o["metadata"]["name"]))

    def update(self, old: Obj, new: Obj) -> None:
        with self.lock:
            self.seen.append(("update", new["metadata"]["name"]))

    def delete(self, o: Obj) -> None:
        with self.lock:
            self.seen.append(("delete", o["metadata"]["name"]))

    def has(self, what: tuple[str, str]) -> bool:
        with self.lock:
            return what in self.seen


def test_list_then_watch_with_handlers_and_indexes(client: ApiClient, ns: str) -> None:
    client.create("pods", pod("before", "n1"), ns)
    inf = Informer(client, "pods", namespace=ns)
    inf.add_index("node", index_by_node)
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    inf.start()
    try:
        assert inf.wait_synced(10)
        assert rec.has(("add", "before"))
        assert inf.list(ns)[0]["kind"] == "Pod"  # list items carry their kind
        client.create("pods", pod("after", "n2"), ns)
        wait_until("the add", lambda: rec.has(("add", "after")))
        client.patch("pods", "after", {"metadata": {"labels": {"v": "2"}}}, ns)
        wait_until("the update", lambda: rec.has(("update", "after")))
        assert inf.get(f"{ns}/after")["metadata"]["labels"]["v"] == "2"  # type: ignore[index]
        assert [p["metadata"]["name"] for p in inf.by_index("node", "n2")] == ["after"]
        client.delete("pods", "before", ns, grace_period=0)
        wait_until("the delete", lambda: rec.has(("delete", "before")))
        assert inf.get(f"{ns}/before") is None
        assert inf.by_index("node", "n1") == []
    finally:
        inf.stop()


def test_a_relist_reports_what_was_deleted_meanwhile(client: ApiClient, ns: str) -> None:
    for n in ("a", "b"):
        client.create("pods", pod(n), ns)
    inf = Informer(client, "pods", namespace=ns)
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    inf._relist()  # the cache without a running watch: nothing hears the delete
    client.delete("pods", "a", ns, grace_period=0)
    client.create("pods", pod("c"), ns)
    inf._relist()
    assert rec.has(("delete", "a")) and rec.has(("add", "c"))
    assert sorted(o["metadata"]["name"] for o in inf.list()) == ["b", "c"]


def test_a_watch_from_a_compacted_version_is_gone_and_the_informer_relists(
    client: ApiClient, ns: str
) -> None:
    first = client.create("pods", pod("old"), ns)
    old_rv = first["metadata"]["resourceVersion"]
    inf = Informer(client, "pods", namespace=ns)
    inf.start()
    try:
        assert inf.wait_synced(10)

        def compacted() -> bool:
            client.patch("pods", "old", {"metadata": {"labels": {"tick": secrets.token_hex(2)}}}, ns)
            probe = Informer(client, "pods", namespace=ns)
            probe.last_resource_version = old_rv
            probe.watch_timeout = 1
            try:
                probe._watch()
            except Gone:
                return True
            return False

        wait_until("compaction past the first version", compacted, timeout=20, interval=0.5)
        # the running informer resumes from what it saw last; force it onto the old version
        relists = inf.relists
        inf.last_resource_version = old_rv
        inf._interrupt()
        wait_until("a relist after 410", lambda: inf.relists > relists, timeout=10)
        client.create("pods", pod("fresh"), ns)
        wait_until("events after the relist", lambda: inf.get(f"{ns}/fresh"))
    finally:
        inf.stop()


def test_stop_interrupts_an_idle_watch_at_once(client: ApiClient, ns: str) -> None:
    inf = Informer(client, "pods", namespace=ns, watch_timeout=3600)
    inf.start()
    assert inf.wait_synced(10)
    wait_until("the watch open", lambda: inf._response is not None)
    inf.stop(timeout=2)
    assert not any(t.is_alive() for t in inf._threads)


def test_repeated_events_are_counted_not_duplicated(client: ApiClient, ns: str) -> None:
    target = client.create("pods", pod("target"), ns)
    rec = EventRecorder(client, "tester").start()
    try:
        for _ in range(3):
            rec.warning(target, "Trouble", "it hurts")
        rec.normal(target, "Fine", "all good")
        assert rec.flush()
    finally:
        rec.stop()
    events = client.list("events", ns, field_selector="involvedObject.name=target")["items"]
    by_reason = {e["reason"]: e for e in events}
    assert set(by_reason) == {"Trouble", "Fine"}
    assert by_reason["Trouble"]["count"] == 3
    assert by_reason["Trouble"]["type"] == "Warning"
    assert by_reason["Trouble"]["involvedObject"]["uid"] == target["metadata"]["uid"]
    assert by_reason["Fine"]["source"] == {"component": "tester"}
