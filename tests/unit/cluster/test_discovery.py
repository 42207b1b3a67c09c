"""Discovery, OpenAPI and URL routing are all derived from the one resource table."""

from __future__ import annotations

import pytest

from netlab.cluster import discovery, openapi
from netlab.cluster.handlers import parse_path
from netlab.cluster.status import ApiError


def test_resource_lists() -> None:
    core = discovery.resource_list("", "v1")
    assert core is not None
    names = {r["name"]: r for r in core["resources"]}
    assert names["pods"]["shortNames"] == ["po"] and names["pods"]["categories"] == ["all"]
    assert {"pods/binding", "pods/status", "pods/log", "services/status"} <= set(names)
    for r in core["resources"]:  # the Python client requires these on every entry
        assert {"name", "singularName", "namespaced", "kind", "verbs"} <= set(r)
    apps = discovery.resource_list("apps", "v1")
    assert apps is not None
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["kind"]) == ("autoscaling", "Scale")
    groups = [g["name"] for g in discovery.api_group_list()["groups"]]
    assert groups == ["apps", "discovery.k8s.io", "coordination.k8s.io"]
    assert set(discovery.VERSION) >= {
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    }


def test_openapi_declares_field_validation() -> None:
    root = openapi.root()
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    doc = openapi.document_for_path("apis/apps/v1")
    assert doc is not None
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]
    assert openapi.document_for_path("apis/nope/v1") is None


def test_parse_path() -> None:
    t = parse_path("/api/v1/namespaces/default/pods/web/status")
    assert t and t.res and (t.res.plural, t.namespace, t.name, t.sub) == ("pods", "default", "web", "status")
    t = parse_path("/api/v1/namespaces/default")
    assert t and t.res and (t.res.plural, t.name) == ("namespaces", "default")
    t = parse_path("/apis/apps/v1/deployments")
    assert t and t.res and (t.res.plural, t.namespace, t.name) == ("deployments", None, None)
    t = parse_path("/api/v1/namespaces/default/bindings")
    assert t and t.bindings
    with pytest.raises(ApiError) as e:
        parse_path("/api/v1/widgets")
    assert e.value.code == 404
    with pytest.raises(ApiError):
        parse_path("/api/v1/pods/web")  # a namespaced object needs its namespace
