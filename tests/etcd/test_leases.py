"""Subnet leases against a real etcd: flannel's layout, reuse, races, exhaustion, expiry."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from netlab.errors import ConfigError
from netlab.etcd import EtcdClient, Event, LeaseNotFound
from netlab.overlay.config import make_config
from netlab.overlay.leases import LeaseManager, OutOfSubnets
from netlab.overlay.subnets import Lease, LeaseAttrs

pytestmark = pytest.mark.etcd


@pytest.fixture
def client(etcd_url: str) -> Iterator[EtcdClient]:
    with EtcdClient(etcd_url) as c:
        yield c


@pytest.fixture
def prefix() -> str:
    return f"/test-{secrets.token_hex(4)}/coreos.com/network"


def attrs(n: int, mac: str | None = None) -> LeaseAttrs:
    return LeaseAttrs(IPv4Address(f"192.168.56.{10 + n}"), "vxlan", 1, mac or f"02:00:00:00:00:{n:02x}")


def test_config_roundtrip_and_missing(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix)
    with pytest.raises(ConfigError, match=f"no network config at {prefix}/config"):
        m.get_config()
    cfg = make_config("10.244.0.0/16")
    m.put_config(cfg)
    assert m.get_config() == cfg
    client.put(prefix + "/config", b'{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}')
    with pytest.raises(ConfigError, match="Backend.Type: unknown backend 'udp'"):
        m.get_config()


def test_acquire_writes_flannel_layout(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix, ttl=600)
    cfg = make_config("10.244.0.0/16")
    lease = m.acquire(cfg, attrs(1, "c6:d2:32:6f:8f:44"))
    assert cfg.subnet_fits(lease.subnet)
    key = f"{prefix}/subnets/{lease.subnet.network_address}-24"
    kv = client.get(key)
    assert kv is not None and kv.lease == lease.lease_id
    assert json.loads(kv.value) == {
        "PublicIP": "192.168.56.11",
        "PublicIPv6": None,
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"},
    }
    info = client.lease_time_to_live(lease.lease_id)
    assert info.granted_ttl == 600
    assert m.with_expiry(lease).expires_in is not None
    assert m.renew(lease) == 600
    leases, rev = m.list_leases()
    assert [(x.subnet, x.attrs) for x in leases] == [(lease.subnet, lease.attrs)] and rev >= kv.mod_revision


def test_restart_gets_the_same_subnet(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix, ttl=600)
    cfg = make_config("10.244.0.0/16")
    first = m.acquire(cfg, attrs(1))
    other = m.acquire(cfg, attrs(2))
    assert other.subnet != first.subnet
    # same PublicIP, new VtepMAC (the device was recreated): same subnet, value updated
    again = m.acquire(cfg, attrs(1, "02:aa:bb:cc:dd:ee"))
    assert again.subnet == first.subnet and again.lease_id != first.lease_id
    leases, _ = m.list_leases()
    assert {x.subnet: x.attrs.vtep_mac for x in leases}[first.subnet] == "02:aa:bb:cc:dd:ee"
    # the old etcd lease was revoked, not left to time out
    assert client.lease_time_to_live(first.lease_id).ttl == -1
    assert len(leases) == 2


def test_previous_subnet_is_preferred(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix, ttl=600)
    cfg = make_config("10.244.0.0/16")
    wanted = IPv4Network("10.244.77.0/24")
    assert m.acquire(cfg, attrs(1), previous=wanted).subnet == wanted
    # taken by someone else: a different one
    assert m.acquire(cfg, attrs(2), previous=wanted).subnet != wanted
    # outside SubnetMin..SubnetMax: ignored
    assert m.acquire(cfg, attrs(3), previous=IPv4Network("10.244.0.0/24")).subnet != IPv4Network(
        "10.244.0.0/24"
    )


def test_lease_that_no_longer_fits_is_replaced(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix, ttl=600)
    old = m.acquire(make_config("10.244.0.0/16", subnet_len=24), attrs(1))
    new = m.acquire(make_config("10.244.0.0/16", subnet_len=25), attrs(1))
    assert new.subnet.prefixlen == 25
    leases, _ = m.list_leases()
    assert [x.subnet for x in leases] == [new.subnet]
    assert client.lease_time_to_live(old.lease_id).ttl == -1


def test_reservation(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix, ttl=600)
    cfg = make_config("10.244.0.0/16")
    client.put(f"{prefix}/subnets/10.244.9.0-24", b'{"PublicIP":"192.168.56.11"}')
    lease = m.acquire(cfg, attrs(1))
    assert lease.subnet == IPv4Network("10.244.9.0/24") and lease.reserved
    kv = client.get(f"{prefix}/subnets/10.244.9.0-24")
    assert kv is not None and kv.lease == 0 and json.loads(kv.value)["BackendData"]["VNI"] == 1
    assert m.renew(lease) == 0
    m.release(lease)
    assert client.get(f"{prefix}/subnets/10.244.9.0-24") is not None  # reservations stay


class StaleListing(LeaseManager):
    """A manager whose first listing misses a competitor's lease (it was written just after)."""

    def __init__(
        self, *a: object, competitor: LeaseManager, rival: LeaseAttrs, contested: IPv4Network, **k: object
    ):
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.competitor, self.rival, self.contested, self.calls = competitor, rival, contested, 0

    def list_leases(self) -> tuple[list[Lease], int]:
        listing = super().list_leases()
        self.calls += 1
        if self.calls == 1:
            won = self.competitor.acquire(self.competitor.get_config(), self.rival, previous=self.contested)
            assert won.subnet == self.contested
        return listing


