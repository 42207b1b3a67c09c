"""The etcd client against a real etcd: KV, transactions, leases, compaction and watches.

Every test that takes the `client` fixture runs on both transports (etcd3gw, and the
kept-alive one the apiserver uses), so the two stay interchangeable."""

from __future__ import annotations

import concurrent.futures
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from netlab.errors import ConfigError, Unavailable
from netlab.etcd import (
    Compacted,
    Compare,
    EtcdClient,
    Event,
    LeaseNotFound,
    Op,
    Progress,
    PutResult,
    RangeResult,
)

pytestmark = pytest.mark.etcd


@pytest.fixture(params=[False, True], ids=["etcd3gw", "keepalive"])
def client(etcd_url: str, request: pytest.FixtureRequest) -> Iterator[EtcdClient]:
    with EtcdClient(etcd_url, keepalive=request.param) as c:
        yield c


@pytest.fixture
def pfx() -> str:
    return f"/test-{secrets.token_hex(4)}/"


def test_put_get_range(client: EtcdClient, pfx: str) -> None:
    r1 = client.put(pfx + "a", b"1")
    client.put(pfx + "b", "2")
    r3 = client.put(pfx + "c", b"3", prev_kv=True)
    assert r3.revision > r1.revision and r3.prev_kv is None
    kv = client.get(pfx + "a")
    assert kv and kv.value == b"1" and kv.mod_revision == r1.revision and kv.version == 1
    assert client.get(pfx + "missing") is None

    everything = client.range(pfx, prefix=True)
    assert [k.key for k in everything.kvs] == [pfx + "a", pfx + "b", pfx + "c"]
    assert everything.count == 3 and not everything.more and everything.revision >= r3.revision

    page = client.range(pfx, prefix=True, limit=2)
    assert len(page.kvs) == 2 and page.more and page.count == 3
    rest = client.range(page.kvs[-1].key + "\0", prefix_end_of(pfx))
    assert [k.key for k in rest.kvs] == [pfx + "c"]

    keys = client.range(pfx, prefix=True, keys_only=True)
    assert all(k.value == b"" for k in keys.kvs) and len(keys.kvs) == 3
    counted = client.range(pfx, prefix=True, count_only=True)
    assert counted.kvs == [] and counted.count == 3

    # a read at an older revision sees the store as it was then
    client.put(pfx + "a", b"changed")
    old = client.range(pfx + "a", revision=r1.revision)
    assert old.kvs[0].value == b"1"

    again = client.put(pfx + "a", b"x", prev_kv=True)
    assert again.prev_kv and again.prev_kv.value == b"changed"
    d = client.delete(pfx, prefix=True, prev_kv=True)
    assert d.deleted == 3 and {k.key for k in d.prev_kvs} == {pfx + "a", pfx + "b", pfx + "c"}
    assert client.range(pfx, prefix=True).count == 0


def prefix_end_of(p: str) -> str:
    from netlab.etcd import prefix_end

    return prefix_end(p).decode()


def test_create_update_delete_if(client: EtcdClient, pfx: str) -> None:
    key = pfx + "obj"
    made = client.create(key, b"v1")
    assert made.succeeded and made.current is None
    lost = client.create(key, b"other")
    assert not lost.succeeded and lost.current and lost.current.value == b"v1"
    assert lost.current.mod_revision == made.revision

    upd = client.update(key, b"v2", made.revision)
    assert upd.succeeded and upd.prev_kv and upd.prev_kv.value == b"v1"
    stale = client.update(key, b"v3", made.revision)
    assert not stale.succeeded and stale.current and stale.current.value == b"v2"

    no = client.delete_if(key, made.revision)
    assert not no.succeeded and no.current and no.current.mod_revision == upd.revision
    yes = client.delete_if(key, upd.revision)
    assert yes.succeeded and yes.prev_kv and yes.prev_kv.value == b"v2"
    assert client.get(key) is None
    gone = client.update(key, b"v4", upd.revision)
    assert not gone.succeeded and gone.current is None


