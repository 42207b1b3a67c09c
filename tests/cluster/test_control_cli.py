"""`netlab scheduler` and `netlab controller-manager` as processes, the way `netlab up` runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.cluster.client import ApiClient
from tests.cluster.conftest import ApiServerForTest, apiserver_fixture
from tests.cluster.fakes import FakeKubelets, register_node
from tests.cluster.test_controllers import deployment

pytestmark = pytest.mark.etcd

api = apiserver_fixture()


def netlab(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "netlab.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NETLAB_DEBUG": ""},
        **kw,  # type: ignore[call-overload]
    )


@pytest.fixture
def components(api: ApiServerForTest) -> Iterator[list[subprocess.Popen[str]]]:
    procs = [
        netlab("scheduler", "--kubeconfig", str(api.kubeconfig)),
        netlab("controller-manager", "--kubeconfig", str(api.kubeconfig), "--node-monitor-grace-period", "5"),
    ]
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_the_components_run_a_deployment_and_stop_on_sigterm(
    api: ApiServerForTest, components: list[subprocess.Popen[str]]
) -> None:
    with ApiClient.from_kubeconfig(api.kubeconfig) as client:
        for n in ("cli1", "cli2"):
            register_node(client, n)
        kubelets = FakeKubelets(client, ["cli1", "cli2"]).start()
        try:
            api.kubectl("apply", "-f", "-", input=deployment("web", replicas=2))
            out = api.kubectl("rollout", "status", "deploy/web", "--timeout=60s", timeout=90).stdout
            assert "successfully rolled out" in out
            placed = {p["spec"]["nodeName"] for p in client.list("pods", "default")["items"]}
            assert placed == {"cli1", "cli2"}
        finally:
            kubelets.stop()
    for p in components:
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        p.send_signal(signal.SIGTERM)
    for p in components:
        _, err = p.communicate(timeout=15)  # open watches are cut, not waited out
        assert p.returncode == 0, err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["controller-manager", "--controllers", "replicaset,bogus"], "unknown controller(s) bogus"),
        (
            ["scheduler", "--kubeconfig", "/nonexistent/kubeconfig"],
            "cannot read kubeconfig /nonexistent/kubeconfig",
        ),
        (["scheduler", "--parallelism", "0"], "Invalid value for '--parallelism'"),
    ],
)
def test_bad_flags_get_one_line(api: ApiServerForTest, args: list[str], message: str, tmp_path: Path) -> None:
    if "--kubeconfig" not in args:
        args = [*args, "--kubeconfig", str(api.kubeconfig)]
    p = netlab(*args)
    _, err = p.communicate(timeout=30)
    assert p.returncode != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
