"""API semantics over HTTP: validation answers, deletion and garbage collection, 410 after compaction."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from netlab.cluster.client import ApiClient, Gone
from netlab.cluster.status import ApiError
from netlab.etcd import EtcdClient
from tests.cluster.conftest import ApiServerForTest, apiserver_fixture

pytestmark = pytest.mark.etcd

# a short compaction interval: watches that resume from old revisions get 410 within seconds
api = apiserver_fixture(
    "--compact-interval", "0.5", "--service-cidr", "10.96.0.0/24", "--node-port-range", "30000-30100"
)


def pod(name: str = "web", **over: Any) -> dict[str, Any]:
    container = {"name": "c", "image": "nginx", **over.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": over.pop("labels", {"app": "web"})},
        "spec": {"containers": [container], **over},
    }


def svc(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec},
    }


def deploy(name: str, selector: Any, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }


INVALID = [
    ("pods", pod("Web_Server"), "metadata.name"),
    ("pods", pod(labels={"bad key!": "x"}), "metadata.labels"),
    ("pods", pod(labels={"app": "-bad-"}), "metadata.labels"),
    ("pods", pod(container={"ports": [{"containerPort": 0}]}), "spec.containers[0].ports[0].containerPort"),
    (
        "pods",
        pod(container={"ports": [{"containerPort": 70000}]}),
        "spec.containers[0].ports[0].containerPort",
    ),
    (
        "pods",
        pod(container={"ports": [{"containerPort": 80, "protocol": "ICMP"}]}),
        "spec.containers[0].ports[0].protocol",
    ),
    (
        "pods",
        pod(container={"resources": {"limits": {"cpu": "lots"}}}),
        "spec.containers[0].resources.limits[cpu]",
    ),
    (
        "pods",
        pod(container={"resources": {"requests": {"memory": "12Zi"}}}),
        "spec.containers[0].resources.requests[memory]",
    ),
    ("services", svc("Bad.Name"), "metadata.name"),
    ("services", svc(ports=[{"port": 99999}]), "spec.ports[0].port"),
    ("services", svc(ports=[{"port": 53, "protocol": "DNS"}]), "spec.ports[0].protocol"),
    ("services", svc(selector={"app": "not valid"}), "spec.selector"),
    ("services", svc(clusterIP="192.168.10.10"), "spec.clusterIP"),  # outside the service CIDR
    ("services", svc(type="NodePort", ports=[{"port": 80, "nodePort": 40000}]), "spec.ports[0].nodePort"),
    ("deployments", deploy("d1", None, {"app": "web"}), "spec.selector"),
    (
        "deployments",
        deploy("d2", {"matchLabels": {"app": "other"}}, {"app": "web"}),
        "spec.template.metadata.labels",
    ),
    (
        "deployments",
        deploy(
            "d3", {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["x"]}]}, {"app": "web"}
        ),
        "spec.selector.matchExpressions[0].operator",
    ),
]


@pytest.mark.parametrize(("plural", "body", "field"), INVALID, ids=[f"{p}-{f}" for p, _, f in INVALID])
def test_invalid_input_gets_422_naming_the_field(
    api: ApiServerForTest, plural: str, body: dict[str, Any], field: str
) -> None:
    group = "/apis/apps/v1" if plural == "deployments" else "/api/v1"
    r = api.http("POST", f"{group}/namespaces/default/{plural}", body=body)
    assert r.status_code == 422, r.text
    st = r.json()
    assert st["kind"] == "Status" and st["reason"] == "Invalid" and st["code"] == 422
    assert field in [c["field"] for c in st["details"]["causes"]], st
    assert field in st["message"]
    # as upstream: the details name the kind, and each cause's message leaves its field out
    assert st["details"]["kind"] == body["kind"] and st["details"]["name"] == body["metadata"]["name"]
    assert st["details"].get("group", "") == ("apps" if plural == "deployments" else "")
    assert not any(c["message"].startswith(c["field"]) for c in st["details"]["causes"]), st


def test_node_port_taken_and_released(api: ApiServerForTest) -> None:
    first = api.http(
        "POST",
        "/api/v1/namespaces/default/services",
        body=svc("np1", type="NodePort", ports=[{"port": 80, "nodePort": 30050}]),
    )
    assert first.status_code == 201, first.text
    ip = first.json()["spec"]["clusterIP"]
    taken = api.http(
        "POST",
        "/api/v1/namespaces/default/services",
        body=svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30050}]),
    )
    assert taken.status_code == 422
    cause = taken.json()["details"]["causes"][0]
    assert cause["field"] == "spec.ports[0].nodePort" and "already allocated" in cause["message"]
    same_ip = api.http("POST", "/api/v1/namespaces/default/services", body=svc("ip2", clusterIP=ip))
    assert same_ip.status_code == 422 and same_ip.json()["details"]["causes"][0]["field"] == "spec.clusterIP"
    assert api.http("DELETE", "/api/v1/namespaces/default/services/np1").status_code == 200
    again = api.http(
        "POST",
        "/api/v1/namespaces/default/services",
        body=svc("np2", type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": 30050}]),
    )
    assert again.status_code == 201, again.text


def test_bad_requests_are_statuses(api: ApiServerForTest) -> None:
    cases: list[tuple[str, str, Any, str, int, str]] = [
        (
            "GET",
            "/api/v1/namespaces/default/pods?labelSelector=a%20in",
            None,
            "application/json",
            400,
            "BadRequest",
        ),
        ("GET", "/api/v1/pods?fieldSelector=spec.color%3Dred", None, "application/json", 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/default/pods", "{not json", "application/json", 400, "BadRequest"),
        (
            "POST",
            "/api/v1/namespaces/nowhere/pods",
            json.dumps(pod("p")),
            "application/json",
            404,
            "NotFound",
        ),
        ("GET", "/api/v1/namespaces/default/widgets", None, "application/json", 404, "NotFound"),
        (
            "PATCH",
            "/api/v1/namespaces/default/services/kubernetes",
            "{}",
            "application/xml",
            415,
            "UnsupportedMediaType",
        ),
        ("DELETE", "/api/v1/namespaces/default", None, "application/json", 403, "Forbidden"),
        (
            "PUT",
            "/api/v1/namespaces/default/pods/absent",
            json.dumps(pod("absent")),
            "application/json",
            404,
            "NotFound",
        ),
    ]
    for method, path, body, ctype, code, reason in cases:
        r = api.http(method, path, body=body, content_type=ctype)
        assert (r.status_code, r.json()["reason"]) == (code, reason), (method, path, r.text)
        assert r.json()["kind"] == "Status"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def exists(c: ApiClient, resource: str, name: str, ns: str = "default") -> bool:
    try:
        c.get(resource, name, ns)
        return True
    except ApiError as e:
        assert e.code == 404
        return False


def owned(kind: str, api_version: str, owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    return {
        "ownerReferences": [
            {
                "apiVersion": api_version,
                "kind": kind,
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": block,
            }
        ]
    }


def test_garbage_collection_background_foreground_orphan(api: ApiServerForTest) -> None:
    rs_body = {
        "metadata": {"name": "rs"},
        "spec": {
            "selector": {"matchLabels": {"app": "gc"}},
            "template": {
                "metadata": {"labels": {"app": "gc"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    with api.client() as c:
        for policy in ("Background", "Foreground", "Orphan"):
            name = f"rs-{policy.lower()}"
            rs = c.create("replicasets", {**rs_body, "metadata": {"name": name}}, "default")
            for i in range(2):
                c.create(
                    "pods",
                    {
                        **pod(f"{name}-{i}", labels={"app": "gc"}),
                        "metadata": {
                            "name": f"{name}-{i}",
                            "labels": {"app": "gc"},
                            **owned("ReplicaSet", "apps/v1", rs, block=True),
                        },
                    },
                    "default",
                )
            c.delete("replicasets", name, "default", propagation=policy)
            wait_until(lambda n=name: not exists(c, "replicasets", n), f"{name} to go")
            if policy == "Orphan":
                for i in range(2):
                    assert exists(c, "pods", f"{name}-{i}")
                    assert "ownerReferences" not in c.get("pods", f"{name}-{i}", "default")["metadata"]
            else:
                for i in range(2):
                    wait_until(
                        lambda n=f"{name}-{i}": not exists(c, "pods", n), f"{name}-{i} to be collected"
                    )


def test_graceful_pod_deletion_and_finalizers(api: ApiServerForTest) -> None:
    with api.client() as c:
        c.create("pods", {**pod("graceful"), "spec": {**pod()["spec"], "nodeName": "node1"}}, "default")
        first = c.delete("pods", "graceful", "default")
        assert (
            first["metadata"]["deletionTimestamp"] and first["metadata"]["deletionGracePeriodSeconds"] == 30
        )
        assert exists(c, "pods", "graceful")  # until the kubelet confirms
        c.delete("pods", "graceful", "default", grace_period=0)
        assert not exists(c, "pods", "graceful")

        c.create("configmaps", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, "default")
        held = c.delete("configmaps", "held", "default")
        assert held["metadata"]["deletionTimestamp"]
        assert exists(c, "configmaps", "held")
        c.patch("configmaps", "held", {"metadata": {"finalizers": None}}, "default")
        assert not exists(c, "configmaps", "held")

        cm = c.create("configmaps", {"metadata": {"name": "pre"}}, "default")
        with pytest.raises(ApiError) as e:
            c.delete("configmaps", "pre", "default", preconditions={"uid": "not-the-uid"})
        assert e.value.code == 409
        c.delete("configmaps", "pre", "default", preconditions={"uid": cm["metadata"]["uid"]})


def test_binding_checks_the_stored_pod_when_its_cache_is_behind(api: ApiServerForTest) -> None:
    """Bindings start from the watch cache; a pod changed behind the apiserver's back (straight
    in etcd, so its cache may not have seen it yet) is bound from what etcd holds."""
    key = "/registry/pods/default/{}"
    with api.client() as c, EtcdClient(api.etcd_url) as etcd:
        c.create("pods", pod("bind-stale"), "default")
        kv = etcd.get(key.format("bind-stale"))
        assert kv is not None
        stored = json.loads(kv.value)
        stored["metadata"]["labels"]["changed"] = "in-etcd"
        assert etcd.update(kv.key, json.dumps(stored), kv.mod_revision).succeeded
        c.bind("default", "bind-stale", "node1")
        got = c.get("pods", "bind-stale", "default")
        assert got["spec"]["nodeName"] == "node1"
        assert got["metadata"]["labels"]["changed"] == "in-etcd"  # not lost to a stale copy

        c.create("pods", pod("bind-taken"), "default")
        kv = etcd.get(key.format("bind-taken"))
        assert kv is not None
        stored = json.loads(kv.value)
        stored["spec"]["nodeName"] = "node2"  # bound by someone else, unknown to the cache
        assert etcd.update(kv.key, json.dumps(stored), kv.mod_revision).succeeded
        with pytest.raises(ApiError) as e:
            c.bind("default", "bind-taken", "node1")
        assert e.value.code == 409 and "already assigned" in e.value.message
        assert c.get("pods", "bind-taken", "default")["spec"]["nodeName"] == "node2"


def test_namespace_deletion_removes_contents(api: ApiServerForTest) -> None:
    with api.client() as c:
        c.create("namespaces", {"metadata": {"name": "doomed"}})
        c.create("configmaps", {"metadata": {"name": "x"}}, "doomed")
        c.create("pods", pod("p"), "doomed")
        ns = c.delete("namespaces", "doomed")
        assert ns["status"]["phase"] == "Terminating"
        with pytest.raises(ApiError) as e:
            c.create("configmaps", {"metadata": {"name": "late"}}, "doomed")
        assert e.value.code in (403, 404)
        wait_until(lambda: not exists(c, "namespaces", "doomed", ns=None), "the namespace to go")  # type: ignore[arg-type]
        assert c.list("configmaps", "doomed")["items"] == []


def test_watch_after_compaction_is_410_and_relist_recovers(api: ApiServerForTest) -> None:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(str(api.kubeconfig), client_configuration=cfg)
    with k8s.ApiClient(cfg) as raw:
        core = k8s.CoreV1Api(raw)
        old_rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(3):
            core.create_namespaced_config_map(
                "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"old-{i}"))
            )
        time.sleep(1.5)  # at least two compaction ticks: old_rv is gone from etcd and the cache
        core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="tick")))
        time.sleep(1.2)
        with pytest.raises(k8s.ApiException) as e:
            for _ in k8s_watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=old_rv, timeout_seconds=2
            ):
                pass
        assert e.value.status == 410
        # the client's recovery: list again, then watch from the new list's resourceVersion
        fresh = core.list_namespaced_config_map("default")
        assert {"old-0", "old-1", "old-2", "tick"} <= {cm.metadata.name for cm in fresh.items}
        w = k8s_watch.Watch()
        seen = []
        core.create_namespaced_config_map("default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="after")))
        for ev in w.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=fresh.metadata.resource_version,
            timeout_seconds=3,
        ):
            seen.append((ev["type"], ev["object"].metadata.name))
            w.stop()
        assert seen == [("ADDED", "after")]
    with api.client() as c, pytest.raises(Gone):
        list(c.watch("configmaps", "default", resource_version=old_rv, timeout_seconds=1))
    r = api.http(
        "GET", f"/api/v1/namespaces/default/configmaps?resourceVersion={old_rv}&resourceVersionMatch=Exact"
    )
    assert r.status_code == 410 and r.json()["reason"] == "Expired"