def test_generic_txn(client: EtcdClient, pfx: str) -> None:
    a, b = pfx + "a", pfx + "b"
    r = client.txn(
        [Compare.version(a, "==", 0), Compare.create(b, "==", 0)],
        [Op.put(a, b"1"), Op.put(b, b"2"), Op.get(pfx, prefix=True)],
        [Op.get(a)],
    )
    assert r.succeeded and len(r.responses) == 3
    assert isinstance(r.responses[0], PutResult)
    listing = r.responses[2]
    assert isinstance(listing, RangeResult) and [k.key for k in listing.kvs] == [a, b]

    r2 = client.txn(
        [Compare.value_of(a, "==", b"nope")], [Op.delete(a)], [Op.get(a), Op.delete(b, prev_kv=True)]
    )
    assert not r2.succeeded
    assert client.get(a) is not None and client.get(b) is None
    r3 = client.txn([Compare.mod(a, ">", 0)], [Op.delete(pfx, prefix=True)])
    assert r3.succeeded and client.range(pfx, prefix=True).count == 0


def test_leases(client: EtcdClient, pfx: str) -> None:
    grant = client.lease_grant(60)
    assert grant.id and grant.ttl == 60
    client.put(pfx + "leased", b"x", lease=grant.id)
    kv = client.get(pfx + "leased")
    assert kv and kv.lease == grant.id
    info = client.lease_time_to_live(grant.id, keys=True)
    assert info.granted_ttl == 60 and 0 < info.ttl <= 60 and info.keys == [pfx + "leased"]
    assert client.lease_keepalive(grant.id) == 60

    assert client.lease_revoke(grant.id) is True
    assert client.get(pfx + "leased") is None
    assert client.lease_revoke(grant.id) is False
    with pytest.raises(LeaseNotFound):
        client.lease_keepalive(grant.id)
    assert client.lease_time_to_live(grant.id).ttl == -1
    with pytest.raises(LeaseNotFound):
        client.put(pfx + "x", b"y", lease=grant.id)


def test_lease_expiry_deletes_key_and_watch_sees_it(client: EtcdClient, pfx: str) -> None:
    grant = client.lease_grant(1)  # etcd rounds this up to its minimum
    put = client.put(pfx + "short", b"x", lease=grant.id)
    with client.watch(pfx, prefix=True, start_revision=put.revision, prev_kv=True) as w:
        seen = []
        for item in w:
            if isinstance(item, Event):
                seen.append(item)
                if item.type == "DELETE":
                    break
    assert [e.type for e in seen] == ["PUT", "DELETE"]
    deleted = seen[1]
    assert (
        deleted.kv.key == pfx + "short" and deleted.kv.value == b"" and deleted.kv.mod_revision > put.revision
    )
    assert deleted.prev_kv and deleted.prev_kv.value == b"x"


def test_watch_events_and_progress(client: EtcdClient, pfx: str) -> None:
    w = client.watch(pfx, prefix=True, prev_kv=True, progress_notify=True)
    start = w.created_revision
    p1 = client.put(pfx + "k", b"1")
    p2 = client.put(pfx + "k", b"2")
    client.put("/elsewhere-" + pfx, b"not watched")
    d = client.delete(pfx + "k")
    items = []
    for item in w:
        items.append(item)
        if isinstance(item, Progress):
            break
    w.stop()
    events = [i for i in items if isinstance(i, Event)]
    assert [(e.type, e.kv.mod_revision) for e in events] == [
        ("PUT", p1.revision),
        ("PUT", p2.revision),
        ("DELETE", d.revision),
    ]
    assert events[0].prev_kv is None and events[1].prev_kv and events[1].prev_kv.value == b"1"
    assert (
        events[1].kv.value == b"2"
        and events[1].kv.version == 2
        and events[1].kv.create_revision == p1.revision
    )
    progress = items[-1]
    assert isinstance(progress, Progress) and progress.revision >= d.revision > start
    assert w.last_revision >= d.revision


def test_watch_stops_promptly_from_another_thread(client: EtcdClient, pfx: str) -> None:
    w = client.watch(pfx, prefix=True)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.extend(w))
    t.start()
    time.sleep(0.2)  # let the reader block in its read
    w.stop()
    t.join(timeout=10)
    assert not t.is_alive() and got == []
    assert list(w) == []  # a stopped watch stays ended


