"""A container's environment and command line, as the kubelet builds them.

Order and rules follow the kubelet (`pkg/kubelet/kubelet_pods.go` makeEnvironmentVariables):

1. service links: `KUBERNETES_SERVICE_HOST`/`_PORT` (the `kubernetes` service in `default`)
   always, and, unless `enableServiceLinks: false`, the docker-link style variables of every
   service in the pod's namespace (`WEB_SERVICE_HOST`, `WEB_PORT_80_TCP_ADDR`, ...);
2. `envFrom` (config maps and secrets, each with an optional prefix);
3. `env` in order: literal values with `$(VAR)` references expanded against what is defined
   so far (`$$` escapes a `$`; an unknown reference stays as written), and `valueFrom`:
   `fieldRef` (the downward API: metadata.name, .namespace, .uid, labels and annotations by
   key, spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s)),
   `resourceFieldRef` (limits and requests of cpu and memory), `configMapKeyRef` and
   `secretKeyRef` (the secret's base64 `data` decoded, as the kubelet hands over its bytes).

`command` and `args` are expanded against the result. A missing config map, secret or key
that is not optional makes the container unstartable with the kubelet's
`CreateContainerConfigError` wording. Pure: config maps, secrets and services are handed in.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netlab.cluster import quantity

Obj = dict[str, Any]
Lookup = Callable[[str], Obj | None]  # name -> object in the pod's namespace, or None

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError); the message says why."""


@dataclass(frozen=True)
class PodContext:
    pod: Obj
    pod_ip: str = ""
    host_ip: str = ""
    node_allocatable: Obj | None = None  # for resourceFieldRef limits that are not set


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append("$")
            i += 1
    return "".join(out)


def service_env(services: list[Obj], namespace: str, links: bool) -> dict[str, str]:
    """Docker-link variables: the master service always, the namespace's services if `links`."""
    env: dict[str, str] = {}
    chosen = []
    for svc in services:
        meta = svc.get("metadata") or {}
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        is_master = meta.get("namespace") == "default" and meta.get("name") == "kubernetes"
        if is_master or (links and meta.get("namespace") == namespace):
            chosen.append(svc)
    # upstream puts the namespace's own services first and the master service last
    chosen.sort(key=lambda s: (s["metadata"].get("namespace") != namespace, s["metadata"]["name"]))
    for svc in chosen:
        env.update(_links(svc))
    return env


def _links(svc: Obj) -> dict[str, str]:
    name = svc["metadata"]["name"].upper().replace("-", "_")
    spec = svc.get("spec") or {}
    ip = spec["clusterIP"]
    ports = spec.get("ports") or []
    env = {f"{name}_SERVICE_HOST": ip}
    if not ports:
        return env
    first = ports[0]
    env[f"{name}_SERVICE_PORT"] = str(first.get("port"))
    for p in ports:
        if p.get("name"):
            env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p.get("port"))
    proto = str(first.get("protocol") or "TCP")
    env[f"{name}_PORT"] = f"{proto.lower()}://{ip}:{first.get('port')}"
    for p in ports:
        proto = str(p.get("protocol") or "TCP")
        prefix = f"{name}_PORT_{p.get('port')}_{proto.upper()}"
        env[prefix] = f"{proto.lower()}://{ip}:{p.get('port')}"
        env[f"{prefix}_PROTO"] = proto.lower()
        env[f"{prefix}_PORT"] = str(p.get("port"))
        env[f"{prefix}_ADDR"] = ip
    return env


