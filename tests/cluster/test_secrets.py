"""Secrets through real kubectl v1.32 and the official Python client, on a real etcd."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s

from tests.cluster.conftest import ApiServerForTest, apiserver_fixture

pytestmark = pytest.mark.etcd

api = apiserver_fixture()


def get_secret(api: ApiServerForTest, name: str) -> dict[str, Any]:
    out: dict[str, Any] = yaml.safe_load(api.kubectl("get", "secret", name, "-o", "yaml").stdout)
    assert "stringData" not in out
    return out


def decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def test_create_secret_generic_from_literal_and_file(api: ApiServerForTest, tmp_path: Path) -> None:
    (tmp_path / "key.bin").write_bytes(b"\x00\x01\xffbinary")
    out = api.kubectl(
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--from-literal=pass=s3cr3t!",
        f"--from-file={tmp_path / 'key.bin'}",
    ).stdout
    assert "secret/creds created" in out
    sec = get_secret(api, "creds")
    assert sec["type"] == "Opaque" and sec["kind"] == "Secret" and sec["apiVersion"] == "v1"
    assert decoded(sec) == {"user": b"admin", "pass": b"s3cr3t!", "key.bin": b"\x00\x01\xffbinary"}

    table = api.kubectl("get", "secrets").stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    row = next(line.split() for line in table[1:] if line.startswith("creds "))
    assert row[:3] == ["creds", "Opaque", "3"]

    out = api.kubectl("describe", "secret", "creds").stdout
    assert "Type:  Opaque" in out
    assert "pass:     7 bytes" in out and "key.bin:  9 bytes" in out and "user:     5 bytes" in out
    assert "s3cr3t" not in out and "admin" not in out

    again = api.kubectl("create", "secret", "generic", "creds", "--from-literal=a=b", ok=False)
    assert again.returncode != 0 and 'secrets "creds" already exists' in again.stderr


def test_create_secret_tls(api: ApiServerForTest, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    cert_flag, key_flag = f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}"
    out = api.kubectl("create", "secret", "tls", "web-tls", cert_flag, key_flag).stdout
    assert "secret/web-tls created" in out
    sec = get_secret(api, "web-tls")
    assert sec["type"] == "kubernetes.io/tls"
    assert decoded(sec) == {"tls.crt": cert_pem, "tls.key": key_pem}
    table = api.kubectl("get", "secrets").stdout.splitlines()
    row = next(line.split() for line in table if line.startswith("web-tls "))
    assert row[:3] == ["web-tls", "kubernetes.io/tls", "2"]


def test_create_secret_docker_registry(api: ApiServerForTest) -> None:
    api.kubectl(
        "create",
        "secret",
        "docker-registry",
        "pull",
        "--docker-server=registry.example:5000",
        "--docker-username=robot",
        "--docker-password=hunter2",
        "--docker-email=robot@example.com",
    )
    sec = get_secret(api, "pull")
    assert sec["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(decoded(sec)[".dockerconfigjson"])
    entry = config["auths"]["registry.example:5000"]
    assert (entry["username"], entry["password"], entry["email"]) == ("robot", "hunter2", "robot@example.com")
    assert base64.b64decode(entry["auth"]) == b"robot:hunter2"


MANIFEST = """
apiVersion: v1
kind: Secret
metadata: {name: app}
data:
  kept: a2VwdA==
  shadowed: b2xk
stringData:
  shadowed: new
  token: first
"""


def test_apply_with_string_data_then_a_change(api: ApiServerForTest) -> None:
    assert "secret/app created" in api.kubectl("apply", "-f", "-", input=MANIFEST).stdout
    sec = get_secret(api, "app")
    assert sec["type"] == "Opaque"
    assert decoded(sec) == {"kept": b"kept", "shadowed": b"new", "token": b"first"}  # stringData wins

    changed = MANIFEST.replace("token: first", "token: second\n  extra: x")
    assert "secret/app configured" in api.kubectl("apply", "-f", "-", input=changed).stdout
    sec = get_secret(api, "app")
    assert decoded(sec) == {"kept": b"kept", "shadowed": b"new", "token": b"second", "extra": b"x"}
    raw = api.http("GET", "/api/v1/namespaces/default/secrets/app").json()
    assert "stringData" not in raw and raw["data"] == sec["data"]


def test_invalid_secrets_are_422_naming_the_field(api: ApiServerForTest) -> None:
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"}, "data": {"a": "not base64!"}}
    out = api.kubectl("apply", "-f", "-", input=json.dumps(bad), ok=False)
    assert out.returncode != 0
    assert 'The Secret "bad" is invalid: data[a]: Invalid value' in out.stderr, out.stderr
    resp = api.http("POST", "/api/v1/namespaces/default/secrets", body=bad)
    assert resp.status_code == 422, resp.text
    st = resp.json()
    assert (st["reason"], st["details"]["kind"], st["details"]["name"]) == ("Invalid", "Secret", "bad")
    (cause,) = st["details"]["causes"]
    assert cause["field"] == "data[a]" and cause["message"].startswith("Invalid value: ")

    tls = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "half-tls"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "a certificate"},
    }
    out = api.kubectl("create", "-f", "-", input=json.dumps(tls), ok=False)
    assert out.returncode != 0
    assert 'The Secret "half-tls" is invalid: data[tls.key]: Required value' in out.stderr, out.stderr
    resp = api.http("POST", "/api/v1/namespaces/default/secrets", body=tls)
    assert resp.status_code == 422 and [c["field"] for c in resp.json()["details"]["causes"]] == [
        "data[tls.key]"
    ]
    assert api.kubectl("get", "secret", "bad", ok=False).returncode != 0
    assert api.kubectl("get", "secret", "half-tls", ok=False).returncode != 0


@pytest.mark.parametrize("kind", ["secret", "configmap"])
def test_immutable_data_stays(api: ApiServerForTest, kind: str) -> None:
    name = f"frozen-{kind}"
    obj = {
        "apiVersion": "v1",
        "kind": "Secret" if kind == "secret" else "ConfigMap",
        "metadata": {"name": name},
        "data": {"a": "YQ==" if kind == "secret" else "a"},
        "immutable": True,
    }
    api.kubectl("create", "-f", "-", input=json.dumps(obj))
    out = api.kubectl("patch", kind, name, "-p", json.dumps({"data": {"a": "Yg=="}}), ok=False)
    assert out.returncode != 0
    assert "data: Forbidden: field is immutable when `immutable` is set" in out.stderr, out.stderr
    out = api.kubectl("patch", kind, name, "-p", '{"immutable": false}', ok=False)
    assert "immutable: Forbidden" in out.stderr, out.stderr
    api.kubectl("label", kind, name, "still=changeable")  # metadata is not frozen
    api.kubectl("delete", kind, name)


def test_python_client_creates_and_reads(core: k8s.CoreV1Api) -> None:
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="py"),
        data={"bin": base64.b64encode(b"\xff\x00").decode()},
        string_data={"password": "pa55"},
    )
    created = core.create_namespaced_secret("default", body)
    assert created.type == "Opaque" and created.string_data is None
    got = core.read_namespaced_secret("py", "default")
    assert got.string_data is None and got.type == "Opaque"
    assert {k: base64.b64decode(v) for k, v in got.data.items()} == {"bin": b"\xff\x00", "password": b"pa55"}
    names = [s.metadata.name for s in core.list_namespaced_secret("default").items]
    assert "py" in names
    core.delete_namespaced_secret("py", "default")
    assert "py" not in [s.metadata.name for s in core.list_namespaced_secret("default").items]
