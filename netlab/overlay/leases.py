"""Subnet leases in etcd, flannel's way, with flannel's known failures fixed.

Layout (flannel's): the network config at `<prefix>/config`, one key per node at
`<prefix>/subnets/<a.b.c.d-NN>` holding flannel's lease JSON and attached to an etcd lease
with a TTL (24 h unless configured). A key without an etcd lease is a reservation: it never
expires and belongs to the node whose PublicIP it carries.

Acquiring (`acquire`), as flannel's `tryAcquireLease`, except where noted:
1. list the leases; one carrying this node's PublicIP that still fits the config is taken back
   (its value rewritten with the current VtepMAC, attached to a fresh etcd lease, by a
   compare-and-swap on its mod revision; a reservation stays unleased); one that no longer fits
   is deleted;
2. else the subnet named by the previous `subnet.env`, if it is free and fits;
3. else the caller's hint, if it is free and fits (netlab's addition: `netlab up` hints each
   node's planned subnet, as flannel's Kubernetes mode follows the node's podCIDR, so a lab's
   addresses are predictable);
4. else a random free one among the first 100 in SubnetMin..SubnetMax;
5. create-if-absent in one transaction. **Losing that race is retried** (re-list, choose again,
   bounded), where flanneld exits on it. The etcd lease granted for a failed try is reused for
   the next and revoked if nothing was won.

An exhausted range is `OutOfSubnets`, naming the range. Renewal is an etcd keep-alive of the
same lease (flannel re-puts under a new lease each time, leaking the old ones); release on
clean shutdown revokes the etcd lease, which deletes the key, so peers drop the node at once
instead of after the TTL.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Network

from netlab.errors import ConfigError, NetlabError
from netlab.etcd import EtcdClient, Event, KeyValue, Watch
from netlab.overlay.config import DEFAULT_PREFIX, NetworkConfig, parse_config
from netlab.overlay.subnets import (
    Lease,
    LeaseAttrs,
    config_key,
    lease_key,
    parse_lease_attrs,
    parse_subnet_key,
    pick_subnet,
    subnets_prefix,
)

log = logging.getLogger(__name__)

DEFAULT_TTL = 24 * 3600
MAX_ATTEMPTS = 10


class OutOfSubnets(NetlabError):
    """Every subnet in SubnetMin..SubnetMax is leased or reserved."""


@dataclass(frozen=True)
class LeaseEvent:
    """A change to the set of leases: `lease` is None when the subnet's lease went away."""

    subnet: IPv4Network
    lease: Lease | None
    revision: int


