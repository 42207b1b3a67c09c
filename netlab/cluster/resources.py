"""The resource kinds the apiserver serves, and where each lives in etcd.

One table drives discovery, OpenAPI, URL routing and storage keys, so adding a kind is one entry
here (plus its defaults, validation and table columns where it has any). Keys follow
kube-apiserver's layout (`/registry/minions/...` for nodes, `/registry/services/specs/...`), so
`etcdctl get --prefix /registry/` reads like a real cluster's store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REGISTRY_ROOT = "/registry/"


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    key: str  # the etcd key segment under /registry/
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    has_status: bool = True  # a status stanza that main-resource writes do not change
    list_kind: str = field(default="")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def qualified(self) -> str:
        """`pods` or `deployments.apps`: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def prefix(self, namespace: str | None = None) -> str:
        base = f"{REGISTRY_ROOT}{self.key}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def etcd_key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{REGISTRY_ROOT}{self.key}/{namespace}/{name}"
        return f"{REGISTRY_ROOT}{self.key}/{name}"

    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        "namespaces",
        ("ns",),
        subresources=("status",),
    ),
    Resource("", "v1", "nodes", "node", "Node", False, "minions", ("no",), subresources=("status",)),
    Resource(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        "pods",
        ("po",),
        ("all",),
        subresources=("binding", "status", "log", "exec"),
    ),
    Resource(
        "",
        "v1",
        "services",
        "service",
        "Service",
        True,
        "services/specs",
        ("svc",),
        ("all",),
        subresources=("status",),
    ),
    Resource(
        "", "v1", "endpoints", "endpoints", "Endpoints", True, "services/endpoints", ("ep",), has_status=False
    ),
    Resource("", "v1", "events", "event", "Event", True, "events", ("ev",), has_status=False),
    Resource("", "v1", "configmaps", "configmap", "ConfigMap", True, "configmaps", ("cm",), has_status=False),
    Resource("", "v1", "secrets", "secret", "Secret", True, "secrets", has_status=False),
    Resource(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        True,
        "deployments",
        ("deploy",),
        ("all",),
        subresources=("status", "scale"),
    ),
    Resource(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        True,
        "replicasets",
        ("rs",),
        ("all",),
        subresources=("status", "scale"),
    ),
    Resource(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        True,
        "endpointslices",
        has_status=False,
    ),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, "leases", has_status=False),
)

# Group order as kube-apiserver reports it (kubectl prints api-resources in this order).
GROUPS: tuple[str, ...] = ("", "apps", "discovery.k8s.io", "coordination.k8s.io")

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return _BY_KIND.get((group, kind))


def in_group(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def group_versions() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for g in GROUPS:
        for r in RESOURCES:
            if r.group == g and (g, r.version) not in seen:
                seen.append((g, r.version))
    return seen


def _must(group: str, plural: str) -> Resource:
    res = lookup(group, "v1", plural)
    assert res is not None
    return res


NAMESPACES = _must("", "namespaces")
PODS = _must("", "pods")
SERVICES = _must("", "services")
NODES = _must("", "nodes")
ENDPOINTSLICES = _must("discovery.k8s.io", "endpointslices")
DEPLOYMENTS = _must("apps", "deployments")
REPLICASETS = _must("apps", "replicasets")
EVENTS = _must("", "events")
