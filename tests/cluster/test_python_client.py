"""The official `kubernetes` Python client (32.x) and netlab's own client against our apiserver."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest
import requests
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from netlab.cluster.client import ApiClient
from netlab.cluster.status import ApiError
from tests.cluster.conftest import ApiServerForTest, apiserver_fixture

pytestmark = pytest.mark.etcd

api = apiserver_fixture()


def pod(name: str, **labels: str) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels or None),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox")]),
    )


def test_list_and_watch_from_resource_version(core: k8s.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("py-a", app="py"))
    listed = core.list_namespaced_pod("default", label_selector="app=py")
    assert [p.metadata.name for p in listed.items] == ["py-a"]
    rv = listed.metadata.resource_version
    core.create_namespaced_pod("default", pod("py-b", app="py"))
    core.patch_namespaced_pod("py-a", "default", {"metadata": {"labels": {"seen": "yes"}}})
    core.delete_namespaced_pod("py-b", "default")
    events = []
    w = k8s_watch.Watch()
    for ev in w.stream(
        core.list_namespaced_pod, "default", label_selector="app=py", resource_version=rv, timeout_seconds=2
    ):
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("ADDED", "py-b"), ("MODIFIED", "py-a"), ("DELETED", "py-b")]


def test_stale_update_is_409(core: k8s.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("py-stale"))
    mine = core.read_namespaced_pod("py-stale", "default")
    theirs = core.read_namespaced_pod("py-stale", "default")
    theirs.metadata.labels = {"by": "them"}
    core.replace_namespaced_pod("py-stale", "default", theirs)
    mine.metadata.labels = {"by": "me"}
    with pytest.raises(k8s.ApiException) as e:
        core.replace_namespaced_pod("py-stale", "default", mine)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    assert core.read_namespaced_pod("py-stale", "default").metadata.labels == {"by": "them"}
    with pytest.raises(k8s.ApiException) as e:
        core.create_namespaced_pod("default", pod("py-stale"))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"


def test_binding_and_status(core: k8s.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("py-bind"))
    body = k8s.V1Binding(
        metadata=k8s.V1ObjectMeta(name="py-bind"), target=k8s.V1ObjectReference(kind="Node", name="node1")
    )
    resp = core.create_namespaced_pod_binding("py-bind", "default", body, _preload_content=False)
    assert resp.status == 201
    got = core.read_namespaced_pod("py-bind", "default")
    assert got.spec.node_name == "node1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in got.status.conditions)
    with pytest.raises(k8s.ApiException) as e:
        core.create_namespaced_pod_binding("py-bind", "default", body, _preload_content=False)
    assert e.value.status == 409
    core.patch_namespaced_pod_status(
        "py-bind", "default", {"status": {"phase": "Running", "podIP": "10.244.1.9"}}
    )
    got = core.read_namespaced_pod("py-bind", "default")
    assert got.status.phase == "Running" and got.status.pod_ip == "10.244.1.9"
    # a main-resource write does not touch status
    core.patch_namespaced_pod(
        "py-bind", "default", {"status": {"phase": "Failed"}, "metadata": {"labels": {"a": "b"}}}
    )
    assert core.read_namespaced_pod("py-bind", "default").status.phase == "Running"


def test_limit_and_continue(core: k8s.CoreV1Api) -> None:
    for i in range(7):
        core.create_namespaced_config_map(
            "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"page-{i}", labels={"page": "yes"}))
        )
    names, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map("default", label_selector="page=yes", limit=3, _continue=token)
        names += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"page-{i}" for i in range(7)] and pages == 3


def test_thousand_concurrent_conflicting_updates_lose_nothing(api: ApiServerForTest) -> None:
    """1,000 clients update one object at once: every write lands exactly once."""
    with api.client() as c:
        c.create("configmaps", {"metadata": {"name": "counter", "namespace": "default"}, "data": {"n": "0"}})
    session = requests.Session()
    session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=64, pool_maxsize=64))
    headers = {"Authorization": f"Bearer {api.token('admin')}"}
    url = f"{api.url}/api/v1/namespaces/default/configmaps/counter"

    def annotate(i: int) -> int:
        # merge patches: the server re-applies each on conflict, so all must land
        r = session.patch(
            url,
            data=json.dumps({"metadata": {"annotations": {f"w{i}": "1"}}}),
            headers={**headers, "Content-Type": "application/merge-patch+json"},
            verify=str(api.ca),
            timeout=120,
        )
        return r.status_code

    def increment(i: int) -> int:
        # read-modify-write with resourceVersion: 409 on a stale write, then retry
        conflicts = 0
        while True:
            cur = session.get(url, headers=headers, verify=str(api.ca), timeout=120).json()
            cur["data"]["n"] = str(int(cur["data"]["n"]) + 1)
            r = session.put(
                url,
                data=json.dumps(cur),
                headers={**headers, "Content-Type": "application/json"},
                verify=str(api.ca),
                timeout=120,
            )
            if r.status_code == 200:
                return conflicts
            assert r.status_code == 409 and r.json()["reason"] == "Conflict"
            conflicts += 1

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(annotate, range(1000)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        conflicts = sum(pool.map(increment, range(100)))
    assert codes == [200] * 1000
    final = session.get(url, headers=headers, verify=str(api.ca), timeout=30).json()
    assert len([k for k in final["metadata"]["annotations"] if k.startswith("w")]) == 1000
    assert final["data"]["n"] == "100"
    assert conflicts > 0  # the increments really raced


def test_unauthenticated_and_read_only(api: ApiServerForTest) -> None:
    for path in ("/api/v1/namespaces/default/pods", "/api", "/version", "/apis/apps/v1/deployments"):
        r = api.http("GET", path, token=None)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
        assert "items" not in r.text and "v1.32" not in r.text
    r = requests.get(
        api.url + "/api/v1/pods",
        headers={"Authorization": "Bearer not-a-token"},
        verify=str(api.ca),
        timeout=10,
    )
    assert r.status_code == 401
    assert api.http("GET", "/api/v1/namespaces/default/pods", token="viewer").status_code == 200
    r = api.http(
        "POST", "/api/v1/namespaces/default/configmaps", token="viewer", body={"metadata": {"name": "nope"}}
    )
    assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
    r = api.http("DELETE", "/api/v1/namespaces/default/configmaps/counter", token="viewer")
    assert r.status_code == 403
    assert api.http("GET", "/api/v1/namespaces/default/configmaps/nope").status_code == 404
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(api.url + "/version", timeout=10)  # our CA is not in the system trust store
    assert api.http("GET", "/healthz", token=None).text == "ok"


def test_netlab_client(api: ApiServerForTest, tmp_path: Path) -> None:
    with ApiClient.from_kubeconfig(api.kubeconfig) as c:
        created = c.create(
            "leases.coordination.k8s.io",
            {
                "metadata": {"name": "node1", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 40},
            },
        )
        rv = created["metadata"]["resourceVersion"]
        c.patch("leases", "node1", {"spec": {"renewTime": "2025-01-01T00:00:00.000000Z"}}, "kube-node-lease")
        got = c.get("leases", "node1", "kube-node-lease")
        assert got["spec"]["holderIdentity"] == "node1" and got["metadata"]["resourceVersion"] != rv
        events = c.watch("leases", "kube-node-lease", resource_version=rv, timeout_seconds=1)
        assert [e.type for e in events] == ["MODIFIED"]
        with pytest.raises(ApiError) as e:
            c.update("leases", {**got, "metadata": {**got["metadata"], "resourceVersion": rv}})
        assert e.value.code == 409
        c.delete("leases", "node1", "kube-node-lease")
        with pytest.raises(ApiError) as e:
            c.get("leases", "node1", "kube-node-lease")
        assert e.value.code == 404
