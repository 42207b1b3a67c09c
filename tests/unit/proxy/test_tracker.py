from __future__ import annotations

from proxy.model import ServicePortName
from proxy.tracker import ChangeTracker
from tests.unit.proxy.objects import endpoint, endpoint_slice, service

WEB = ServicePortName("default", "web", "", "TCP")
DB = ServicePortName("default", "db", "", "TCP")


def test_changes_are_reported_once_and_noops_dropped():
    t = ChangeTracker()
    assert t.update_service("default/web", service("web", "10.96.0.10"))
    assert t.update_slice("default/web-abc", endpoint_slice("web", [endpoint("10.244.1.2")]))
    snap, changed = t.apply()
    assert changed == {WEB} and len(snap.endpoints_of(WEB)) == 1
    # the same objects again change nothing
    assert not t.update_service("default/web", service("web", "10.96.0.10"))
    assert not t.update_slice("default/web-abc", endpoint_slice("web", [endpoint("10.244.1.2")]))
    snap2, changed = t.apply()
    assert changed == frozenset() and snap2 == snap


def test_change_and_revert_is_a_noop():
    t = ChangeTracker()
    t.update_service("default/web", service("web", "10.96.0.10"))
    t.apply()
    assert t.update_service("default/web", service("web", "10.96.0.11"))
    assert not t.update_service("default/web", service("web", "10.96.0.10"))
    assert not t.pending
    assert t.apply()[1] == frozenset()


def test_slices_of_one_service_are_merged():
    t = ChangeTracker()
    t.update_service("default/web", service("web", "10.96.0.10"))
    t.update_slice("default/web-a", endpoint_slice("web", [endpoint("10.244.1.2")], name="web-a"))
    t.update_slice("default/web-b", endpoint_slice("web", [endpoint("10.244.2.2", "node2")], name="web-b"))
    snap, _ = t.apply()
    assert [e.ip for e in snap.endpoints_of(WEB)] == ["10.244.1.2", "10.244.2.2"]
    t.update_slice("default/web-a", None)
    snap, changed = t.apply()
    assert changed == {WEB} and [e.ip for e in snap.endpoints_of(WEB)] == ["10.244.2.2"]


def test_only_touched_service_ports_change():
    t = ChangeTracker()
    t.update_service("default/web", service("web", "10.96.0.10"))
    t.update_service("default/db", service("db", "10.96.0.11"))
    t.apply()
    t.update_slice("default/db-abc", endpoint_slice("db", [endpoint("10.244.1.9")], name="db-abc"))
    assert t.apply()[1] == {DB}
    t.update_service("default/web", None)
    snap, changed = t.apply()
    assert changed == {WEB} and WEB not in snap.services


def test_replace_all_deletes_missing_and_is_atomic_on_errors():
    import pytest

    from netlab.errors import ConfigError

    t = ChangeTracker()
    assert not t.initialized
    t.replace_all([service("web", "10.96.0.10"), service("db", "10.96.0.11")], [])
    assert t.initialized
    t.apply()
    with pytest.raises(ConfigError):
        t.replace_all([service("web", "bad")], [])
    assert not t.pending
    t.replace_all([service("web", "10.96.0.10")], [])
    snap, changed = t.apply()
    assert changed == {DB} and list(snap.services) == [WEB]
