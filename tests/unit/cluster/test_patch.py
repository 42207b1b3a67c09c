"""Merge patch, JSON patch and the strategic-merge-patch subset kubectl sends."""

from __future__ import annotations

import pytest

from netlab.cluster import patch
from netlab.cluster.status import ApiError

POD = {
    "metadata": {"name": "web", "labels": {"app": "web", "x": "1"}, "finalizers": ["a"]},
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "nginx:1",
                "ports": [{"containerPort": 80}, {"containerPort": 81}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "args": ["x", "y"],
            },
            {"name": "side", "image": "busybox"},
        ],
        "volumes": [{"name": "v1", "emptyDir": {}}],
    },
}


def test_merge_patch() -> None:
    out = patch.merge_patch(POD, {"metadata": {"labels": {"x": None, "y": "2"}}, "spec": {"containers": []}})
    assert out["metadata"]["labels"] == {"app": "web", "y": "2"}
    assert out["spec"]["containers"] == []  # lists are replaced
    assert POD["metadata"]["labels"]["x"] == "1"  # the original is untouched


def test_json_patch() -> None:
    out = patch.apply_patch(
        patch.JSON, POD, [{"op": "replace", "path": "/spec/containers/0/image", "value": "n:2"}]
    )
    assert out["spec"]["containers"][0]["image"] == "n:2"
    with pytest.raises(ApiError) as e:
        patch.apply_patch(patch.JSON, POD, [{"op": "test", "path": "/metadata/name", "value": "other"}])
    assert e.value.code == 422


def test_strategic_merges_lists_by_key() -> None:
    p = {
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "nginx:2",
                    "env": [{"name": "B", "value": "3"}],
                    "ports": [{"containerPort": 82}],
                    "args": ["z"],
                }
            ]
        }
    }
    out = patch.strategic_merge_patch(POD, p)
    c = out["spec"]["containers"][0]
    assert [x["name"] for x in out["spec"]["containers"]] == ["c", "side"]
    assert c["image"] == "nginx:2"
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert [x["containerPort"] for x in c["ports"]] == [80, 81, 82]
    assert c["args"] == ["z"]  # no merge key: replaced


def test_strategic_kubectl_apply_shape() -> None:
    # what `kubectl apply` sends after a container was renamed and a label dropped
    p = {
        "metadata": {"annotations": {"k": "v"}, "labels": {"x": None}},
        "spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "new"}],
            "containers": [{"name": "new", "image": "nginx:3"}, {"name": "c", "$patch": "delete"}],
        },
    }
    out = patch.strategic_merge_patch(POD, p)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["annotations"] == {"k": "v"}
    assert [c["name"] for c in out["spec"]["containers"]] == ["side", "new"]
    assert out["spec"]["containers"][1] == {"name": "new", "image": "nginx:3"}


def test_strategic_directives() -> None:
    out = patch.strategic_merge_patch(
        POD, {"spec": {"volumes": [{"name": "v2", "emptyDir": {}}, {"$patch": "replace"}]}}
    )
    assert out["spec"]["volumes"] == [{"name": "v2", "emptyDir": {}}]
    out = patch.strategic_merge_patch(POD, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == []
    out = patch.strategic_merge_patch(POD, {"metadata": {"finalizers": ["b"]}})
    assert out["metadata"]["finalizers"] == ["a", "b"]  # finalizers merge as a set
    out = patch.strategic_merge_patch(POD, {"spec": {"$retainKeys": ["containers"], "containers": []}})
    assert list(out["spec"]) == ["containers"]


def test_service_ports_merge_on_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = patch.strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]


def test_unknown_patch_type_is_415() -> None:
    with pytest.raises(ApiError) as e:
        patch.apply_patch("application/xml", POD, {})
    assert e.value.code == 415