def test_lost_race_is_retried(client: EtcdClient, prefix: str) -> None:
    cfg = make_config("10.9.0.0/24", subnet_len=26)  # three subnets: .64, .128, .192
    rival = LeaseManager(client, prefix, ttl=600)
    rival.put_config(cfg)
    rival.acquire(cfg, attrs(5), previous=IPv4Network("10.9.0.192/26"))
    contested = IPv4Network("10.9.0.64/26")
    m = StaleListing(client, prefix, ttl=600, competitor=rival, rival=attrs(6), contested=contested)
    # the stale list shows `contested` free, and it is this node's previous subnet: it tries it,
    # loses the create-if-absent, re-lists and takes the last free one
    lease = m.acquire(cfg, attrs(7), previous=contested)
    assert m.calls == 2 and lease.subnet == IPv4Network("10.9.0.128/26")
    leases, _ = m.list_leases()
    assert {x.attrs.public_ip: x.subnet for x in leases}[attrs(6).public_ip] == contested
    # the etcd lease granted for the lost try was reused, not leaked
    assert client.lease_time_to_live(lease.lease_id).ttl > 0


def test_concurrent_racers_on_a_nearly_full_range(client: EtcdClient, prefix: str) -> None:
    cfg = make_config("10.9.0.0/24", subnet_len=27)  # seven subnets
    m = LeaseManager(client, prefix, ttl=600)
    for n in range(5):
        m.acquire(cfg, attrs(n))
    results: dict[int, IPv4Network] = {}
    barrier = threading.Barrier(2)

    def racer(n: int) -> None:
        mgr = LeaseManager(EtcdClient(client.url), prefix, ttl=600)
        barrier.wait()
        results[n] = mgr.acquire(cfg, attrs(n)).subnet

    threads = [threading.Thread(target=racer, args=(n,)) for n in (20, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[20] != results[21]
    with pytest.raises(OutOfSubnets, match="out of subnets: all 7 /27 subnets in 10.9.0.32-10.9.0.224"):
        m.acquire(cfg, attrs(30))
    leases, _ = m.list_leases()
    assert len(leases) == 7


def test_exhaustion_leaks_no_etcd_lease(client: EtcdClient, prefix: str) -> None:
    cfg = make_config("10.9.0.0/28", subnet_len=30, subnet_min="10.9.0.4", subnet_max="10.9.0.4")
    m = LeaseManager(client, prefix, ttl=600)
    m.acquire(cfg, attrs(1))
    before = _lease_count(client)
    with pytest.raises(OutOfSubnets):
        m.acquire(cfg, attrs(2))
    assert _lease_count(client) == before


def _lease_count(client: EtcdClient) -> int:
    d = client._post("lease/leases", {})
    return len(d.get("leases") or [])


def test_release_and_expiry_are_seen_by_watchers(client: EtcdClient, prefix: str) -> None:
    cfg = make_config("10.244.0.0/16")
    m = LeaseManager(client, prefix, ttl=600)
    short = LeaseManager(client, prefix, ttl=1)
    a = m.acquire(cfg, attrs(1))
    b = short.acquire(cfg, attrs(2))
    _, rev = m.list_leases()
    with m.watch(rev + 1) as w:
        m.release(a)
        gone = []
        for item in w:
            if isinstance(item, Event):
                ev = m.to_event(item)
                assert ev is not None and ev.lease is None
                gone.append(ev.subnet)
                if len(gone) == 2:
                    break
    assert set(gone) == {a.subnet, b.subnet}
    with pytest.raises(LeaseNotFound):
        short.renew(b)
    assert not m.still_mine(a)


def test_hint_is_preferred_after_previous(client: EtcdClient, prefix: str) -> None:
    m = LeaseManager(client, prefix, ttl=600)
    cfg = make_config("10.244.0.0/16")
    one, two = IPv4Network("10.244.1.0/24"), IPv4Network("10.244.2.0/24")
    assert m.acquire(cfg, attrs(1), hint=one).subnet == one
    # taken: another one, at random
    assert m.acquire(cfg, attrs(2), hint=one).subnet not in (one, two)
    # the previous subnet.env wins over the hint
    three = IPv4Network("10.244.3.0/24")
    assert m.acquire(cfg, attrs(3), previous=three, hint=two).subnet == three
    assert m.acquire(cfg, attrs(4), hint=two).subnet == two
