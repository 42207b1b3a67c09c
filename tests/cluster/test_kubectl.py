"""Real kubectl v1.32 against our apiserver on a real etcd: the everyday commands."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import KUBECTL, ApiServerForTest, apiserver_fixture
from tests.unit.cluster import test_protowire as pw

pytestmark = pytest.mark.etcd

api = apiserver_fixture()

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: one}, {name: KEEP, value: "1"}]
      - name: side
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
"""


def test_version_and_api_resources(api: ApiServerForTest) -> None:
    out = json.loads(api.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.32")
    res = api.kubectl("api-resources").stdout
    lines = {line.split()[0]: line for line in res.splitlines()[1:]}
    assert {
        "pods",
        "services",
        "deployments",
        "replicasets",
        "endpointslices",
        "leases",
        "nodes",
        "secrets",
    } <= set(lines)
    assert " po " in lines["pods"] and "apps/v1" in lines["deployments"]


def test_namespaces_exist_at_start(api: ApiServerForTest) -> None:
    names = api.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
        "namespace/kube-node-lease",
    } <= set(names)


def test_apply_twice_with_a_change(api: ApiServerForTest) -> None:
    out = api.kubectl("apply", "-f", "-", input=APP).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    svc = json.loads(api.kubectl("get", "svc", "web", "-o", "json").stdout)
    first_ip, first_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    # the change: a new image, one env var dropped, one container removed, a label added
    changed = APP.replace("nginx:1.25", "nginx:1.26").replace(', {name: KEEP, value: "1"}', "")
    changed = changed.replace("      - name: side\n        image: busybox:1.36\n", "")
    changed = changed.replace(
        "metadata: {name: web}\nspec:\n  type", "metadata: {name: web, labels: {v: '2'}}\nspec:\n  type"
    )
    out = api.kubectl("apply", "-f", "-", input=changed).stdout
    assert "deployment.apps/web configured" in out and "service/web configured" in out
    dep = json.loads(api.kubectl("get", "deploy", "web", "-o", "json").stdout)
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx"]
    assert containers[0]["image"] == "nginx:1.26" and containers[0]["env"] == [
        {"name": "MODE", "value": "one"}
    ]
    assert dep["metadata"]["generation"] == 2
    svc = json.loads(api.kubectl("get", "svc", "web", "-o", "json").stdout)
    assert svc["metadata"]["labels"] == {"v": "2"}
    assert (svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]) == (first_ip, first_port)
    again = api.kubectl("apply", "-f", "-", input=changed).stdout
    assert "deployment.apps/web unchanged" in again and "service/web unchanged" in again


