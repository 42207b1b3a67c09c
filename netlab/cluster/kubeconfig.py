"""Writing and reading the kubeconfig that points kubectl and our own clients at the apiserver.

One cluster (`netlab`), one user with a bearer token, one context; the CA is embedded as
`certificate-authority-data` so the file works from any directory. The file holds a secret,
so it is written 0600.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netlab.errors import ConfigError


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str
    ca_pem: bytes


def render_kubeconfig(server: str, token: str, ca_pem: bytes, user: str = "admin") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "netlab",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "netlab", "context": {"cluster": "netlab", "user": user}}],
        "current-context": "netlab",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, server: str, token: str, ca_pem: bytes, user: str = "admin") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_kubeconfig(server, token, ca_pem, user))
    os.replace(tmp, path)


def load_kubeconfig(path: Path) -> KubeConfig:
    """The current context's server, token and CA; a one-line ConfigError for anything else."""
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"kubeconfig {path} is not valid YAML: {e}") from None
    try:
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif "certificate-authority" in cluster:
            ca = Path(cluster["certificate-authority"]).read_bytes()
        else:
            ca = b""
        return KubeConfig(cluster["server"], user.get("token", ""), ca)
    except (KeyError, TypeError, StopIteration, OSError, ValueError) as e:
        raise ConfigError(f"kubeconfig {path}: no usable current context ({e})") from None
