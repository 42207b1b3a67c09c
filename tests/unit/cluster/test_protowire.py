"""The protobuf wire decoder and the Kubernetes envelope, on bytes encoded here by hand."""

from __future__ import annotations

import struct

import pytest

from netlab.cluster import k8sproto, protowire
from netlab.cluster.protowire import I32, I64, LEN, VARINT, DecodeError, Field, UnknownField

# a tiny encoder: just enough of the wire format to build test messages


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers are sign-extended to 64 bits: ten bytes
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def vi(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value)


def ld(number: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return key(number, LEN) + varint(len(raw)) + raw


def f64(number: int, value: int) -> bytes:
    return key(number, I64) + value.to_bytes(8, "little")


def f32(number: int, value: int) -> bytes:
    return key(number, I32) + value.to_bytes(4, "little")


def entry(number: int, k: str, value: bytes | str) -> bytes:
    return ld(number, ld(1, k) + ld(2, value))


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return k8sproto.MAGIC + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + ld(3, "") + ld(4, "")


def meta(name: str, *extra: bytes) -> bytes:
    # what client-go writes for a fresh object: every non-pointer field, zero or not
    return (
        ld(1, name)
        + ld(2, "")
        + ld(3, "")
        + ld(4, "")
        + ld(5, "")
        + ld(6, "")
        + vi(7, 0)
        + ld(8, b"")
        + b"".join(extra)
    )


SCALARS: dict[str, dict[int, Field]] = {
    "S": {
        1: Field("i32", "int32"),
        2: Field("i64", "int64"),
        3: Field("u64", "uint64"),
        4: Field("b", "bool"),
        5: Field("s", "string"),
        6: Field("d", "double"),
        7: Field("f", "float"),
        8: Field("list", "int64", repeated=True),
        9: Field("kept", "int32", pointer=True),
        10: Field("sub", "S"),
    }
}


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**31 - 1, 2**63 - 1, 2**64 - 1])
def test_varints(n: int) -> None:
    assert protowire.read_varint(varint(n), 0) == (n, len(varint(n)))


def test_negative_ints_are_ten_byte_varints() -> None:
    assert len(varint(-1)) == 10
    got = protowire.decode(SCALARS, "S", vi(1, -5) + vi(2, -(2**40)) + vi(3, 2**64 - 1))
    assert got == {"i32": -5, "i64": -(2**40), "u64": 2**64 - 1}


def test_scalars_and_zero_values() -> None:
    data = vi(4, 1) + ld(5, "héllo") + f64(6, int.from_bytes(struct.pack("<d", 2.5), "little"))
    data += f32(7, int.from_bytes(struct.pack("<f", 0.5), "little"))
    assert protowire.decode(SCALARS, "S", data) == {"b": True, "s": "héllo", "d": 2.5, "f": 0.5}
    # zero values are left out (Go's omitempty) unless the field is a pointer
    zeros = vi(1, 0) + vi(4, 0) + ld(5, "") + vi(9, 0)
    assert protowire.decode(SCALARS, "S", zeros) == {"kept": 0}


def test_nested_messages_are_kept_even_empty() -> None:
    data = ld(10, vi(1, 7) + ld(10, b""))
    assert protowire.decode(SCALARS, "S", data) == {"sub": {"i32": 7, "sub": {}}}


def test_repeated_packed_and_unpacked() -> None:
    unpacked = vi(8, 1) + vi(8, -2) + vi(8, 300)
    packed = ld(8, varint(1) + varint(-2) + varint(300))
    want = {"list": [1, -2, 300]}
    assert protowire.decode(SCALARS, "S", unpacked) == want
    assert protowire.decode(SCALARS, "S", packed) == want
    assert protowire.decode(SCALARS, "S", vi(8, 1) + ld(8, varint(2))) == {"list": [1, 2]}


def test_unknown_field_is_refused() -> None:
    with pytest.raises(UnknownField) as e:
        protowire.decode(SCALARS, "S", ld(10, vi(1, 1) + vi(99, 1)))
    assert (e.value.message, e.value.number, e.value.path) == ("S", 99, "sub")


@pytest.mark.parametrize(
    "data",
    [
        b"\x08",  # a key and no value
        b"\x08\xff",  # a varint cut short
        b"\x08" + b"\xff" * 10 + b"\x01",  # a varint longer than ten bytes
        ld(5, "abc")[:-1],  # fewer bytes than the length says
        f64(6, 1)[:-1],
        f32(7, 1)[:-2],
        key(5, 3),  # group wire types are not proto2-with-Kubernetes
        key(0, VARINT) + varint(1),  # field number 0
        vi(5, 1),  # a string sent as a varint
        ld(4, "x"),  # a bool sent length-delimited
        ld(5, b"\xff\xfe"),  # a string that is not UTF-8
    ],
)
def test_malformed_input(data: bytes) -> None:
    with pytest.raises(DecodeError):
        protowire.decode(SCALARS, "S", data)


