"""Validation causes name the field at fault; allocators refuse addresses the way upstream does."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from netlab.cluster import defaults
from netlab.cluster.allocators import IPAllocator, PortAllocator, ServiceAllocator
from netlab.cluster.validation import validate, validate_update


def pod(**spec: Any) -> dict[str, Any]:
    c = {"name": "c", "image": "nginx"}
    c.update(spec.pop("container", {}))
    return {
        "metadata": {
            "name": spec.pop("name", "web"),
            "namespace": "default",
            "labels": spec.pop("labels", {}),
        },
        "spec": {"containers": [c], **spec},
    }


def fields(plural: str, obj: dict[str, Any], namespaced: bool = True) -> list[str]:
    defaults.apply(plural, obj)
    return [c.field for c in validate(plural, obj, namespaced)]


def test_valid_pod_has_no_causes() -> None:
    assert fields("pods", pod()) == []


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (pod(name="Web_1"), "metadata.name"),
        (pod(name="a" * 254), "metadata.name"),
        (pod(labels={"-bad": "x"}), "metadata.labels"),
        (pod(labels={"ok": "bad value"}), "metadata.labels"),
        (pod(container={"ports": [{"containerPort": 0}]}), "spec.containers[0].ports[0].containerPort"),
        (pod(container={"ports": [{"containerPort": 65536}]}), "spec.containers[0].ports[0].containerPort"),
        (
            pod(container={"ports": [{"containerPort": 80, "protocol": "HTTP"}]}),
            "spec.containers[0].ports[0].protocol",
        ),
        (
            pod(container={"resources": {"limits": {"memory": "lots"}}}),
            "spec.containers[0].resources.limits[memory]",
        ),
        (
            pod(container={"resources": {"requests": {"cpu": "-1"}}}),
            "spec.containers[0].resources.requests[cpu]",
        ),
        (pod(container={"image": ""}), "spec.containers[0].image"),
        (pod(restartPolicy="Sometimes"), "spec.restartPolicy"),
    ],
)
def test_pod_causes(obj: dict[str, Any], field: str) -> None:
    assert field in fields("pods", obj)


def svc(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": spec.pop("name", "web"), "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec},
    }


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (svc(name="web.example"), "metadata.name"),  # services need a DNS-1123 label
        (svc(ports=[{"port": 0}]), "spec.ports[0].port"),
        (svc(ports=[{"port": 80, "protocol": "ICMP"}]), "spec.ports[0].protocol"),
        (svc(ports=[{"port": 80, "targetPort": 70000}]), "spec.ports[0].targetPort"),
        (svc(ports=[{"port": 80, "nodePort": 30001}]), "spec.ports[0].nodePort"),  # ClusterIP type
        (svc(selector={"app": "we b"}), "spec.selector"),
        (svc(clusterIP="not-an-ip"), "spec.clusterIP"),
        (svc(type="Magic"), "spec.type"),
    ],
)
def test_service_causes(obj: dict[str, Any], field: str) -> None:
    assert field in fields("services", obj)


def deploy(selector: Any, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }


def test_selector_causes() -> None:
    assert fields("deployments", deploy({"matchLabels": {"app": "web"}}, {"app": "web"})) == []
    assert "spec.selector" in fields("deployments", deploy(None, {"app": "web"}))
    assert "spec.template.metadata.labels" in fields(
        "deployments", deploy({"matchLabels": {"app": "x"}}, {"app": "web"})
    )
    bad_op = deploy({"matchExpressions": [{"key": "a", "operator": "Near"}]}, {"a": "1"})
    assert "spec.selector.matchExpressions[0].operator" in fields("replicasets", bad_op)


def allocator() -> ServiceAllocator:
    return ServiceAllocator(IPAllocator.parse("10.96.0.0/28"), PortAllocator.parse("30000-30002"))


def test_allocation_and_release() -> None:
    a = allocator()
    s1 = svc(type="NodePort")
    assert a.allocate(s1) == []
    ip, port = s1["spec"]["clusterIP"], s1["spec"]["ports"][0]["nodePort"]
    assert ip.startswith("10.96.0.") and 30000 <= port <= 30002 and s1["spec"]["clusterIPs"] == [ip]
    s2 = svc(type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": port}])
    causes = a.allocate(s2)
    assert [c.field for c in causes] == ["spec.clusterIP"] and "already allocated" in causes[0].message
    s3 = svc(type="NodePort", ports=[{"port": 80, "nodePort": port}])
    causes = a.allocate(s3)
    assert [c.field for c in causes] == ["spec.ports[0].nodePort"] and "already allocated" in causes[
        0
    ].message
    assert len(a.ips.used) == 1  # the failed create took nothing
    a.release_unused(s1, None)
    assert a.allocate(s2) == []


def test_out_of_range() -> None:
    a = allocator()
    causes = a.allocate(svc(clusterIP="192.168.1.1"))
    assert [c.field for c in causes] == ["spec.clusterIP"] and "not in the valid range" in causes[0].message
    causes = a.allocate(svc(type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert [c.field for c in causes] == ["spec.ports[0].nodePort"] and "30000-30002" in causes[0].message


def test_exhaustion_and_headless() -> None:
    a = allocator()
    for _ in range(3):
        assert a.allocate(svc(type="NodePort")) == []
    assert [c.field for c in a.allocate(svc(type="NodePort"))] == ["spec.ports[0].nodePort"]
    headless = svc(clusterIP="None")
    assert a.allocate(headless) == [] and headless["spec"]["clusterIP"] == "None"


def test_update_keeps_addresses() -> None:
    a = allocator()
    old = svc(type="NodePort")
    a.allocate(old)
    new = svc(type="NodePort", ports=[{"port": 80, "nodePort": old["spec"]["ports"][0]["nodePort"]}])
    assert a.allocate(new, old) == [] and new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    # another address of the range: the old one was picked at random
    changed = svc(clusterIP="10.96.0.9" if old["spec"]["clusterIP"] != "10.96.0.9" else "10.96.0.10")
    assert [c.field for c in a.allocate(changed, old)] == ["spec.clusterIP"]  # immutable


def secret(type: str = "", **data: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "s", "namespace": "default"}, "data": data}
    if type:
        obj["type"] = type
    return obj


def test_secret_defaults_fold_string_data_into_data() -> None:
    obj = secret(a="b2xk", keep="eA==")
    obj["stringData"] = {"a": "new", "b": "é"}
    defaults.apply("secrets", obj)
    assert obj == {
        "metadata": {"name": "s", "namespace": "default"},
        "type": "Opaque",
        "data": {"a": "bmV3", "keep": "eA==", "b": "w6k="},  # stringData wins
    }
    bare: dict[str, Any] = {"metadata": {"name": "s"}, "type": "", "data": None, "stringData": {"x": ""}}
    defaults.apply("secrets", bare)
    assert bare == {"metadata": {"name": "s"}, "type": "Opaque", "data": {"x": ""}}


def test_valid_secrets_have_no_causes() -> None:
    assert fields("secrets", secret(a="YQ==", b="")) == []
    assert fields("secrets", secret("kubernetes.io/tls", **{"tls.crt": "", "tls.key": ""})) == []
    assert fields("secrets", secret("kubernetes.io/basic-auth", password="cA==")) == []
    assert fields("secrets", secret("example.com/anything")) == []
    config = base64.b64encode(b'{"auths": {}}').decode()
    assert fields("secrets", secret("kubernetes.io/dockerconfigjson", **{".dockerconfigjson": config})) == []
    wrapped = base64.encodebytes(b"x" * 100).decode()  # line breaks, as Go's decoder allows
    assert fields("secrets", secret(a=wrapped)) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (secret(a="not base64!"), ["data[a]"]),
        (secret(a="YQ"), ["data[a]"]),  # unpadded
        (secret(**{"bad/key": "YQ=="}), ["data[bad/key]"]),
        (secret("kubernetes.io/tls", **{"tls.crt": "YQ=="}), ["data[tls.key]"]),
        (secret("kubernetes.io/tls"), ["data[tls.crt]", "data[tls.key]"]),
        (secret("kubernetes.io/dockerconfigjson"), ["data[.dockerconfigjson]"]),
        (
            secret("kubernetes.io/dockerconfigjson", **{".dockerconfigjson": "bm9wZQ=="}),
            ["data[.dockerconfigjson]"],
        ),
        (secret("kubernetes.io/dockercfg"), ["data[.dockercfg]"]),
        (secret("kubernetes.io/basic-auth"), ["data[username]", "data[password]"]),
        (secret("kubernetes.io/ssh-auth", **{"ssh-privatekey": ""}), ["data[ssh-privatekey]"]),
        (
            secret("kubernetes.io/service-account-token"),
            ["metadata.annotations[kubernetes.io/service-account.name]"],
        ),
        (secret(big=base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()), ["data"]),
        ({**secret(), "stringData": {"n": 1}}, ["stringData[n]"]),
    ],
)
def test_secret_causes(obj: dict[str, Any], expected: list[str]) -> None:
    assert fields("secrets", obj) == expected


def test_immutable_secrets_keep_their_data_and_every_secret_its_type() -> None:
    old = {**secret(a="YQ=="), "immutable": True, "type": "Opaque"}
    assert validate_update("secrets", old, {**old, "metadata": {"name": "s", "labels": {"x": "y"}}}) == []
    causes = validate_update("secrets", old, {**old, "data": {"a": "Yg=="}})
    assert [(c.field, c.reason) for c in causes] == [("data", "FieldValueForbidden")]
    assert "field is immutable when `immutable` is set" in causes[0].message
    assert [c.field for c in validate_update("secrets", old, {**old, "immutable": False})] == ["immutable"]
    assert [c.field for c in validate_update("secrets", old, {**old, "type": "kubernetes.io/tls"})] == [
        "type"
    ]
    mutable = {**old, "immutable": False}
    assert validate_update("secrets", mutable, {**mutable, "data": {}, "immutable": True}) == []
    assert [c.field for c in validate_update("secrets", mutable, {**mutable, "type": "x"})] == ["type"]


def test_immutable_config_maps_keep_their_data() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}, "immutable": True}
    assert validate_update("configmaps", cm, {**cm, "metadata": {"name": "c", "labels": {"x": "y"}}}) == []
    causes = validate_update("configmaps", cm, {**cm, "data": {"a": "2"}, "binaryData": {}})
    assert [(c.field, c.reason) for c in causes] == [
        ("data", "FieldValueForbidden"),
        ("binaryData", "FieldValueForbidden"),
    ]
    assert "field is immutable when `immutable` is set" in causes[0].message
    assert [c.field for c in validate_update("configmaps", cm, {**cm, "immutable": False})] == ["immutable"]
    mutable = {**cm, "immutable": False}
    assert validate_update("configmaps", mutable, {**mutable, "data": {}, "immutable": True}) == []
