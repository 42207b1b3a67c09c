"""An apiserver on a real etcd for each test module, and helpers to drive it with real kubectl.

Each module gets its own etcd (free ports, private data) and its own apiserver process
(`python -m netlab.cli apiserver` on a free port, with its own certificate directory, token
file and kubeconfig), so modules never see each other's objects. The apiserver's log is shown
when it fails to start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from netlab.cluster import auth
from netlab.cluster.client import ApiClient
from netlab.etcd import server as etcd_server
from netlab.etcd.server import free_port
from tests.conftest import new_layout

# kubectl is not a Debian package, so the setup cannot install it; tests that drive it are
# skipped (with this reason) on a machine without it rather than failing.
KUBECTL = shutil.which("kubectl")


@dataclass
class ApiServerForTest:
    base: Path
    etcd_url: str
    extra: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, auth.User] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.base / "kubeconfig"

    @property
    def ca(self) -> Path:
        return self.base / "pki" / "ca.crt"

    @property
    def log(self) -> Path:
        return self.base / "apiserver.log"

    def token(self, user: str) -> str:
        return auth.token_for(self.tokens, user)

    def start(self) -> None:
        self.port = self.port or free_port()
        self.base.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "netlab.cli",
            "apiserver",
            "--etcd",
            self.etcd_url,
            "--port",
            str(self.port),
            "--cert-dir",
            str(self.base / "pki"),
            "--token-file",
            str(self.base / "tokens.csv"),
            "--write-kubeconfig",
            str(self.kubeconfig),
            *self.extra,
        ]
        env = {
            **os.environ,
            "NETLAB_STATE_DIR": str(self.base / "state"),
            "NETLAB_RUN_DIR": str(self.base / "run"),
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while not self.kubeconfig.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"apiserver did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.tokens = auth.load_token_file(self.base / "tokens.csv")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> ApiClient:
        return ApiClient.from_kubeconfig(self.kubeconfig)

    def http(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "admin",
        body: Any = None,
        content_type: str = "application/json",
        **kw: Any,
    ) -> requests.Response:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {self.token(token)}"
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        return requests.request(
            method, self.url + path, data=data, headers=headers, verify=str(self.ca), timeout=30, **kw
        )

    def kubectl(
        self, *args: str, input: str | None = None, ok: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        if KUBECTL is None:
            pytest.skip("kubectl is not installed (no Debian package; install v1.32 by hand)")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.base)}
        proc = subprocess.run(
            [KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout
        )
        if ok and proc.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc


def apiserver_fixture(*extra: str) -> Any:
    """A module-scoped fixture: a private etcd and an apiserver on it."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerForTest]:
        base = tmp_path_factory.mktemp("apiserver")
        etcd_layout = new_layout(base / "etcd")
        url = etcd_server.start(etcd_layout, any_port=True, progress_interval="1s")
        server = ApiServerForTest(base / "api", url, extra)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            etcd_server.stop(etcd_layout)

    return fixture


@pytest.fixture(scope="module")
def core(api: ApiServerForTest) -> Iterator[Any]:
    """The official Python client's CoreV1Api on the module's apiserver (its `api` fixture)."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    cfg = k8s.Configuration()
    k8s_config.load_kube_config(str(api.kubeconfig), client_configuration=cfg)
    with k8s.ApiClient(cfg) as c:
        yield k8s.CoreV1Api(c)
