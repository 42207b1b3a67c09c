"""Label and field selectors: parsing the query-string forms and matching objects.

Label selector strings follow apimachinery's grammar (`k=v`, `k==v`, `k!=v`, `k in (a,b)`,
`k notin (a,b)`, `k`, `!k`, comma = AND); `!=` and `notin` also match objects lacking the key.
Field selectors support `=`, `==`, `!=` on the fields each kind lets kube-apiserver select on;
any other field is a 400, as upstream. Written here because no PyPI package implements these
grammars.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netlab.cluster.status import ApiError, bad_request

_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and labels[self.key] in self.values
        # "!=" and "notin" also select objects that lack the key
        return not has or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


EVERYTHING = LabelSelector()


def _check_key(key: str) -> None:
    if not key or len(key.rpartition("/")[2]) > 63 or not _KEY_RE.match(key):
        raise bad_request(f'unable to parse requirement: invalid label key "{key}"')


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise bad_request(f'unable to parse requirement: invalid label value: "{value}"')


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside `( )`."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(\S*)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for part in _split_top(text):
        part = part.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: empty requirement in {text!r}")
        if m := _SET_RE.match(part):
            key, op, inner = m.group(1), m.group(2), m.group(3)
            values = tuple(v.strip() for v in inner.split(",") if v.strip())
            _check_key(key)
            for v in values:
                _check_value(v)
            if not values:
                raise bad_request(f"unable to parse requirement: {key} {op} needs at least one value")
            reqs.append(Requirement(key, op, values))
        elif m := _EQ_RE.match(part):
            key, op, value = m.group(1), m.group(2), m.group(3)
            _check_key(key)
            _check_value(value)
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        elif part.startswith("!"):
            key = part[1:].strip()
            _check_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            _check_key(part)
            reqs.append(Requirement(part, "exists"))
    return LabelSelector(tuple(reqs))


_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def selector_from_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """`matchLabels` + `matchExpressions` (the `spec.selector` of apps kinds) as a selector.

    Raises ValueError with a field-relative message; validation turns it into a cause."""
    if not sel:
        return EVERYTHING
    reqs: list[Requirement] = []
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append(Requirement(str(k), "=", (str(v),)))
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        op = _OPS.get(expr.get("operator", ""))
        if op is None:
            raise ValueError(f"matchExpressions[{i}].operator: not a valid selector operator")
        values = tuple(str(v) for v in expr.get("values") or ())
        if op in ("in", "notin") and not values:
            raise ValueError(f"matchExpressions[{i}].values: must be specified when operator is In or NotIn")
        if op in ("exists", "!") and values:
            raise ValueError(
                f"matchExpressions[{i}].values: may not be specified when operator is Exists or DoesNotExist"
            )
        reqs.append(Requirement(str(expr.get("key", "")), op, values))
    return LabelSelector(tuple(reqs))


def selector_to_string(sel: Mapping[str, Any] | None) -> str:
    """The string form of an object selector (for Scale status and table columns)."""
    parts = []
    for r in selector_from_object(sel).requirements:
        if r.op == "=":
            parts.append(f"{r.key}={r.values[0]}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
        elif r.op == "exists":
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts)


# Field selectors -------------------------------------------------------------------------------


def _get(path: str) -> Callable[[Mapping[str, Any]], str]:
    parts = path.split(".")

    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for p in parts:
            if not isinstance(cur, Mapping):
                return ""
            cur = cur.get(p)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


_COMMON = ("metadata.name", "metadata.namespace")
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": _COMMON
    + (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": _COMMON
    + tuple(
        f"involvedObject.{f}"
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    )
    + ("reason", "reportingComponent", "source", "type"),
    "nodes": _COMMON + ("spec.unschedulable",),
    "namespaces": _COMMON + ("status.phase",),
    "replicasets": _COMMON + ("status.replicas",),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for r in self.requirements:
            # events: `source` selects on source.component
            actual = _get("source.component" if r.field == "source" else r.field)(obj)
            if (actual == r.value) != r.equal:
                return False
        return True

    def value_of(self, fieldname: str) -> str | None:
        """The value an `=` requirement pins `fieldname` to (lets the store narrow its range)."""
        for r in self.requirements:
            if r.field == fieldname and r.equal:
                return r.value
        return None


def parse_field_selector(text: str | None, resource: str) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    allowed = FIELDS.get(resource, _COMMON)
    reqs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            f, _, v = part.partition("!=")
            eq = False
        elif "==" in part:
            f, _, v = part.partition("==")
            eq = True
        elif "=" in part:
            f, _, v = part.partition("=")
            eq = True
        else:
            raise bad_request(f"invalid field selector: {part!r}: expected an operator")
        f = f.strip()
        if f not in allowed:
            raise ApiError(
                400, "BadRequest", f'"{f}" is not a known field selector: only "' + '", "'.join(allowed) + '"'
            )
        reqs.append(FieldRequirement(f, eq, v.strip()))
    return FieldSelector(tuple(reqs))
