"""host-local: range parsing, the allocator and its on-disk store (files only, no kernel)."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from netlab.cni import hostlocal as hl
from netlab.cni.types import CniError


def conf(tmp_path, ranges=None, **ipam):
    ipam.setdefault("ranges", ranges if ranges is not None else [[{"subnet": "10.1.0.0/29"}]])
    return hl.parse_ipam_config({"name": "net", "ipam": {"dataDir": str(tmp_path), **ipam}})


def test_range_defaults_match_the_reference():
    r = hl.parse_range({"subnet": "10.1.0.0/24"})
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.0.1", "10.1.0.254", "10.1.0.1")
    assert str(r) == "10.1.0.1-10.1.0.254"
    r6 = hl.parse_range({"subnet": "fd00::/120"})
    assert (str(r6.start), str(r6.end)) == ("fd00::1", "fd00::ff")
    r = hl.parse_range(
        {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.254"}
    )
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.0.10", "10.1.0.20", "10.1.0.254")


@pytest.mark.parametrize(
    "bad, text",
    [
        ({"subnet": "10.1.0.0/31"}, "too small to allocate from"),
        ({"subnet": "10.1.0.0/32"}, "too small"),
        ({"subnet": "10.1.0.5/24"}, "Network has host bits set"),
        ({"subnet": "10.1.0.0"}, "CIDR form"),
        ({"subnet": "banana/24"}, "invalid subnet"),
        ({"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}, "rangeStart 10.2.0.1 not in network"),
        ({"subnet": "10.1.0.0/24", "rangeEnd": "x"}, "invalid rangeEnd"),
        ({"subnet": "10.1.0.0/24", "gateway": "fd00::1"}, "not an IPv4 address"),
        ({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.3"}, "is after rangeEnd"),
    ],
)
def test_bad_ranges_are_code_7(bad, text):
    with pytest.raises(CniError, match=text) as e:
        hl.parse_range(bad)
    assert e.value.code == 7


def test_config_forms_and_errors(tmp_path):
    legacy = hl.parse_ipam_config({"name": "n", "ipam": {"subnet": "10.5.0.0/24", "gateway": "10.5.0.9"}})
    assert str(legacy.range_sets[0].ranges[0].gateway) == "10.5.0.9"
    assert legacy.store_dir == hl.Path("/var/lib/cni/networks/n")
    c = conf(tmp_path, routes=[{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.1"}])
    assert [(r.dst, r.gw) for r in c.routes] == [("0.0.0.0/0", None), ("10.9.0.0/16", "10.1.0.1")]
    for ipam, text in [
        ({}, "no IP ranges specified"),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.128/25"}]]},
            "range set 0 overlaps with 1",
        ),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixes IPv4 and IPv6"),
        ({"ranges": [[]]}, "invalid range set 0"),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"gw": "1.2.3.4"}]}, "invalid routes"),
    ]:
        with pytest.raises(CniError, match=text):
            hl.parse_ipam_config({"name": "n", "ipam": ipam})
    with pytest.raises(CniError, match="missing 'ipam'"):
        hl.parse_ipam_config({"name": "n"})


def test_ip_ranges_capability_replaces_ranges(tmp_path):
    c = hl.parse_ipam_config(
        {
            "name": "n",
            "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}]]},
            "runtimeConfig": {"ipRanges": [[{"subnet": "10.7.0.0/24"}]]},
        }
    )
    assert str(c.range_sets[0]) == "10.7.0.1-10.7.0.254"


def test_allocation_round_robin_and_files(tmp_path):
    c = conf(tmp_path)  # 10.1.0.0/29: .2 .. .6 usable, .1 is the gateway
    got = [hl.allocate(c, f"c{i}", "eth0")[0] for i in range(5)]
    assert [g.address for g in got] == [f"10.1.0.{i}/29" for i in range(2, 7)]
    assert all(g.gateway == "10.1.0.1" for g in got)
    store = tmp_path / "net"
    assert (store / "10.1.0.2").read_bytes() == b"c0\r\neth0"
    assert (store / "last_reserved_ip.0").read_text() == "10.1.0.6"
    assert (store / "lock").exists()
    with pytest.raises(
        CniError,
        match=r"failed to allocate for range 0: no IP addresses available in range set: 10.1.0.1-10.1.0.6",
    ) as e:
        hl.allocate(c, "c9", "eth0")
    assert e.value.code == 999
    assert hl.release(c, "c1", "eth0") == [ipaddress.ip_address("10.1.0.3")]
    # round robin: the next search starts after the last reservation (.6), wraps to .3
    assert hl.allocate(c, "c9", "eth0")[0].address == "10.1.0.3/29"
    assert hl.release(c, "c1", "eth0") == []  # idempotent


def test_duplicate_allocation_is_refused_and_keeps_the_first(tmp_path):
    c = conf(tmp_path)
    hl.allocate(c, "c1", "eth0")
    with pytest.raises(
        CniError, match="10.1.0.2 has been allocated to c1, duplicate allocation is not allowed"
    ):
        hl.allocate(c, "c1", "eth0")
    assert hl.held(c, "c1", "eth0") == [ipaddress.ip_address("10.1.0.2")]
    assert hl.allocate(c, "c1", "eth1")[0].address == "10.1.0.3/29"  # another interface is fine


def test_requested_addresses(tmp_path):
    c = hl.parse_ipam_config(
        {"name": "net", "ipam": {"dataDir": str(tmp_path), "ranges": [[{"subnet": "10.1.0.0/24"}]]}},
        {"IP": "10.1.0.50"},
    )
    assert hl.allocate(c, "c1", "eth0")[0].address == "10.1.0.50/24"
    with pytest.raises(CniError, match="requested IP address 10.1.0.50 is not available"):
        hl.allocate(c, "c2", "eth0")
    gw = hl.parse_ipam_config(
        {"name": "net", "ipam": {"dataDir": str(tmp_path), "ranges": [[{"subnet": "10.1.0.0/24"}]]}},
        {"IP": "10.1.0.1"},
    )
    with pytest.raises(CniError, match="is subnet's gateway"):
        hl.allocate(gw, "c3", "eth0")
    via_caps = hl.parse_ipam_config(
        {
            "name": "net",
            "ipam": {"dataDir": str(tmp_path), "ranges": [[{"subnet": "10.1.0.0/24"}]]},
            "runtimeConfig": {"ips": ["10.1.0.60/24"]},
            "args": {"cni": {"ips": ["10.1.0.60"]}},
        }
    )
    assert [str(ip) for ip in via_caps.requested] == ["10.1.0.60"]


def test_multiple_range_sets_are_all_or_nothing(tmp_path):
    c = conf(tmp_path, ranges=[[{"subnet": "10.1.0.0/29"}], [{"subnet": "10.2.0.0/30"}]])
    got = hl.allocate(c, "a", "eth0")
    assert [g.address for g in got] == ["10.1.0.2/29", "10.2.0.2/30"]
    with pytest.raises(CniError, match="failed to allocate for range 1"):
        hl.allocate(c, "b", "eth0")  # the /30 is full: b's address from set 0 is given back
    assert hl.held(c, "b", "eth0") == []
    assert (tmp_path / "net" / "last_reserved_ip.1").read_text() == "10.2.0.2"


def test_release_of_legacy_files_and_gc(tmp_path):
    c = conf(tmp_path)
    hl.allocate(c, "keep", "eth0")
    hl.allocate(c, "gone", "eth0")
    (tmp_path / "net" / "10.1.0.6").write_text("legacy")  # id only, as old versions wrote
    assert hl.free_counts(c) == [2]
    released = hl.collect_garbage(c, {("keep", "eth0")})
    assert sorted(map(str, released)) == ["10.1.0.3", "10.1.0.6"]
    assert hl.free_counts(c) == [4]
    (tmp_path / "net" / "10.1.0.5").write_text("old\n")
    assert hl.release(c, "old", "eth0") == [ipaddress.ip_address("10.1.0.5")]


def test_concurrent_allocations_never_collide(tmp_path):
    c = conf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}]])
    got: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        ip = hl.allocate(c, f"c{i}", "eth0")[0].address
        with lock:
            got.append(ip)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 60


def test_candidates_wrap_across_ranges():
    rs = hl.parse_range_set(0, [{"subnet": "10.1.0.0/30"}, {"subnet": "10.2.0.0/30"}])
    after = [str(ip) for ip, _ in hl.candidates(rs, ipaddress.ip_address("10.1.0.2"))]
    assert after == ["10.2.0.2", "10.1.0.2"]  # gateways .1 skipped; last one comes last
    assert [str(ip) for ip, _ in hl.candidates(rs, None)] == ["10.1.0.2", "10.2.0.2"]
    assert rs.size() == 2


def test_resolv_conf(tmp_path):
    p = tmp_path / "resolv.conf"
    p.write_text(
        "# c\nnameserver 10.96.0.10\nnameserver 1.1.1.1\nsearch a.svc b.svc\ndomain x\noptions ndots:5\n"
    )
    dns = conf(tmp_path, resolvConf=str(p)).dns
    assert dns.to_dict() == {
        "nameservers": ["10.96.0.10", "1.1.1.1"],
        "domain": "x",
        "search": ["a.svc", "b.svc"],
        "options": ["ndots:5"],
    }
