"""Kubernetes Service and EndpointSlice objects turned into model records.

Both frontends speak Kubernetes objects: the apiserver frontend receives them from watches and
the file frontend reads them from a YAML file, so one parser serves both and a services file
is written exactly like the manifests a user would `kubectl apply`. Validation is strict
enough to keep nonsense out of the kernel, and every error is one line naming the object and
the field (`Service default/web: spec.ports[0].port: must be an integer in 1-65535`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from netlab.errors import ConfigError
from proxy.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    MAX_AFFINITY_TIMEOUT,
    PROTOCOLS,
    Endpoint,
    ServicePort,
    ServicePortName,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


class _Where:
    """Builds the `Kind ns/name: field: problem` messages."""

    def __init__(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            meta = {}
        self.kind = kind
        self.id = f"{meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"

    def error(self, path: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.kind} {self.id}: {path}: {problem}")


def _map(where: _Where, value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise where.error(path, "must be a mapping")
    return value


def _list(where: _Where, value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(path, "must be a list")
    return value


def _port(where: _Where, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise where.error(path, "must be an integer in 1-65535")
    return value


def _ipv4(where: _Where, value: Any, path: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise where.error(path, f"{value!r} is not an IPv4 address") from None


def _protocol(where: _Where, value: Any, path: str) -> str:
    proto = "TCP" if value is None else value
    if proto not in PROTOCOLS:
        raise where.error(path, f"must be one of {', '.join(PROTOCOLS)}")
    return str(proto)


def _policy(where: _Where, value: Any, path: str) -> bool:
    """True for Local; Cluster (the default) is False."""
    if value in (None, "Cluster"):
        return False
    if value == "Local":
        return True
    raise where.error(path, "must be Cluster or Local")


def _name(where: _Where, obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _map(where, obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise where.error("metadata.name", "is required")
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str):
        raise where.error("metadata.namespace", "must be a string")
    return ns, name


def service_key(obj: Mapping[str, Any]) -> str:
    where = _Where("Service", obj)
    ns, name = _name(where, obj)
    return f"{ns}/{name}"


def parse_service(obj: Mapping[str, Any]) -> dict[ServicePortName, ServicePort]:
    """The service ports of one Service (empty for headless and ExternalName services)."""
    where = _Where("Service", obj)
    ns, name = _name(where, obj)
    spec = _map(where, obj.get("spec"), "spec")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in SERVICE_TYPES:
        raise where.error("spec.type", f"must be one of {', '.join(SERVICE_TYPES)}")
    cluster_ip = spec.get("clusterIP")
    if svc_type == "ExternalName" or cluster_ip in ("None", ""):
        return {}
    if cluster_ip is None:
        raise where.error("spec.clusterIP", "is required (an address from the service range)")
    cluster_ip = _ipv4(where, cluster_ip, "spec.clusterIP")

    affinity = spec.get("sessionAffinity") or "None"
    if affinity not in ("None", "ClientIP"):
        raise where.error("spec.sessionAffinity", "must be None or ClientIP")
    timeout: int | None = None
    if affinity == "ClientIP":
        cfg = _map(where, spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
        client = _map(where, cfg.get("clientIP"), "spec.sessionAffinityConfig.clientIP")
        timeout = client.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int)
            or not 1 <= timeout <= MAX_AFFINITY_TIMEOUT
        ):
            raise where.error(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                f"must be an integer in 1-{MAX_AFFINITY_TIMEOUT}",
            )

    external_ips = tuple(
        _ipv4(where, ip, f"spec.externalIPs[{i}]")
        for i, ip in enumerate(_list(where, spec.get("externalIPs"), "spec.externalIPs"))
    )
    status = _map(where, obj.get("status"), "status")
    lb = _map(where, status.get("loadBalancer"), "status.loadBalancer")
    lb_ips = tuple(
        _ipv4(
            where,
            _map(where, ing, f"status.loadBalancer.ingress[{i}]").get("ip"),
            f"status.loadBalancer.ingress[{i}].ip",
        )
        for i, ing in enumerate(_list(where, lb.get("ingress"), "status.loadBalancer.ingress"))
        if isinstance(ing, Mapping) and ing.get("ip")
    )
    external_local = _policy(where, spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy")
    internal_local = _policy(where, spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy")

    ports = _list(where, spec.get("ports"), "spec.ports")
    if not ports:
        raise where.error("spec.ports", "needs at least one port")
    out: dict[ServicePortName, ServicePort] = {}
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        p = _map(where, p, path)
        port_name = p.get("name") or ""
        if not isinstance(port_name, str):
            raise where.error(f"{path}.name", "must be a string")
        if len(ports) > 1 and not port_name:
            raise where.error(f"{path}.name", "is required when a Service has several ports")
        proto = _protocol(where, p.get("protocol"), f"{path}.protocol")
        node_port = None
        if p.get("nodePort") is not None:
            if svc_type not in ("NodePort", "LoadBalancer"):
                raise where.error(f"{path}.nodePort", f"is not allowed for type {svc_type}")
            node_port = _port(where, p.get("nodePort"), f"{path}.nodePort")
        elif svc_type in ("NodePort", "LoadBalancer"):
            raise where.error(f"{path}.nodePort", f"is required for type {svc_type}")
        spn = ServicePortName(ns, name, port_name, proto)
        if spn in out:
            raise where.error(path, f"duplicate port {port_name or '(unnamed)'}/{proto}")
        out[spn] = ServicePort(
            name=spn,
            cluster_ip=cluster_ip,
            port=_port(where, p.get("port"), f"{path}.port"),
            node_port=node_port,
            external_ips=external_ips,
            load_balancer_ips=lb_ips,
            affinity_timeout=timeout,
            external_local=external_local,
            internal_local=internal_local,
        )
    return out


def _condition(where: _Where, conds: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = conds.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise where.error(f"{path}.{key}", "must be true or false")
    return value


def slice_key(obj: Mapping[str, Any]) -> str:
    where = _Where("EndpointSlice", obj)
    ns, name = _name(where, obj)
    return f"{ns}/{name}"


def parse_endpoint_slice(obj: Mapping[str, Any]) -> dict[ServicePortName, tuple[Endpoint, ...]]:
    """The endpoints one EndpointSlice contributes, per service port it names."""
    where = _Where("EndpointSlice", obj)
    ns, _ = _name(where, obj)
    meta = _map(where, obj.get("metadata"), "metadata")
    labels = _map(where, meta.get("labels"), "metadata.labels")
    service = labels.get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        raise where.error(f"metadata.labels[{SERVICE_NAME_LABEL}]", "is required")
    address_type = obj.get("addressType", "IPv4")
    if address_type != "IPv4":
        return {}  # the lab is IPv4-only; other slices belong to other families

    endpoints: list[Endpoint] = []
    ports = _list(where, obj.get("ports"), "ports")
    for i, e in enumerate(_list(where, obj.get("endpoints"), "endpoints")):
        path = f"endpoints[{i}]"
        e = _map(where, e, path)
        addrs = _list(where, e.get("addresses"), f"{path}.addresses")
        if not addrs:
            raise where.error(f"{path}.addresses", "needs one address")
        ip = _ipv4(where, addrs[0], f"{path}.addresses[0]")
        conds = _map(where, e.get("conditions"), f"{path}.conditions")
        ready = _condition(where, conds, "ready", f"{path}.conditions", True)
        terminating = _condition(where, conds, "terminating", f"{path}.conditions", False)
        serving = _condition(where, conds, "serving", f"{path}.conditions", ready)
        node = e.get("nodeName")
        if node is not None and not isinstance(node, str):
            raise where.error(f"{path}.nodeName", "must be a string")
        endpoints.append(Endpoint(ip, 0, node, ready, serving, terminating))

    out: dict[ServicePortName, tuple[Endpoint, ...]] = {}
    for i, p in enumerate(ports):
        path = f"ports[{i}]"
        p = _map(where, p, path)
        port_name = p.get("name") or ""
        if not isinstance(port_name, str):
            raise where.error(f"{path}.name", "must be a string")
        proto = _protocol(where, p.get("protocol"), f"{path}.protocol")
        number = _port(where, p.get("port"), f"{path}.port")
        spn = ServicePortName(ns, service, port_name, proto)
        out[spn] = tuple(Endpoint(e.ip, number, e.node, e.ready, e.serving, e.terminating) for e in endpoints)
    return out
