"""A sandbox's pod network, through CNI: what `sandbox run` and `sandbox rm` attach and detach.

Like containerd, the runtime attaches two networks to every sandbox: a loopback network
(`lo` up, so processes in the pod share 127.0.0.1; the network named `cni-loopback` in the
node's CNI config directory) and the node's default network, the first conflist there.
Both are executed by `netlab.cni.CniRuntime` with the plugins running in the *node's*
namespace, where the bridge, the host-side veths and the node's iptables rules belong.
Plugins are looked up in the lab's CNI bin dir (where `up` links the `netlab-*` plugins) and
then in Debian's reference plugin directory, so a conflist may name either kind.

DEL runs for both networks even when one fails, and the errors are reported together.
`node_socket` gives callers a socket in the node's namespace (probes that leave from the node).
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from netlab import kernel
from netlab.cni.config import NetworkConfigList, load_conflist
from netlab.cni.runtime import CniRuntime
from netlab.cni.types import CniError
from netlab.errors import NetlabError
from netlab.layout import Layout
from netlab.runtime.sandbox import Sandbox

REFERENCE_PLUGIN_DIR = Path("/usr/lib/cni")
LOOPBACK_NETWORK = "cni-loopback"


def plugin_dirs(layout: Layout) -> list[Path]:
    return [layout.cni_bin_dir, REFERENCE_PLUGIN_DIR]


# the sandbox labels a kubelet sets, naming the pod the sandbox is for
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_UID_LABEL = "io.kubernetes.pod.uid"


def pod_args(sb: Sandbox) -> list[tuple[str, str]]:
    """The CNI_ARGS a kubelet passes, for plugins that log or key on the pod's identity.

    A sandbox made for a pod carries the pod's namespace, name and uid as labels; a bare
    sandbox (`netlab sandbox run`) is named after itself in the default namespace."""
    args = [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", sb.labels.get(POD_NAMESPACE_LABEL, "default")),
        ("K8S_POD_NAME", sb.labels.get(POD_NAME_LABEL, sb.name)),
        ("K8S_POD_INFRA_CONTAINER_ID", sb.container_id),
    ]
    if POD_UID_LABEL in sb.labels:
        args.append(("K8S_POD_UID", sb.labels[POD_UID_LABEL]))
    return args


class CniPodNetwork:
    """The pod network of one node: its default conflist plus loopback, run in `node_netns`."""

    def __init__(self, layout: Layout, conf_dir: Path, node_netns: str | None) -> None:
        try:
            default = load_conflist(conf_dir)
            loopback = load_conflist(conf_dir, LOOPBACK_NETWORK)
        except CniError as e:
            raise NetlabError(f"node network configuration: {e}") from None
        self.default = self._runtime(layout, default, node_netns)
        self.loopback = self._runtime(layout, loopback, node_netns)

    @staticmethod
    def _runtime(layout: Layout, conf: NetworkConfigList, node_netns: str | None) -> CniRuntime:
        return CniRuntime(conf, plugin_dirs(layout), layout.cni_cache_dir, plugin_netns=node_netns)

    def add(self, sandbox: Sandbox) -> str:
        cid, netns, args = sandbox.container_id, sandbox.netns_path, pod_args(sandbox)
        try:
            self.loopback.add(cid, netns, "lo", args)
            result = self.default.add(cid, netns, sandbox.ifname, args)
        except CniError as e:
            raise NetlabError(f"CNI ADD for sandbox {sandbox.name} failed: {e}") from None
        for ip in result.ips:
            index = ip.interface
            known = index is not None and 0 <= index < len(result.interfaces)
            named = result.interfaces[index].name if known and index is not None else None
            if named in (None, sandbox.ifname) and ipaddress.ip_interface(ip.address).version == 4:
                return ip.address
        raise NetlabError(f"CNI ADD for sandbox {sandbox.name} returned no IPv4 address for {sandbox.ifname}")

    def delete(self, sandbox: Sandbox) -> None:
        netns = sandbox.netns_path if Path(sandbox.netns_path).exists() else None
        errors = self.default.delete(sandbox.container_id, netns, sandbox.ifname)
        errors += self.loopback.delete(sandbox.container_id, netns, "lo")
        if errors:
            raise NetlabError(f"CNI DEL for sandbox {sandbox.name}: " + "; ".join(str(e) for e in errors))


def node_socket(node_netns: str | None) -> socket.socket:
    """A TCP socket in the node's network namespace (None: this host's own).

    A socket belongs to the namespace it was created in, so a probe connecting through it
    leaves from the node, the way the kubelet's probes do; the socket is made on a short-lived
    thread that joins the namespace (the caller's threads never change namespace)."""
    return kernel.run_in_netns(node_netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
