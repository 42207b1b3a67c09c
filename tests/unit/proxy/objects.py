"""Builders for Service and EndpointSlice objects, shared by the proxy tests."""

from __future__ import annotations

from typing import Any


def service(
    name: str,
    cluster_ip: str,
    ports: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": ports or [{"port": 80}], **spec},
    }


def endpoint(
    ip: str,
    node: str | None = "node1",
    ready: bool = True,
    terminating: bool = False,
    serving: bool | None = None,
) -> dict[str, Any]:
    conds: dict[str, Any] = {"ready": ready, "terminating": terminating}
    if serving is not None:
        conds["serving"] = serving
    out: dict[str, Any] = {"addresses": [ip], "conditions": conds}
    if node:
        out["nodeName"] = node
    return out


def endpoint_slice(
    service_name: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    name: str | None = None,
    namespace: str = "default",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abc",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports or [{"port": 8080}],
    }
