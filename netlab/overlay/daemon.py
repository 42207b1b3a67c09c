"""flanneld: one node's lease, kept alive, and its namespace kept in step with every peer's.

Start-up (`start`), all or nothing: read the network config from etcd, set up the backend
(the VXLAN device must exist before the lease, since its MAC is published in it), acquire the
lease (preferring the subnet of a previous `subnet.env`), configure the node's own subnet,
list all leases and program every peer, and only then write `subnet.env`, so a pod created
after the file exists can already reach every node known at that moment. A failure in any
step (bad config, unreachable etcd, out of subnets) raises before `subnet.env` is written.

Running (`run`): a watcher thread lists the leases and watches `<prefix>/subnets/` from the
list's revision; the main thread owns the netlink socket and does all kernel work, taking
from a queue either a full list (apply it with `sync`, which also removes peers that vanished)
or one event (apply or remove one peer). When etcd goes away the watcher retries with backoff
(100 ms to 5 s) and the kernel is left exactly as it is, so pod traffic between known nodes is
unaffected; when etcd is back it lists and syncs again, which picks up whatever changed while
it was gone. A compacted watch is handled the same way (re-list, diff, re-watch).

Every few seconds flanneld also checks that the VXLAN device still exists; one deleted by hand
is recreated (with a new MAC, republished in the lease, which peers apply in place) and every
peer is programmed on it again, as flannel does.

The node's own key is watched too: if it disappears (expired, deleted by hand) the lease is
acquired again, preferring the same subnet; if the subnet had to change, the node's pods would
be on the wrong network, so flanneld stops with an error, as flannel does. The lease is renewed
by keep-alive `renew_margin` before it would expire (a third of the TTL when the TTL is short).

Stopping (`stop` from another thread, or a signal in the CLI) ends the watch promptly and, by
default, revokes the lease so peers drop this node at once instead of after the TTL; the
node's own device and routes stay (a restarted flanneld reuses them).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from netlab.errors import NetlabError, Unavailable
from netlab.etcd import Compacted, EtcdError, Event, LeaseNotFound, Watch
from netlab.overlay import subnetenv
from netlab.overlay.config import Backend, NetworkConfig
from netlab.overlay.dataplane import Dataplane
from netlab.overlay.leases import LeaseEvent, LeaseManager
from netlab.overlay.masq import ensure_masq
from netlab.overlay.subnets import Lease, LeaseAttrs

log = logging.getLogger(__name__)

DEFAULT_RENEW_MARGIN = 3600  # flannel's --subnet-lease-renew-margin default, in seconds
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
RENEW_RETRY = 10.0
MASQ_RESYNC = 5.0  # flannel's --iptables-resync; also how often the device is checked


@dataclass
class _Listing:
    leases: list[Lease]
    revision: int


class Flanneld:
    """One node's flanneld. `make_dataplane` builds the backend etcd's config asks for."""

    def __init__(
        self,
        manager: LeaseManager,
        make_dataplane: Callable[[Backend], Dataplane],
        subnet_file: Path,
        renew_margin: int = DEFAULT_RENEW_MARGIN,
        release_on_exit: bool = True,
        on_ready: Callable[[Lease], None] | None = None,
        subnet_hint: IPv4Network | None = None,
        ip_masq: bool = False,
    ) -> None:
        self.manager = manager
        self.make_dataplane = make_dataplane
        self._dataplane: Dataplane | None = None
        self.subnet_file = subnet_file
        self.renew_margin = renew_margin
        self.release_on_exit = release_on_exit
        self.on_ready = on_ready
        self.subnet_hint = subnet_hint
        self.ip_masq = ip_masq
        self._next_masq = 0.0
        self.config: NetworkConfig | None = None
        self.attrs: LeaseAttrs | None = None
        self.lease: Lease | None = None
        self.peers: dict[IPv4Network, Lease] = {}
        self._queue: queue.Queue[_Listing | LeaseEvent | Exception] = queue.Queue()
        self._stop = threading.Event()
        self._watch_lock = threading.Lock()
        self._watch: Watch | None = None
        self._watcher: threading.Thread | None = None
        self._next_renew = 0.0

    # start-up -----------------------------------------------------------------------------

    def start(self) -> Lease:
        config = self.manager.get_config()
        self.config = config
        self._dataplane = self.make_dataplane(config.backend)
        try:
            self.attrs = self.dataplane.setup()
            previous = None
            try:
                old = subnetenv.read(self.subnet_file)
                previous = old.node_subnet if old else None
            except NetlabError as e:
                log.warning("ignoring unreadable %s: %s", self.subnet_file, e)
            lease = self.manager.acquire(config, self.attrs, previous=previous, hint=self.subnet_hint)
        except BaseException:
            # nothing half-built: a device this start created goes again
            self.dataplane.undo_setup()
            self.dataplane.close()
            raise
        self.lease = lease
        try:
            self.dataplane.configure(lease.subnet, config.network)
            self._ensure_masq()
            leases, revision = self.manager.list_leases()
            self._apply_listing(_Listing(leases, revision))
            subnetenv.write(
                self.subnet_file,
                subnetenv.SubnetEnv(
                    networks=(config.network,),
                    subnet=IPv4Interface(f"{lease.subnet.network_address + 1}/{lease.subnet.prefixlen}"),
                    mtu=self.dataplane.mtu,
                    ipmasq=self.ip_masq,
                ),
            )
        except BaseException:
            self.manager.release(lease)
            self.dataplane.undo_setup()
            self.dataplane.close()
            raise
        self._schedule_renew(self.manager.ttl)
        log.info(
            "node subnet %s (public IP %s, %s, MTU %d); %d peer(s)",
            lease.subnet,
            lease.attrs.public_ip,
            self.dataplane.backend_type,
            self.dataplane.mtu,
            len(self.peers),
        )
        self._watcher = threading.Thread(target=self._watch_loop, args=(revision + 1,), name="lease-watch")
        self._watcher.daemon = True
        self._watcher.start()
        if self.on_ready:
            self.on_ready(lease)
        return lease

    @property
    def dataplane(self) -> Dataplane:
        if self._dataplane is None:
            raise NetlabError("flanneld has not started")
        return self._dataplane

    # the main loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Handle lease changes and renewals until `stop()`. Raises on a fatal condition."""
        try:
            while not self._stop.is_set():
                wait = max(0.0, min(self._next_renew - time.monotonic(), 1.0))
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = None
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, _Listing):
                    self._apply_listing(item)
                elif isinstance(item, LeaseEvent):
                    self._apply_event(item)
                if time.monotonic() >= self._next_renew:
                    self._renew()
                if time.monotonic() >= self._next_masq:
                    self._check_device()
                    self._ensure_masq()
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Ask `run` to return; safe from any thread or a signal handler."""
        self._stop.set()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.stop()

    # applying changes ---------------------------------------------------------------------

    def _is_own(self, subnet: IPv4Network) -> bool:
        return self.lease is not None and subnet == self.lease.subnet

    def _usable(self, lease: Lease) -> bool:
        assert self.config is not None
        if lease.attrs.backend_type != self.dataplane.backend_type:
            log.warning(
                "ignoring lease %s of %s: backend %r, not %s",
                lease.subnet,
                lease.attrs.public_ip,
                lease.attrs.backend_type,
                self.dataplane.backend_type,
            )
            return False
        if not lease.subnet.subnet_of(self.config.network):
            log.warning("ignoring lease %s: outside the network %s", lease.subnet, self.config.network)
            return False
        return True

    def _apply_listing(self, listing: _Listing) -> None:
        assert self.config is not None and self.lease is not None
        own = [lease for lease in listing.leases if self._is_own(lease.subnet)]
        if not own or own[0].attrs.public_ip != self.lease.attrs.public_ip:
            self._lost_own_lease("not in etcd's list of leases")
        remote = [x for x in listing.leases if not self._is_own(x.subnet) and self._usable(x)]
        self.dataplane.sync(remote, self.config.network, self.lease.subnet)
        self.peers = {lease.subnet: lease for lease in remote}

    def _apply_event(self, ev: LeaseEvent) -> None:
        assert self.lease is not None
        if self._is_own(ev.subnet):
            if ev.lease is None or ev.lease.attrs.public_ip != self.lease.attrs.public_ip:
                self._lost_own_lease(
                    "deleted" if ev.lease is None else f"taken by {ev.lease.attrs.public_ip}"
                )
            return
        previous = self.peers.get(ev.subnet)
        if ev.lease is None:
            if previous is not None:
                log.info("peer %s (%s) is gone", ev.subnet, previous.attrs.public_ip)
                self.dataplane.remove(previous)
                del self.peers[ev.subnet]
            return
        if not self._usable(ev.lease):
            if previous is not None:
                self.dataplane.remove(previous)
                del self.peers[ev.subnet]
            return
        if previous is not None and previous.attrs == ev.lease.attrs:
            self.peers[ev.subnet] = ev.lease  # a renewal: nothing to program
            return
        log.info("peer %s at %s%s", ev.subnet, ev.lease.attrs.public_ip, " (changed)" if previous else "")
        if previous is not None and previous.attrs.public_ip != ev.lease.attrs.public_ip:
            self.dataplane.remove(previous)
            previous = None
        if self.dataplane.apply(ev.lease, previous):
            self.peers[ev.subnet] = ev.lease

    def _lost_own_lease(self, why: str) -> None:
        assert self.config is not None and self.attrs is not None and self.lease is not None
        old = self.lease
        log.warning("own lease %s %s; acquiring it again", old.subnet, why)
        lease = self.manager.acquire(self.config, self.attrs, previous=old.subnet)
        if lease.subnet != old.subnet:
            self.manager.release(lease)
            raise NetlabError(
                f"lost subnet {old.subnet} ({why}) and could only get {lease.subnet}; "
                "this node's pods are on the old subnet: restart the node"
            )
        self.lease = lease
        self._schedule_renew(self.manager.ttl)

    def _check_device(self) -> None:
        """Recreate the VXLAN device if it was deleted, as flannel does, and republish its MAC."""
        assert self.config is not None and self.lease is not None
        if self.dataplane.present():
            return
        log.warning("the %s device is gone; recreating it", self.dataplane.backend_type)
        self.attrs = self.dataplane.setup()
        old = self.lease
        lease = self.manager.acquire(self.config, self.attrs, previous=old.subnet)
        if lease.subnet != old.subnet:
            self.manager.release(lease)
            raise NetlabError(f"lost subnet {old.subnet} while recreating the device; restart the node")
        self.lease = lease
        self._schedule_renew(self.manager.ttl)
        self.dataplane.configure(lease.subnet, self.config.network)
        leases, revision = self.manager.list_leases()
        self._apply_listing(_Listing(leases, revision))

    def _ensure_masq(self) -> None:
        """(Re)apply the --ip-masq rules; flannel re-checks them every few seconds too."""
        self._next_masq = time.monotonic() + MASQ_RESYNC
        if self.ip_masq and self.config is not None and self.lease is not None:
            ensure_masq(self.dataplane.netns, self.config.network, self.lease.subnet)

    # renewal ------------------------------------------------------------------------------

    def _schedule_renew(self, ttl: int) -> None:
        margin = min(self.renew_margin, ttl / 3)
        self._next_renew = time.monotonic() + max(ttl - margin, 0.5)

    def _renew(self) -> None:
        assert self.lease is not None
        if self.lease.reserved:
            self._next_renew = float("inf")
            return
        try:
            ttl = self.manager.renew(self.lease)
        except LeaseNotFound:
            self._lost_own_lease("expired before it was renewed")
            return
        except (Unavailable, EtcdError) as e:
            log.warning("cannot renew lease %s: %s", self.lease.subnet, e)
            self._next_renew = time.monotonic() + min(RENEW_RETRY, max(self.manager.ttl / 10, 0.5))
            return
        self._schedule_renew(ttl)

    # the watcher thread -------------------------------------------------------------------

    def _watch_loop(self, start_revision: int) -> None:
        backoff = BACKOFF_MIN
        revision: int | None = start_revision
        while not self._stop.is_set():
            try:
                if revision is None:
                    leases, listed = self.manager.list_leases()
                    self._queue.put(_Listing(leases, listed))
                    revision = listed + 1
                w = self.manager.watch(revision)
                with self._watch_lock:
                    if self._stop.is_set():
                        w.stop()
                        return
                    self._watch = w
                backoff = BACKOFF_MIN
                for item in w:
                    if isinstance(item, Event):
                        ev = self.manager.to_event(item)
                        if ev is not None:
                            self._queue.put(ev)
                    revision = w.last_revision + 1
                return  # stopped
            except Compacted as e:
                log.info("lease watch compacted (%s); re-listing", e)
                revision = None
            except (Unavailable, EtcdError) as e:
                if self._stop.is_set():
                    return
                log.warning("lease watch: %s; retrying in %.1fs", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                # etcd may have lost or compacted history meanwhile: re-list and sync
                revision = None
            except Exception as e:  # hand anything unexpected to the main thread
                self._queue.put(e)
                return
            finally:
                with self._watch_lock:
                    self._watch = None

    # shutting down ------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        if self.release_on_exit and self.lease is not None:
            try:
                self.manager.release(self.lease)
                log.info("released lease %s", self.lease.subnet)
            except NetlabError as e:
                log.warning("could not release lease %s: %s", self.lease.subnet, e)
        if self._dataplane is not None:
            self._dataplane.close()