def test_create_and_get_forms(api: ApiServerForTest) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "getme", "labels": {"tier": "fe"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    assert "pod/getme created" in api.kubectl("create", "-f", "-", input=json.dumps(pod)).stdout
    dup = api.kubectl("create", "-f", "-", input=json.dumps(pod), ok=False)
    assert dup.returncode != 0 and "AlreadyExists" in dup.stderr
    # a typed generator: kubectl sends this one as protobuf
    assert "namespace/other-ns created" in api.kubectl("create", "namespace", "other-ns").stdout
    api.kubectl(
        "create",
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    other = dict(pod, metadata={"name": "elsewhere", "namespace": "other", "labels": {"tier": "be"}})
    api.kubectl("create", "-f", "-", input=json.dumps(other))

    default = api.kubectl("get", "pods").stdout.splitlines()
    assert default[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    row = next(line.split() for line in default if line.startswith("getme"))
    assert row[1:4] == ["0/1", "Pending", "0"]
    wide = api.kubectl("get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    every = api.kubectl("get", "pods", "-A").stdout.splitlines()
    assert every[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == ["other", "elsewhere"] for line in every)
    assert any(line.split()[:2] == ["default", "getme"] for line in every)
    labelled = api.kubectl("get", "pods", "-A", "-l", "tier=be", "-o", "name").stdout.split()
    assert labelled == ["pod/elsewhere"]
    as_yaml = yaml.safe_load(api.kubectl("get", "pod", "getme", "-o", "yaml").stdout)
    assert as_yaml["spec"]["restartPolicy"] == "Always" and as_yaml["status"]["phase"] == "Pending"
    assert int(as_yaml["metadata"]["resourceVersion"]) > 0 and as_yaml["metadata"]["uid"]
    svc = api.kubectl("get", "svc").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert any(line.split()[:2] == ["kubernetes", "ClusterIP"] for line in svc)


def get_json(api: ApiServerForTest, *what: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(api.kubectl("get", *what, "-o", "json").stdout)
    return out


def test_typed_generators_send_protobuf(api: ApiServerForTest, tmp_path: Path) -> None:
    """`kubectl create namespace|configmap|deployment|service` encode their object as protobuf."""
    assert "namespace/gen-ns created" in api.kubectl("create", "namespace", "gen-ns").stdout
    ns = get_json(api, "namespace", "gen-ns")
    assert ns["status"]["phase"] == "Active" and ns["metadata"]["labels"] == {
        "kubernetes.io/metadata.name": "gen-ns"
    }

    (tmp_path / "blob").write_bytes(b"\x00\x01\xffraw")
    (tmp_path / "note.txt").write_text("hello\n")
    api.kubectl(
        "create",
        "configmap",
        "gen-cm",
        "-n",
        "gen-ns",
        "--from-literal=a=b",
        f"--from-file={tmp_path / 'blob'}",
        f"--from-file={tmp_path / 'note.txt'}",
    )
    cm = get_json(api, "configmap", "gen-cm", "-n", "gen-ns")
    assert cm["data"] == {"a": "b", "note.txt": "hello\n"}
    assert base64.b64decode(cm["binaryData"]["blob"]) == b"\x00\x01\xffraw"

    api.kubectl("create", "deployment", "gen-web", "--image=nginx:1.14", "--replicas=2", "--port=80")
    dep = get_json(api, "deployment", "gen-web")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "gen-web"}}
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "gen-web"}
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("nginx", "nginx:1.14")
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]

    api.kubectl("expose", "deployment", "gen-web", "--port=80", "--target-port=8080")
    svc = get_json(api, "service", "gen-web")
    assert svc["spec"]["selector"] == {"app": "gen-web"} and svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]

    api.kubectl("create", "service", "nodeport", "gen-np", "--tcp=80:8080")
    svc = get_json(api, "service", "gen-np")
    (port,) = svc["spec"]["ports"]
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["selector"] == {"app": "gen-np"}
    assert (port["name"], port["port"], port["targetPort"], port["protocol"]) == ("80-8080", 80, 8080, "TCP")
    assert 30000 <= port["nodePort"] <= 32767

    api.kubectl("create", "service", "clusterip", "gen-headless", "--clusterip=None", "--tcp=5678:8080")
    assert get_json(api, "service", "gen-headless")["spec"]["clusterIP"] == "None"

    out = api.kubectl("create", "deployment", "gen-dry", "--image=nginx", "--dry-run=server", "-o", "json")
    assert json.loads(out.stdout)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
    assert api.kubectl("get", "deployment", "gen-dry", ok=False).returncode != 0

    api.kubectl("run", "gen-pod", "--image=busybox", "--port=8080", "--labels=a=b", "--env=X=1")
    pod = get_json(api, "pod", "gen-pod")
    assert pod["metadata"]["labels"] == {"a": "b"}
    (c,) = pod["spec"]["containers"]
    assert (c["name"], c["image"], c["env"]) == ("gen-pod", "busybox", [{"name": "X", "value": "1"}])
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_protobuf_bodies_outside_the_table_are_refused(api: ApiServerForTest) -> None:
    """A field the decoder does not know is a 415 naming it, never silently dropped."""
    pb = "application/vnd.kubernetes.protobuf"
    container = pw.ld(1, "c") + pw.ld(2, "busybox") + pw.ld(99, "a future field")
    pod = pw.ld(1, pw.ld(1, "future")) + pw.ld(2, pw.ld(2, container))
    resp = api.http(
        "POST", "/api/v1/namespaces/default/pods", body=pw.envelope("v1", "Pod", pod), content_type=pb
    )
    assert resp.status_code == 415, resp.text
    st = resp.json()
    assert (st["kind"], st["reason"], st["code"]) == ("Status", "UnsupportedMediaType", 415)
    assert "field 99 of Container (at spec.containers[0])" in st["message"]
    assert "kubectl create -f" in st["message"]
    assert api.kubectl("get", "pod", "future", ok=False).returncode != 0

    resp = api.http("POST", "/api/v1/namespaces/default/pods", body=b"k8s\x00\x0a\x05", content_type=pb)
    assert resp.status_code == 400 and resp.json()["reason"] == "BadRequest", resp.text
    assert "\n" not in resp.json()["message"]


