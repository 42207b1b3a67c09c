"""Sandbox records and the nsenter command line (no namespaces needed)."""

from __future__ import annotations

import os

import pytest

from netlab.errors import NetlabError, NotFound
from netlab.lab import processes
from netlab.layout import Layout
from netlab.runtime import sandbox as runtime
from netlab.runtime.network import pod_args


@pytest.fixture
def lay(tmp_path):
    return Layout(prefix="nl-tunit-", state_dir=tmp_path / "state", run_dir=tmp_path / "run")


def test_records_round_trip_and_list(lay):
    lay.sandbox_dir.mkdir(parents=True)
    a = runtime.Sandbox(
        name="a", node="node1", netns=lay.pod_netns("a"), container_id="c" * 64, ip="10.244.1.2/24"
    )
    runtime._save(lay, a)
    runtime._save(
        lay, runtime.Sandbox(name="b", node="node2", netns=lay.pod_netns("b"), container_id="d" * 64)
    )
    assert runtime.get(lay, "a") == a
    assert [s.name for s in runtime.list_sandboxes(lay)] == ["a", "b"]
    with pytest.raises(NotFound, match="sandbox zz does not exist"):
        runtime.get(lay, "zz")


def test_exec_enters_net_ipc_and_uts_of_a_live_pause_process(lay):
    me = os.getpid()
    sb = runtime.Sandbox(name="a", node="node1", netns=lay.pod_netns("a"), container_id="c" * 64)
    with pytest.raises(NetlabError, match="has no pause process"):
        runtime.exec_argv(sb, ["true"])
    sb.pause_pid, sb.pause_start = me, processes.start_time(me)
    assert runtime.exec_argv(sb, ["ip", "addr"]) == [
        "nsenter",
        "--net=/run/netns/nl-tunit-pod-a",
        f"--ipc=/proc/{me}/ns/ipc",
        f"--uts=/proc/{me}/ns/uts",
        "--",
        "ip",
        "addr",
    ]
    # a recorded pid whose start time differs is someone else: never entered
    sb.pause_start = "1"
    with pytest.raises(NetlabError):
        runtime.exec_argv(sb, ["true"])


def test_cni_args_name_the_pod_like_a_kubelet(lay):
    sb = runtime.Sandbox(name="web", node="node1", netns=lay.pod_netns("web"), container_id="e" * 64)
    assert dict(pod_args(sb)) == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": "default",
        "K8S_POD_NAME": "web",
        "K8S_POD_INFRA_CONTAINER_ID": "e" * 64,
    }
