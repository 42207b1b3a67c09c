"""flanneld's `--ip-masq` rules: masquerade what leaves the pod network, nothing inside it.

flannel's chain (`pkg/trafficmngr/iptables`), in the node's nat table, jumped to from
POSTROUTING:

1. already marked for masquerade by kube-proxy (0x4000): leave it to kube-proxy's rules;
2. this node's pods to any pod: keep the source (pods see each other's real addresses);
3. any pod to this node's pods: likewise;
4. from outside the pod network to this node's pods: untouched;
5. pods to anywhere outside the pod network (but multicast): masquerade;
6. from outside the pod network to a pod on another node: masquerade, so the answer comes
   back through this node.

With `--ip-masq`, `subnet.env` says `FLANNEL_IPMASQ=true` and the CNI plugin turns the
bridge's own masquerading off; without it the bridge masquerades everything that leaves the
node's subnet, pod-to-pod traffic across nodes included, which hides the pods' addresses.
`render_masq` is pure (golden-tested); `ensure_masq` applies it with one `iptables-restore`,
which replaces the chain as a whole, so re-applying it is the resync.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from netlab.kernel.iptables import ensure_iptables_rule, iptables_restore

CHAIN = "FLANNEL-POSTRTG"
COMMENT = "flanneld masq"
KUBE_MARK = "0x4000/0x4000"
JUMP = ["-m", "comment", "--comment", COMMENT, "-j", CHAIN]


def render_masq(network: IPv4Network, subnet: IPv4Network) -> str:
    c = f'-m comment --comment "{COMMENT}"'
    n, s = network, subnet
    rules = [
        f"-A {CHAIN} -m mark --mark {KUBE_MARK} {c} -j RETURN",
        f"-A {CHAIN} -s {s} -d {n} {c} -j RETURN",
        f"-A {CHAIN} -s {n} -d {s} {c} -j RETURN",
        f"-A {CHAIN} ! -s {n} -d {s} {c} -j RETURN",
        f"-A {CHAIN} -s {n} ! -d 224.0.0.0/4 {c} -j MASQUERADE --random-fully",
        f"-A {CHAIN} ! -s {n} -d {n} {c} -j MASQUERADE --random-fully",
    ]
    return "\n".join(["*nat", f":{CHAIN} - [0:0]", *rules, "COMMIT", ""])


def ensure_masq(netns: str | None, network: IPv4Network, subnet: IPv4Network) -> None:
    iptables_restore(netns, render_masq(network, subnet))
    ensure_iptables_rule(netns, "nat", "POSTROUTING", JUMP)