def test_describe(api: ApiServerForTest) -> None:
    api.kubectl("apply", "-f", "-", input=APP)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "desc", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]},
    }
    api.kubectl("apply", "-f", "-", input=json.dumps(pod))
    out = api.kubectl("describe", "pod", "desc").stdout
    assert "Name:" in out and "desc" in out and "Status:       Pending" in out and "nginx:1.25" in out
    assert "80/TCP" in out
    out = api.kubectl("describe", "svc", "web").stdout
    assert "Type:                     NodePort" in out and "Selector:                 app=web" in out
    assert "NodePort:" in out and "http  " in out


def test_label_and_three_patch_types(api: ApiServerForTest) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "patchme"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "busybox"}]},
    }
    api.kubectl("apply", "-f", "-", input=json.dumps(pod))
    assert "labeled" in api.kubectl("label", "pod", "patchme", "env=prod").stdout
    dup = api.kubectl("label", "pod", "patchme", "env=dev", ok=False)
    assert dup.returncode != 0  # kubectl refuses to overwrite without --overwrite
    api.kubectl("label", "pod", "patchme", "env=dev", "--overwrite")
    api.kubectl("patch", "pod", "patchme", "-p", '{"spec":{"containers":[{"name":"d","image":"busybox:2"}]}}')
    api.kubectl("patch", "pod", "patchme", "--type", "merge", "-p", '{"metadata":{"annotations":{"a":"b"}}}')
    api.kubectl(
        "patch",
        "pod",
        "patchme",
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:3"}]',
    )
    got = json.loads(api.kubectl("get", "pod", "patchme", "-o", "json").stdout)
    assert got["metadata"]["labels"] == {"env": "dev"} and got["metadata"]["annotations"]["a"] == "b"
    assert [(c["name"], c["image"]) for c in got["spec"]["containers"]] == [
        ("c", "busybox:3"),
        ("d", "busybox:2"),
    ]
    api.kubectl("label", "pod", "patchme", "env-")
    got = json.loads(api.kubectl("get", "pod", "patchme", "-o", "json").stdout)
    assert "env" not in (got["metadata"].get("labels") or {})