def test_compaction(client: EtcdClient, pfx: str) -> None:
    first = client.put(pfx + "a", b"1")
    client.put(pfx + "a", b"2")
    now = client.put(pfx + "a", b"3").revision
    client.compact(now)
    with pytest.raises(Compacted):
        client.range(pfx + "a", revision=first.revision)
    w = client.watch(pfx, prefix=True, start_revision=first.revision)
    with pytest.raises(Compacted) as exc:
        next(iter(w))
    assert exc.value.compact_revision == now
    with pytest.raises(StopIteration):
        next(w)
    # from the compaction point on, the history is there
    with client.watch(pfx, prefix=True, start_revision=now) as w2:
        e = next(w2)
        assert isinstance(e, Event) and e.kv.value == b"3"


def test_shared_between_threads(client: EtcdClient, pfx: str) -> None:
    def work(i: int) -> int:
        return client.create(f"{pfx}{i:03d}", str(i)).revision

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        revisions = list(pool.map(work, range(64)))
    assert len(set(revisions)) == 64
    assert client.range(pfx, prefix=True, count_only=True).count == 64


def test_status_and_health(client: EtcdClient) -> None:
    st = client.status()
    assert st.version.startswith("3.") and st.revision > 0 and st.leader == st.member_id
    assert client.healthy()
    client.check()


@pytest.mark.parametrize("keepalive", [False, True], ids=["etcd3gw", "keepalive"])
def test_unreachable_and_bad_url(keepalive: bool) -> None:
    from netlab.etcd.server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    c = EtcdClient(url, timeout=2, keepalive=keepalive)
    calls = (
        lambda: c.get("x"),
        lambda: c.create("x", b"1"),
        lambda: c.lease_grant(5),
        c.status,
        c.check,
        lambda: c.watch("x"),
    )
    for call in calls:
        with pytest.raises(Unavailable) as exc:
            call()
        assert url in str(exc.value) and "\n" not in str(exc.value)
    assert not c.healthy()
    for bad in (
        "127.0.0.1:2379",
        "https://127.0.0.1:2379",
        "http://127.0.0.1",
        "http://h:99999",
        "http://h:1/x",
    ):
        with pytest.raises(ConfigError, match="invalid etcd URL"):
            EtcdClient(bad)


@pytest.mark.parametrize("keepalive", [False, True], ids=["etcd3gw", "keepalive"])
def test_watch_reports_lost_connection_and_client_recovers(etcd_server, keepalive: bool) -> None:  # type: ignore[no-untyped-def]
    c = EtcdClient(etcd_server.url, timeout=2, keepalive=keepalive)
    put = c.put("/restart/a", b"1")
    w = c.watch("/restart/", prefix=True, start_revision=put.revision)
    assert isinstance(next(w), Event)
    etcd_server.stop()
    with pytest.raises(Unavailable):
        next(w)
    with pytest.raises(Unavailable):
        c.get("/restart/a")
    etcd_server.start()
    kv = c.get("/restart/a")
    assert kv and kv.value == b"1"
    with c.watch("/restart/", prefix=True, start_revision=w.last_revision + 1) as w2:
        p = c.put("/restart/b", b"2")
        e = next(w2)
        assert isinstance(e, Event) and e.kv.mod_revision == p.revision


def test_proxy_settings_in_the_environment_are_ignored(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # etcd is reached directly; a proxy meant for other traffic must not swallow its requests
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with EtcdClient(etcd_url) as c:
        c.put("/test-proxy/k", b"v")
        kv = c.get("/test-proxy/k")
        assert kv is not None and kv.value == b"v"
        c.delete("/test-proxy/k")


def test_keepalive_reuses_its_connection_and_replaces_a_closed_one(etcd_url: str) -> None:
    with EtcdClient(etcd_url, keepalive=True) as c:
        assert c._pool is not None
        c.put("/test-keepalive/k", b"1")
        (conn,) = c._pool._idle
        for i in range(5):
            c.put("/test-keepalive/k", str(i))
        assert list(c._pool._idle) == [conn]  # one connection, kept
        assert conn.sock is not None
        conn.sock.shutdown(socket.SHUT_RDWR)  # as if etcd had closed it while idle
        kv = c.get("/test-keepalive/k")
        assert kv is not None and kv.value == b"4"
        assert len(c._pool._idle) == 1 and c._pool._idle[0] is not conn
        c.delete("/test-keepalive/k")
