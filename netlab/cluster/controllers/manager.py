"""`netlab controller-manager`: the controllers of this package over one set of shared informers.

As in kube-controller-manager, each resource is listed and watched once and every controller
that needs it reads the same cache: pods feed the ReplicaSet, Deployment, EndpointSlice and
node-lifecycle controllers from a single watch. Controllers start only once every cache has
synced, so none acts on a half-listed cluster (a ReplicaSet that sees none of its pods yet
would create them all again). Each controller records events under upstream's component
name, so `kubectl describe` reads as it does on a real cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from netlab.cluster.client import ApiClient
from netlab.cluster.controllers.deployment import DeploymentController
from netlab.cluster.controllers.endpointslice import CONTROLLER_NAME, MANAGED_BY, EndpointSliceController
from netlab.cluster.controllers.nodelifecycle import LEASE_NAMESPACE, NodeLifecycleController
from netlab.cluster.controllers.replicaset import ReplicaSetController
from netlab.cluster.events import EventRecorder
from netlab.cluster.informer import Informer
from netlab.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)

CONTROLLERS = ("replicaset", "deployment", "endpointslice", "nodelifecycle")


class _Runnable(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class ControllerManager:
    def __init__(
        self,
        client: ApiClient,
        *,
        controllers: Sequence[str] = CONTROLLERS,
        workers: int = 4,
        node_monitor_period: float = 5.0,
        node_monitor_grace_period: float = 50.0,
        pod_orphan_quarantine: float = 40.0,
    ) -> None:
        unknown = sorted(set(controllers) - set(CONTROLLERS))
        if unknown:
            raise ConfigError(
                f"unknown controller(s) {', '.join(unknown)}: choose from {', '.join(CONTROLLERS)}"
            )
        self.client = client
        self.informers: dict[str, Informer] = {}
        self.recorders: list[EventRecorder] = []
        self.controllers: list[_Runnable] = []
        if "replicaset" in controllers:
            self.replicasets = ReplicaSetController(
                client,
                self._informer("replicasets"),
                self._informer("pods"),
                self._recorder("replicaset-controller"),
                workers=workers,
            )
            self.controllers.append(self.replicasets)
        if "deployment" in controllers:
            self.deployments = DeploymentController(
                client,
                self._informer("deployments"),
                self._informer("replicasets"),
                self._informer("pods"),
                self._recorder("deployment-controller"),
                workers=workers,
            )
            self.controllers.append(self.deployments)
        if "endpointslice" in controllers:
            self.endpointslices = EndpointSliceController(
                client,
                self._informer("services"),
                self._informer("pods"),
                self._informer("endpointslices", label_selector=f"{MANAGED_BY}={CONTROLLER_NAME}"),
                self._informer("endpoints"),
                workers=workers,
            )
            self.controllers.append(self.endpointslices)
        if "nodelifecycle" in controllers:
            self.nodelifecycle = NodeLifecycleController(
                client,
                self._informer("nodes"),
                self._informer("leases", namespace=LEASE_NAMESPACE),
                self._informer("pods"),
                self._recorder("node-controller"),
                monitor_period=node_monitor_period,
                grace_period=node_monitor_grace_period,
                orphan_quarantine=pod_orphan_quarantine,
            )
            self.controllers.append(self.nodelifecycle)

    def _informer(self, resource: str, namespace: str | None = None, label_selector: str = "") -> Informer:
        if resource not in self.informers:
            self.informers[resource] = Informer(
                self.client, resource, namespace=namespace, label_selector=label_selector
            )
        return self.informers[resource]

    def _recorder(self, component: str) -> EventRecorder:
        r = EventRecorder(self.client, component)
        self.recorders.append(r)
        return r

    def start(self, sync_timeout: float = 60.0) -> None:
        for r in self.recorders:
            r.start()
        for inf in self.informers.values():
            inf.start()
        for name, inf in self.informers.items():
            if not inf.wait_synced(sync_timeout):
                self.stop()
                raise Unavailable(f"controller-manager: could not list {name} from {self.client.server}")
        for c in self.controllers:
            c.start()

    def stop(self) -> None:
        for c in self.controllers:
            c.stop()
        for inf in self.informers.values():
            inf.stop()
        for r in self.recorders:
            r.stop()