def test_scale(api: ApiServerForTest) -> None:
    api.kubectl("apply", "-f", "-", input=APP)
    assert "scaled" in api.kubectl("scale", "deployment", "web", "--replicas=5").stdout
    dep = json.loads(api.kubectl("get", "deploy", "web", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 5
    api.kubectl("scale", "deployment", "web", "--replicas=3", "--current-replicas=5")
    stale = api.kubectl("scale", "deployment", "web", "--replicas=4", "--current-replicas=5", ok=False)
    assert stale.returncode != 0
    assert json.loads(api.kubectl("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 3


def test_delete_and_wait(api: ApiServerForTest) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone-soon"}, "data": {"a": "1"}}
    api.kubectl("apply", "-f", "-", input=json.dumps(cm))
    out = api.kubectl("delete", "configmap", "gone-soon", "--wait").stdout
    assert 'configmap "gone-soon" deleted' in out
    missing = api.kubectl("get", "configmap", "gone-soon", ok=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bound"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox"}]},
    }
    api.kubectl("apply", "-f", "-", input=json.dumps(pod))
    # a pod on a node is removed at once only when forced (no kubelet here to confirm)
    api.kubectl("delete", "pod", "bound", "--grace-period=0", "--force", "--wait")
    assert api.kubectl("get", "pod", "bound", ok=False).returncode != 0


def test_get_watch(api: ApiServerForTest) -> None:
    env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "HOME": str(api.base)}
    proc = subprocess.Popen(
        [KUBECTL, "get", "pods", "-l", "watch=me", "--watch", "--output-watch-events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()

    def seen(*words: str) -> bool:
        return any(all(w in line for w in words) for line in list(lines))

    def wait_for(*words: str) -> None:
        deadline = time.monotonic() + 30
        while not seen(*words):
            assert time.monotonic() < deadline, f"kubectl never printed {words}: {lines}"
            time.sleep(0.05)

    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "watched", "labels": {"watch": "me"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        api.kubectl("apply", "-f", "-", input=json.dumps(pod))
        wait_for("ADDED", "watched", "Pending")
        api.kubectl("annotate", "pod", "watched", "x=y")
        wait_for("MODIFIED", "watched")
        api.kubectl("delete", "pod", "watched")
        wait_for("DELETED", "watched")
    finally:
        proc.terminate()
        proc.wait(10)


def test_server_side_apply_creates_then_merges(api: ApiServerForTest) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}
    out = api.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(cm)).stdout
    assert "configmap/ssa serverside-applied" in out
    cm["data"] = {"a": "2", "b": "3"}
    api.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(cm))
    got = json.loads(api.kubectl("get", "cm", "ssa", "-o", "json").stdout)
    assert got["data"] == {"a": "2", "b": "3"}


def test_field_selector_and_events_in_describe(api: ApiServerForTest) -> None:
    for name, node in (("on-a", "node-a"), ("on-b", "node-b")):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }
        api.kubectl("apply", "-f", "-", input=json.dumps(pod))
    names = api.kubectl(
        "get", "pods", "--field-selector", "spec.nodeName=node-a", "-o", "name"
    ).stdout.split()
    assert names == ["pod/on-a"]
    uid = json.loads(api.kubectl("get", "pod", "on-a", "-o", "json").stdout)["metadata"]["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "on-a.1"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "on-a", "uid": uid},
        "reason": "Scheduled",
        "message": "Successfully assigned default/on-a to node-a",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "count": 1,
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:00:00Z",
    }
    api.kubectl("create", "-f", "-", input=json.dumps(event))
    out = api.kubectl("describe", "pod", "on-a").stdout
    assert "Scheduled" in out and "Successfully assigned default/on-a to node-a" in out
    for name in ("on-a", "on-b"):
        api.kubectl("delete", "pod", name, "--grace-period=0", "--force")


def test_logs_come_from_the_kubelet(api: ApiServerForTest) -> None:
    """`kubectl logs` is proxied to the kubelet of the pod's node (here a stand-in on loopback)."""
    seen: list[str] = []

    class Kubelet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append(self.path)
            body = b"line 1\nline 2\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    kubelet = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Kubelet)
    threading.Thread(target=kubelet.serve_forever, daemon=True).start()
    try:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "logs-node",
                "annotations": {"netlab.io/kubelet-url": f"http://127.0.0.1:{kubelet.server_address[1]}"},
            },
        }
        api.kubectl("apply", "-f", "-", input=json.dumps(node))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "talker"},
            "spec": {"nodeName": "logs-node", "containers": [{"name": "c", "image": "busybox"}]},
        }
        api.kubectl("apply", "-f", "-", input=json.dumps(pod))
        assert api.kubectl("logs", "talker", "--tail=2").stdout == "line 1\nline 2\n"
        assert seen and seen[-1].startswith("/containerLogs/default/talker/c?") and "tailLines=2" in seen[-1]
        unbound = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "quiet"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        api.kubectl("apply", "-f", "-", input=json.dumps(unbound))
        refused = api.kubectl("logs", "quiet", ok=False)
        assert refused.returncode != 0 and "does not have a host assigned" in refused.stderr
    finally:
        kubelet.shutdown()
        kubelet.server_close()
