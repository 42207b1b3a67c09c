from __future__ import annotations

import pytest

from netlab.errors import ConfigError
from proxy.model import Endpoint, ServicePort, ServicePortName, Snapshot, usable_endpoints
from proxy.objects import parse_endpoint_slice, parse_service
from tests.unit.proxy.objects import endpoint, endpoint_slice, service

WEB = ServicePortName("default", "web", "http", "TCP")


def svc(**kw) -> ServicePort:
    return ServicePort(name=WEB, cluster_ip="10.96.0.10", port=80, **kw)


def test_usable_prefers_ready_then_serving_terminating():
    ready = Endpoint("10.244.1.2", 8080, "node1")
    draining = Endpoint("10.244.1.3", 8080, "node1", ready=False, serving=True, terminating=True)
    dead = Endpoint("10.244.1.4", 8080, "node1", ready=False, serving=False, terminating=True)
    choice = usable_endpoints(svc(), (ready, draining, dead), "node1")
    assert choice.cluster == (ready,) and choice.reachable == (ready,) and choice.local == ()
    choice = usable_endpoints(svc(), (draining, dead), "node1")
    assert choice.cluster == (draining,) and choice.has_any
    choice = usable_endpoints(svc(), (dead,), "node1")
    assert choice.cluster == () and not choice.has_any


def test_external_local_keeps_cluster_set_for_internal_traffic():
    here = Endpoint("10.244.1.2", 8080, "node1")
    there = Endpoint("10.244.2.2", 8080, "node2")
    s = svc(node_port=30080, external_local=True)
    choice = usable_endpoints(s, (here, there), "node1")
    assert choice.cluster == (here, there) and choice.local == (here,)
    choice = usable_endpoints(s, (there,), "node1")
    assert choice.local == () and choice.has_any


def test_internal_local_only_uses_local_endpoints():
    here = Endpoint("10.244.1.2", 8080, "node1")
    there = Endpoint("10.244.2.2", 8080, "node2")
    choice = usable_endpoints(svc(internal_local=True), (here, there), "node1")
    assert choice.cluster == () and choice.local == (here,) and choice.reachable == (here,)


def test_snapshot_is_immutable_and_compares_by_value():
    a = Snapshot({WEB: svc()}, {WEB: (Endpoint("10.244.1.3", 1), Endpoint("10.244.1.2", 1))})
    b = Snapshot({WEB: svc()}, {WEB: (Endpoint("10.244.1.2", 1), Endpoint("10.244.1.3", 1))})
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.services[WEB] = svc()  # type: ignore[index]


def test_parse_service_ports_and_fields():
    obj = service(
        "web",
        "10.96.0.10",
        [
            {"name": "http", "port": 80, "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        ],
        type="NodePort",
        sessionAffinity="ClientIP",
        externalTrafficPolicy="Local",
    )
    ports = parse_service(obj)
    http = ports[WEB]
    assert (http.port, http.node_port, http.affinity_timeout, http.external_local) == (80, 30080, 10800, True)
    dns = ports[ServicePortName("default", "web", "dns", "UDP")]
    assert dns.protocol == "UDP" and dns.node_port == 30053


def test_headless_and_external_name_are_ignored():
    assert parse_service(service("h", "None")) == {}
    assert parse_service(service("x", "10.96.0.1", type="ExternalName")) == {}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"clusterIP": "10.96.0.300"}, "Service default/web: spec.clusterIP: '10.96.0.300' is not an IPv4"),
        ({"ports": [{"port": 0}]}, "spec.ports[0].port: must be an integer in 1-65535"),
        ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ports[0].protocol: must be one of"),
        ({"type": "NodePort"}, "spec.ports[0].nodePort: is required for type NodePort"),
        ({"sessionAffinity": "Cookie"}, "spec.sessionAffinity: must be None or ClientIP"),
        ({"externalTrafficPolicy": "local"}, "spec.externalTrafficPolicy: must be Cluster or Local"),
        ({"ports": [{"port": 80}, {"port": 81}]}, "spec.ports[0].name: is required when"),
        (
            {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}},
            "timeoutSeconds: must be an integer",
        ),
    ],
)
def test_parse_service_errors_name_the_field(change, message):
    obj = service("web", "10.96.0.10")
    obj["spec"].update(change)
    with pytest.raises(ConfigError, match=None) as e:
        parse_service(obj)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_parse_slice_conditions_and_ports():
    obj = endpoint_slice(
        "web",
        [
            endpoint("10.244.1.2"),
            endpoint("10.244.2.2", "node2", ready=False, terminating=True, serving=True),
        ],
        ports=[{"name": "http", "port": 8080}],
    )
    eps = parse_endpoint_slice(obj)[WEB]
    assert eps[0] == Endpoint("10.244.1.2", 8080, "node1", True, True, False)
    assert eps[1] == Endpoint("10.244.2.2", 8080, "node2", False, True, True)


def test_parse_slice_errors():
    obj = endpoint_slice("web", [endpoint("10.244.1.x")])
    with pytest.raises(ConfigError, match=r"EndpointSlice default/web-abc: endpoints\[0\].addresses\[0\]"):
        parse_endpoint_slice(obj)
    obj = endpoint_slice("web", [endpoint("10.244.1.2")])
    del obj["metadata"]["labels"]
    with pytest.raises(ConfigError, match="kubernetes.io/service-name"):
        parse_endpoint_slice(obj)
