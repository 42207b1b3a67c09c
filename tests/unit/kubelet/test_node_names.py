"""The Node object the kubelet registers, and how pods are named on the node (pure)."""

from __future__ import annotations

from netlab.cluster.kubelet import node
from netlab.cluster.kubelet.runtime import sandbox_name

FACTS = node.NodeFacts(
    name="node2",
    internal_ip="192.168.56.12",
    pod_cidr="10.244.2.0/24",
    port=40123,
    url="https://127.0.0.1:40123",
    cpu="2",
    memory="24000000Ki",
    storage="100000000Ki",
)


def test_node_object_has_what_kubectl_and_the_scheduler_read():
    obj = node.node_object(FACTS, "2026-11-30T11:00:00Z")
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == "node2"
    assert obj["metadata"]["annotations"][node.KUBELET_URL_ANNOTATION] == "https://127.0.0.1:40123"
    assert obj["spec"] == {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}
    st = obj["status"]
    assert st["capacity"] == st["allocatable"] == {
        "cpu": "2", "memory": "24000000Ki", "pods": "110", "ephemeral-storage": "100000000Ki",
    }  # fmt: skip
    assert st["addresses"] == [
        {"type": "InternalIP", "address": "192.168.56.12"},
        {"type": "Hostname", "address": "node2"},
    ]
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 40123}}
    assert len(st["nodeInfo"]) == 10 and all(isinstance(v, str) for v in st["nodeInfo"].values())
    ready = [c for c in st["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True" and ready[0]["reason"] == "KubeletReady"
    assert {c["type"] for c in st["conditions"]} == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}


def test_conditions_keep_transition_times_and_refresh_heartbeats():
    before = node.conditions(True, "2026-11-30T11:00:00Z")
    after = node.conditions(True, "2026-11-30T11:00:10Z", before)
    assert all(c["lastTransitionTime"] == "2026-11-30T11:00:00Z" for c in after)
    assert all(c["lastHeartbeatTime"] == "2026-11-30T11:00:10Z" for c in after)
    down = node.conditions(False, "2026-11-30T11:00:20Z", after)
    ready = next(c for c in down if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("False", "2026-11-30T11:00:20Z")


def test_sandbox_names_are_the_pod_names_where_possible():
    assert sandbox_name("default", "web-7d9c-abcde") == "web-7d9c-abcde"
    assert sandbox_name("shop", "web") == "shop-web"
    long = sandbox_name("default", "a" * 70)
    assert len(long) <= 63 and long.startswith("a" * 20) and long != sandbox_name("default", "a" * 71)
    dotted = sandbox_name("default", "web.example")
    assert dotted.startswith("web-example-") and len(dotted) == len("web-example-") + 8
    # a lab node's name is not a sandbox name (netlab exec NAME must stay unambiguous)
    assert sandbox_name("default", "node1", frozenset({"node1"})).startswith("node1-")
    assert sandbox_name("default", "x") == sandbox_name("default", "x")


def test_metrics_render_and_parse_back():
    from netlab.cluster.kubelet.metrics import Metrics, parse

    m = Metrics()
    m.observe("kubelet_network_plugin_operations_duration_seconds", 0.25, "set_up_pod")
    m.observe("kubelet_network_plugin_operations_duration_seconds", 0.5, "set_up_pod")
    with m.timed("kubelet_pod_start_duration_seconds"):
        pass
    text = m.render()
    assert "# TYPE kubelet_network_plugin_operations_duration_seconds histogram" in text
    values = parse(text)
    assert values[("kubelet_network_plugin_operations_duration_seconds_sum", "set_up_pod")] == 0.75
    assert values[("kubelet_network_plugin_operations_duration_seconds_count", "set_up_pod")] == 2
    assert values[("kubelet_pod_start_duration_seconds_count", "")] == 1
