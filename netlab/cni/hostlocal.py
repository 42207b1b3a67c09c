"""host-local IPAM: address ranges, the allocator, and its on-disk store.

This mirrors containernetworking/plugins `plugins/ipam/host-local` (v1.1.1) closely enough
that both can share one data directory:

- config: `ipam.ranges` (a list of range sets, each a list of `{subnet, rangeStart,
  rangeEnd, gateway}`), or the legacy `ipam.subnet`; `routes`, `dataDir`
  (default `/var/lib/cni/networks`), `resolvConf`; the `ipRanges` capability replaces the
  ranges; static requests come from `CNI_ARGS` `IP=`, `args.cni.ips` or the `ips` capability;
- a range defaults to gateway `.1`, first address after the network address, last address
  before the broadcast address (IPv4); the gateway is never handed out; /31 and /32 are too
  small; a subnet with host bits set is an error; range sets must not overlap;
- allocation is round robin: the search starts after `last_reserved_ip.<range set index>`;
- store `<dataDir>/<network>/`: one file per address holding `<containerID>\\r\\n<ifname>`,
  created with O_EXCL; `last_reserved_ip.<n>`; and `lock`, held with flock(LOCK_EX) for
  every allocation and release, so concurrent ADDs in any number of processes (and the
  reference plugin) never hand out one address twice.

Beyond the reference plugin, GC (spec 1.1.0) releases reservations whose attachment is not
in `cni.dev/valid-attachments`, and STATUS reports code 50 when a range set is exhausted.

Standard library only. Configuration errors are code 7; allocation failures are code 999,
as the reference plugin reports them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab.cni.types import DNS, INTERNAL, INVALID_NETWORK_CONFIG, CniError, IPConfig, Route

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LINE_BREAK = "\r\n"
LAST_IP_PREFIX = "last_reserved_ip."
LOCK_FILE = "lock"


def _bad(msg: str) -> CniError:
    return CniError(INVALID_NETWORK_CONFIG, msg)


def _parse_ip(value: Any, what: str) -> IP:
    """An address; a CIDR is accepted and reduced to its address (Go's ip.ParseIP does so)."""
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, not {value!r}")
    try:
        return ipaddress.ip_interface(value).ip if "/" in value else ipaddress.ip_address(value)
    except ValueError:
        raise _bad(f"invalid {what} {value!r}") from None


@dataclass(frozen=True)
class Range:
    subnet: Net
    start: IP
    end: IP
    gateway: IP | None

    def contains(self, ip: IP) -> bool:
        return ip.version == self.subnet.version and self.start <= ip <= self.end  # type: ignore[operator]

    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def overlaps(self, other: Range) -> bool:
        if self.subnet.version != other.subnet.version:
            return False
        return int(self.start) <= int(other.end) and int(other.start) <= int(self.end)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def parse_range(d: Any) -> Range:
    if not isinstance(d, dict):
        raise _bad(f"a range must be an object, not {d!r}")
    raw = d.get("subnet")
    if not isinstance(raw, str) or "/" not in raw:
        raise _bad(f"range needs a 'subnet' in CIDR form, not {raw!r}")
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        raise _bad(f"invalid subnet {raw!r}") from None
    net = iface.network
    if net.prefixlen > net.max_prefixlen - 2:
        raise _bad(f"Network {raw} too small to allocate from")
    if iface.ip != net.network_address:
        raise _bad(
            f"Network has host bits set. For a subnet mask of length {net.prefixlen} "
            f"the network address is {net.network_address}"
        )
    gateway = _parse_ip(d["gateway"], "gateway") if d.get("gateway") else net.network_address + 1
    start = _parse_ip(d["rangeStart"], "rangeStart") if d.get("rangeStart") else net.network_address + 1
    if d.get("rangeEnd"):
        end = _parse_ip(d["rangeEnd"], "rangeEnd")
    else:
        end = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    for what, ip in (("rangeStart", start), ("rangeEnd", end)):
        if ip not in net:
            raise _bad(f"{what} {ip} not in network {net}")
    if gateway.version != net.version:
        raise _bad(f"gateway {gateway} is not an IPv{net.version} address")
    if start > end:  # type: ignore[operator]
        raise _bad(f"rangeStart {start} is after rangeEnd {end}")
    return Range(net, start, end, gateway)


@dataclass(frozen=True)
class RangeSet:
    ranges: tuple[Range, ...]

    def range_for(self, ip: IP) -> Range | None:
        return next((r for r in self.ranges if r.contains(ip)), None)

    def contains(self, ip: IP) -> bool:
        return self.range_for(ip) is not None

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def size(self) -> int:
        gateways = sum(1 for r in self.ranges if r.gateway is not None and r.contains(r.gateway))
        return sum(r.size() for r in self.ranges) - gateways

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


def parse_range_set(index: int, items: Any) -> RangeSet:
    if not isinstance(items, list) or not items:
        raise _bad(f"invalid range set {index}: must be a non-empty list of ranges")
    try:
        ranges = tuple(parse_range(r) for r in items)
    except CniError as e:
        raise _bad(f"invalid range set {index}: {e.msg}") from None
    if len({r.subnet.version for r in ranges}) != 1:
        raise _bad(f"invalid range set {index}: mixes IPv4 and IPv6")
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            if a.overlaps(b):
                raise _bad(f"invalid range set {index}: ranges {a} and {b} overlap")
    return RangeSet(ranges)


@dataclass(frozen=True)
class IPAMConfig:
    network: str
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    data_dir: Path
    dns: DNS
    requested: tuple[IP, ...]

    @property
    def store_dir(self) -> Path:
        return self.data_dir / self.network


def parse_ipam_config(config: dict[str, Any], cni_args: dict[str, str] | None = None) -> IPAMConfig:
    """The host-local view of a plugin request (the whole request, `ipam` inside it)."""
    ipam = config.get("ipam")
    if not isinstance(ipam, dict):
        raise _bad("IPAM config missing 'ipam' key")
    raw_sets: list[Any] = []
    if ipam.get("subnet"):
        raw_sets.append([{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}])
    ranges = ipam.get("ranges") or []
    if not isinstance(ranges, list):
        raise _bad("'ranges' must be a list of range sets")
    raw_sets += ranges
    runtime = config.get("runtimeConfig") or {}
    if isinstance(runtime, dict) and runtime.get("ipRanges"):
        raw_sets = list(runtime["ipRanges"])
    if not raw_sets:
        raise _bad("no IP ranges specified")
    sets = tuple(parse_range_set(i, s) for i, s in enumerate(raw_sets))
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if a.overlaps(sets[j]):
                raise _bad(f"range set {i} overlaps with {j}")

    routes = ipam.get("routes") or []
    if not isinstance(routes, list):
        raise _bad("'routes' must be a list")
    try:
        parsed_routes = tuple(Route.from_dict(r) for r in routes)
        for r in parsed_routes:
            ipaddress.ip_network(r.dst, strict=False)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _bad(f"invalid routes {routes!r}: each needs a 'dst' in CIDR form") from None

    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(data_dir, str):
        raise _bad("'dataDir' must be a path")
    dns = DNS()
    if ipam.get("resolvConf"):
        dns = parse_resolv_conf(str(ipam["resolvConf"]))

    requested: list[IP] = []
    if cni_args and cni_args.get("IP"):
        requested += [_parse_ip(v, "CNI_ARGS IP") for v in cni_args["IP"].split(",") if v]
    args = config.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict):
        requested += [_parse_ip(v, "args.cni.ips entry") for v in args["cni"].get("ips") or []]
    if isinstance(runtime, dict):
        requested += [_parse_ip(v, "runtimeConfig.ips entry") for v in runtime.get("ips") or []]
    return IPAMConfig(
        network=str(config.get("name")),
        range_sets=sets,
        routes=parsed_routes,
        data_dir=Path(data_dir),
        dns=dns,
        requested=tuple(dict.fromkeys(requested)),
    )