def test_every_message_the_schema_names_is_defined() -> None:
    for message, fields in k8sproto.SCHEMA.items():
        for number, f in fields.items():
            assert number > 0
            known = f.type in protowire.SCALARS or f.type in protowire.SPECIAL or f.type in k8sproto.SCHEMA
            assert known, f"{message}.{f.name}: {f.type}"
    for message in k8sproto.KINDS.values():
        assert k8sproto.SCHEMA[message][1].name == "metadata"


def test_a_deployment_as_kubectl_sends_it() -> None:
    labels = entry(11, "app", "web")
    container = (
        ld(1, "nginx")
        + ld(2, "nginx:1.14")
        + ld(5, "")
        + ld(6, ld(1, "") + vi(2, 0) + vi(3, 80) + ld(4, "") + ld(5, ""))
        + ld(7, ld(1, "X") + ld(2, "1"))
        + ld(8, entry(1, "cpu", ld(1, "500m")))
        + ld(10, ld(1, ld(2, ld(1, "/healthz") + ld(2, vi(1, 1) + ld(3, "http")))) + vi(4, 5))
        + ld(19, ld(2, ld(1, ld(1, "cfg")) + vi(2, 1)))
        + vi(16, 0)
    )
    pod_spec = ld(2, container) + ld(3, "") + vi(4, 0) + ld(14, ld(4, varint(1) + varint(2)))
    template = ld(1, ld(1, "") + ld(8, b"") + labels) + ld(2, pod_spec)
    spec = (
        vi(1, 0)
        + ld(2, entry(1, "app", "web"))
        + ld(3, template)
        + ld(4, ld(1, "RollingUpdate") + ld(2, ld(1, vi(1, 0) + vi(2, 0)) + ld(2, vi(1, 1) + ld(3, "50%"))))
        + vi(5, 0)
        + vi(7, 0)
    )
    when = ld(9, vi(1, 1_700_000_000) + vi(2, 5))
    raw = ld(1, meta("web", labels, when)) + ld(2, spec) + ld(3, vi(1, 0) + vi(2, 0))
    got = k8sproto.decode_body(envelope("apps/v1", "Deployment", raw))
    assert got == {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "web",
            "creationTimestamp": None,
            "labels": {"app": "web"},
            "deletionTimestamp": "2023-11-14T22:13:20Z",
        },
        "spec": {
            "replicas": 0,  # a pointer: zero is what was asked
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.14",
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "X", "value": "1"}],
                            "resources": {"limits": {"cpu": "500m"}},
                            # the probe's handler is an embedded struct: inlined
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "envFrom": [{"configMapRef": {"name": "cfg", "optional": True}}],
                        }
                    ],
                    "terminationGracePeriodSeconds": 0,
                    "securityContext": {"supplementalGroups": [1, 2]},
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}},
        },
        "status": {},
    }


def test_configmap_bytes_are_base64_and_service_target_ports() -> None:
    cm = ld(1, meta("c")) + entry(2, "a", "b") + entry(3, "bin", b"\x00\xff") + vi(4, 0)
    got = k8sproto.decode_body(envelope("v1", "ConfigMap", cm))
    assert got["data"] == {"a": "b"} and got["binaryData"] == {"bin": "AP8="} and got["immutable"] is False
    port = ld(1, "80-8080") + ld(2, "TCP") + vi(3, 80) + ld(4, vi(1, 0) + vi(2, 8080) + ld(3, "")) + vi(5, 0)
    unset = ld(2, "TCP") + vi(3, 81) + ld(4, vi(1, 0) + vi(2, 0) + ld(3, ""))
    svc = ld(1, meta("s")) + ld(2, ld(1, port) + ld(1, unset) + entry(2, "app", "s") + ld(4, "NodePort"))
    got = k8sproto.decode_body(envelope("v1", "Service", svc))
    assert got["spec"] == {
        "ports": [
            {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
            {"protocol": "TCP", "port": 81},  # a zero targetPort is unset: defaulted to the port
        ],
        "selector": {"app": "s"},
        "type": "NodePort",
    }


def test_secret_as_kubectl_create_secret_sends_it() -> None:
    data = entry(2, "tls.crt", b"\x00cert") + entry(2, "tls.key", "key")
    sec = ld(1, meta("t")) + data + ld(3, "kubernetes.io/tls") + entry(4, "extra", "plain") + vi(5, 1)
    got = k8sproto.decode_body(envelope("v1", "Secret", sec))
    assert got == {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "t", "creationTimestamp": None},
        "data": {"tls.crt": "AGNlcnQ=", "tls.key": "a2V5"},
        "type": "kubernetes.io/tls",
        "stringData": {"extra": "plain"},
        "immutable": True,
    }
    # `kubectl create secret generic` leaves the type empty: the apiserver defaults it
    got = k8sproto.decode_body(envelope("v1", "Secret", ld(1, meta("g")) + entry(2, "a", "b") + ld(3, "")))
    assert "type" not in got and got["data"] == {"a": "Yg=="}