def _field(ctx: PodContext, path: str) -> str:
    pod = ctx.pod
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    m = _FIELD_KEY.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _resource(ctx: PodContext, container: Obj, ref: Obj) -> str:
    resource = str(ref.get("resource") or "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    target = container
    if ref.get("containerName"):
        found = [
            c
            for c in (ctx.pod.get("spec") or {}).get("containers") or []
            if c.get("name") == ref["containerName"]
        ]
        if not found:
            raise ConfigError(f"resourceFieldRef: no container named {ref['containerName']!r}")
        target = found[0]
    res = target.get("resources") or {}
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        # no limit: the node's allocatable, as upstream reports it
        value = (ctx.node_allocatable or {}).get(name, "0")
    divisor = ref.get("divisor") or "1"
    try:
        amount, div = quantity.parse(value), quantity.parse(divisor)
    except ValueError as e:
        raise ConfigError(f"resourceFieldRef {resource}: {e}") from None
    if div <= 0:
        raise ConfigError(f"resourceFieldRef {resource}: divisor must be positive")
    return str(math.ceil(amount / div))


def _configmap_data(cm: Obj) -> dict[str, str]:
    return {k: str(v) for k, v in (cm.get("data") or {}).items()}


def _secret_data(secret: Obj) -> dict[str, str]:
    """A secret's values as the container sees them: its `data` decoded from base64 (bytes that
    are not UTF-8 survive as surrogate escapes, so the process gets them unchanged)."""
    out = {}
    where = f"secret {ctx_ns(secret)}/{_name(secret)}"
    for k, v in (secret.get("data") or {}).items():
        try:
            raw = base64.b64decode(str(v), validate=True)
        except binascii.Error:
            raise ConfigError(f"{where}: data[{k}] is not base64") from None
        if b"\0" in raw:
            raise ConfigError(f"{where}: data[{k}] holds a NUL byte, which no environment variable can")
        out[k] = raw.decode("utf-8", "surrogateescape")
    return out


# the two sources a container's environment can read: (kind, the `envFrom` and `valueFrom` fields)
_SOURCES = (("ConfigMap", "configMapRef", "configMapKeyRef"), ("Secret", "secretRef", "secretKeyRef"))


def _source(lookup: Lookup, kind: str, ref: Obj) -> dict[str, str] | None:
    """The data of the config map or secret `ref` names; None when it is optional and absent."""
    obj = lookup(str(ref.get("name")))
    if obj is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
    return _configmap_data(obj) if kind == "ConfigMap" else _secret_data(obj)


def _key_ref(lookup: Lookup, kind: str, ref: Obj, namespace: str) -> str | None:
    """The value a `configMapKeyRef` or `secretKeyRef` names; None when optional and absent."""
    data = _source(lookup, kind, ref)
    key = ref.get("key")
    if data is None or key not in data:
        if data is None or ref.get("optional"):
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name')}")
    return data[key]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def ctx_ns(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def container_env(
    ctx: PodContext,
    container: Obj,
    configmaps: Lookup,
    secrets: Lookup,
    services: list[Obj],
    defaults: dict[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment; `defaults` (PATH, HOSTNAME...) come first and can be overridden."""
    pod = ctx.pod
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    env: dict[str, str] = dict(defaults or {})
    env.update(service_env(services, ns, links))
    lookups = {"ConfigMap": configmaps, "Secret": secrets}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, field, _ in _SOURCES:
            if field in source:
                for k, v in (_source(lookups[kind], kind, source[field] or {}) or {}).items():
                    if _ENV_NAME.match(prefix + k):
                        env[prefix + k] = v
    for item in container.get("env") or []:
        name = str(item.get("name") or "")
        if not name:
            continue
        if "valueFrom" in item and item["valueFrom"]:
            src = item["valueFrom"]
            if "fieldRef" in src:
                env[name] = _field(ctx, str((src["fieldRef"] or {}).get("fieldPath") or ""))
            elif "resourceFieldRef" in src:
                env[name] = _resource(ctx, container, src["resourceFieldRef"] or {})
            else:
                for kind, _, field in _SOURCES:
                    if field in src:
                        value = _key_ref(lookups[kind], kind, src[field] or {}, ns)
                        if value is not None:
                            env[name] = value
            continue
        env[name] = expand(str(item.get("value") or ""), env)
    return env


def command_line(argv: list[str], env: dict[str, str]) -> list[str]:
    return [expand(a, env) for a in argv]
