"""The lab's apiserver component: started on the lab's etcd, kubeconfig written, stopped cleanly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from netlab.cluster.client import ApiClient
from netlab.errors import NetlabError
from netlab.etcd import server as etcd_server
from netlab.etcd.server import free_port
from netlab.lab import apiserver, processes
from tests.cluster.conftest import KUBECTL
from tests.conftest import new_layout

pytestmark = pytest.mark.etcd


def test_start_writes_kubeconfig_and_stop_removes_it(tmp_path: Path) -> None:
    lay = new_layout(tmp_path)
    url = etcd_server.start(lay, any_port=True)
    try:
        server = apiserver.start(lay, url, port=free_port())
        assert lay.kubeconfig.exists() and processes.running(lay, apiserver.COMPONENT)
        env = {**os.environ, "KUBECONFIG": str(lay.kubeconfig), "HOME": str(tmp_path)}
        out = subprocess.run(
            [KUBECTL, "get", "ns", "-o", "name"], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 0 and "namespace/default" in out.stdout.split()
        with ApiClient.from_kubeconfig(lay.kubeconfig) as c:
            assert c.server == server
        with pytest.raises(NetlabError, match="already running"):
            apiserver.start(lay, url, port=free_port())
        assert apiserver.stop(lay)
        assert not lay.kubeconfig.exists() and processes.running(lay, apiserver.COMPONENT) is None
    finally:
        apiserver.stop(lay)
        etcd_server.stop(lay)


def test_a_failing_start_says_why(tmp_path: Path) -> None:
    lay = new_layout(tmp_path)
    with pytest.raises(
        NetlabError, match="apiserver exited: error: etcd at http://127.0.0.1:1 is unreachable"
    ):
        apiserver.start(lay, "http://127.0.0.1:1", port=free_port())
    assert processes.running(lay, apiserver.COMPONENT) is None and not lay.kubeconfig.exists()
