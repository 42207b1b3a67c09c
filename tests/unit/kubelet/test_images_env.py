"""Image resolution and container environments (pure)."""

from __future__ import annotations

import base64
import os
import sys

import pytest

from netlab.cluster.kubelet import envvars, images
from netlab.cluster.kubelet.envvars import ConfigError, PodContext


def test_repository_names():
    assert images.repository("nginx:1.14") == "nginx"
    assert images.repository("docker.io/library/nginx:1.14@sha256:abc") == "nginx"
    assert images.repository("netlab/echo:v2") == "netlab/echo"
    assert images.repository("registry.k8s.io/echoserver:1.10") == "registry.k8s.io/echoserver"
    assert images.repository("localhost:5000/app") == "localhost:5000/app"


def test_echo_image_serves_the_declared_ports_and_takes_args():
    prog = images.resolve({"image": "netlab/echo", "ports": [{"containerPort": 8080}, {"containerPort": 53}]})
    assert prog.argv == [
        sys.executable,
        "-I",
        "-S",
        str(images.ECHO_SCRIPT),
        "--port",
        "8080",
        "--port",
        "53",
    ]
    assert not prog.stand_in
    prog = images.resolve({"image": "netlab/echo:1", "args": ["--name", "x"]})
    assert prog.argv[-4:] == ["--port", "8080", "--name", "x"]


def test_a_command_runs_the_node_program_and_unknown_images_get_echo():
    assert images.resolve({"image": "busybox", "command": ["sleep"], "args": ["60"]}).argv == ["sleep", "60"]
    assert images.resolve({"image": "busybox", "args": ["sleep", "60"]}).argv == ["sleep", "60"]
    assert images.resolve({"image": "netlab/echo", "command": ["true"]}).argv == ["true"]
    nginx = images.resolve({"image": "nginx:1.14", "ports": [{"containerPort": 8000}]})
    assert nginx.stand_in and nginx.argv[-2:] == ["--port", "8000"] and "nginx:1.14" in nginx.note
    # no declared port: where the image is known to listen, else the echo default
    assert images.resolve({"image": "nginx"}).argv[-2:] == ["--port", "80"]
    assert images.resolve({"image": "example/unknown"}).argv[-2:] == ["--port", "8080"]


def test_expansion_follows_kubernetes_rules():
    env = {"A": "1", "B": "two"}
    assert envvars.expand("$(A)-$(B)", env) == "1-two"
    assert envvars.expand("$(C) stays", env) == "$(C) stays"
    assert envvars.expand("$$(A) escaped, $$ too", env) == "$(A) escaped, $ too"
    assert envvars.expand("unterminated $(A", env) == "unterminated $(A"
    assert envvars.expand("$A plain", env) == "$A plain"


