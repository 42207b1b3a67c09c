"""The three patch types kubectl and the Python client send, applied to plain JSON objects.

- JSON merge patch (RFC 7386): maps merge, `null` deletes, lists are replaced. A dozen lines, so
  written here rather than imported.
- JSON patch (RFC 6902): the `jsonpatch` package.
- Strategic merge patch: no Python implementation exists, so this is the subset `kubectl apply`
  and `kubectl patch` produce for built-in kinds: lists merged by their merge key (containers,
  env, volumes by `name`, container ports by `containerPort`, service ports by `port`, ...),
  `$patch: delete|replace|merge` directives, `$setElementOrder/<list>`,
  `$deleteFromPrimitiveList/<list>` and `$retainKeys`. Lists without a merge key are replaced,
  as upstream does for atomic lists such as `args` and `tolerations`.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from netlab.cluster.status import ApiError, bad_request

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (JSON, MERGE, STRATEGIC, APPLY)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(ops).apply(target)
    except jsonpatch.JsonPatchTestFailed as e:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from e
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as e:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from e


# Strategic merge patch -------------------------------------------------------------------------

# list field -> merge key; a path-sensitive choice for `ports` and `addresses` below
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "podIPs": "ip",
    "hostIPs": "ip",
    "ownerReferences": "uid",
    "taints": "key",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# primitive lists whose patch strategy is "merge" (set union)
_PRIMITIVE_MERGE = {"finalizers"}


def _merge_key(path: tuple[str, ...], field: str, items: list[Any]) -> str | None:
    if field == "ports":
        # container ports merge on containerPort, service ports on port; endpoint ports are atomic
        if len(path) >= 1 and path[-1] == "spec" and len(path) == 1:
            return "port"
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        if path and path[-1] in ("containers", "initContainers", "ephemeralContainers"):
            return "containerPort"
        return None
    if field == "addresses":
        return "type" if path == ("status",) else None
    return _MERGE_KEYS.get(field)


_DELETE = object()


def _strip(value: Any) -> Any:
    """A patch fragment as a plain value: drop directives meant for merging into an original."""
    if isinstance(value, dict):
        if value.get("$patch") == "delete":
            return _DELETE
        out = {}
        for k, v in value.items():
            if k in ("$patch", "$retainKeys") or k.startswith(
                ("$setElementOrder/", "$deleteFromPrimitiveList/")
            ):
                continue
            if v is None:
                continue
            s = _strip(v)
            if s is not _DELETE:
                out[k] = s
        return out
    if isinstance(value, list):
        return [s for s in (_strip(v) for v in value) if s is not _DELETE]
    return value


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise bad_request("a strategic merge patch must be a JSON object")
    result = _merge_map(original if isinstance(original, dict) else {}, patch, ())
    return {} if result is _DELETE else result


def _merge_map(orig: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch directive {directive!r} at {'.'.join(path) or '<root>'}")
    result = copy.deepcopy(orig)
    orders: dict[str, list[Any]] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v if isinstance(v, list) else []
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            drop = v if isinstance(v, list) else []
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in drop]
            continue
        if v is None:
            result.pop(k, None)
            continue
        cur = result.get(k)
        if isinstance(v, dict) and isinstance(cur, dict):
            merged = _merge_map(cur, v, path + (k,))
            if merged is _DELETE:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            key = _merge_key(path, k, v + (cur if isinstance(cur, list) else []))
            if key and isinstance(cur, list):
                result[k] = _merge_list(cur, v, key, path + (k,))
            elif k in _PRIMITIVE_MERGE and isinstance(cur, list):
                result[k] = cur + [x for x in v if x not in cur]
            else:
                result[k] = _strip(v)
        else:
            s = _strip(v)
            if s is _DELETE:
                result.pop(k, None)
            else:
                result[k] = s
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, _merge_key(path, field, result[field]))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(orig: list[Any], patch: list[Any], key: str, path: tuple[str, ...]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [
            s
            for s in (_strip(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace"))
            if s is not _DELETE
        ]
    result = copy.deepcopy(orig)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(_strip(item))
            continue
        idx = next((n for n, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
            continue
        if idx is None:
            result.append(_strip(item))
        else:
            merged = _merge_map(result[idx], item, path)
            if merged is _DELETE:
                del result[idx]
            else:
                result[idx] = merged
    return result


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) for o in order]
    pos = {w: n for n, w in enumerate(wanted) if w is not None}
    ordered = sorted((i for i in items if ident(i) in pos), key=lambda i: pos[ident(i)])
    rest = [i for i in items if ident(i) not in pos]
    return ordered + rest


def apply_patch(content_type: str, original: Any, body: Any) -> Any:
    """Dispatch on the PATCH request's Content-Type; 415 for anything else."""
    ct = content_type.split(";")[0].strip()
    if ct == MERGE:
        if not isinstance(body, dict):
            raise bad_request("a merge patch must be a JSON object")
        return merge_patch(original, body)
    if ct == JSON:
        return json_patch(original, body)
    if ct == STRATEGIC:
        return strategic_merge_patch(original, body)
    if ct == APPLY:
        # Server-side apply, lab-sized: the applied configuration is merged in like a strategic
        # patch; no managedFields and no field-ownership conflicts.
        if not isinstance(body, dict):
            raise bad_request("an apply patch must be an object")
        return strategic_merge_patch(original, body)
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted "
        f"media types include: {', '.join(PATCH_TYPES)}",
    )
