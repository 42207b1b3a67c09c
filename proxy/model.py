"""The Services/Endpoints model every proxy mode syncs from.

One `Snapshot` holds everything a data plane needs: the service ports this node must serve and
the endpoints behind each. Records are frozen dataclasses and tuples, so a snapshot handed to a
mode can never change under it, two snapshots compare with `==`, and change trackers can drop
updates that change nothing.

The unit is kube-proxy's: a `ServicePortName` (namespace/name:portName plus protocol), because
each port of a Service gets its own chains, virtual server, relay socket or BPF map slot.

`usable_endpoints` is the one place that decides which endpoints receive traffic (ready vs.
serving-and-terminating, internal and external traffic policy); every mode calls it and none
repeats the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; Kubernetes' sessionAffinityConfig default
MAX_AFFINITY_TIMEOUT = 86400


@dataclass(frozen=True, order=True)
class ServicePortName:
    """Identity of one service port: `namespace/name:port` plus its protocol."""

    namespace: str
    name: str
    port: str  # the Service port's name; "" for a single unnamed port
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"

    @property
    def service(self) -> str:
        """`namespace/name` of the Service this port belongs to."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    """Everything about one service port that a data plane needs."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int | None = None
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # seconds of ClientIP affinity; None: no affinity
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local

    @property
    def protocol(self) -> str:
        return self.name.protocol

    @property
    def has_external(self) -> bool:
        """Reachable from outside the cluster (NodePort, external IPs, LB IPs)."""
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Some traffic to this port may go to endpoints on any node."""
        return not self.internal_local or (self.has_external and not self.external_local)

    @property
    def uses_local_endpoints(self) -> bool:
        """Some traffic to this port may only go to endpoints on this node."""
        return self.internal_local or (self.has_external and self.external_local)


@dataclass(frozen=True, order=True)
class Endpoint:
    """One backend address of a service port, with its EndpointSlice conditions."""

    ip: str
    port: int
    node: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"

    def is_local(self, node: str) -> bool:
        return self.node == node


def _frozen(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


def _is_sorted(t: tuple[Endpoint, ...]) -> bool:
    return all(t[i] <= t[i + 1] for i in range(len(t) - 1))


@dataclass(frozen=True)
class Snapshot:
    """Service ports and their endpoints at one moment; what every mode syncs from."""

    services: Mapping[ServicePortName, ServicePort] = field(default_factory=lambda: _frozen({}))
    endpoints: Mapping[ServicePortName, tuple[Endpoint, ...]] = field(default_factory=lambda: _frozen({}))

    def __post_init__(self) -> None:
        # endpoint tuples are kept sorted so that equal sets compare equal
        object.__setattr__(self, "services", _frozen(self.services))
        object.__setattr__(
            self,
            "endpoints",
            _frozen({k: v if _is_sorted(v) else tuple(sorted(v)) for k, v in self.endpoints.items() if v}),
        )

    def endpoints_of(self, name: ServicePortName) -> tuple[Endpoint, ...]:
        return self.endpoints.get(name, ())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return dict(self.services) == dict(other.services) and dict(self.endpoints) == dict(other.endpoints)

    def __hash__(self) -> int:
        return hash((frozenset(self.services.items()), frozenset(self.endpoints.items())))


@dataclass(frozen=True)
class EndpointChoice:
    """Which endpoints get which traffic, for one service port on one node.

    `cluster` serves traffic that may go anywhere (internal traffic with Cluster policy,
    external traffic with Cluster policy); `local` serves traffic restricted to this node.
    `reachable` is their union: the endpoints a mode must program at all. `has_any` says the
    service has endpoints somewhere, usable here or not, so that a Local service whose
    endpoints all live on other nodes drops traffic instead of rejecting it.
    """

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]
    has_any: bool


def _usable(endpoints: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    """Ready endpoints; when there are none, those still serving while terminating."""
    ready = tuple(e for e in endpoints if e.ready)
    if ready:
        return ready
    return tuple(e for e in endpoints if e.serving and e.terminating)


def usable_endpoints(svc: ServicePort, endpoints: tuple[Endpoint, ...], node: str) -> EndpointChoice:
    """Kubernetes' CategorizeEndpoints for one service port as seen from `node`."""
    cluster = _usable(endpoints) if svc.uses_cluster_endpoints else ()
    local = _usable(tuple(e for e in endpoints if e.is_local(node))) if svc.uses_local_endpoints else ()
    reachable = tuple(sorted(set(cluster) | set(local)))
    has_any = any(e.ready or (e.serving and e.terminating) for e in endpoints)
    return EndpointChoice(cluster=cluster, local=local, reachable=reachable, has_any=has_any)