POD = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
    "spec": {"nodeName": "node1", "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
}
NO_SECRETS = {}.get
SECRETS = {
    "creds": {
        "metadata": {"name": "creds", "namespace": "shop"},
        "data": {
            "password": base64.b64encode(b"s3cr3t").decode(),
            "raw": base64.b64encode(b"\xff\xfea").decode(),
            "bad key": base64.b64encode(b"x").decode(),
        },
    },
    "broken": {"metadata": {"name": "broken", "namespace": "shop"}, "data": {"k": "not base64!"}},
    "nul": {
        "metadata": {"name": "nul", "namespace": "shop"},
        "data": {"k": base64.b64encode(b"a\0b").decode()},
    },
}
SERVICES = [
    {
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
    },
    {
        "metadata": {"name": "front-end", "namespace": "shop"},
        "spec": {
            "clusterIP": "10.96.0.10",
            "ports": [{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}],
        },
    },
    {"metadata": {"name": "other", "namespace": "elsewhere"}, "spec": {"clusterIP": "10.96.0.11"}},
    {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None"}},
]


def test_service_links_and_downward_api_and_config_maps():
    cms = {"settings": {"metadata": {"namespace": "shop"}, "data": {"MODE": "fast", "bad key": "x"}}}
    container = {
        "name": "c",
        "resources": {"limits": {"memory": "64Mi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "GREETING", "value": "hi $(MY_NAME)"},
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LATE", "value": "$(MY_NAME) on $(NODE)"},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k", "optional": True}}},
        ],
    }
    ctx = PodContext(POD, pod_ip="10.244.1.5", host_ip="192.168.56.11", node_allocatable={"cpu": "2"})
    env = envvars.container_env(
        ctx, container, cms.get, NO_SECRETS, SERVICES, {"PATH": "/bin", "HOSTNAME": "web"}
    )
    assert env["PATH"] == "/bin" and env["HOSTNAME"] == "web"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert env["FRONT_END_SERVICE_HOST"] == "10.96.0.10"
    assert env["FRONT_END_SERVICE_PORT_HTTP"] == "80"
    assert env["FRONT_END_PORT_53_UDP_PROTO"] == "udp"
    assert "OTHER_SERVICE_HOST" not in env and "HEADLESS_SERVICE_HOST" not in env
    assert env["CFG_MODE"] == "fast" and "CFG_bad key" not in env
    # a reference to a variable defined later is left as written
    assert env["GREETING"] == "hi $(MY_NAME)"
    assert env["LATE"] == "web on $(NODE)"
    assert (env["NODE"], env["IP"], env["APP"]) == ("node1", "10.244.1.5", "web")
    assert (env["MEM"], env["CPU"], env["MODE"]) == ("64", "2", "fast")
    assert "OPT" not in env
    assert envvars.command_line(["echo", "$(IP)", "$(NOPE)"], env) == ["echo", "10.244.1.5", "$(NOPE)"]


def test_service_links_can_be_turned_off_but_the_master_service_stays():
    pod = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}
    env = envvars.container_env(PodContext(pod), {"name": "c"}, lambda n: None, NO_SECRETS, SERVICES)
    assert "KUBERNETES_SERVICE_HOST" in env and "FRONT_END_SERVICE_HOST" not in env


@pytest.mark.parametrize(
    "container, message",
    [
        ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
        (
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]},
            "couldn't find key k",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
            'secret "s" not found',
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]},
            "couldn't find key nope in Secret shop/creds",
        ),
        ({"envFrom": [{"secretRef": {"name": "s"}}]}, 'secret "s" not found'),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "broken", "key": "k"}}}]},
            r"secret shop/broken: data\[k\] is not base64",
        ),
        (
            {"envFrom": [{"secretRef": {"name": "nul"}}]},
            r"secret shop/nul: data\[k\] holds a NUL byte",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]},
            "unsupported fieldRef",
        ),
    ],
)
def test_missing_sources_make_the_container_unconfigurable(container, message):
    cms = {"cm": {"metadata": {"namespace": "shop"}, "data": {}}}
    with pytest.raises(ConfigError, match=message):
        envvars.container_env(PodContext(POD), {"name": "c", **container}, cms.get, SECRETS.get, [])


def test_secrets_are_decoded_into_the_environment():
    container = {
        "name": "c",
        "envFrom": [
            {"secretRef": {"name": "creds"}, "prefix": "S_"},
            {"secretRef": {"name": "x", "optional": True}},
        ],
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "RAW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "raw"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "none", "optional": True}},
            },
            {"name": "USE", "value": "pw=$(PASSWORD)"},
        ],
    }
    env = envvars.container_env(PodContext(POD), container, lambda n: None, SECRETS.get, [])
    assert env["PASSWORD"] == "s3cr3t" and env["S_password"] == "s3cr3t" and env["USE"] == "pw=s3cr3t"
    assert "S_bad key" not in env and "OPT" not in env
    # bytes that are not UTF-8 reach the process unchanged
    assert os.fsencode(env["RAW"]) == b"\xff\xfea"
