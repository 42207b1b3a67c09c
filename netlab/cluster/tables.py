"""`meta.k8s.io/v1` Table rendering: the server-side columns `kubectl get` prints.

kubectl asks for `as=Table` and prints whatever columns and cells the server sends, so this
module decides what `kubectl get pods` looks like. Columns copy kube-apiserver's printers
(pkg/printers/internalversion); `priority: 1` columns appear only with `-o wide`. Pure
functions of the objects and a clock, so the output is golden-tested.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from netlab.cluster.selectors import selector_to_string

Obj = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, format, priority


def _parse_time(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration: 45s, 5m12s, 3h4m, 2d5h, 400d."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d" if d < 365 * 8 else f"{d // 365}y"


def age(obj: Obj, now: datetime) -> str:
    t = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now - t).total_seconds()) if t else "<unknown>"


def _none(v: Any) -> str:
    return str(v) if v not in (None, "") else "<none>"


# pods ------------------------------------------------------------------------------------------


def _pod_row(o: Obj, now: datetime) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        st = c.get("state") or {}
        if st.get("waiting", {}).get("reason"):
            reason = st["waiting"]["reason"]
        elif st.get("terminated", {}).get("reason"):
            reason = st["terminated"]["reason"]
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [
        o["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        restarts,
        age(o, now),
        _none(status.get("podIP")),
        _none(spec.get("nodeName")),
        _none(status.get("nominatedNodeName")),
        "<none>",
    ]


_POD_COLS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Ready", "string", "", 0),
    ("Status", "string", "", 0),
    ("Restarts", "string", "", 0),
    ("Age", "string", "", 0),
    ("IP", "string", "", 1),
    ("Node", "string", "", 1),
    ("Nominated Node", "string", "", 1),
    ("Readiness Gates", "string", "", 1),
]


def _node_row(o: Obj, now: datetime) -> list[Any]:
    status = o.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    internal = next(
        (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None
    )
    return [
        o["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        age(o, now),
        info.get("kubeletVersion") or "",
        _none(internal),
        "<none>",
        _none(info.get("osImage")),
        _none(info.get("kernelVersion")),
        _none(info.get("containerRuntimeVersion")),
    ]


_NODE_COLS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Status", "string", "", 0),
    ("Roles", "string", "", 0),
    ("Age", "string", "", 0),
    ("Version", "string", "", 0),
    ("Internal-IP", "string", "", 1),
    ("External-IP", "string", "", 1),
    ("OS-Image", "string", "", 1),
    ("Kernel-Version", "string", "", 1),
    ("Container-Runtime", "string", "", 1),
]


def _ports(ports: list[Obj]) -> str:
    out = []
    for p in ports:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _service_row(o: Obj, now: datetime) -> list[Any]:
    spec = o.get("spec") or {}
    ext = spec.get("externalIPs") or []
    lb = [
        i.get("ip") or i.get("hostname")
        for i in ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    if spec.get("type") == "ExternalName":
        external = spec.get("externalName") or "<none>"
    elif ext or lb:
        external = ",".join([*lb, *ext])
    else:
        external = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    sel = spec.get("selector") or {}
    return [
        o["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        _none(spec.get("clusterIP")),
        external,
        _ports(spec.get("ports") or []),
        age(o, now),
        ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>",
    ]


_SERVICE_COLS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Type", "string", "", 0),
    ("Cluster-IP", "string", "", 0),
    ("External-IP", "string", "", 0),
    ("Port(s)", "string", "", 0),
    ("Age", "string", "", 0),
    ("Selector", "string", "", 1),
]


def _images(o: Obj) -> tuple[str, str]:
    cs = (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deployment_row(o: Obj, now: datetime) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    names, images = _images(o)
    return [
        o["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(o, now),
        names,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


_DEPLOYMENT_COLS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Ready", "string", "", 0),
    ("Up-to-date", "integer", "", 0),
    ("Available", "integer", "", 0),
    ("Age", "string", "", 0),
    ("Containers", "string", "", 1),
    ("Images", "string", "", 1),
    ("Selector", "string", "", 1),
]


def _replicaset_row(o: Obj, now: datetime) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    names, images = _images(o)
    return [
        o["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(o, now),
        names,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


_REPLICASET_COLS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Desired", "integer", "", 0),
    ("Current", "integer", "", 0),
    ("Ready", "integer", "", 0),
    ("Age", "string", "", 0),
    ("Containers", "string", "", 1),
    ("Images", "string", "", 1),
    ("Selector", "string", "", 1),
]


def _limited(values: list[str], n: int = 3) -> str:
    if not values:
        return "<unset>"
    shown = ",".join(values[:n])
    return shown + (f" + {len(values) - n} more..." if len(values) > n else "")


def _endpointslice_row(o: Obj, now: datetime) -> list[Any]:
    ports = [str(p.get("port")) for p in o.get("ports") or [] if p.get("port") is not None]
    addrs = [a for ep in o.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [o["metadata"]["name"], o.get("addressType", ""), _limited(ports), _limited(addrs), age(o, now)]


_ENDPOINTSLICE_COLS: list[Column] = [
    ("Name", "string", "name", 0),
    ("AddressType", "string", "", 0),
    ("Ports", "string", "", 0),
    ("Endpoints", "string", "", 0),
    ("Age", "string", "", 0),
]


def _endpoints_row(o: Obj, now: datetime) -> list[Any]:
    eps = []
    for s in o.get("subsets") or []:
        ports = [p.get("port") for p in s.get("ports") or []] or [None]
        for a in s.get("addresses") or []:
            for p in ports:
                eps.append(f"{a.get('ip')}:{p}" if p is not None else str(a.get("ip")))
    return [o["metadata"]["name"], _limited(eps) if eps else "<none>", age(o, now)]


def _namespace_row(o: Obj, now: datetime) -> list[Any]:
    return [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), age(o, now)]


def _configmap_row(o: Obj, now: datetime) -> list[Any]:
    return [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o, now)]


def _secret_row(o: Obj, now: datetime) -> list[Any]:
    return [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), age(o, now)]


def _lease_row(o: Obj, now: datetime) -> list[Any]:
    return [o["metadata"]["name"], _none((o.get("spec") or {}).get("holderIdentity")), age(o, now)]


def _event_row(o: Obj, now: datetime) -> list[Any]:
    last = o.get("lastTimestamp") or o.get("eventTime") or (o.get("metadata") or {}).get("creationTimestamp")
    t = _parse_time(last)
    inv = o.get("involvedObject") or {}
    return [
        human_duration((now - t).total_seconds()) if t else "<unknown>",
        o.get("type", ""),
        o.get("reason", ""),
        f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}",
        o.get("message", ""),
    ]


def _default_row(o: Obj, now: datetime) -> list[Any]:
    return [o["metadata"]["name"], age(o, now)]


_NAME_AGE: list[Column] = [("Name", "string", "name", 0), ("Age", "string", "", 0)]

PRINTERS: dict[str, tuple[list[Column], Callable[[Obj, datetime], list[Any]]]] = {
    "pods": (_POD_COLS, _pod_row),
    "nodes": (_NODE_COLS, _node_row),
    "services": (_SERVICE_COLS, _service_row),
    "deployments": (_DEPLOYMENT_COLS, _deployment_row),
    "replicasets": (_REPLICASET_COLS, _replicaset_row),
    "endpointslices": (_ENDPOINTSLICE_COLS, _endpointslice_row),
    "endpoints": (
        [("Name", "string", "name", 0), ("Endpoints", "string", "", 0), ("Age", "string", "", 0)],
        _endpoints_row,
    ),
    "namespaces": (
        [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Age", "string", "", 0)],
        _namespace_row,
    ),
    "configmaps": (
        [("Name", "string", "name", 0), ("Data", "integer", "", 0), ("Age", "string", "", 0)],
        _configmap_row,
    ),
    "secrets": (
        [
            ("Name", "string", "name", 0),
            ("Type", "string", "", 0),
            ("Data", "string", "", 0),
            ("Age", "string", "", 0),
        ],
        _secret_row,
    ),
    "leases": (
        [("Name", "string", "name", 0), ("Holder", "string", "", 0), ("Age", "string", "", 0)],
        _lease_row,
    ),
    "events": (
        [
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Message", "string", "", 0),
        ],
        _event_row,
    ),
}


def columns(plural: str) -> list[dict[str, Any]]:
    cols = PRINTERS.get(plural, (_NAME_AGE, _default_row))[0]
    return [{"name": n, "type": t, "format": f, "description": n, "priority": p} for n, t, f, p in cols]


def _row(plural: str, obj: Obj, now: datetime, include_object: str) -> dict[str, Any]:
    fn = PRINTERS.get(plural, (_NAME_AGE, _default_row))[1]
    meta = obj.get("metadata") or {}
    if include_object == "Object":
        embedded: Obj = obj
    elif include_object == "None":
        embedded = {}
    else:
        embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    row: dict[str, Any] = {"cells": fn(obj, now)}
    if embedded:
        row["object"] = embedded
    return row


def render_table(
    plural: str,
    objects: list[Obj],
    resource_version: str,
    now: datetime,
    *,
    include_object: str = "Metadata",
    with_columns: bool = True,
    continue_token: str = "",
) -> dict[str, Any]:
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns(plural) if with_columns else None,
        "rows": [_row(plural, o, now, include_object) for o in objects],
    }
    if continue_token:
        table["metadata"]["continue"] = continue_token
    return table


def wants_table(accept: str) -> bool:
    return any("as=Table" in part for part in accept.split(","))
