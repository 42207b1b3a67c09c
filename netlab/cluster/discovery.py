"""Discovery documents: `/version`, `/api`, `/apis` and the per-group-version resource lists.

Built from `resources.RESOURCES`, so kubectl's RESTMapper, `kubectl api-resources`, short names
(`po`, `svc`, `deploy`) and the `all` category all follow from that one table. Only the
unaggregated (v1) forms are served: kubectl falls back to them when the aggregated v2 form is
not offered.
"""

from __future__ import annotations

from typing import Any

from netlab.cluster import resources
from netlab.cluster.resources import ALL_VERBS, Resource

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-netlab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "log": ["get"],
    "exec": ["create", "get"],
}
_SUB_KIND = {
    "binding": ("", "v1", "Binding"),
    "log": ("", "v1", "Pod"),
    "exec": ("", "v1", "PodExecOptions"),
    "scale": ("autoscaling", "v1", "Scale"),
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, version in resources.group_versions():
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    for g in api_group_list()["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def _entry(r: Resource) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(ALL_VERBS),
    }
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    e["storageVersionHash"] = ""
    return e


def _sub_entry(r: Resource, sub: str) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": f"{r.plural}/{sub}",
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": _SUB_VERBS[sub],
    }
    if sub in _SUB_KIND:
        g, v, k = _SUB_KIND[sub]
        e["kind"] = k
        if g:
            e["group"], e["version"] = g, v
    return e


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    rs = resources.in_group(group, version)
    if not rs:
        return None
    entries: list[dict[str, Any]] = []
    for r in rs:
        entries.append(_entry(r))
        entries.extend(_sub_entry(r, s) for s in r.subresources)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}
