"""The per-container SNAT chains behind the bridge plugin's `ipMasq`.

The layout is the reference plugin's (containernetworking/plugins `pkg/ip/ipmasq_linux.go`,
`pkg/utils`), so a lab node's nat table reads like any bridge-CNI node's:

    :CNI-<hex sha512(network + containerID)>          (cut to 28 characters)
    -A <chain> -d <pod subnet> -m comment --comment "name: \\"<net>\\" id: \\"<cid>\\"" -j ACCEPT
    -A <chain> ! -d 224.0.0.0/4 -m comment --comment ... -j MASQUERADE     (ff00::/8 for IPv6)
    -A POSTROUTING -s <pod ip> -m comment --comment ... -j <chain>

The rules go to the nf_tables backend, where the reference plugins (bridge, portmap) put
theirs, so `iptables-save` shows a node's CNI NAT rules together.

`render_ipmasq` is pure. `ensure_ipmasq` applies it in one iptables-restore. `delete_ipmasq`
finds the POSTROUTING jumps to the chain in iptables-save output rather than rebuilding them
from the pod's addresses, so DEL works when the pod's namespace (and so its addresses) is
already gone, which the reference plugin does not manage. `ipmasq_owners` lists the chains
of a network with their container ids, for GC.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence

from netlab.kernel.iptables import iptables_restore, iptables_save

BACKEND = "nft"

CHAIN_PREFIX = "CNI-"
CHAIN_MAX = 28
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_COMMENT_RE = re.compile(r'--comment "name: \\"(?P<net>[^"\\]*)\\" id: \\"(?P<cid>[^"\\]*)\\""')


def ipmasq_chain(network: str, container_id: str) -> str:
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return CHAIN_PREFIX + digest[: CHAIN_MAX - len(CHAIN_PREFIX)]


def ipmasq_comment(network: str, container_id: str) -> str:
    return f'name: "{network}" id: "{container_id}"'


def _quoted(comment: str) -> str:
    return '"' + comment.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_ipmasq(network: str, container_id: str, pod_cidrs: Sequence[str], family: int) -> str:
    """iptables-restore input (nat table) for the pod addresses of one family, e.g. 10.244.1.5/24."""
    chain = ipmasq_chain(network, container_id)
    comment = f"-m comment --comment {_quoted(ipmasq_comment(network, container_id))}"
    lines = ["*nat", f":{chain} - [0:0]"]
    ifaces = [ipaddress.ip_interface(c) for c in pod_cidrs]
    ifaces = [i for i in ifaces if i.version == family]
    host_len = 32 if family == 4 else 128
    for iface in ifaces:
        lines.append(f"-A {chain} -d {iface.network} {comment} -j ACCEPT")
    lines.append(f"-A {chain} ! -d {MULTICAST[family]} {comment} -j MASQUERADE")
    for iface in ifaces:
        lines.append(f"-A POSTROUTING -s {iface.ip}/{host_len} {comment} -j {chain}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def ensure_ipmasq(netns: str | None, network: str, container_id: str, pod_cidrs: Sequence[str]) -> None:
    for family in (4, 6):
        if any(ipaddress.ip_interface(c).version == family for c in pod_cidrs):
            iptables_restore(netns, render_ipmasq(network, container_id, pod_cidrs, family), BACKEND, family)


def render_ipmasq_removal(saved: str, chain: str) -> str | None:
    """iptables-restore input that removes `chain` and every rule jumping to it, given the
    nat table's iptables-save text; None when there is nothing to remove."""
    jumps = [
        "-D" + line[2:]
        for line in saved.splitlines()
        if line.startswith("-A ") and not line.startswith(f"-A {chain} ") and line.endswith(f"-j {chain}")
    ]
    exists = any(line == f":{chain}" or line.startswith(f":{chain} ") for line in saved.splitlines())
    if not jumps and not exists:
        return None
    lines = ["*nat", *jumps]
    if exists:
        lines += [f"-F {chain}", f"-X {chain}"]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def delete_ipmasq(netns: str | None, network: str, container_id: str) -> bool:
    """Remove the container's chain and its POSTROUTING jumps (both families). False if none."""
    chain = ipmasq_chain(network, container_id)
    removed = False
    for family in (4, 6):
        text = render_ipmasq_removal(iptables_save(netns, "nat", BACKEND, family), chain)
        if text is not None:
            iptables_restore(netns, text, BACKEND, family)
            removed = True
    return removed


def ipmasq_owners(netns: str | None, network: str, family: int = 4) -> dict[str, str]:
    """{container id: chain} for the ipMasq chains of `network` present in `netns`."""
    owners: dict[str, str] = {}
    for line in iptables_save(netns, "nat", BACKEND, family).splitlines():
        m = _COMMENT_RE.search(line)
        if not m or m["net"] != network:
            continue
        chain = ipmasq_chain(network, m["cid"])
        if line.startswith(f"-A {chain} "):
            owners[m["cid"]] = chain
    return owners