def parse_resolv_conf(path: str) -> DNS:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise _bad(f"cannot read resolvConf {path}: {e.strerror}") from None
    dns = DNS()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver":
            dns.nameservers.append(values[0])
        elif key == "domain":
            dns.domain = values[0]
        elif key == "search":
            dns.search = values
        elif key == "options":
            dns.options += values
    return dns


# The store ------------------------------------------------------------------------------


class Store:
    """`<dataDir>/<network>/` under an exclusive flock for as long as the context is open."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._fd: int | None = None

    def __enter__(self) -> Store:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            self._fd = os.open(self.dir / LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise CniError(INTERNAL, f"cannot open IPAM store {self.dir}: {e.strerror}") from None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def reserve(self, container_id: str, ifname: str, ip: IP, range_id: int) -> bool:
        """Claim `ip`; False when someone holds it already."""
        path = self.dir / str(ip)
        try:
            fd = os.open(path, os.O_RDWR | os.O_EXCL | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{container_id.strip()}{LINE_BREAK}{ifname}".encode())
        except OSError:
            os.close(fd)
            path.unlink()
            raise
        os.close(fd)
        (self.dir / f"{LAST_IP_PREFIX}{range_id}").write_text(str(ip))
        return True

    def last_reserved(self, range_id: int) -> IP | None:
        try:
            return ipaddress.ip_address((self.dir / f"{LAST_IP_PREFIX}{range_id}").read_text().strip())
        except (OSError, ValueError):
            return None

    def _files(self) -> Iterator[tuple[str, str]]:
        """(name, trimmed content) of every file but the lock and the last-reserved marks.

        Every ADD and DEL reads all of them (whose reservation is this?), as the reference
        plugin does, so this reads through a directory fd with plain os calls: about 2 us a
        file against 20 us through pathlib and an address parse per name."""
        try:
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            for name in os.listdir(dfd):
                if name == LOCK_FILE or name.startswith((LAST_IP_PREFIX, ".")):
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    continue
                finally:
                    os.close(fd)
                yield name, data.decode(errors="replace").strip()
        finally:
            os.close(dfd)

    @staticmethod
    def _address(name: str) -> IP | None:
        try:
            return ipaddress.ip_address(name)
        except ValueError:
            return None  # anything else in the directory

    def reservations(self) -> Iterator[tuple[IP, str]]:
        """(address, trimmed file content) for every address file."""
        for name, owner in self._files():
            ip = self._address(name)
            if ip is not None:
                yield ip, owner

    def _owned(self, match: str) -> list[IP]:
        found = (self._address(name) for name, owner in self._files() if owner == match)
        return [ip for ip in found if ip is not None]

    def owned_by(self, container_id: str, ifname: str) -> list[IP]:
        return self._owned(f"{container_id.strip()}{LINE_BREAK}{ifname}")

    def release(self, ip: IP) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / str(ip)).unlink()

    def release_by_id(self, container_id: str, ifname: str) -> list[IP]:
        """Release everything `container_id`/`ifname` holds (legacy files: just the id)."""
        released = self.owned_by(container_id, ifname)
        if not released:
            released = self._owned(container_id.strip())
        for ip in released:
            self.release(ip)
        return released


# Allocation -----------------------------------------------------------------------------


def candidates(rs: RangeSet, last: IP | None) -> Iterator[tuple[IP, Range]]:
    """Every address of `rs` once, round robin from after `last`, skipping gateways."""
    ranges = rs.ranges
    idx, cur = 0, int(ranges[0].start)
    if last is not None:
        for i, r in enumerate(ranges):
            if r.contains(last):
                idx, cur = i, int(last) + 1
                break
    make = ipaddress.ip_address
    for _ in range(sum(r.size() for r in ranges)):
        r = ranges[idx]
        if cur > int(r.end):
            idx = (idx + 1) % len(ranges)
            r = ranges[idx]
            cur = int(r.start)
        ip = make(cur)
        cur += 1
        if ip != r.gateway:
            yield ip, r


def _ipconfig(ip: IP, r: Range) -> IPConfig:
    return IPConfig(address=f"{ip}/{r.subnet.prefixlen}", gateway=str(r.gateway) if r.gateway else None)


def allocate(conf: IPAMConfig, container_id: str, ifname: str) -> list[IPConfig]:
    """One address from each range set (the requested one where asked); all or nothing."""
    requested = list(conf.requested)
    got: list[tuple[IP, IPConfig]] = []
    with Store(conf.store_dir) as store:
        try:
            for index, rs in enumerate(conf.range_sets):
                want = next((ip for ip in requested if rs.contains(ip)), None)
                if want is not None:
                    requested.remove(want)
                try:
                    got.append(_allocate_one(store, rs, index, container_id, ifname, want))
                except CniError as e:
                    raise CniError(e.code, f"failed to allocate for range {index}: {e.msg}") from None
            if requested:
                raise CniError(
                    INTERNAL, "failed to allocate all requested IPs: " + " ".join(str(ip) for ip in requested)
                )
        except BaseException:
            for ip, _ in got:  # only what this call reserved: an earlier ADD's address stays
                store.release(ip)
            raise
    return [cfg for _, cfg in got]


def _allocate_one(
    store: Store, rs: RangeSet, index: int, container_id: str, ifname: str, want: IP | None
) -> tuple[IP, IPConfig]:
    if want is not None:
        r = rs.range_for(want)
        assert r is not None
        if want == r.gateway:
            raise CniError(INTERNAL, f"requested ip {want} is subnet's gateway")
        if not store.reserve(container_id, ifname, want, index):
            raise CniError(INTERNAL, f"requested IP address {want} is not available in range set {rs}")
        return want, _ipconfig(want, r)
    for ip in store.owned_by(container_id, ifname):
        if rs.contains(ip):
            raise CniError(
                INTERNAL, f"{ip} has been allocated to {container_id}, duplicate allocation is not allowed"
            )
    for ip, r in candidates(rs, store.last_reserved(index)):
        if store.reserve(container_id, ifname, ip, index):
            return ip, _ipconfig(ip, r)
    raise CniError(INTERNAL, f"no IP addresses available in range set: {rs}")


def release(conf: IPAMConfig, container_id: str, ifname: str) -> list[IP]:
    if not conf.store_dir.is_dir():
        return []
    with Store(conf.store_dir) as store:
        return store.release_by_id(container_id, ifname)


def held(conf: IPAMConfig, container_id: str, ifname: str) -> list[IP]:
    if not conf.store_dir.is_dir():
        return []
    with Store(conf.store_dir) as store:
        return store.owned_by(container_id, ifname)


def collect_garbage(conf: IPAMConfig, valid: set[tuple[str, str]]) -> list[IP]:
    """Release every reservation whose (containerID, ifname) is not in `valid`."""
    if not conf.store_dir.is_dir():
        return []
    valid_ids = {cid for cid, _ in valid}
    released = []
    with Store(conf.store_dir) as store:
        for ip, owner in list(store.reservations()):
            cid, sep, ifname = owner.partition(LINE_BREAK)
            keep = (cid, ifname) in valid if sep else cid in valid_ids
            if not keep:
                store.release(ip)
                released.append(ip)
    return released


def free_counts(conf: IPAMConfig) -> list[int]:
    """Free addresses left in each range set."""
    taken = [0] * len(conf.range_sets)
    if conf.store_dir.is_dir():
        with Store(conf.store_dir) as store:
            for ip, _ in store.reservations():
                for i, rs in enumerate(conf.range_sets):
                    r = rs.range_for(ip)
                    if r is not None and ip != r.gateway:
                        taken[i] += 1
    return [rs.size() - t for rs, t in zip(conf.range_sets, taken, strict=True)]
