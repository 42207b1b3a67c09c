"""Defaults kube-apiserver fills in on create and update, per kind.

Clients (kubectl describe, the Python client's models, our own controllers) rely on these
being present: a pod always has `restartPolicy` and a `status.phase`, a service port always has
a `protocol` and a `targetPort`, a deployment always has a `strategy`. Pure functions that edit
the object in place.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def _image_pull_policy(image: str) -> str:
    ref = image.rsplit("/", 1)[-1]
    if "@" in ref:
        return "IfNotPresent"
    tag = ref.rpartition(":")[2] if ":" in ref else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _container(c: Obj) -> None:
    if isinstance(c.get("image"), str):
        c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


def pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)


def pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        pod_spec(spec)
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")


def _template(obj: Obj) -> None:
    tmpl = (obj.get("spec") or {}).get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        pod_spec(tmpl["spec"])
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)


def deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
    _template(obj)


def replicaset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    obj.setdefault("status", {}).setdefault("replicas", 0)
    _template(obj)


def service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "port" in p:
                p.setdefault("targetPort", p["port"])
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def namespace(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    labels = obj.setdefault("metadata", {}).setdefault("labels", {})
    if isinstance(labels, dict):
        labels.setdefault("kubernetes.io/metadata.name", obj["metadata"].get("name", ""))


def endpointslice(obj: Obj) -> None:
    obj.setdefault("endpoints", [])
    for p in obj.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


def secret(obj: Obj) -> None:
    """`type` defaults to Opaque; `stringData` is folded into `data` and never kept.

    Upstream does the folding when it converts a v1 Secret to its internal type (which has no
    stringData), so it happens on every write, create, update and patch alike, and a key in
    both takes stringData's value. A value that is not a string stays behind in `stringData`
    for validation to refuse by name.
    """
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if not string_data:
        return
    if obj.get("data") is None:
        obj["data"] = {}
    data = obj["data"]
    if not isinstance(string_data, dict) or not isinstance(data, dict):
        obj["stringData"] = string_data
        return
    left = {}
    for key, value in string_data.items():
        if isinstance(value, str):
            data[key] = base64.b64encode(value.encode()).decode()
        else:
            left[key] = value
    if left:
        obj["stringData"] = left


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "pods": pod,
    "deployments": deployment,
    "replicasets": replicaset,
    "services": service,
    "namespaces": namespace,
    "endpointslices": endpointslice,
    "secrets": secret,
}


def apply(plural: str, obj: Obj) -> None:
    fn = DEFAULTERS.get(plural)
    if fn is not None:
        fn(obj)
