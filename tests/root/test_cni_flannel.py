"""netlab-flannel against the real kernel: try-again before subnet.env, ADD/CHECK/DEL, interop."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from cni.install import install_plugins
from netlab import kernel
from netlab.cni.runtime import CniRuntime
from netlab.cni.types import CniError
from netlab.kernel import Rtnl
from netlab.layout import Layout
from netlab.overlay import subnetenv
from tests.root import cnilab

pytestmark = pytest.mark.root

NETLAB = Path(sys.executable).parent / "netlab"


class Node:
    def __init__(self, layout: Layout, tmp: Path) -> None:
        self.layout = layout
        self.netns = cnilab.make_node(layout)
        self.bin_dir = layout.cni_bin_dir
        install_plugins(self.bin_dir)
        self.subnet_file = tmp / "run" / "subnet.env"
        self.data_dir = tmp / "flannel"
        self.ipam_dir = tmp / "ipam"

    def runtime(
        self, delegate: dict[str, Any] | None = None, ipam: str = "netlab-host-local", version: str = "1.1.0"
    ) -> CniRuntime:
        plugin = {
            "type": "netlab-flannel",
            "subnetFile": str(self.subnet_file),
            "dataDir": str(self.data_dir),
            "delegate": delegate if delegate is not None else {"hairpinMode": True, "isDefaultGateway": True},
            "ipam": {"type": ipam, "dataDir": str(self.ipam_dir)},
        }
        conf = cnilab.conflist("podnet", plugin, version=version)
        return CniRuntime(
            conf,
            [str(self.bin_dir), cnilab.REFERENCE_DIR],
            self.layout.cni_cache_dir,
            plugin_netns=self.netns,
        )

    def write_env(self, subnet: str = "10.244.3.1/24", mtu: int = 1450) -> None:
        subnetenv.write(
            self.subnet_file,
            subnetenv.SubnetEnv((IPv4Network("10.244.0.0/16"),), IPv4Interface(subnet), mtu, False),
        )


@pytest.fixture(params=["server", "no-server"])
def node(request: pytest.FixtureRequest, layout: Layout, tmp_path: Path) -> Iterator[Node]:
    n = Node(layout, tmp_path)
    with cnilab.cni_server(n.netns) if request.param == "server" else contextlib.nullcontext():
        yield n


def test_try_again_until_subnet_env_then_add_check_del(node: Node) -> None:
    rt = node.runtime()
    pod = cnilab.make_pod(node.layout, "a")
    with pytest.raises(CniError) as e:
        rt.add("cid-a", pod, "eth0")
    assert e.value.code == 11 and "has not leased this node's subnet" in e.value.msg
    with pytest.raises(CniError) as e:
        rt.status()
    assert e.value.code == 50
    assert not node.data_dir.exists() and cnilab.links(pod).keys() == {"lo"}

    node.write_env()
    rt.status()
    res = rt.add("cid-a", pod, "eth0")
    assert [ip.address for ip in res.ips] == ["10.244.3.2/24"]
    assert cnilab.addresses(node.netns, "cni0") == ["10.244.3.1/24"]
    assert cnilab.links(pod)["eth0"].mtu == 1450
    with Rtnl(pod) as r:
        routes = {x.dst: x.gateway for x in r.routes()}
    assert routes["10.244.0.0/16"] == "10.244.3.1" and routes["0.0.0.0/0"] == "10.244.3.1"
    saved = node.data_dir / "cid-a"
    assert (
        oct(node.data_dir.stat().st_mode & 0o777) == "0o700" and oct(saved.stat().st_mode & 0o777) == "0o600"
    )
    delegate = json.loads(saved.read_text())
    assert delegate["type"] == "netlab-bridge" and delegate["ipMasq"] is True and delegate["mtu"] == 1450
    assert delegate["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    rt.check("cid-a", pod, "eth0")

    # DEL works from the saved configuration even if subnet.env is gone meanwhile
    node.subnet_file.unlink()
    assert rt.delete("cid-a", pod, "eth0") == []
    assert not saved.exists() and cnilab.links(pod).keys() == {"lo"}
    assert [v for v in cnilab.links(node.netns) if v.startswith("veth")] == []
    assert not any(f[0].isdigit() for f in os.listdir(node.ipam_dir / "podnet"))
    assert rt.delete("cid-a", pod, "eth0") == []  # again: nothing to do


def test_reference_plugins_as_delegate(node: Node) -> None:
    node.write_env("10.244.9.1/24", mtu=1400)
    # Debian's reference plugins speak CNI up to 1.0.0
    rt = node.runtime({"type": "bridge", "isDefaultGateway": True}, ipam="host-local", version="1.0.0")
    a, b = cnilab.make_pod(node.layout, "a"), cnilab.make_pod(node.layout, "b")
    ra, rb = rt.add("cid-a", a, "eth0"), rt.add("cid-b", b, "eth0")
    assert cnilab.ping(a, rb.ips[0].address.split("/")[0])
    assert cnilab.links(b)["eth0"].mtu == 1400 and ra.ips[0].address.startswith("10.244.9.")
    assert rt.delete("cid-a", a, "eth0") == [] and rt.delete("cid-b", b, "eth0") == []
    assert list(node.data_dir.iterdir()) == []
    assert kernel.netns_exists(a)


def test_failed_delegate_leaves_nothing_saved(node: Node) -> None:
    node.write_env()
    rt = node.runtime({"type": "no-such-delegate"})
    pod = cnilab.make_pod(node.layout, "a")
    with pytest.raises(CniError) as e:
        rt.add("cid-a", pod, "eth0")
    assert "no-such-delegate" in e.value.msg
    assert list(node.data_dir.iterdir()) == []
