"""The EndpointSlice controller, and the v1 Endpoints it mirrors for older clients.

For every Service with a selector, the pods it selects that have an IP and are not
Succeeded/Failed become endpoints (upstream's `podToEndpoint`):
`serving` = the pod's Ready condition, `terminating` = it is being deleted, `ready` =
serving and not terminating; `spec.publishNotReadyAddresses` makes all of them ready and
serving. Each Service port resolves its `targetPort` per pod (a name looks up the container
port of that name and protocol; a pod without it gets no endpoint for that port), so pods
whose named ports differ land in separate slices, one per distinct port set.

Slices are `discovery.k8s.io/v1`, `generateName: <service>-`, labelled
`kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io`, owned by the Service, at most `max_endpoints` (100)
endpoints each. Reconciling keeps each endpoint in the slice it is already in when it can,
fills remaining room before creating slices, deletes slices left empty, and keeps one empty
placeholder slice for a Service with no endpoints, as upstream does; a slice is written only
when its content changes.

Endpoints (`v1`, same name as the Service): one subset per port set, ready pods under
`addresses`, the rest under `notReadyAddresses`, terminating pods left out (unless
publishNotReadyAddresses), addresses sorted by IP as upstream's RepackSubsets does.
Services without a selector are left alone: their Endpoints belong to whoever wrote them.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netlab.cluster.client import ApiClient
from netlab.cluster.controllers import podutil
from netlab.cluster.controllers.base import Controller, ns_key, owner_ref
from netlab.cluster.informer import Informer, index_by_namespace, key_of
from netlab.cluster.status import ApiError

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
MAX_ENDPOINTS = 100


def service_selector(svc: Obj) -> dict[str, str] | None:
    sel = (svc.get("spec") or {}).get("selector")
    return {str(k): str(v) for k, v in sel.items()} if sel else None


def selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ipv4(pod: Obj) -> str | None:
    st = pod.get("status") or {}
    candidates = [a.get("ip") for a in st.get("podIPs") or []] or [st.get("podIP")]
    for ip in candidates:
        if not ip:
            continue
        try:
            if ipaddress.ip_address(ip).version == 4:
                return str(ip)
        except ValueError:
            continue
    return None


def resolve_port(pod: Obj, port: Obj) -> int | None:
    """The pod's number for a Service port's targetPort (upstream's podutil.FindPort)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    protocol = port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == text and (p.get("protocol") or "TCP") == protocol:
                return int(p["containerPort"])
    return None


PortSet = tuple[tuple[str, int, str], ...]  # (name, port, protocol), in the Service's order


def pod_ports(svc: Obj, pod: Obj) -> PortSet:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        number = resolve_port(pod, p)
        if number is not None:
            out.append((str(p.get("name") or ""), number, str(p.get("protocol") or "TCP")))
    return tuple(out)


def render_ports(ports: PortSet) -> list[Obj]:
    return [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]


@dataclass(frozen=True)
class Desired:
    """What the Service's pods say, grouped by port set."""

    groups: dict[PortSet, list[Obj]]  # port set -> endpoints (sorted by pod name)


def desired_endpoints(svc: Obj, pods: Sequence[Obj]) -> Desired:
    selector = service_selector(svc)
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[PortSet, list[Obj]] = {}
    if selector is None:
        return Desired(groups)
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        if not selects(selector, pod) or podutil.is_terminal(pod):
            continue
        ip = pod_ipv4(pod)
        if ip is None:
            continue
        meta = pod["metadata"]
        serving = publish or podutil.is_ready(pod)
        terminating = podutil.is_deleting(pod)
        ready = publish or (serving and not terminating)
        ep: Obj = {
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "targetRef": {
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            ep["nodeName"] = node
        groups.setdefault(pod_ports(svc, pod), []).append(ep)
    return Desired(groups)


def slice_ports(slice_: Obj) -> PortSet:
    return tuple(
        (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
        for p in slice_.get("ports") or []
    )


def _ep_id(ep: Obj) -> str:
    ref = ep.get("targetRef") or {}
    return str(ref.get("uid") or (ep.get("addresses") or [""])[0])


def slice_labels(svc: Obj) -> dict[str, str]:
    meta = svc["metadata"]
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels[SERVICE_NAME] = meta["name"]
    labels[MANAGED_BY] = CONTROLLER_NAME
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels["service.kubernetes.io/headless"] = ""
    return labels


def new_slice(svc: Obj, ports: PortSet, endpoints: list[Obj]) -> Obj:
    meta = svc["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": slice_labels(svc),
            "ownerReferences": [owner_ref(svc, "Service", "v1")],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": render_ports(ports),
    }


@dataclass(frozen=True)
class SlicePlan:
    create: tuple[Obj, ...] = ()
    update: tuple[Obj, ...] = ()
    delete: tuple[Obj, ...] = ()


def _canonical(endpoints: Sequence[Obj]) -> str:
    return json.dumps(sorted(endpoints, key=_ep_id), sort_keys=True)


def plan_slices(
    svc: Obj, desired: Desired, existing: Sequence[Obj], max_endpoints: int = MAX_ENDPOINTS
) -> SlicePlan:
    """The writes that make `existing` (this Service's slices) show `desired`."""
    labels = slice_labels(svc)
    by_ports: dict[PortSet, list[Obj]] = {}
    for s in sorted(existing, key=lambda s: str(s["metadata"]["name"])):
        by_ports.setdefault(slice_ports(s), []).append(s)
    create: list[Obj] = []
    update: list[Obj] = []
    delete: list[Obj] = []
    kept: list[Obj] = []
    for ports, eps in desired.groups.items():
        slices = by_ports.pop(ports, [])
        wanted = {_ep_id(e): e for e in eps}
        placed: dict[str, list[Obj]] = {}
        # keep each endpoint where it is
        for s in slices:
            mine = [wanted.pop(_ep_id(e)) for e in s.get("endpoints") or [] if _ep_id(e) in wanted]
            placed[s["metadata"]["name"]] = mine[:max_endpoints]
            for e in mine[max_endpoints:]:
                wanted[_ep_id(e)] = e
        rest = [e for e in eps if _ep_id(e) in wanted]
        # fill the room left in existing slices, then new ones
        for s in slices:
            room = max_endpoints - len(placed[s["metadata"]["name"]])
            if room > 0 and rest:
                placed[s["metadata"]["name"]] += rest[:room]
                rest = rest[room:]
        for s in slices:
            content = placed[s["metadata"]["name"]]
            if not content:
                delete.append(s)
                continue
            kept.append(s)
            if (
                _canonical(content) != _canonical(s.get("endpoints") or [])
                or (s["metadata"].get("labels") or {}) != labels
            ):
                changed = copy.deepcopy(s)
                changed["endpoints"] = sorted(content, key=lambda e: str(e["targetRef"]["name"]))
                changed["metadata"]["labels"] = labels
                update.append(changed)
        for i in range(0, len(rest), max_endpoints):
            create.append(new_slice(svc, ports, rest[i : i + max_endpoints]))
    leftovers = [s for group in by_ports.values() for s in group]
    if not desired.groups and not create:
        # no endpoints at all: one empty placeholder slice stays (or is made)
        placeholder = next((s for s in leftovers if not s.get("ports") and not s.get("endpoints")), None)
        if placeholder is None and leftovers:
            placeholder = copy.deepcopy(leftovers[0])
            placeholder["endpoints"], placeholder["ports"] = [], []
            placeholder["metadata"]["labels"] = labels
            update.append(placeholder)
        elif placeholder is None:
            create.append(new_slice(svc, (), []))
        leftovers = [
            s
            for s in leftovers
            if placeholder is None or s["metadata"]["name"] != placeholder["metadata"]["name"]
        ]
    delete.extend(leftovers)
    return SlicePlan(tuple(create), tuple(update), tuple(delete))


# v1 Endpoints --------------------------------------------------------------------------------


def render_endpoints(svc: Obj, pods: Sequence[Obj]) -> Obj:
    meta = svc["metadata"]
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    selector = service_selector(svc) or {}
    subsets: dict[PortSet, dict[str, list[Obj]]] = {}
    for pod in pods:
        if not selects(selector, pod) or podutil.is_terminal(pod):
            continue
        if podutil.is_deleting(pod) and not publish:
            continue
        ip = pod_ipv4(pod)
        if ip is None:
            continue
        pm = pod["metadata"]
        address: Obj = {
            "ip": ip,
            "targetRef": {"kind": "Pod", "namespace": pm["namespace"], "name": pm["name"], "uid": pm["uid"]},
        }
        if (pod.get("spec") or {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        ports = pod_ports(svc, pod)
        if spec.get("ports") and not ports:
            continue
        group = subsets.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        group["addresses" if publish or podutil.is_ready(pod) else "notReadyAddresses"].append(address)
    out = []
    for ports, group in sorted(subsets.items()):
        subset: Obj = {}
        for kind in ("addresses", "notReadyAddresses"):
            if group[kind]:
                subset[kind] = sorted(
                    group[kind], key=lambda a: (ipaddress.ip_address(a["ip"]), a["targetRef"]["uid"])
                )
        if ports:
            subset["ports"] = render_ports(ports)
        out.append(subset)
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels[SKIP_MIRROR] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels},
        "subsets": out,
    }


def endpoints_differ(current: Obj, wanted: Obj) -> bool:
    return (current.get("subsets") or []) != wanted["subsets"] or (
        (current.get("metadata") or {}).get("labels") or {}
    ) != wanted["metadata"]["labels"]


# the controller ------------------------------------------------------------------------------


def _pod_facts(pod: Obj) -> tuple[Any, ...]:
    """What about a pod can change its endpoints."""
    return (
        (pod.get("metadata") or {}).get("labels"),
        bool((pod.get("metadata") or {}).get("deletionTimestamp")),
        (pod.get("spec") or {}).get("nodeName"),
        pod_ipv4(pod),
        (pod.get("status") or {}).get("phase"),
        podutil.is_ready(pod),
        [c.get("ports") for c in (pod.get("spec") or {}).get("containers") or []],
    )


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(
        self,
        client: ApiClient,
        services: Informer,
        pods: Informer,
        slices: Informer,
        endpoints: Informer,
        workers: int = 4,
        max_endpoints: int = MAX_ENDPOINTS,
    ) -> None:
        super().__init__(client, workers)
        self.services = services
        self.pods = pods
        self.slices = slices
        self.endpoints = endpoints
        self.max_endpoints = max_endpoints
        services.add_index("namespace", index_by_namespace)
        pods.add_index("namespace", index_by_namespace)
        slices.add_index("service", self._slice_service)
        self.enqueue_changes(services)
        pods.add_handler(self._pod_added, self._pod_updated, self._pod_added)
        slices.add_handler(self._slice_changed, lambda old, s: self._slice_changed(s), self._slice_changed)
        endpoints.add_handler(on_delete=lambda e: self.enqueue(key_of(e)))

    @staticmethod
    def _slice_service(s: Obj) -> list[str]:
        labels = (s.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY) != CONTROLLER_NAME or SERVICE_NAME not in labels:
            return []
        return [ns_key(s["metadata"]["namespace"], labels[SERVICE_NAME])]

    def _slice_changed(self, s: Obj) -> None:
        for key in self._slice_service(s):
            self.enqueue(key)

    def _services_for(self, pod: Obj) -> list[str]:
        out = []
        for svc in self.services.by_index("namespace", pod["metadata"]["namespace"]):
            sel = service_selector(svc)
            if sel is not None and selects(sel, pod):
                out.append(key_of(svc))
        return out

    def _pod_added(self, pod: Obj) -> None:
        for key in self._services_for(pod):
            self.enqueue(key)

    def _pod_updated(self, old: Obj, pod: Obj) -> None:
        if _pod_facts(old) == _pod_facts(pod):
            return
        for key in set(self._services_for(old)) | set(self._services_for(pod)):
            self.enqueue(key)

    def sync(self, key: str) -> None:
        ns, name = key.split("/", 1)
        svc = self.services.get(key)
        if svc is None or podutil.is_deleting(svc):
            # slices go with the Service (owner references); Endpoints carry none
            if self.endpoints.get(key) is not None:
                try:
                    self.client.delete("endpoints", name, ns)
                except ApiError as e:
                    if e.code != 404:
                        raise
            return
        if service_selector(svc) is None:
            return
        pods = self.pods.by_index("namespace", ns)
        uid = svc["metadata"]["uid"]
        existing = [
            s
            for s in self.slices.by_index("service", key)
            if any(r.get("uid") == uid for r in s["metadata"].get("ownerReferences") or [])
        ]
        plan = plan_slices(svc, desired_endpoints(svc, pods), existing, self.max_endpoints)
        for s in plan.create:
            self.client.create("endpointslices", s, ns)
        for s in plan.update:
            try:
                self.client.update("endpointslices", s)
            except ApiError as e:
                if e.code != 404:
                    raise
        for s in plan.delete:
            try:
                self.client.delete(
                    "endpointslices", s["metadata"]["name"], ns, preconditions={"uid": s["metadata"]["uid"]}
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        self._sync_endpoints(svc, pods)

    def _sync_endpoints(self, svc: Obj, pods: Sequence[Obj]) -> None:
        wanted = render_endpoints(svc, pods)
        current = self.endpoints.get(key_of(svc))
        if current is None:
            try:
                self.client.create("endpoints", wanted, svc["metadata"]["namespace"])
            except ApiError as e:
                if e.code != 409:
                    raise
                raise RuntimeError("endpoints appeared meanwhile; retrying") from e
            return
        if not endpoints_differ(current, wanted):
            return
        updated = copy.deepcopy(current)
        updated["subsets"] = wanted["subsets"]
        updated["metadata"]["labels"] = wanted["metadata"]["labels"]
        self.client.update("endpoints", updated)