class LeaseManager:
    """Reads and writes flannel's keys under `prefix` through one etcd client."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str = DEFAULT_PREFIX,
        ttl: int = DEFAULT_TTL,
        rng: random.Random | None = None,
    ) -> None:
        if ttl < 1:
            raise ConfigError(f"lease TTL must be at least 1 second, not {ttl}")
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.ttl = ttl
        self.rng = rng or random.Random()

    # config -------------------------------------------------------------------------------

    def get_config(self) -> NetworkConfig:
        key = config_key(self.prefix)
        kv = self.client.get(key)
        if kv is None:
            raise ConfigError(f"no network config at {key} in etcd {self.client.url}")
        return parse_config(kv.value, where=f"{key} in etcd")

    def put_config(self, config: NetworkConfig) -> None:
        self.client.put(config_key(self.prefix), config.render())

    # reading leases -----------------------------------------------------------------------

    def to_lease(self, kv: KeyValue) -> Lease | None:
        """The lease stored in `kv`, or None (logged) when the key or value is not one."""
        subnet = parse_subnet_key(kv.key)
        if subnet is None:
            log.warning("ignoring %s: not a subnet key", kv.key)
            return None
        attrs = parse_lease_attrs(kv.value)
        if attrs is None:
            log.warning("ignoring lease %s: malformed value %r", kv.key, kv.value[:200])
            return None
        return Lease(subnet, attrs, kv.lease, kv.mod_revision)

    def list_leases(self) -> tuple[list[Lease], int]:
        """Every readable lease, and the revision the list was read at."""
        r = self.client.range(subnets_prefix(self.prefix), prefix=True)
        leases = [lease for kv in r.kvs if (lease := self.to_lease(kv)) is not None]
        return leases, r.revision

    def with_expiry(self, lease: Lease) -> Lease:
        """`lease` with `expires_in` filled from etcd (for status displays)."""
        if lease.reserved:
            return lease
        info = self.client.lease_time_to_live(lease.lease_id)
        return replace(lease, expires_in=info.ttl)

    def to_event(self, event: Event) -> LeaseEvent | None:
        subnet = parse_subnet_key(event.kv.key)
        if subnet is None:
            return None
        if event.type == "DELETE":
            return LeaseEvent(subnet, None, event.kv.mod_revision)
        lease = self.to_lease(event.kv)
        if lease is None:
            # an unreadable value replaces whatever was there: treat it as gone
            return LeaseEvent(subnet, None, event.kv.mod_revision)
        return LeaseEvent(subnet, lease, event.kv.mod_revision)

    def watch(self, start_revision: int) -> Watch:
        return self.client.watch(
            subnets_prefix(self.prefix), prefix=True, start_revision=start_revision, progress_notify=True
        )

    # acquiring ----------------------------------------------------------------------------

    def acquire(
        self,
        config: NetworkConfig,
        attrs: LeaseAttrs,
        previous: IPv4Network | None = None,
        hint: IPv4Network | None = None,
    ) -> Lease:
        """This node's lease (see the module docstring for the rules)."""
        grant_id = 0
        preferred = [sn for sn in (previous, hint) if sn is not None]
        try:
            for _ in range(MAX_ATTEMPTS):
                leases, _rev = self.list_leases()
                lease, grant_id = self._try_acquire(config, attrs, preferred, leases, grant_id)
                if lease is not None:
                    grant_id = 0 if lease.lease_id == grant_id else grant_id
                    return lease
        finally:
            if grant_id:
                self.client.lease_revoke(grant_id)
        raise NetlabError(
            f"could not acquire a subnet in {config.network} after {MAX_ATTEMPTS} attempts: "
            "other nodes kept taking the chosen ones"
        )

    def _grant(self, grant_id: int) -> int:
        return grant_id or self.client.lease_grant(self.ttl).id

    def _try_acquire(
        self,
        config: NetworkConfig,
        attrs: LeaseAttrs,
        preferred: list[IPv4Network],
        leases: list[Lease],
        grant_id: int,
    ) -> tuple[Lease | None, int]:
        """One attempt. Returns (lease won or None to retry, etcd lease id to reuse or revoke)."""
        value = attrs.render()
        mine = [lease for lease in leases if lease.attrs.public_ip == attrs.public_ip]
        keep = next((lease for lease in mine if config.subnet_fits(lease.subnet)), None)
        gone: set[IPv4Network] = set()
        for lease in mine:
            if lease is keep:
                continue
            # a second lease for this node, or one the config no longer allows: give it up
            key = lease_key(self.prefix, lease.subnet)
            log.info("releasing %s (public IP %s): superseded", lease.subnet, attrs.public_ip)
            if self.client.delete_if(key, lease.mod_revision).succeeded:
                gone.add(lease.subnet)
                if lease.lease_id:
                    self.client.lease_revoke(lease.lease_id)
        if keep is not None:
            key = lease_key(self.prefix, keep.subnet)
            if keep.reserved:
                r = self.client.update(key, value, keep.mod_revision)
                if r.succeeded:
                    log.info("using reserved subnet %s", keep.subnet)
                    return Lease(keep.subnet, attrs, 0, r.revision), grant_id
                return None, grant_id
            grant_id = self._grant(grant_id)
            r = self.client.update(key, value, keep.mod_revision, lease=grant_id)
            if r.succeeded:
                log.info("took back subnet %s (public IP %s)", keep.subnet, attrs.public_ip)
                if keep.lease_id and keep.lease_id != grant_id:
                    # the old etcd lease holds no key any more; do not leave it to time out
                    self.client.lease_revoke(keep.lease_id)
                return Lease(keep.subnet, attrs, grant_id, r.revision, self.ttl), grant_id
            return None, grant_id

        taken = [lease.subnet for lease in leases if lease.subnet not in gone]
        usable = [sn for sn in preferred if config.subnet_fits(sn) and not _overlaps(sn, taken)]
        subnet = usable[0] if usable else pick_subnet(config, taken, self.rng)
        if subnet is None:
            raise OutOfSubnets(
                f"out of subnets: all {config.capacity} /{config.subnet_len} subnets in "
                f"{config.subnet_min}-{config.subnet_max} of {config.network} are leased or reserved"
            )
        grant_id = self._grant(grant_id)
        r = self.client.create(lease_key(self.prefix, subnet), value, lease=grant_id)
        if r.succeeded:
            log.info("acquired subnet %s (public IP %s)", subnet, attrs.public_ip)
            return Lease(subnet, attrs, grant_id, r.revision, self.ttl), grant_id
        log.info("subnet %s was taken by another node meanwhile; choosing again", subnet)
        return None, grant_id

    # keeping and releasing ----------------------------------------------------------------

    def renew(self, lease: Lease) -> int:
        """Keep the lease alive; returns the seconds it now has. LeaseNotFound if it expired."""
        if lease.reserved:
            return 0
        return self.client.lease_keepalive(lease.lease_id)

    def still_mine(self, lease: Lease) -> bool:
        """Is the key still there with this node's PublicIP?"""
        kv = self.client.get(lease_key(self.prefix, lease.subnet))
        if kv is None:
            return False
        current = parse_lease_attrs(kv.value)
        return current is not None and current.public_ip == lease.attrs.public_ip

    def release(self, lease: Lease) -> None:
        """Give the subnet up now (clean shutdown). Reservations stay."""
        if lease.reserved:
            return
        # lease_revoke answers False for a lease that already expired: nothing left to do
        self.client.lease_revoke(lease.lease_id)


def _overlaps(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> bool:
    return any(subnet.overlaps(t) for t in taken)
