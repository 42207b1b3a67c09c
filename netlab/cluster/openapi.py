"""A minimal OpenAPI v3 surface: enough for `kubectl create/apply` to validate server-side.

kubectl 1.32 (`--validate=strict`, the default) checks whether the server supports the
`fieldValidation` query parameter by reading `/openapi/v3` and the group-version documents;
without them it refuses to create anything. Each document declares one `patch` operation per
kind with the group-version-kind extension and the `fieldValidation` parameter. The `hash` in
each URL is the document's digest, so clients' caches refresh when the served kinds change.
No schemas are served: kubectl then builds strategic merge patches from its compiled-in types.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from netlab.cluster import resources
from netlab.cluster.patch import PATCH_TYPES


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


@cache
def gv_document(group: str, version: str) -> dict[str, Any] | None:
    rs = resources.in_group(group, version)
    if not rs:
        return None
    paths: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for r in rs:
        item = (
            f"{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}"
            if r.namespaced
            else f"{prefix}/{r.plural}/{{name}}"
        )
        op = {
            "operationId": f"patch{r.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            ],
            "requestBody": {
                "content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES},
                "required": True,
            },
            "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
        }
        paths[item] = {"patch": op}
    return {
        "openapi": "3.0.0",
        "info": {"title": "netlab", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


@cache
def _hash(group: str, version: str) -> str:
    doc = gv_document(group, version)
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def root() -> dict[str, Any]:
    return {
        "paths": {
            _gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash={_hash(g, v)}"}
            for g, v in resources.group_versions()
        }
    }


def document_for_path(path: str) -> dict[str, Any] | None:
    """`api/v1` or `apis/apps/v1` (the part after /openapi/v3/) to its document."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return gv_document("", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return gv_document(parts[1], parts[2])
    return None
