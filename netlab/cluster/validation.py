"""Validation of objects on create and update: each problem is a `Cause` naming the field.

Mirrors the subset of kube-apiserver's validation that matters for a lab and that users hit
by hand: DNS-1123 names, label and annotation syntax, ports and protocols, selectors (and that
a template's labels match them), resource quantities, service shapes, config and secret keys
and the keys each well-known Secret type needs, and what an update may not change (`immutable`
config maps and secrets, a secret's type). The apiserver answers a non-empty list with 422
Invalid; messages follow upstream's wording so they read familiarly. One deliberate difference:
a Secret `data` value that is not base64 is a 422 naming `data[key]` here, where upstream fails
earlier, decoding the JSON, with a 400 that names no field.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from netlab.cluster import selectors
from netlab.cluster.status import Cause

Obj = dict[str, Any]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def dns1123_label(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL.match(value):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character"
        )
    return None


def dns1123_subdomain(value: str) -> str | None:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _SUBDOMAIN.match(value):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return None


def qualified_name(value: str) -> str | None:
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        if msg := dns1123_subdomain(prefix):
            return f"prefix part {msg}"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return None


def label_value(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return None


def quantity(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return "must be a quantity such as 100m, 1, 128Mi"
    text = str(value)
    if not _QUANTITY.match(text):
        return "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    if text.startswith("-"):
        return "must be greater than or equal to 0"
    return None


class _V:
    """Collects causes; `at(path)` names the field the way kube-apiserver does."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, field: str, message: str, reason: str = "FieldValueInvalid") -> None:
        self.causes.append(Cause(field, message, reason))

    def required(self, field: str) -> None:
        self.add(field, "Required value", "FieldValueRequired")

    def invalid(self, field: str, value: Any, message: str) -> None:
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        self.add(field, f"Invalid value: {shown}: {message}")

    def unsupported(self, field: str, value: Any, allowed: tuple[str, ...]) -> None:
        quoted = ", ".join(f'"{a}"' for a in allowed)
        self.add(field, f'Unsupported value: "{value}": supported values: {quoted}', "FieldValueNotSupported")


