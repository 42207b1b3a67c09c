"""Change trackers: from a stream of Service and EndpointSlice updates to snapshots.

Frontends call `update_service` / `update_slice` for every object they see (None for a
deletion). The tracker keeps, per object, the value at the last `apply()` and the latest value;
an update that ends equal to what was last applied (an unchanged resync, a change and its
revert) drops out, so `apply()` reports only service ports whose kernel state must change.
That set drives partial syncs; an empty set means nothing to do.

Endpoints of one service may be split over several slices; they are merged per service port,
and only the ports named by a changed slice are re-merged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot
from proxy.objects import parse_endpoint_slice, parse_service, service_key, slice_key

ServicePorts = Mapping[ServicePortName, ServicePort]
SliceEndpoints = Mapping[ServicePortName, tuple[Endpoint, ...]]


class ChangeTracker:
    """Services and EndpointSlices in, immutable snapshots and changed service ports out."""

    def __init__(self) -> None:
        self._services: dict[str, ServicePorts] = {}  # as of the last apply
        self._slices: dict[str, SliceEndpoints] = {}
        self._pending_services: dict[str, ServicePorts] = {}  # latest, differing from applied
        self._pending_slices: dict[str, SliceEndpoints] = {}
        self._ports: dict[ServicePortName, ServicePort] = {}
        self._endpoints: dict[ServicePortName, tuple[Endpoint, ...]] = {}
        self._slices_of: dict[ServicePortName, set[str]] = {}
        self.services_synced = False
        self.slices_synced = False

    @property
    def initialized(self) -> bool:
        """Both kinds have been listed once; syncing earlier would drop live services."""
        return self.services_synced and self.slices_synced

    @property
    def pending(self) -> bool:
        return bool(self._pending_services or self._pending_slices)

    # Updates ------------------------------------------------------------------------------

    @staticmethod
    def _record(pending: dict[str, Any], applied: dict[str, Any], key: str, value: Any) -> bool:
        if value == applied.get(key, {}):
            pending.pop(key, None)
        else:
            pending[key] = value
        return key in pending

    def update_service(self, key: str, obj: Mapping[str, Any] | None) -> bool:
        """Record a Service (None: deleted). True when it differs from the applied state."""
        ports = parse_service(obj) if obj is not None else {}
        return self._record(self._pending_services, self._services, key, ports)

    def update_slice(self, key: str, obj: Mapping[str, Any] | None) -> bool:
        """Record an EndpointSlice (None: deleted). True when it differs from the applied state."""
        eps = parse_endpoint_slice(obj) if obj is not None else {}
        return self._record(self._pending_slices, self._slices, key, eps)

    def replace_services(self, services: Sequence[Mapping[str, Any]]) -> None:
        """The complete list of Services (a relist); absent ones count as deleted."""
        parsed = {service_key(o): parse_service(o) for o in services}
        for k in set(self._services) | set(self._pending_services) | set(parsed):
            self._record(self._pending_services, self._services, k, parsed.get(k, {}))
        self.services_synced = True

    def replace_slices(self, slices: Sequence[Mapping[str, Any]]) -> None:
        """The complete list of EndpointSlices (a relist); absent ones count as deleted."""
        parsed = {slice_key(o): parse_endpoint_slice(o) for o in slices}
        for k in set(self._slices) | set(self._pending_slices) | set(parsed):
            self._record(self._pending_slices, self._slices, k, parsed.get(k, {}))
        self.slices_synced = True

    def replace_all(self, services: Sequence[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]]) -> None:
        """The complete current set (a file reload): absent objects count as deleted.

        Every object is parsed before anything is recorded, so a bad one changes nothing.
        """
        for o in services:
            parse_service(o)
        for o in slices:
            parse_endpoint_slice(o)
        self.replace_services(services)
        self.replace_slices(slices)

    # Apply --------------------------------------------------------------------------------

    def apply(self) -> tuple[Snapshot, frozenset[ServicePortName]]:
        """Fold pending changes in; the new snapshot and the service ports that changed."""
        changed: set[ServicePortName] = set()
        for key, ports in self._pending_services.items():
            old: ServicePorts = self._services.get(key, {})
            for spn in set(old) | set(ports):
                if old.get(spn) != ports.get(spn):
                    changed.add(spn)
                    if spn in ports:
                        self._ports[spn] = ports[spn]
                    else:
                        self._ports.pop(spn, None)
            if ports:
                self._services[key] = ports
            else:
                self._services.pop(key, None)
        self._pending_services.clear()

        touched: set[ServicePortName] = set()
        for key, eps in self._pending_slices.items():
            old_eps: SliceEndpoints = self._slices.get(key, {})
            for spn in set(old_eps) | set(eps):
                touched.add(spn)
                owners = self._slices_of.setdefault(spn, set())
                if spn in eps:
                    owners.add(key)
                else:
                    owners.discard(key)
            if eps:
                self._slices[key] = eps
            else:
                self._slices.pop(key, None)
        self._pending_slices.clear()
        for spn in touched:
            merged = tuple(
                sorted({e for key in self._slices_of.get(spn, ()) for e in self._slices[key][spn]})
            )
            if merged != self._endpoints.get(spn, ()):
                changed.add(spn)
            if merged:
                self._endpoints[spn] = merged
            else:
                self._endpoints.pop(spn, None)
                self._slices_of.pop(spn, None)
        return Snapshot(self._ports, self._endpoints), frozenset(changed)