def test_unknown_kind_and_field_are_unsupported_with_their_names() -> None:
    with pytest.raises(k8sproto.Unsupported, match=r"kind PersistentVolume \(v1\)"):
        k8sproto.decode_body(envelope("v1", "PersistentVolume", ld(1, meta("pv"))))
    pod = ld(1, meta("p")) + ld(2, ld(2, ld(1, "c") + ld(99, "new")))
    with pytest.raises(k8sproto.Unsupported) as e:
        k8sproto.decode_body(envelope("v1", "Pod", pod))
    assert "Pod has field 99 of Container (at spec.containers[0])" in str(e.value)
    with pytest.raises(k8sproto.Unsupported, match="content encoding 'gzip'"):
        k8sproto.decode_body(k8sproto.MAGIC + ld(1, ld(1, "v1") + ld(2, "Pod")) + ld(3, "gzip"))


def test_envelope_errors() -> None:
    with pytest.raises(DecodeError, match="prefix"):
        k8sproto.decode_body(b'{"kind": "Pod"}')
    with pytest.raises(DecodeError):
        k8sproto.decode_body(envelope("v1", "Pod", ld(1, meta("p")))[:-6])


def test_every_served_kind_has_a_message() -> None:
    from netlab.cluster import resources

    assert {(r.api_version, r.kind) for r in resources.RESOURCES} == set(k8sproto.KINDS)


def test_node_agent_kinds() -> None:
    renew = ld(4, vi(1, 1_700_000_000) + vi(2, 123_456_789))
    lease = ld(1, meta("node1")) + ld(2, ld(1, "node1") + vi(2, 40) + renew + vi(5, 0))
    got = k8sproto.decode_body(envelope("coordination.k8s.io/v1", "Lease", lease))
    assert got["spec"] == {
        "holderIdentity": "node1",
        "leaseDurationSeconds": 40,
        "renewTime": "2023-11-14T22:13:20.123456Z",  # MicroTime keeps microseconds
        "leaseTransitions": 0,
    }
    endpoint = (
        ld(1, "10.244.1.5") + ld(2, vi(1, 1) + vi(2, 1) + vi(3, 0)) + ld(4, ld(1, "Pod") + ld(3, "web-1"))
    )
    endpoint += ld(6, "node1")
    port = ld(1, "") + ld(2, "TCP") + vi(3, 80)
    eps = ld(1, meta("web-abc")) + ld(2, endpoint) + ld(3, port) + ld(4, "IPv4")
    got = k8sproto.decode_body(envelope("discovery.k8s.io/v1", "EndpointSlice", eps))
    assert got["endpoints"] == [
        {
            "addresses": ["10.244.1.5"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "name": "web-1"},
            "nodeName": "node1",
        }
    ]
    assert got["ports"] == [{"name": "", "protocol": "TCP", "port": 80}] and got["addressType"] == "IPv4"
    status = entry(1, "cpu", ld(1, "2")) + ld(5, ld(1, "InternalIP") + ld(2, "192.168.56.11"))
    status += ld(6, ld(1, vi(1, 10250))) + ld(7, ld(10, "amd64"))
    node = ld(1, meta("node1")) + ld(2, ld(1, "10.244.1.0/24") + ld(7, "10.244.1.0/24")) + ld(3, status)
    got = k8sproto.decode_body(envelope("v1", "Node", node))
    assert got["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    assert got["status"] == {
        "capacity": {"cpu": "2"},
        "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"architecture": "amd64"},
    }
    event = ld(1, meta("web.1")) + ld(2, ld(1, "Pod") + ld(3, "web")) + ld(3, "Scheduled") + vi(8, 1)
    event += ld(10, b"") + ld(5, ld(1, "default-scheduler"))
    got = k8sproto.decode_body(envelope("v1", "Event", event))
    assert (
        got["eventTime"] is None and got["count"] == 1 and got["source"] == {"component": "default-scheduler"}
    )