def _metadata(v: _V, obj: Obj, namespaced: bool, name_check: Callable[[str], str | None]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        v.required("metadata")
        return
    name = meta.get("name")
    if not name:
        v.add("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
    elif not isinstance(name, str):
        v.invalid("metadata.name", name, "must be a string")
    elif msg := name_check(name):
        v.invalid("metadata.name", name, msg)
    if namespaced:
        ns = meta.get("namespace")
        if not ns:
            v.required("metadata.namespace")
        elif msg := dns1123_label(str(ns)):
            v.invalid("metadata.namespace", ns, msg)
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        v.invalid("metadata.labels", labels, "must be a map of string keys to string values")
    else:
        for k, val in labels.items():
            if msg := qualified_name(str(k)):
                v.invalid("metadata.labels", k, msg)
            if not isinstance(val, str):
                v.invalid(f"metadata.labels[{k}]", val, "must be a string")
            elif msg := label_value(val):
                v.invalid("metadata.labels", val, msg)
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        v.invalid("metadata.annotations", annotations, "must be a map of string keys to string values")
    else:
        for k, val in annotations.items():
            if msg := qualified_name(str(k).lower()):
                v.invalid("metadata.annotations", k, msg)
            if not isinstance(val, str):
                v.invalid(f"metadata.annotations[{k}]", val, "must be a string")


def _port(v: _V, field: str, value: Any, required: bool = True) -> bool:
    if value is None:
        if required:
            v.required(field)
        return False
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        v.invalid(field, value, "must be between 1 and 65535, inclusive")
        return False
    return True


def _protocol(v: _V, field: str, value: Any) -> None:
    if value not in PROTOCOLS:
        v.unsupported(field, value, PROTOCOLS)


def _resources(v: _V, field: str, res: Any) -> None:
    if not isinstance(res, dict):
        return
    for part in ("limits", "requests"):
        for name, q in (res.get(part) or {}).items():
            if msg := quantity(q):
                v.invalid(f"{field}.{part}[{name}]", q, msg)


def _containers(v: _V, field: str, containers: Any, required: bool) -> None:
    if not containers:
        if required:
            v.required(field)
        return
    if not isinstance(containers, list):
        v.invalid(field, "", "must be a list")
        return
    seen: set[str] = set()
    for i, c in enumerate(containers):
        f = f"{field}[{i}]"
        if not isinstance(c, dict):
            v.invalid(f, "", "must be an object")
            continue
        name = c.get("name")
        if not name:
            v.required(f"{f}.name")
        elif msg := dns1123_label(str(name)):
            v.invalid(f"{f}.name", name, msg)
        elif name in seen:
            v.add(f"{f}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
        seen.add(str(name))
        if not c.get("image"):
            v.required(f"{f}.image")
        for j, p in enumerate(c.get("ports") or []):
            pf = f"{f}.ports[{j}]"
            if not isinstance(p, dict):
                continue
            _port(v, f"{pf}.containerPort", p.get("containerPort"))
            if "hostPort" in p and p["hostPort"] not in (0, None):
                _port(v, f"{pf}.hostPort", p["hostPort"])
            _protocol(v, f"{pf}.protocol", p.get("protocol", "TCP"))
            if p.get("name") and (len(p["name"]) > 15 or not _PORT_NAME.match(p["name"])):
                v.invalid(
                    f"{pf}.name",
                    p["name"],
                    "must be no more than 15 characters and a lowercase RFC 1123 label",
                )
        for j, e in enumerate(c.get("env") or []):
            if isinstance(e, dict) and not e.get("name"):
                v.required(f"{f}.env[{j}].name")
        _resources(v, f"{f}.resources", c.get("resources"))


def _pod_spec(v: _V, field: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        v.required(field)
        return
    _containers(v, f"{field}.containers", spec.get("containers"), required=True)
    _containers(v, f"{field}.initContainers", spec.get("initContainers"), required=False)
    rp = spec.get("restartPolicy", "Always")
    if rp not in ("Always", "OnFailure", "Never"):
        v.unsupported(f"{field}.restartPolicy", rp, ("Always", "OnFailure", "Never"))
    tgp = spec.get("terminationGracePeriodSeconds")
    if tgp is not None and (not isinstance(tgp, int) or tgp < 0):
        v.invalid(f"{field}.terminationGracePeriodSeconds", tgp, "must be greater than or equal to 0")
    if spec.get("nodeName") and (msg := dns1123_subdomain(str(spec["nodeName"]))):
        v.invalid(f"{field}.nodeName", spec["nodeName"], msg)


def pod(v: _V, obj: Obj) -> None:
    _pod_spec(v, "spec", obj.get("spec"))


def _selector_and_template(v: _V, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        v.required("spec")
        return
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        v.invalid("spec.replicas", replicas, "must be greater than or equal to 0")
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        v.required("spec.selector")
        parsed = None
    else:
        for k, val in (sel.get("matchLabels") or {}).items():
            if msg := qualified_name(str(k)):
                v.invalid("spec.selector.matchLabels", k, msg)
            if msg := label_value(str(val)):
                v.invalid("spec.selector.matchLabels", val, msg)
        try:
            parsed = selectors.selector_from_object(sel)
        except ValueError as e:
            path, _, msg = str(e).partition(": ")
            v.add(f"spec.selector.{path}", msg)
            parsed = None
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        v.required("spec.template")
        return
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if parsed is not None and not parsed.matches(labels):
        v.invalid(
            "spec.template.metadata.labels",
            labels_string(labels),
            "`selector` does not match template `labels`",
        )
    _pod_spec(v, "spec.template.spec", tmpl.get("spec"))
    rp = (tmpl.get("spec") or {}).get("restartPolicy", "Always")
    if rp != "Always":
        v.unsupported("spec.template.spec.restartPolicy", rp, ("Always",))


def labels_string(labels: dict[str, Any]) -> str:
    return ",".join(f"{k}={val}" for k, val in sorted(labels.items()))


def deployment(v: _V, obj: Obj) -> None:
    _selector_and_template(v, obj)
    strategy = (obj.get("spec") or {}).get("strategy") or {}
    if strategy.get("type") not in (None, "RollingUpdate", "Recreate"):
        v.unsupported("spec.strategy.type", strategy.get("type"), ("Recreate", "RollingUpdate"))


def replicaset(v: _V, obj: Obj) -> None:
    _selector_and_template(v, obj)


def service(v: _V, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        v.required("spec")
        return
    stype = spec.get("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        v.unsupported("spec.type", stype, SERVICE_TYPES)
        return
    ports = spec.get("ports") or []
    if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
        v.required("spec.ports")
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    for i, p in enumerate(ports):
        f = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            v.invalid(f, "", "must be an object")
            continue
        if len(ports) > 1 and not p.get("name"):
            v.required(f"{f}.name")
        if p.get("name"):
            if msg := dns1123_label(str(p["name"])):
                v.invalid(f"{f}.name", p["name"], msg)
            if p["name"] in names:
                v.add(f"{f}.name", f'Duplicate value: "{p["name"]}"', "FieldValueDuplicate")
            names.add(p["name"])
        ok = _port(v, f"{f}.port", p.get("port"))
        _protocol(v, f"{f}.protocol", p.get("protocol", "TCP"))
        if ok:
            key = (p["port"], p.get("protocol", "TCP"))
            if key in seen:
                v.add(f, f'Duplicate value: {{"port":{key[0]},"protocol":"{key[1]}"}}', "FieldValueDuplicate")
            seen.add(key)
        tp = p.get("targetPort")
        if isinstance(tp, str):
            if not tp.isdigit() and (len(tp) > 15 or not _PORT_NAME.match(tp)):
                v.invalid(f"{f}.targetPort", tp, "must be a port number or an IANA_SVC_NAME")
            elif tp.isdigit():
                _port(v, f"{f}.targetPort", int(tp))
        elif tp is not None:
            _port(v, f"{f}.targetPort", tp)
        if "nodePort" in p and p["nodePort"] not in (0, None):
            if stype not in ("NodePort", "LoadBalancer"):
                v.add(
                    f"{f}.nodePort",
                    "Forbidden: may not be used when `type` is 'ClusterIP'",
                    "FieldValueForbidden",
                )
            else:
                _port(v, f"{f}.nodePort", p["nodePort"])
    sel = spec.get("selector") or {}
    if not isinstance(sel, dict):
        v.invalid("spec.selector", sel, "must be a map of labels")
    else:
        for k, val in sel.items():
            if msg := qualified_name(str(k)):
                v.invalid("spec.selector", k, msg)
            if not isinstance(val, str) or (msg := label_value(val)):
                v.invalid("spec.selector", val, msg or "must be a string")
    cip = spec.get("clusterIP")
    if cip not in (None, "", "None"):
        try:
            ipaddress.ip_address(cip)
        except ValueError:
            v.invalid("spec.clusterIP", cip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        v.unsupported("spec.sessionAffinity", affinity, ("ClientIP", "None"))
    for pol in ("externalTrafficPolicy", "internalTrafficPolicy"):
        if pol in spec and spec[pol] not in ("Cluster", "Local"):
            v.unsupported(f"spec.{pol}", spec[pol], ("Cluster", "Local"))


def endpoints(v: _V, obj: Obj) -> None:
    for i, subset in enumerate(obj.get("subsets") or []):
        for kind in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(subset.get(kind) or []):
                try:
                    ipaddress.ip_address(a.get("ip", ""))
                except ValueError:
                    v.invalid(f"subsets[{i}].{kind}[{j}].ip", a.get("ip", ""), "must be a valid IP address")
        for j, p in enumerate(subset.get("ports") or []):
            _port(v, f"subsets[{i}].ports[{j}].port", p.get("port"))
            _protocol(v, f"subsets[{i}].ports[{j}].protocol", p.get("protocol", "TCP"))


def endpointslice(v: _V, obj: Obj) -> None:
    at = obj.get("addressType")
    if at not in ("IPv4", "IPv6", "FQDN"):
        v.unsupported("addressType", at, ("IPv4", "IPv6", "FQDN"))
    for i, ep in enumerate(obj.get("endpoints") or []):
        if not ep.get("addresses"):
            v.required(f"endpoints[{i}].addresses")
    for i, p in enumerate(obj.get("ports") or []):
        if p.get("port") is not None:
            _port(v, f"ports[{i}].port", p.get("port"))
        _protocol(v, f"ports[{i}].protocol", p.get("protocol", "TCP"))


_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# the most a Secret's data values may hold together (upstream's MaxSecretSize)
MAX_DATA_SIZE = 1024 * 1024


def _config_keys(v: _V, part: str, values: Any) -> None:
    if values is None:
        return
    if not isinstance(values, dict):
        v.invalid(part, "", "must be a map of string keys to values")
        return
    for k in values:
        if not _CONFIG_KEY.match(k) or len(k) > 253:
            v.invalid(
                f"{part}[{k}]",
                k,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            )


def configmap(v: _V, obj: Obj) -> None:
    for part in ("data", "binaryData"):
        _config_keys(v, part, obj.get(part))


def _decoded(v: _V, key: str, value: Any) -> bytes | None:
    """A data value's bytes; Go's base64 (standard alphabet, padded) skips line breaks."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
        except binascii.Error:
            pass
    v.invalid(f"data[{key}]", "<secret contents redacted>", "must be a base64-encoded string")
    return None


# the keys each well-known Secret type needs (upstream's ValidateSecret)
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"
DOCKER_CONFIG_JSON, DOCKER_CFG = ".dockerconfigjson", ".dockercfg"
BASIC_USERNAME, BASIC_PASSWORD = "username", "password"
SSH_PRIVATE_KEY = "ssh-privatekey"
SERVICE_ACCOUNT_NAME = "kubernetes.io/service-account.name"


def secret(v: _V, obj: Obj) -> None:
    for k in obj.get("stringData") or {}:
        v.invalid(f"stringData[{k}]", "<secret contents redacted>", "must be a string")
    data = obj.get("data")
    _config_keys(v, "data", data)
    keys: dict[str, Any] = data if isinstance(data, dict) else {}
    raw: dict[str, bytes] = {}  # the values that decode (the others are reported)
    for k, val in keys.items():
        if (b := _decoded(v, k, val)) is not None:
            raw[k] = b
    if sum(len(b) for b in raw.values()) > MAX_DATA_SIZE:
        v.add("data", f"Too long: must have at most {MAX_DATA_SIZE} bytes", "FieldValueTooLong")
    kind = obj.get("type")
    if not isinstance(kind, str):
        v.invalid("type", kind, "must be a string")
    elif kind == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not isinstance(annotations, dict) or not annotations.get(SERVICE_ACCOUNT_NAME):
            v.required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME}]")
    elif kind in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = DOCKER_CFG if kind == "kubernetes.io/dockercfg" else DOCKER_CONFIG_JSON
        if key not in keys:
            v.required(f"data[{key}]")
        elif key in raw:
            try:
                parsed = json.loads(raw[key])
            except ValueError as e:
                v.invalid(f"data[{key}]", "<secret contents redacted>", str(e))
            else:
                if not isinstance(parsed, dict):
                    v.invalid(f"data[{key}]", "<secret contents redacted>", "must be a JSON object")
    elif kind == "kubernetes.io/basic-auth":
        # either may be empty, but one of the two must be there
        if BASIC_USERNAME not in keys and BASIC_PASSWORD not in keys:
            v.required(f"data[{BASIC_USERNAME}]")
            v.required(f"data[{BASIC_PASSWORD}]")
    elif kind == "kubernetes.io/ssh-auth":
        if SSH_PRIVATE_KEY not in keys or raw.get(SSH_PRIVATE_KEY) == b"":
            v.required(f"data[{SSH_PRIVATE_KEY}]")
    elif kind == "kubernetes.io/tls":
        for key in (TLS_CERT, TLS_KEY):
            if key not in keys:
                v.required(f"data[{key}]")


def _immutable_fields(v: _V, old: Obj, new: Obj, fields: tuple[str, ...]) -> None:
    """Once `immutable: true`, it stays so and the data may not change (upstream's wording)."""
    if old.get("immutable") is not True:
        return
    message = "Forbidden: field is immutable when `immutable` is set"
    if new.get("immutable") is not True:
        v.add("immutable", message, "FieldValueForbidden")
    for part in fields:
        if (old.get(part) or {}) != (new.get(part) or {}):
            v.add(part, message, "FieldValueForbidden")


def configmap_update(v: _V, old: Obj, new: Obj) -> None:
    _immutable_fields(v, old, new, ("data", "binaryData"))


def secret_update(v: _V, old: Obj, new: Obj) -> None:
    if old.get("type") != new.get("type"):
        v.invalid("type", new.get("type"), "field is immutable")
    _immutable_fields(v, old, new, ("data",))


def node(v: _V, obj: Obj) -> None:
    cidr = (obj.get("spec") or {}).get("podCIDR")
    if cidr:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            v.invalid("spec.podCIDR", cidr, "must be a valid CIDR")


def lease(v: _V, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or d <= 0):
        v.invalid("spec.leaseDurationSeconds", d, "must be greater than 0")


def event(v: _V, obj: Obj) -> None:
    if not isinstance(obj.get("involvedObject"), dict):
        v.required("involvedObject")


_KIND_CHECKS: dict[str, Callable[[_V, Obj], None]] = {
    "pods": pod,
    "deployments": deployment,
    "replicasets": replicaset,
    "services": service,
    "endpoints": endpoints,
    "endpointslices": endpointslice,
    "configmaps": configmap,
    "secrets": secret,
    "nodes": node,
    "leases": lease,
    "events": event,
}

# services and namespaces need DNS-1123 labels; nodes, pods and most others subdomains
_LABEL_NAMED = ("services", "namespaces")


def validate(plural: str, obj: Obj, namespaced: bool) -> list[Cause]:
    v = _V()
    _metadata(v, obj, namespaced, dns1123_label if plural in _LABEL_NAMED else dns1123_subdomain)
    check = _KIND_CHECKS.get(plural)
    if check is not None:
        check(v, obj)
    return v.causes


_UPDATE_CHECKS: dict[str, Callable[[_V, Obj, Obj], None]] = {
    "configmaps": configmap_update,
    "secrets": secret_update,
}


def validate_update(plural: str, old: Obj, new: Obj) -> list[Cause]:
    """What an update may not change, beyond what `validate` checks of the new object."""
    v = _V()
    check = _UPDATE_CHECKS.get(plural)
    if check is not None:
        check(v, old, new)
    return v.causes
